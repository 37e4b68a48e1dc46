"""AI Challenger and MPII converters on tiny trees in the real layouts (fixtures_face_pose.py)."""
import json
import os

import pytest

from fixtures_face_pose import (AIC_A, AIC_B, AIC_TRAIN_DIR, AIC_V, aic_train_entries, build_records, by_image,
                                mpii_train_entries, write_aic, write_mpii)
from lman_ms.data.humanins import AnnotationError
from lman_ms.data.humanins.aic_pose import AIC_KEYPOINT_NAMES
from lman_ms.data.humanins.mpii import MPII_KEYPOINT_NAMES

AIC_IMAGES = f"{AIC_TRAIN_DIR}/keypoint_train_images_20170902"
AIC_JSON = f"{AIC_TRAIN_DIR}/keypoint_train_annotations_20170909.json"


# ---- AI Challenger -------------------------------------------------------------------------------------------------
def test_aic_train_keypoints_visibility_order_boxes(tmp_path):
    write_aic(tmp_path / "aic")
    summary, records = build_records("aic_pose", tmp_path / "aic", "train", tmp_path / "out")
    assert (summary.images, summary.records, summary.skipped) == (2, 4, 0)
    imgs = by_image(records)
    a = imgs[f"{AIC_IMAGES}/{AIC_A}.jpg"][0]
    assert (a["width"], a["height"], a["task"]) == (120, 100, "pose_estimation")
    t = a["target"]
    assert t["keypoint_names"] == list(AIC_KEYPOINT_NAMES) and len(AIC_KEYPOINT_NAMES) == 14
    # human10 comes after human2 (numeric order), although "human10" < "human2" as strings.
    assert t["human_ids"] == ["human1", "human2", "human10"]
    h1 = t["keypoints"][0]
    # AIC codes 1/2/3 -> v 2/1/0; code 3 is written [0, 0, 0].
    assert h1[:6] == [[10, 20, 2], [11, 22, 2], [12, 24, 1], [13, 26, 2], [0, 0, 0], [15, 30, 2]]
    assert h1[11] == [21, 42, 1] and h1[13] == [23, 46, 2]
    assert t["keypoints"][1] == [[40 + j, 30 + 2 * j, 2] for j in range(14)]
    assert t["keypoints"][2] == [[0, 0, 0]] * 13 + [[73, 31, 1]]
    assert t["boxes"] == [[5, 10, 40, 90], [35, 25, 70, 99], [55, 0, 119, 99]]
    assert a["answer"].startswith("There are 3 persons in the picture. Person 1: right shoulder [10, 20], "
                                  "right elbow [11, 22], right wrist [12, 24], left shoulder [13, 26], left wrist")
    assert a["answer"].endswith("; Person 3: neck [73, 31].")
    assert a["instruction"].endswith("a width and a height of 120 and 100.")

    b = imgs[f"{AIC_IMAGES}/{AIC_B}.jpg"][0]["target"]
    assert b["boxes"] == [[70, 10, 79, 59]]        # clipped to the 80 x 60 image


def test_aic_test_split_is_validation(tmp_path):
    write_aic(tmp_path / "aic")
    summary, records = build_records("aic_pose", tmp_path / "aic", "test", tmp_path / "out")
    assert (summary.images, summary.records) == (1, 2)
    r = records[0]
    assert r["image"] == ("ai_challenger_keypoint_validation_20170911/keypoint_validation_images_20170911/"
                          f"{AIC_V}.jpg")
    assert r["id"] == f"aic_pose/test/{AIC_V}/0" and r["split"] == "test"
    assert r["target"]["boxes"] == [[1, 2, 30, 45]]
    assert r["target"]["keypoints"][0][13] == [16, 30, 2]


def test_aic_bad_person_names_file_and_key(tmp_path):
    entries = aic_train_entries()
    entries[1]["keypoint_annotations"]["human1"] = entries[1]["keypoint_annotations"]["human1"][:41]
    write_aic(tmp_path / "aic", train_entries=entries)
    path = os.path.join(str(tmp_path / "aic"), AIC_JSON)
    with pytest.raises(AnnotationError) as e:
        build_records("aic_pose", tmp_path / "aic", "train", tmp_path / "out")
    assert str(e.value) == (f"{path} [[1] {AIC_B} keypoint_annotations.human1]: expected 42 numbers "
                            "(14 x [x, y, v]), got 41")
    summary, records = build_records("aic_pose", tmp_path / "aic", "train", tmp_path / "out", on_error="skip")
    assert summary.skipped == 1 and {r["image"] for r in records} == {f"{AIC_IMAGES}/{AIC_A}.jpg"}


