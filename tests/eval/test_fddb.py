"""FDDB discrete ROC: one-to-one matching, ties as one operating point, TPR at a false-positive budget."""
import math

import numpy as np
import pytest

from lman_ms.eval.metrics.boxes import DetImage
from lman_ms.eval.metrics.fddb import match_image, record_ellipses, roc, tpr_at_fp

F1, F2 = [0, 0, 10, 10], [20, 0, 30, 10]


def test_one_to_one_matching_prefers_the_assignment_that_matches_most():
    # det 0 overlaps both faces equally (IoU 7/13); greedily it could take F1 and leave det 1 (= F1) with nothing.
    # The maximum-weight matching gives it the other face.
    wide = [0, 0, 16, 10]
    img = DetImage.make([F1, [6, 0, 16, 10]], [[3, 0, 13, 10], F1], [0.9, 0.8])
    assert match_image(img).tolist() == [True, True]
    dup = DetImage.make([F1], [F1, F1, wide], [0.9, 0.8, 0.7])
    assert match_image(dup).tolist() == [True, False, False]


def test_roc_and_tpr_hand_computed():
    a = DetImage.make([F1, F2], [F1, [50, 50, 60, 60], F2], [1.0, 0.5, 0.5])
    b = DetImage.make([F1], [[40, 40, 45, 45], F1], [1.0, 0.5])
    fp, tp, n = roc([a, b])
    # threshold 1.0: a:F1 hit, b: FP -> (1 FP, 1 TP); threshold .5 adds a: FP + hit, b: hit -> (2 FP, 3 TP)
    assert n == 3 and fp.tolist() == [1, 2] and tp.tolist() == [1, 3]
    assert tpr_at_fp([a, b], max_fp=1) == {"TPR@1FP": pytest.approx(1 / 3)}
    assert tpr_at_fp([a, b], max_fp=2) == {"TPR@2FP": pytest.approx(1.0)}
    assert tpr_at_fp([a, b], max_fp=0) == {"TPR@0FP": 0.0}
    assert tpr_at_fp([a, b])["TPR@1000FP"] == pytest.approx(1.0)


def test_edge_cases():
    assert tpr_at_fp([DetImage.make([F1], [])])["TPR@1000FP"] == 0.0
    assert math.isnan(tpr_at_fp([DetImage.make([], [F1], [1.0])])["TPR@1000FP"])
    # IoU exactly 0.5 is not enough (FDDB: overlap > 0.5)
    half = DetImage.make([[0, 0, 10, 10]], [[0, 0, 10, 5]], [1.0])
    assert not match_image(half).any()
    many_fp = [DetImage.make([F1], [[100 + i, 100, 110 + i, 110] for i in range(3)] + [F1], [1, 1, 1, 0.5])]
    assert tpr_at_fp(many_fp, max_fp=2)["TPR@2FP"] == 0.0 and tpr_at_fp(many_fp, max_fp=3)["TPR@3FP"] == 1.0
    np.testing.assert_array_equal(roc([])[0], [])


def test_ellipse_overlap_against_geometry():
    from lman_ms.eval.metrics.fddb import ellipse_overlaps
    circle = [10, 10, 0.0, 50, 50]  # radius 10 at (50, 50)
    iou = ellipse_overlaps([[40, 40, 60, 60], [37, 37, 63, 63], [44, 40, 64, 60]], [circle])[:, 0]
    # analytic: pi*100/400; pi*100/676; (pi*100 - segment 44.73) / (400 + pi*100 - inter); pixel counts within 1%
    assert iou == pytest.approx([math.pi / 4, math.pi * 100 / 676, 0.6059], abs=0.01)
    upright = [20, 10, math.pi / 2, 50, 50]  # major radius 20 along the vertical
    iou = ellipse_overlaps([[40, 30, 60, 70], [30, 40, 70, 60]], [upright])[:, 0]
    assert iou == pytest.approx([math.pi / 4, 382.6 / (800 + 200 * math.pi - 382.6)], abs=0.01)
    assert ellipse_overlaps([[0, 0, 5, 5]], [circle])[0, 0] == 0.0


def test_ellipses_decide_the_match():
    # a loose box: IoU .59 with the ellipse's bounding box but .47 with the ellipse itself
    img = DetImage.make([[40, 40, 60, 60]], [[37, 37, 63, 63]], [1.0])
    assert tpr_at_fp([img])["TPR@1000FP"] == 1.0
    assert tpr_at_fp([img], ellipses=[[[10, 10, 0.0, 50, 50]]])["TPR@1000FP"] == 0.0
    # the ellipses are the faces of the answer's boxes, one each: an extra ellipse is not a face to count
    with pytest.raises(ValueError, match="image 0: 1 faces in the answer but 2 ellipses"):
        roc([img], ellipses=[[[10, 10, 0.0, 50, 50], [5, 5, 0.0, 200, 200]]])


def test_record_ellipses_must_align_with_the_boxes():
    assert record_ellipses({"boxes": [F1]}) is None
    assert record_ellipses({"boxes": [F1], "ellipses": [[5, 5, 0.0, 5, 5]]}) == [[5, 5, 0.0, 5, 5]]
    with pytest.raises(ValueError, match="1 boxes but 2 ellipses"):
        record_ellipses({"boxes": [F1], "ellipses": [[5, 5, 0.0, 5, 5]] * 2})
