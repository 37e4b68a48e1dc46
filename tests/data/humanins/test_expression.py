"""Expression converters (RAF-DB basic, ExpW) on tiny fixtures in the real layouts."""
import hashlib
import os

import pytest

from fixtures_action import by_key, records, write_image, write_text
from lman_ms.data.humanins import builder
from lman_ms.data.humanins.errors import AnnotationError
from lman_ms.data.humanins.expw import LABEL_NAMES as EXPW_NAMES
from lman_ms.data.humanins.rafdb import LABEL_NAMES as RAF_NAMES
from lman_ms.data.humanins.registry import get_converter


def build(name, root, split, out, **kw):
    return builder.build(name, str(root), split, str(out), progress=False, **kw)


# ---- RAF-DB --------------------------------------------------------------------------------------------------------
RAF_LABELS = ["train_00001.jpg 5", "train_00002.jpg 1", "test_0001.jpg 7", "test_0002.jpg 4"]


@pytest.fixture
def raf(tmp_path):
    root = tmp_path / "RAF-DB" / "basic"
    write_text(str(root / "EmoLabel" / "list_patition_label.txt"), RAF_LABELS)
    sizes = {"train_00001": (120, 90), "train_00002": (64, 80), "test_0001": (100, 130), "test_0002": (90, 90)}
    for stem, (w, h) in sizes.items():
        write_image(str(root / "Image" / "aligned" / f"{stem}_aligned.jpg"), 100, 100)
        write_image(str(root / "Image" / "original" / f"{stem}.jpg"), w, h)
    return root


def test_rafdb_one_based_labels_and_prefix_split(raf, tmp_path):
    out = tmp_path / "out"
    s = build("rafdb", raf, "train", out)
    assert (s.images, s.records, s.skipped) == (2, 2, 0)                  # 1 instruction per expression image
    recs = by_key(records(str(out), "rafdb", "train"))
    assert sorted(recs) == ["train_00001", "train_00002"]
    r = recs["train_00001"][0]
    assert RAF_NAMES == ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")
    assert r["target"] == {"label": 4, "label_name": "Sadness", "label_names": list(RAF_NAMES)}  # file label 5
    assert (r["image"], r["width"], r["height"]) == ("Image/aligned/train_00001_aligned.jpg", 100, 100)
    assert r["answer"] == "The facial expression of this person is sadness."
    assert recs["train_00002"][0]["target"]["label_name"] == "Surprise"   # file label 1

    build("rafdb", raf, "test", out, images="original")
    test = by_key(records(str(out), "rafdb", "test"))
    assert {k: (v[0]["image"], v[0]["width"], v[0]["height"], v[0]["target"]["label"]) for k, v in test.items()} == {
        "test_0001": ("Image/original/test_0001.jpg", 100, 130, 6),
        "test_0002": ("Image/original/test_0002.jpg", 90, 90, 3)}


def test_rafdb_bad_lines(raf, tmp_path):
    label_file = raf / "EmoLabel" / "list_patition_label.txt"
    write_text(str(label_file), RAF_LABELS + ["train_00003.jpg 8", "val_0001.jpg 2"])
    with pytest.raises(AnnotationError) as e:
        build("rafdb", raf, "train", tmp_path / "out")
    assert (e.value.path, e.value.line) == (str(label_file), 5) and "label '8' is not in 1..7" in str(e.value)
    s = build("rafdb", raf, "train", tmp_path / "out", on_error="skip")
    assert (s.images, s.skipped) == (2, 2)
    assert "list_patition_label.txt:6" in s.skip_examples[1] and "val_0001.jpg" in s.skip_examples[1]
    with pytest.raises(ValueError, match="aligned"):
        build("rafdb", raf, "train", tmp_path / "out", images="cropped")


def test_rafdb_missing_image_is_named(raf, tmp_path):
    os.unlink(raf / "Image" / "aligned" / "train_00002_aligned.jpg")
    with pytest.raises(AnnotationError, match=r"train_00002_aligned\.jpg: image file not found"):
        build("rafdb", raf, "train", tmp_path / "out")


# ---- ExpW ----------------------------------------------------------------------------------------------------------
# image_name face_id top left right bottom confidence label
EXPW_LINES = [
    "angry_actor_104.jpg 0 28 113 226 141 22.9362 0",
    "angry_actor_104.jpg 1 10 250 320 90 55.1 3",          # right edge beyond the 300 px wide image
    "happy_family_17.jpg 0 20 30 70 66 80.5 3",
    "angry_actor_104.jpg 0 28 113 226 141 22.9362 0",      # exact duplicate line: kept once
    "happy_family_17.jpg 1 25 90 130 70 61.0 6",
    "surprise_girl_391.jpg 0 5 10 60 60 90.0 5",
    "sad_man_12.jpg 0 0 0 45 50 70.0 4",
]
EXPW_SIZES = {"angry_actor_104.jpg": (300, 200), "happy_family_17.jpg": (160, 120),
              "surprise_girl_391.jpg": (100, 80), "sad_man_12.jpg": (90, 90)}


