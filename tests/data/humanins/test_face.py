"""WIDER FACE and FDDB converters on tiny trees in the real layouts (fixtures_face_pose.py)."""
import math
import os

import pytest

from fixtures_face_pose import (FDDB_FOLDS, WIDER_TRAIN, build_records, by_image, write_fddb, write_wider)
from lman_ms.data.humanins import AnnotationError
from lman_ms.data.humanins.fddb import ellipse_box

P1 = "WIDER_train/images/0--Parade/0_Parade_marchingband_1_5.jpg"
P2 = "WIDER_train/images/1--Handshaking/1_Handshaking_Handshaking_1_7.jpg"
P3 = "WIDER_train/images/0--Parade/0_Parade_Parade_0_12.jpg"


# ---- WIDER FACE ----------------------------------------------------------------------------------------------------
def test_wider_train_boxes_ignore_and_dummy_line(tmp_path):
    write_wider(tmp_path / "wider")
    summary, records = build_records("wider_face", tmp_path / "wider", "train", tmp_path / "out")
    assert (summary.images, summary.records, summary.skipped) == (3, 6, 0)   # 2 instructions per image
    imgs = by_image(records)
    assert sorted(imgs) == sorted([P1, P2, P3])

    r1 = imgs[P1][0]
    assert (r1["width"], r1["height"], r1["split"], r1["task"]) == (100, 80, "train", "face_detection")
    assert r1["id"] == "wider_face/train/0_Parade_marchingband_1_5/0"
    assert r1["target"]["boxes"] == [[10, 20, 40, 60]]                       # xywh 10 20 30 40 -> xyxy
    assert r1["target"]["ignore_boxes"] == [[50, 5, 70, 30]]                 # invalid == 1
    assert (r1["target"]["box_index"], r1["target"]["ignore_index"]) == ([0], [1])
    assert r1["target"]["event"] == "0--Parade"
    assert r1["answer"] == "There is 1 face in the picture. It is located in: [10, 20, 40, 60]."
    assert r1["instruction"].endswith("a width and a height of 100 and 80.")
    assert r1["instruction"] != imgs[P1][1]["instruction"]

    # The zero-face image: its dummy line was consumed, not read as a face or as the next image's name.
    r2 = imgs[P2][0]
    assert r2["target"]["boxes"] == [] and r2["answer"] == "There are no faces in the picture."
    assert r2["target"]["event"] == "1--Handshaking"

    # The next image parses normally: clipped to 80 x 64, zero-width box dropped, indices kept.
    r3 = imgs[P3][0]["target"]
    assert r3["boxes"] == [[70, 60, 79, 63], [0, 0, 8, 8]]
    assert r3["box_index"] == [0, 2]


def test_wider_test_split_is_val(tmp_path):
    write_wider(tmp_path / "wider")
    summary, records = build_records("wider_face", tmp_path / "wider", "test", tmp_path / "out")
    assert (summary.images, summary.records) == (1, 2)
    r = records[0]
    assert r["split"] == "test"
    assert r["image"] == "WIDER_val/images/2--Demonstration/2_Demonstration_Protesters_2_3.jpg"
    assert (r["width"], r["height"]) == (40, 30)
    assert r["target"]["boxes"] == [[3, 4, 13, 16]]


def test_wider_bad_face_line_names_file_and_line(tmp_path):
    lines = list(WIDER_TRAIN)
    lines[2] = "10 20 30 abc 0 0 0 0 0 0"          # line 3
    write_wider(tmp_path / "wider", train=lines)
    gt = os.path.join(str(tmp_path / "wider"), "wider_face_split", "wider_face_train_bbx_gt.txt")
    with pytest.raises(AnnotationError) as e:
        build_records("wider_face", tmp_path / "wider", "train", tmp_path / "out")
    assert str(e.value).startswith(f"{gt}:3: ")

    summary, records = build_records("wider_face", tmp_path / "wider", "train", tmp_path / "out", on_error="skip")
    assert summary.skipped == 1 and summary.images == 2
    assert sorted(by_image(records)) == sorted([P2, P3])   # only the broken image is lost
    assert summary.skip_examples[0].startswith(f"{gt}:3: ")


