"""Accuracy, mean class accuracy, tie-aware AP / mAP and video-level voting against hand-computed values."""
import math

import numpy as np
import pytest

from lman_ms.eval.metrics.classification import (accuracy, average_precision, mean_average_precision,
                                                 mean_class_accuracy, one_hot_scores, per_class_accuracy,
                                                 video_top1)


def test_accuracies():
    gt = [0, 0, 0, 1, 2, 2]
    pred = [0, 0, 1, 1, -1, 2]  # -1: unparsed
    assert accuracy(gt, pred) == pytest.approx(4 / 6)
    np.testing.assert_allclose(per_class_accuracy(gt, pred, 4), [2 / 3, 1.0, 0.5, np.nan])
    assert mean_class_accuracy(gt, pred, 4) == pytest.approx((2 / 3 + 1 + 0.5) / 3)
    assert math.isnan(accuracy([], []))


def test_average_precision_without_ties_is_voc():
    # ranked: P N P N -> precision 1 at recall .5, 2/3 at recall 1
    assert average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert math.isnan(average_precision([0.1, 0.2], [0, 0]))


def test_average_precision_with_ties_is_order_free():
    # 4 images answered c (2 positive), 6 not (1 positive): points (2/3, .5) and (1, .3)
    scores = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    a = [1, 0, 1, 0, 0, 0, 1, 0, 0, 0]
    b = [0, 0, 1, 1, 1, 0, 0, 0, 0, 0]
    expected = (2 / 3) * 0.5 + (1 / 3) * 0.3
    assert average_precision(scores, a) == pytest.approx(expected)
    assert average_precision(scores, b) == pytest.approx(expected)


def test_map_from_one_label_per_answer():
    gt = [0, 0, 1, 1]
    pred = [0, 1, 1, -1]
    m = mean_average_precision(gt, one_hot_scores(pred, 3))
    # class 0: answered 0 by image 0 only (1/1 precision, recall .5), prevalence .5 -> .5*1 + .5*.5 = .75
    # class 1: answered by images 1, 2 (precision .5, recall .5), prevalence .5 -> .5*.5 + .5*.5 = .5
    np.testing.assert_allclose(m["AP"], [0.75, 0.5, np.nan])
    assert m["mAP"] == pytest.approx(0.625)
    assert one_hot_scores([2, -1], 3).tolist() == [[0, 0, 1], [0, 0, 0]]


def test_video_top1_majority_and_ties():
    videos = ["v1"] * 3 + ["v2"] * 2 + ["v3"] * 2 + ["v4"]
    gt = [0, 0, 0, 1, 1, 2, 2, 3]
    pred = [0, 1, 0, 2, 1, -1, -1, 3]
    frames = [0, 1, 2, 5, 1, 0, 1, 0]
    # v1: 0 wins 2:1; v2: tie 2 vs 1, frame 1 (label 1) comes before frame 5 -> 1 right; v3: no vote; v4 right
    assert video_top1(videos, gt, pred, frames) == {"top1": 0.75, "videos": 4}
    assert math.isnan(video_top1([], [], [], [])["top1"])
    with pytest.raises(ValueError, match="v1"):
        video_top1(["v1", "v1"], [0, 1], [0, 0], [0, 1])