def hash_bucket(name):
    """The documented split rule, recomputed here: sha1("expw" 0x1f name), first 8 bytes big-endian, mod 100."""
    return int.from_bytes(hashlib.sha1(("expw\x1f" + name).encode()).digest()[:8], "big") % 100


@pytest.fixture
def expw(tmp_path):
    root = tmp_path / "ExpW"
    write_text(str(root / "label" / "label.lst"), EXPW_LINES)
    for name, (w, h) in EXPW_SIZES.items():
        write_image(str(root / "image" / "origin" / name), w, h)
    return root


def test_expw_boxes_labels_and_image_level_split(expw, tmp_path):
    assert {n: hash_bucket(n) for n in EXPW_SIZES} == {"angry_actor_104.jpg": 10, "happy_family_17.jpg": 91,
                                                       "surprise_girl_391.jpg": 20, "sad_man_12.jpg": 31}
    out = tmp_path / "out"
    build("expw", expw, "test", out, test_percent=25)                     # buckets 10 and 20 are < 25
    test = by_key(records(str(out), "expw", "test"))
    assert sorted(test) == ["angry_actor_104/0", "angry_actor_104/1", "surprise_girl_391/0"]
    a0, a1 = test["angry_actor_104/0"][0], test["angry_actor_104/1"][0]
    assert a0["target"] == {"boxes": [[113, 28, 226, 141]], "label": 0, "label_name": "angry",
                            "label_names": list(EXPW_NAMES)}              # [left, top, right, bottom]
    assert a1["target"]["boxes"] == [[250, 10, 299, 90]] and a1["target"]["label_name"] == "happy"
    assert (a0["image"], a0["width"], a0["height"]) == ("image/origin/angry_actor_104.jpg", 300, 200)
    assert a0["answer"] == "The facial expression of this person is angry."

    s = build("expw", expw, "train", out, test_percent=25)
    assert (s.images, s.records) == (3, 3)
    train = by_key(records(str(out), "expw", "train"))
    assert {k: v[0]["target"]["label"] for k, v in train.items()} == {
        "happy_family_17/0": 3, "happy_family_17/1": 6, "sad_man_12/0": 4}
    assert train["sad_man_12/0"][0]["target"]["boxes"] == [[0, 0, 45, 50]]

    # Default 10%: bucket 10 is not < 10, so every image is in train; min_confidence drops face 0 (22.9).
    assert build("expw", expw, "test", tmp_path / "o2").images == 0
    s = build("expw", expw, "train", tmp_path / "o2", min_confidence=30)
    assert s.images == 5
    assert "angry_actor_104/0" not in by_key(records(str(tmp_path / "o2"), "expw", "train"))


@pytest.mark.parametrize("line, message", [
    ("sad_man_12.jpg 1 0 0 45 50 70.0", "expected 8 columns"),
    ("sad_man_12.jpg 1 0 0 45 50 70.0 7", "expression_label '7' is not in 0..6"),
    ("sad_man_12.jpg 1 50 0 45 10 70.0 2", "empty face box"),
])
def test_expw_bad_lines(expw, tmp_path, line, message):
    label_file = expw / "label" / "label.lst"
    write_text(str(label_file), EXPW_LINES + [line])
    with pytest.raises(AnnotationError) as e:
        build("expw", expw, "train", tmp_path / "out")
    assert (e.value.path, e.value.line) == (str(label_file), 8) and message in str(e.value)
    s = build("expw", expw, "train", tmp_path / "out", on_error="skip")
    assert (s.images, s.skipped) == (6, 1)


def test_expw_face_annotated_twice_differently(expw, tmp_path):
    label_file = expw / "label" / "label.lst"
    write_text(str(label_file), EXPW_LINES + ["sad_man_12.jpg 0 1 1 40 40 70.0 4"])
    with pytest.raises(AnnotationError) as e:
        build("expw", expw, "train", tmp_path / "out")
    assert (e.value.path, e.value.line) == (str(label_file), 8)
    assert f"first listed at {label_file}:7" in str(e.value) and "(key sad_man_12/0)" in str(e.value)
    # Skipped, the face is left out altogether: neither box can be trusted over the other.
    s = build("expw", expw, "train", tmp_path / "out", on_error="skip")
    assert (s.images, s.skipped) == (5, 1)


def test_detect_recognises_each_layout(raf, expw):
    assert get_converter("rafdb").detect(str(raf)) and not get_converter("rafdb").detect(str(expw))
    assert get_converter("expw").detect(str(expw)) and not get_converter("expw").detect(str(raf))
