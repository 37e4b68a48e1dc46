"""MR^-2 against values computed by hand from the definition in eval_MR_multisetup.py."""
import math

import numpy as np
import pytest

from lman_ms.eval.metrics.boxes import DetImage
from lman_ms.eval.metrics.miss_rate import FPPI_POINTS, log_average_miss_rate, miss_rate_curve


def _box(x, h=100):
    return [x, 0, x + 0.41 * h, h]


def _dataset():
    """10 images, 4 reasonable persons. In score order: hit, FP, hit, FP, hit; plus detections that must not
    count: one on an ignore region, one on a too-small person, one too small to be kept, one on an occluded one."""
    imgs = [DetImage.make([], []) for _ in range(10)]
    imgs[0] = DetImage.make([_box(0), _box(100), _box(300, 30)], [_box(0), _box(300, 30), _box(500, 30)],
                            [0.99, 0.95, 0.94], ignore=[[600, 0, 800, 200]])
    imgs[1] = DetImage.make([_box(0), _box(200)], [_box(400), _box(0), [650, 10, 680, 90]], [0.9, 0.8, 0.85],
                            ignore=[[600, 0, 800, 200]], gt_visibility=[1.0, 0.9])
    imgs[2] = DetImage.make([_box(0)], [_box(200), _box(0)], [0.7, 0.6])
    imgs[3] = DetImage.make([_box(0)], [_box(0)], [0.95], gt_visibility=[0.3])  # heavy occlusion: ignored
    return imgs


def test_hand_computed_reasonable():
    mr = miss_rate_curve(_dataset())
    # n_gt = 5 reasonable boxes (img0: 2, img1: 2, img2: 1); hits: img0 x=0 (.99), img1 x=0 (.8), img2 x=0 (.6);
    # false positives: img1 x=400 (.9, fppi .1), img2 x=200 (.7, fppi .2).
    # Ranked: .99 hit (fppi 0, rec .2), .9 FP (.1), .8 hit (.1, rec .4), .7 FP (.2), .6 hit (.2, rec .6)
    expected = np.array([0.8] * 4 + [0.6] + [0.6] + [0.4] * 3)
    assert FPPI_POINTS[4] == pytest.approx(0.1) and FPPI_POINTS[5] == pytest.approx(0.1778, abs=1e-4)
    np.testing.assert_allclose(mr, expected)
    assert log_average_miss_rate(_dataset()) == pytest.approx(math.exp(np.mean(np.log(expected))))


def test_all_subset_counts_the_small_and_occluded():
    # "All" (h >= 20, vis >= .2): the 30 px person of img0 and the occluded one of img3 become real boxes (7 gt).
    mr = miss_rate_curve(_dataset(), "All")
    # ranked: .99 hit, .95 hit(img3) .95 hit(small img0) ... order of equal scores follows image order
    # scores: img0 .99 hit, .95 hit(small), .94 FP (30 px box at x=500 now kept, no gt) ; img1 .9 FP, .85 on ignore,
    # .8 hit; img2 .7 FP, .6 hit; img3 .95 hit.
    # sorted: .99 H, .95 H(img0), .95 H(img3), .94 F(.1), .9 F(.2), .85 on ignore, .8 H, .7 F(.3), .6 H
    # -> at FPPI <= .1778 the last point is the .94 FP (recall 3/7); from .3162 on the .6 hit (recall 5/7)
    expected = [1 - 3 / 7] * 6 + [1 - 5 / 7] * 3
    np.testing.assert_allclose(mr, expected)


def test_edge_cases():
    # no detections at all: miss rate 1 everywhere
    assert log_average_miss_rate([DetImage.make([_box(0)], [])]) == pytest.approx(1.0)
    # no ground truth in the subset: undefined
    assert math.isnan(log_average_miss_rate([DetImage.make([], [_box(0)], [1.0])]))
    # a perfect detector: miss rate 0
    assert log_average_miss_rate([DetImage.make([_box(0)], [_box(0)], [1.0])]) == 0.0
    # the first detection is a false positive on a single image (FPPI 1): no operating point below FPPI 1
    mr = miss_rate_curve([DetImage.make([_box(0)], [_box(300), _box(0)], [0.9, 0.8])])
    np.testing.assert_allclose(mr, [1.0] * 8 + [0.0])
    # duplicates: the second detection of one person is a false positive
    mr = miss_rate_curve([DetImage.make([_box(0)], [_box(0), _box(1)], [0.9, 0.8])] + [DetImage.make([], [])] * 9)
    np.testing.assert_allclose(mr, [0.0] * 9)
