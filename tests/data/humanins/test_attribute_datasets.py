"""PA-100K, Market-1501-attribute and DukeMTMC-attribute converters on tiny trees in the real layouts."""
import os

import numpy as np
import pytest
import scipy.io

from fixtures_attributes import (DUKE_TRAIN_FIELDS, PA100K_ATTRIBUTES, PA100K_PARTS, build_records, by_image,
                                 write_duke, write_market, write_pa100k)
from lman_ms.data.humanins import AnnotationError
from lman_ms.data.humanins.answers import attribute_answer


def positives(record):
    t = record["target"]
    return [n for n, v in zip(t["attribute_names"], t["attributes"]) if v == 1]


# ---- PA-100K -------------------------------------------------------------------------------------------------------
def test_pa100k_train_includes_val_by_default(tmp_path):
    write_pa100k(tmp_path / "PA100k")
    summary, records = build_records("pa100k", tmp_path / "PA100k", "train", tmp_path / "out")
    assert (summary.images, summary.records, summary.skipped) == (3, 6, 0)  # train 2 + val 1, 2 instructions each
    imgs = by_image(records)
    assert sorted(imgs) == ["data/000001.jpg", "data/000002.jpg", "data/080001.jpg"]
    r = imgs["data/000001.jpg"][0]
    assert r["id"] == "pa100k/train/000001/0" and r["task"] == "pedestrian_attribute"
    assert (r["width"], r["height"]) == (40, 90)                       # from the JPEG header
    assert r["target"]["attribute_names"] == PA100K_ATTRIBUTES         # the file's own order
    assert [i for i, v in enumerate(r["target"]["attributes"]) if v] == [0, 2, 11, 14, 22]
    assert positives(r) == ["Female", "Age18-60", "Backpack", "LongSleeve", "Trousers"]
    assert r["answer"] == attribute_answer(r["target"]["attributes"], PA100K_ATTRIBUTES)
    assert imgs["data/000001.jpg"][0]["instruction"] != imgs["data/000001.jpg"][1]["instruction"]
    assert positives(imgs["data/080001.jpg"][0]) == ["AgeOver60", "Hat", "boots"]
    assert (imgs["data/080001.jpg"][0]["width"], imgs["data/080001.jpg"][0]["height"]) == (33, 77)


def test_pa100k_val_as_its_own_split(tmp_path):
    write_pa100k(tmp_path / "PA100k")
    with pytest.raises(ValueError, match="val_in_train"):
        build_records("pa100k", tmp_path / "PA100k", "val", tmp_path / "out")
    summary, records = build_records("pa100k", tmp_path / "PA100k", "train", tmp_path / "a", val_in_train=False)
    assert sorted(by_image(records)) == ["data/000001.jpg", "data/000002.jpg"]
    summary, records = build_records("pa100k", tmp_path / "PA100k", "val", tmp_path / "b", val_in_train=False)
    assert sorted(by_image(records)) == ["data/080001.jpg"] and records[0]["split"] == "val"
    summary, records = build_records("pa100k", tmp_path / "PA100k", "test", tmp_path / "c")
    imgs = by_image(records)
    assert positives(imgs["data/090001.jpg"][0]) == ["Female", "AgeLess18", "Skirt&Dress"]
    assert imgs["data/090002.jpg"][0]["target"]["attributes"] == [0] * 26
    assert imgs["data/090002.jpg"][0]["answer"] == "This person has none of the listed attributes."


def test_pa100k_bad_label_row_raises_or_is_skipped(tmp_path):
    bad = np.array([lab for _, _, lab in PA100K_PARTS["test"]], dtype=np.uint8)
    bad[0, 5] = 2
    write_pa100k(tmp_path / "PA100k", labels_override={"test_label": bad})
    mat = str(tmp_path / "PA100k" / "annotation.mat")
    with pytest.raises(AnnotationError) as e:
        build_records("pa100k", tmp_path / "PA100k", "test", tmp_path / "out")
    assert e.value.path == mat and e.value.key == "test_label[0] (090001.jpg)"
    assert str(e.value).startswith(f"{mat} [test_label[0] (090001.jpg)]: ") and "0 or 1" in str(e.value)
    summary, records = build_records("pa100k", tmp_path / "PA100k", "test", tmp_path / "out", on_error="skip")
    assert (summary.images, summary.skipped) == (1, 1)
    assert sorted(by_image(records)) == ["data/090002.jpg"]


