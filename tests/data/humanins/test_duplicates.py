"""An image listed twice across merged parts or files, and FDDB's boxes and ellipses, in the real formats.

PA-100K: ``annotation.mat`` written by scipy with the release's variables (fixtures_attributes.py). FDDB: the
``FDDB-folds/FDDB-fold-NN-ellipseList.txt`` files (fixtures_face_pose.py)."""
import json
import os

import pytest
from fixtures_attributes import PA100K_PARTS, build_records as build_attr, pa100k_labels, write_pa100k
from fixtures_face_pose import FDDB_FOLDS, build_records as build_face, write_fddb

from lman_ms.data.humanins import AnnotationError
from lman_ms.data.humanins.duplicates import FirstListing
from lman_ms.eval.evaluate import evaluate

FIRST = PA100K_PARTS["train"][0]                                      # ("000001.jpg", (40, 90), labels)
OTHER_LABELS = pa100k_labels("AgeOver60", "Hat")


def _pa100k_with_val(tmp_path, val_first):
    root = tmp_path / "PA100k"
    write_pa100k(root, parts={**PA100K_PARTS, "val": [val_first] + PA100K_PARTS["val"]})
    return root, str(root / "annotation.mat")


# ---- PA-100K: val folded into train ---------------------------------------------------------------------------------
def test_pa100k_image_in_train_and_val_with_other_labels_is_refused_or_skipped(tmp_path):
    root, mat = _pa100k_with_val(tmp_path, (FIRST[0], FIRST[1], OTHER_LABELS))
    with pytest.raises(AnnotationError) as e:
        build_attr("pa100k", root, "train", tmp_path / "out")
    # Named at the later listing, with the image, the first listing and the attributes that differ.
    assert (e.value.path, e.value.key) == (mat, "val_images_name[0]")
    msg = str(e.value)
    assert "data/000001.jpg" in msg and f"first listed at {mat} [train_images_name[0]]" in msg
    assert "different labels" in msg

    summary, records = build_attr("pa100k", root, "train", tmp_path / "skip", on_error="skip")
    # Neither listing is trusted: the image is left out and the conflict counted once.
    assert (summary.images, summary.skipped, summary.repeats) == (2, 1, 0)
    assert sorted({r["image"] for r in records}) == ["data/000002.jpg", "data/080001.jpg"]
    assert "val_images_name[0]" in summary.skip_examples[0]
    # Built as separate splits, each part is consistent on its own.
    assert build_attr("pa100k", root, "val", tmp_path / "v", val_in_train=False)[0].images == 2


def test_pa100k_image_in_train_and_val_with_the_same_labels_is_kept_once(tmp_path):
    root, _ = _pa100k_with_val(tmp_path, FIRST)
    summary, records = build_attr("pa100k", root, "train", tmp_path / "out", instructions_per_image=1)
    assert (summary.images, summary.skipped) == (3, 0)
    assert summary.repeats == 1
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids))
    assert [r["target"]["attributes"] for r in records if r["image"] == "data/000001.jpg"] == [FIRST[2]]
    meta = json.loads((tmp_path / "out" / "pa100k" / "train.meta.json").read_text())
    assert (meta["images"], meta["repeats"]) == (3, 1)
    assert "1 repeated listing(s) kept once" in summary.line()


# ---- FDDB: folds merged into one split ------------------------------------------------------------------------------
IMG_591 = "2002/07/19/big/img_591"                                    # fold 5, one face, 40 x 40


def _fold_files(tmp_path, again):
    """FDDB with fold 3 listing fold 5's image again with the ellipse line ``again``."""
    root = tmp_path / "fddb"
    write_fddb(root, folds={**FDDB_FOLDS, 3: [IMG_591, "1", again]})
    return root, str(root / "FDDB-folds" / "FDDB-fold-03-ellipseList.txt"), \
        str(root / "FDDB-folds" / "FDDB-fold-05-ellipseList.txt")