def test_aic_bad_visibility_code_and_broken_json(tmp_path):
    entries = aic_train_entries()
    entries[0]["keypoint_annotations"]["human2"][2] = 4
    write_aic(tmp_path / "aic", train_entries=entries)
    with pytest.raises(AnnotationError, match=r"keypoint_annotations.human2\]: joint 0 \(right_shoulder\) has "
                                              r"visibility 4"):
        build_records("aic_pose", tmp_path / "aic", "train", tmp_path / "out")
    path = tmp_path / "aic" / AIC_JSON
    path.write_text('[{"image_id": "x",\n "keypoint_annotations": {]\n')
    with pytest.raises(AnnotationError, match=f"^{path}:2: invalid JSON"):
        build_records("aic_pose", tmp_path / "aic", "train", tmp_path / "out")


# ---- MPII ----------------------------------------------------------------------------------------------------------
def test_mpii_train_groups_persons_by_image(tmp_path):
    write_mpii(tmp_path / "mpii")
    summary, records = build_records("mpii", tmp_path / "mpii", "train", tmp_path / "out")
    assert (summary.images, summary.records) == (2, 4)
    imgs = by_image(records)
    r = imgs["images/000000001.jpg"][0]
    assert (r["width"], r["height"]) == (100, 80)
    t = r["target"]
    assert t["keypoint_names"] == list(MPII_KEYPOINT_NAMES) and len(MPII_KEYPOINT_NAMES) == 16
    assert t["person_index"] == [0, 2]
    p0, p2 = t["keypoints"]
    # Joints are 0-based already; y = 20.5 + j rounds half up; missing joints (6 pelvis, 15 l wrist) -> [0, 0, 0].
    assert p0[0] == [10, 21, 2] and p0[5] == [20, 26, 2] and p0[6] == [0, 0, 0] and p0[15] == [0, 0, 0]
    assert p2[0] == [50, 11, 2] and p2[15] == [80, 26, 2]
    assert t["centers"] == [[49.0, 39.0], [69.0, 34.0]]      # 1-based centres -> 0-based
    assert t["scales"] == [1.5, 1.2]
    assert "head_boxes" not in t                              # the train JSON has none
    assert r["answer"].startswith("There are 2 persons in the picture. Person 1: right ankle [10, 21], "
                                  "right knee [12, 22], right hip [14, 23]")
    assert "left ankle [20, 26], thorax [24, 28]" in r["answer"]   # pelvis is missing and left out
    assert imgs["images/000000002.jpg"][0]["target"]["keypoints"][0][3] == [10, 7, 2]


def test_mpii_test_split_has_head_boxes(tmp_path):
    write_mpii(tmp_path / "mpii")
    summary, records = build_records("mpii", tmp_path / "mpii", "test", tmp_path / "out")
    assert (summary.images, summary.records) == (1, 2)
    t = records[0]["target"]
    assert records[0]["image"] == "images/000000003.jpg" and records[0]["split"] == "test"
    assert t["head_boxes"] == [[10, 2, 20, 14], [45, 1, 57, 15]]  # headboxes_src is 1-based
    assert t["keypoints"][1][:3] == [[0, 0, 0], [0, 0, 0], [44, 10, 2]]
    assert t["person_index"] == [0, 1]


def test_mpii_head_boxes_must_match_val_persons(tmp_path):
    write_mpii(tmp_path / "mpii")
    val = tmp_path / "mpii" / "annotations" / "mpii_val.json"
    persons = json.loads(val.read_text())
    val.write_text(json.dumps(persons[:1]))
    with pytest.raises(AnnotationError, match=r"mpii_gt_val.mat \[headboxes_src\]: expected shape \(2, 2, 1\)"):
        build_records("mpii", tmp_path / "mpii", "test", tmp_path / "out")
    os.unlink(tmp_path / "mpii" / "annotations" / "mpii_gt_val.mat")
    with pytest.raises(AnnotationError, match="mpii_gt_val.mat: mpii: expected file"):
        build_records("mpii", tmp_path / "mpii", "test", tmp_path / "out")


def test_mpii_bad_person_names_file_and_key(tmp_path):
    entries = mpii_train_entries()
    entries[1]["joints_vis"][4] = 2
    write_mpii(tmp_path / "mpii", train_entries=entries)
    path = os.path.join(str(tmp_path / "mpii"), "annotations", "mpii_train.json")
    with pytest.raises(AnnotationError) as e:
        build_records("mpii", tmp_path / "mpii", "train", tmp_path / "out")
    assert str(e.value).startswith(f"{path} [[1] 000000002.jpg]: joints_vis must be 0 or 1")
    summary, records = build_records("mpii", tmp_path / "mpii", "train", tmp_path / "out", on_error="skip")
    assert summary.skipped == 1 and {r["image"] for r in records} == {"images/000000001.jpg"}
    entries[1]["joints_vis"][4] = 1
    entries[1]["joints"] = entries[1]["joints"][:15]
    write_mpii(tmp_path / "mpii", train_entries=entries)
    with pytest.raises(AnnotationError, match=r"\[\[1\] 000000002.jpg\]: joints must have shape \[16, 2\]"):
        build_records("mpii", tmp_path / "mpii", "train", tmp_path / "out")