def test_pa100k_structural_errors_name_the_key(tmp_path):
    write_pa100k(tmp_path / "a", labels_override={"train_label": np.zeros((2, 25), dtype=np.uint8)})
    with pytest.raises(AnnotationError) as e:
        build_records("pa100k", tmp_path / "a", "train", tmp_path / "out", on_error="skip")
    assert e.value.key == "train_label" and "does not match 2 images x 26 attributes" in str(e.value)
    write_pa100k(tmp_path / "b", parts={"train": PA100K_PARTS["train"]})
    with pytest.raises(AnnotationError) as e:
        build_records("pa100k", tmp_path / "b", "test", tmp_path / "out")
    assert e.value.key == "test_images_name" and "missing variable" in str(e.value)
    os.remove(tmp_path / "b" / "data" / "000002.jpg")
    with pytest.raises(AnnotationError, match="000002.jpg: image file not found"):
        build_records("pa100k", tmp_path / "b", "train", tmp_path / "out", val_in_train=False)


def test_pa100k_rerun_is_byte_identical(tmp_path):
    write_pa100k(tmp_path / "PA100k")
    a = build_records("pa100k", tmp_path / "PA100k", "train", tmp_path / "a", seed=3)[0]
    b = build_records("pa100k", tmp_path / "PA100k", "train", tmp_path / "b", seed=3, workers=2)[0]
    assert [open(f, "rb").read() for f in a.files] == [open(f, "rb").read() for f in b.files]


# ---- Market-1501-attribute -----------------------------------------------------------------------------------------
MARKET_NAMES = [
    "child", "teenager", "adult", "elderly", "backpack", "bag", "handbag",
    "black_lower_body_clothing", "blue_lower_body_clothing", "brown_lower_body_clothing", "gray_lower_body_clothing",
    "green_lower_body_clothing", "pink_lower_body_clothing", "purple_lower_body_clothing",
    "white_lower_body_clothing", "yellow_lower_body_clothing",
    "black_upper_body_clothing", "blue_upper_body_clothing", "green_upper_body_clothing", "gray_upper_body_clothing",
    "purple_upper_body_clothing", "red_upper_body_clothing", "white_upper_body_clothing",
    "yellow_upper_body_clothing", "pants", "short_lower_body_clothing", "short_sleeve", "long_hair", "hat", "female"]


def test_market_identity_attributes_joined_by_pid(tmp_path):
    write_market(tmp_path / "Market")
    summary, records = build_records("market1501_attr", tmp_path / "Market", "train", tmp_path / "out")
    assert (summary.images, summary.records, summary.skipped) == (3, 6, 0)
    imgs = by_image(records)
    r = imgs["bounding_box_train/0002_c1s1_000451_03.jpg"][0]
    assert r["id"] == "market1501_attr/train/bounding_box_train/0002_c1s1_000451_03/0"
    assert (r["width"], r["height"]) == (64, 128)
    assert r["target"]["attribute_names"] == MARKET_NAMES   # 30: age one-hot at its place in the file's order
    # pid 0002: age 2, backpack 2, downblue 2, upred 2, clothes 2 (pants), hair 2, gender 2; everything else 1.
    assert positives(r) == ["teenager", "backpack", "blue_lower_body_clothing", "red_upper_body_clothing", "pants",
                            "long_hair", "female"]
    assert positives(imgs["bounding_box_train/0002_c2s1_000301_01.jpg"][0]) == positives(r)  # same identity
    # pid 0007: age 4, hat 2, up 2 (short sleeve), clothes 1 (dress: not pants), upwhite 2, downblack 2.
    r7 = imgs["bounding_box_train/0007_c1s6_028546_01.jpg"][0]
    assert positives(r7) == ["elderly", "black_lower_body_clothing", "white_upper_body_clothing", "short_sleeve",
                             "hat"]
    assert set(r7["target"]["attributes"]) == {0, 1}
    assert r7["answer"] == attribute_answer(r7["target"]["attributes"], MARKET_NAMES)


def test_market_test_gallery_skips_junk_distractors_and_thumbs(tmp_path):
    write_market(tmp_path / "Market")
    summary, records = build_records("market1501_attr", tmp_path / "Market", "test", tmp_path / "out")
    imgs = by_image(records)
    assert sorted(imgs) == ["bounding_box_test/0001_c1s1_001051_03.jpg", "bounding_box_test/0003_c3s3_075694_01.jpg"]
    assert summary.skipped == 0     # -1 / 0000 / Thumbs.db are not errors
    assert positives(imgs["bounding_box_test/0001_c1s1_001051_03.jpg"][0]) == [
        "adult", "handbag", "gray_upper_body_clothing", "pants", "short_lower_body_clothing"]
    assert positives(imgs["bounding_box_test/0003_c3s3_075694_01.jpg"][0]) == ["child", "bag", "pants", "female"]
    summary, records = build_records("market1501_attr", tmp_path / "Market", "test", tmp_path / "q",
                                     include_query=True)
    assert "query/0001_c1s1_001051_00.jpg" in by_image(records) and summary.images == 3