def test_wider_bad_count_resynchronises(tmp_path):
    lines = list(WIDER_TRAIN)
    lines[1] = "two"                                # line 2: the count of the first image
    write_wider(tmp_path / "wider", train=lines)
    gt = os.path.join(str(tmp_path / "wider"), "wider_face_split", "wider_face_train_bbx_gt.txt")
    with pytest.raises(AnnotationError, match=f"^{gt}:2: expected the number of faces"):
        build_records("wider_face", tmp_path / "wider", "train", tmp_path / "out")
    summary, records = build_records("wider_face", tmp_path / "wider", "train", tmp_path / "out", on_error="skip")
    # The two face lines of the broken record are passed over; the next image name is found again.
    assert summary.skipped == 1 and sorted(by_image(records)) == sorted([P2, P3])


def test_wider_missing_image_is_located(tmp_path):
    write_wider(tmp_path / "wider")
    os.unlink(tmp_path / "wider" / P3)
    with pytest.raises(AnnotationError, match="0_Parade_Parade_0_12.jpg: image file not found"):
        build_records("wider_face", tmp_path / "wider", "train", tmp_path / "out")


# ---- FDDB ----------------------------------------------------------------------------------------------------------
def test_ellipse_box_by_hand():
    # Axis-aligned: the half extents are the radii; rotated by 90 degrees they swap.
    assert ellipse_box(20, 10, 0.0, 30, 25) == pytest.approx([10, 15, 50, 35])
    assert ellipse_box(30, 20, math.pi / 2, 50, 40) == pytest.approx([30, 10, 70, 70])
    # 45 degrees: hw = hh = sqrt((20 cos45)^2 + (10 sin45)^2) = sqrt(250).
    r = math.sqrt(250.0)
    assert ellipse_box(20, 10, math.pi / 4, 30, 25) == pytest.approx([30 - r, 25 - r, 30 + r, 25 + r])


def test_fddb_folds_boxes_and_keys(tmp_path):
    write_fddb(tmp_path / "fddb")
    summary, records = build_records("fddb", tmp_path / "fddb", "test", tmp_path / "out")
    assert (summary.images, summary.records) == (1, 2)
    t = records[0]["target"]
    assert records[0]["image"] == "originalPics/2003/01/01/big/img_1.jpg"
    assert records[0]["id"] == "fddb/test/2003/01/01/big/img_1/0"
    assert t["fold"] == 10
    assert t["boxes"] == [[10, 15, 50, 35], [14, 9, 46, 41]]
    assert t["ellipses"][1] == pytest.approx([20.0, 10.0, 0.785398, 30.0, 25.0])
    assert records[0]["answer"] == ("There are 2 faces in the picture. They are located in: "
                                    "[10, 15, 50, 35], [14, 9, 46, 41].")

    summary, records = build_records("fddb", tmp_path / "fddb", "train", tmp_path / "out")
    imgs = by_image(records)
    assert (summary.images, summary.records) == (2, 4)
    # Same file name in two date folders: two records, keyed by the full path.
    assert imgs["originalPics/2002/08/11/big/img_591.jpg"][0]["target"]["boxes"] == [[30, 10, 70, 70],
                                                                                      [85, 0, 99, 15]]
    assert imgs["originalPics/2002/07/19/big/img_591.jpg"][0]["target"]["boxes"] == [[15, 16, 25, 24]]
    assert {r["target"]["fold"] for r in records} == {1, 5}


def test_fddb_test_folds_option(tmp_path):
    write_fddb(tmp_path / "fddb")
    summary, records = build_records("fddb", tmp_path / "fddb", "test", tmp_path / "out", test_folds="1,10")
    assert summary.images == 2 and {r["target"]["fold"] for r in records} == {1, 10}
    summary, records = build_records("fddb", tmp_path / "fddb", "train", tmp_path / "out", test_folds="1,10")
    assert summary.images == 1 and records[0]["target"]["fold"] == 5
    with pytest.raises(ValueError, match="test_folds"):
        build_records("fddb", tmp_path / "fddb", "test", tmp_path / "out", test_folds="11")


