"""WIDER FACE AP against hand-computed PR curves of the official procedure."""
import math

import numpy as np
import pytest

from lman_ms.eval.metrics.boxes import DetImage
from lman_ms.eval.metrics.wider_face import record_faces, subset_masks, voc_ap, wider_face_ap, wider_face_aps

A, B, C = [0, 0, 59, 59], [100, 0, 159, 59], [200, 0, 219, 19]


def test_hand_computed_with_ignored_face():
    # A, B in the subset, C not. Normalised scores 1, .5, .25, 0: hit A, hit C (dropped), FP, hit B.
    img = DetImage.make([A, B, C], [A, C, [400, 400, 450, 450], B], [0.9, 0.5, 0.3, 0.1])
    keep = np.array([True, True, False])
    # thresholds > .25: 1 proposal, 1 recalled (P 1, R .5); (0, .25]: 2 proposals (P .5, R .5); 0: 3 props, 2 hits
    assert wider_face_ap([img], [keep]) == pytest.approx(0.5 * 1 + 0.5 * (2 / 3))


def test_duplicates_and_empty_images():
    dup = DetImage.make([A], [A, A], [1.0, 0.0])
    empty = DetImage.make([B], [])  # its face counts in the recall, it adds no proposals
    # thresholds > 0: P 1, R .5; threshold 0: 2 proposals, 1 recalled (P .5, R .5) -> AP = .5
    assert wider_face_ap([dup, empty], [np.array([True]), np.array([True])]) == pytest.approx(0.5)
    assert wider_face_ap([DetImage.make([A], [])], [np.array([True])]) == 0.0
    assert math.isnan(wider_face_ap([DetImage.make([], [A], [1.0])], [np.zeros(0, bool)]))


def test_inclusive_pixel_iou():
    # [0,0,59,59] vs [0,0,59,29]: 60*30 / 3600 = .5 with inclusive pixels (exclusive would give 59*29/3481 < .5)
    half = DetImage.make([A], [[0, 0, 59, 29]], [1.0])
    assert wider_face_ap([half], [np.array([True])]) == pytest.approx(1.0)


def test_subset_masks_official_and_fallback():
    boxes = [[0, 0, 10, 60], [0, 0, 10, 40], [0, 0, 10, 12], [0, 0, 10, 5]]
    fb = subset_masks(boxes)
    assert fb["easy"].tolist() == [True, False, False, False]
    assert fb["medium"].tolist() == [True, True, False, False]
    assert fb["hard"].tolist() == [True, True, True, False]
    off = subset_masks(boxes, {"easy": [3], "medium": [3, 2], "hard": [0, 1, 2, 3]})
    assert off["easy"].tolist() == [False, False, False, True] and off["hard"].all()
    with pytest.raises(IndexError, match="easy"):
        subset_masks(boxes, {"easy": [4]})
    img = DetImage.make(boxes, [[0, 0, 10, 60]], [1.0])
    aps = wider_face_aps([img], [fb])
    assert aps == pytest.approx({"AP_easy": 1.0, "AP_medium": 0.5, "AP_hard": 1 / 3})


def test_voc_ap():
    assert voc_ap(np.array([0.5, 1.0]), np.array([1.0, 0.5])) == pytest.approx(0.75)


def test_record_faces_maps_file_positions():
    # file positions: 0 -> A, 1 -> C (invalid: ignore_boxes), 2 -> B, 3 -> a zero-size face the converter dropped
    target = {"boxes": [A, B], "box_index": [0, 2], "ignore_boxes": [C], "ignore_index": [1],
              "subsets": {"easy": [0], "medium": [0, 2], "hard": [0, 2, 3]}}
    faces, masks, lost, official = record_faces(target)
    assert official and faces.tolist() == [A, B, C]
    assert masks["easy"].tolist() == [True, False, False] and masks["hard"].tolist() == [True, True, False]
    assert lost == {"easy": 0, "medium": 0, "hard": 1}
    img = DetImage.make(faces, [A, C], [1.0, 0.5])  # the detection of the invalid face C is dropped, not an FP
    aps = wider_face_aps([img], [masks], lost)
    assert aps == pytest.approx({"AP_easy": 1.0, "AP_medium": 0.5, "AP_hard": 1 / 3})
    # without the official lists: height fallback on the boxes, invalid faces in no level
    faces, masks, lost, official = record_faces({"boxes": [A, C], "ignore_boxes": [B]})
    assert not official and masks["easy"].tolist() == [True, False, False]
    assert masks["hard"].tolist() == [True, True, False] and lost == {"easy": 0, "medium": 0, "hard": 0}
    with pytest.raises(ValueError, match="box_index"):
        record_faces({"boxes": [A], "box_index": [0, 1], "subsets": {}})