def test_market_bad_code_and_unknown_identity(tmp_path):
    write_market(tmp_path / "Market", train={"0002": {"hat": 3}, "0007": {}})
    mat = str(tmp_path / "Market" / "market_attribute.mat")
    with pytest.raises(AnnotationError) as e:
        build_records("market1501_attr", tmp_path / "Market", "train", tmp_path / "out")
    assert e.value.path == mat and e.value.key == "market_attribute.train.hat[0] (pid 0002)"
    assert "neither 1 (no) nor 2 (yes)" in str(e.value)
    # Skipped once, with both images of that identity; the other identity goes on.
    summary, records = build_records("market1501_attr", tmp_path / "Market", "train", tmp_path / "out",
                                     on_error="skip")
    assert (summary.skipped, summary.images) == (1, 1)
    assert list(by_image(records)) == ["bounding_box_train/0007_c1s6_028546_01.jpg"]

    write_market(tmp_path / "M2", train={"0002": {}})      # 0007 has images but no attributes
    with pytest.raises(AnnotationError) as e:
        build_records("market1501_attr", tmp_path / "M2", "train", tmp_path / "out")
    assert e.value.path == str(tmp_path / "M2" / "bounding_box_train" / "0007_c1s6_028546_01.jpg")
    assert e.value.key == "pid" and "identity 0007 has no entry in market_attribute.mat (train)" in str(e.value)


# ---- DukeMTMC-attribute --------------------------------------------------------------------------------------------
DUKE_NAMES = [
    "backpack", "bag", "handbag", "boots", "female", "hat", "light_shoes", "long_upper_body_clothing",
    "black_upper_body_clothing", "white_upper_body_clothing", "red_upper_body_clothing", "purple_upper_body_clothing",
    "gray_upper_body_clothing", "blue_upper_body_clothing", "green_upper_body_clothing", "brown_upper_body_clothing",
    "black_lower_body_clothing", "white_lower_body_clothing", "red_lower_body_clothing", "gray_lower_body_clothing",
    "blue_lower_body_clothing", "green_lower_body_clothing", "brown_lower_body_clothing"]


def test_duke_train_order_unknown_top_and_reordered_test(tmp_path):
    write_duke(tmp_path / "Duke")
    _, records = build_records("dukemtmc_attr", tmp_path / "Duke", "train", tmp_path / "out")
    imgs = by_image(records)
    r1 = imgs["bounding_box_train/0001_c2_f0046182.jpg"][0]
    assert r1["target"]["attribute_names"] == DUKE_NAMES and len(DUKE_TRAIN_FIELDS) == 23
    # pid 0001: top == 0 (the release's quirk) -> -1, neither positive nor negative, not in the answer.
    assert r1["target"]["attributes"] == [0, 0, 0, 1, 1, 0, 0, -1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0]
    assert "long upper body" not in r1["answer"]
    assert r1["answer"] == attribute_answer(r1["target"]["attributes"], DUKE_NAMES)
    r5 = imgs["bounding_box_train/0005_c5_f0051781.jpg"][0]
    assert r5["target"]["attributes"] == [1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0]
    # The test struct is stored in another field order; its vector still follows train's columns.
    _, records = build_records("dukemtmc_attr", tmp_path / "Duke", "test", tmp_path / "out")
    (r2,) = [r for r in records if r["id"].endswith("/0")]
    assert r2["image"] == "bounding_box_test/0002_c1_f0044158.jpg" and (r2["width"], r2["height"]) == (70, 150)
    assert r2["target"]["attribute_names"] == DUKE_NAMES
    assert r2["target"]["attributes"] == [0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]


def test_duke_field_sets_must_agree(tmp_path):
    write_duke(tmp_path / "Duke")
    path = str(tmp_path / "Duke" / "duke_attribute.mat")
    m = scipy.io.loadmat(path)["duke_attribute"][0, 0]
    test = {f: m["test"][0, 0][f] for f in m["test"][0, 0].dtype.names if f != "upbrown"}
    train = {f: m["train"][0, 0][f] for f in m["train"][0, 0].dtype.names}
    scipy.io.savemat(path, {"duke_attribute": {"test": test, "train": train}})
    with pytest.raises(AnnotationError) as e:
        build_records("dukemtmc_attr", tmp_path / "Duke", "test", tmp_path / "out")
    assert e.value.path == path and e.value.key == "duke_attribute.test"


def test_detect_finds_each_layout_only(tmp_path):
    from lman_ms.data.humanins.registry import get_converter

    write_pa100k(tmp_path / "PA100k")
    write_market(tmp_path / "Market")
    write_duke(tmp_path / "Duke")
    found = {name: [d for d in ("PA100k", "Market", "Duke") if get_converter(name).detect(str(tmp_path / d))]
             for name in ("pa100k", "market1501_attr", "dukemtmc_attr")}
    assert found == {"pa100k": ["PA100k"], "market1501_attr": ["Market"], "dukemtmc_attr": ["Duke"]}
    assert get_converter("market1501_attr").task == get_converter("pa100k").task == "pedestrian_attribute"