def test_fddb_bad_ellipse_line(tmp_path):
    folds = dict(FDDB_FOLDS)
    folds[1] = list(FDDB_FOLDS[1])
    folds[1][3] = "10.0 10.0 0.0 95.0  1"           # line 4: a field is missing
    write_fddb(tmp_path / "fddb", folds=folds)
    fold1 = os.path.join(str(tmp_path / "fddb"), "FDDB-folds", "FDDB-fold-01-ellipseList.txt")
    with pytest.raises(AnnotationError, match=f"^{fold1}:4: expected 6 fields"):
        build_records("fddb", tmp_path / "fddb", "train", tmp_path / "out")
    summary, records = build_records("fddb", tmp_path / "fddb", "train", tmp_path / "out", on_error="skip")
    assert summary.skipped == 1
    assert [r["image"] for r in records] == ["originalPics/2002/07/19/big/img_591.jpg"] * 2


def test_fddb_missing_fold_file(tmp_path):
    write_fddb(tmp_path / "fddb")
    os.unlink(tmp_path / "fddb" / "FDDB-folds" / "FDDB-fold-03-ellipseList.txt")
    with pytest.raises(AnnotationError, match="FDDB-fold-03-ellipseList.txt: fddb: expected file"):
        build_records("fddb", tmp_path / "fddb", "train", tmp_path / "out")


# ---- WIDER FACE easy / medium / hard ---------------------------------------------------------------------------
WIDER_VAL_TWO = [
    "2--Demonstration/2_Demonstration_Protesters_2_3.jpg", "1",
    "3 4 10 12 0 0 0 0 0 0 ",
    "3--Riot/3_Riot_Riot_3_8.jpg", "3",
    "2 2 30 30 0 0 0 0 0 0 ",          # face 1: large
    "40 5 2 3 2 0 0 0 2 0 ",           # face 2: tiny, heavy blur
    "45 20 10 10 0 0 0 1 0 0 ",        # face 3: invalid -> ignore box
]
SUBSETS = {"2--Demonstration/2_Demonstration_Protesters_2_3": {"easy": [], "medium": [1], "hard": [1]},
           "3--Riot/3_Riot_Riot_3_8": {"easy": [1], "medium": [1], "hard": [1, 2]}}


def test_wider_val_subsets_from_ground_truth_mats(tmp_path):
    write_wider(tmp_path / "wider", val=WIDER_VAL_TWO, subsets=SUBSETS)
    summary, records = build_records("wider_face", tmp_path / "wider", "test", tmp_path / "out")
    imgs = by_image(records)
    assert summary.images == 2
    a = imgs["WIDER_val/images/2--Demonstration/2_Demonstration_Protesters_2_3.jpg"][0]["target"]
    assert a["subsets"] == {"easy": [], "medium": [0], "hard": [0]}
    b = imgs["WIDER_val/images/3--Riot/3_Riot_Riot_3_8.jpg"][0]["target"]
    assert b["boxes"] == [[2, 2, 32, 32], [40, 5, 42, 8]] and b["box_index"] == [0, 1]
    assert b["ignore_boxes"] == [[45, 20, 55, 30]] and b["ignore_index"] == [2]
    assert b["subsets"] == {"easy": [0], "medium": [0], "hard": [0, 1]}     # 0-based, like box_index
    # The train split never carries subsets; subsets=false turns them off for test.
    _, records = build_records("wider_face", tmp_path / "wider", "test", tmp_path / "out", subsets=False)
    assert all("subsets" not in r["target"] for r in records)


def test_wider_subsets_errors(tmp_path):
    bad = {k: dict(v) for k, v in SUBSETS.items()}
    bad["3--Riot/3_Riot_Riot_3_8"]["hard"] = [1, 4]            # only 3 faces
    write_wider(tmp_path / "wider", val=WIDER_VAL_TWO, subsets=bad)
    hard = os.path.join(str(tmp_path / "wider"), "eval_tools", "ground_truth", "wider_hard_val.mat")
    with pytest.raises(AnnotationError, match=rf"^{hard} \[3_Riot_Riot_3_8\]: gt_list indices \[1, 4\]"):
        build_records("wider_face", tmp_path / "wider", "test", tmp_path / "out")
    summary, records = build_records("wider_face", tmp_path / "wider", "test", tmp_path / "out", on_error="skip")
    assert summary.skipped == 1 and summary.images == 1

    write_wider(tmp_path / "plain")
    with pytest.raises(AnnotationError, match="subsets=true but the easy/medium/hard files are missing"):
        build_records("wider_face", tmp_path / "plain", "test", tmp_path / "out", subsets=True)