def test_fddb_image_in_two_folds(tmp_path):
    root, fold3, fold5 = _fold_files(tmp_path, FDDB_FOLDS[5][2])       # the same ellipse in folds 3 and 5
    summary, records = build_face("fddb", root, "train", tmp_path / "same", instructions_per_image=1)
    assert (summary.images, summary.repeats) == (2, 1)
    assert [r["target"]["fold"] for r in records if IMG_591 in r["image"]] == [3]   # the first listing's fold

    root, fold3, fold5 = _fold_files(tmp_path, "6.000000 4.000000 0.000000 20.000000 20.000000  1")
    with pytest.raises(AnnotationError) as e:
        build_face("fddb", root, "train", tmp_path / "conflict")
    assert (e.value.path, e.value.line) == (fold5, 1)
    assert f"originalPics/{IMG_591}.jpg" in str(e.value) and f"first listed at {fold3}:1" in str(e.value)
    summary, records = build_face("fddb", root, "train", tmp_path / "skip", on_error="skip")
    assert (summary.images, summary.skipped) == (1, 1)
    assert not any(IMG_591 in r["image"] for r in records)


# ---- FDDB: a face whose box is empty inside the picture ---------------------------------------------------------
OUTSIDE = "5.000000 4.000000 0.000000 200.000000 25.000000  1"       # img_1 is 60 x 50: box [195, 21, 205, 29]


def _img_1_with_outside_face(tmp_path):
    lines = FDDB_FOLDS[10]
    root = tmp_path / "fddb"
    write_fddb(root, folds={**FDDB_FOLDS, 10: [lines[0], "3", OUTSIDE, lines[2], lines[3]]})
    return root


def test_fddb_face_outside_the_picture_leaves_boxes_and_ellipses_aligned(tmp_path):
    root = _img_1_with_outside_face(tmp_path)
    _, records = build_face("fddb", root, "test", tmp_path / "out")
    t = records[0]["target"]
    assert t["boxes"] == [[10, 15, 50, 35], [14, 9, 46, 41]]
    assert len(t["ellipses"]) == 2
    assert t["face_index"] == [1, 2]                                  # the outside face was the first line
    assert t["ellipses"] == [[20.0, 10.0, 0.0, 30.0, 25.0], [20.0, 10.0, 0.785398, 30.0, 25.0]]
    assert records[0]["answer"].startswith("There are 2 faces")


def test_fddb_evaluation_scores_the_faces_the_answer_states(tmp_path):
    root = _img_1_with_outside_face(tmp_path)
    _, records = build_face("fddb", root, "test", tmp_path / "out")
    # Answering with the reference answer finds every face it states (the dropped face would make this 2/3).
    ev = evaluate(records, {r["id"]: r["answer"] for r in records}, progress=False).to_json()
    assert ev["fddb"]["TPR@1000FP"] == 1.0

    # A record written with the two lists out of step is refused, naming the record.
    stale = dict(records[0], target={**records[0]["target"], "ellipses": records[0]["target"]["ellipses"] * 2})
    with pytest.raises(AnnotationError) as e:
        evaluate([stale], {stale["id"]: stale["answer"]}, progress=False)
    assert e.value.key == stale["id"] and "2 boxes but 4 ellipses" in str(e.value)


# ---- the shared check inside a converter ----------------------------------------------------------------------------
def test_first_listing_keeps_agreeing_repeats_and_names_both_places():
    seen = FirstListing("video")
    assert seen.check("a.avi", {"flag": "1"}, "brush_hair_test_split1.txt", 3)
    assert not seen.check("a.avi", {"flag": "1"}, "brush_hair_test_split1.txt", 9)
    with pytest.raises(AnnotationError) as e:
        seen.check("a.avi", {"flag": "2"}, "brush_hair_test_split1.txt", 12)
    assert e.value.line == 12 and "flag '1' vs '2'" in str(e.value)
    assert "first listed at brush_hair_test_split1.txt:3" in str(e.value)
    assert os.path.basename(e.value.path) == "brush_hair_test_split1.txt"
