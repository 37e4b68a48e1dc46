"""CUHK-SYSU, PRW, CityPersons and Caltech converters on tiny fixtures written in each release's real format."""
import json
import os

import numpy as np
import pytest
import scipy.io

from fixtures_detection import (by_image, cell, jpeg_bytes, read_jsonl, struct_array,
                                write_image, write_seq, write_vbb)

from lman_ms.data.humanins import AnnotationError, builder, get_converter
from lman_ms.data.humanins.caltech import seq_frame_table


def build(name, root, split, out, **kw):
    summary = builder.build(name, root, split, out, progress=False, **kw)
    return summary, by_image(read_jsonl(os.path.join(out, name, f"{split}-00000.jsonl")))


# ---- CUHK-SYSU -------------------------------------------------------------------------------------------------------
def make_cuhk_sysu(root, bad_second=False):
    for name, (w, h) in {"s1.jpg": (60, 40), "s2.jpg": (50, 50), "s3.jpg": (30, 30)}.items():
        write_image(os.path.join(root, "Image", "SSM", name), w, h)

    def boxes(*locs):
        return struct_array(("idlocate", "ishard"), [(np.array([loc], dtype=np.float64), np.array([[0.0]]))
                                                    for loc in locs])
    second = boxes([1, 2, 3], [10, 10, 0, 5]) if bad_second else boxes([1, 2, 3, 4], [10, 10, 0, 5])
    img = struct_array(("imname", "nAppear", "box"), [
        ("s1.jpg", np.array([[2.0]]), boxes([5, 6, 10, 20], [40, 10, 30, 25])),
        ("s2.jpg", np.array([[2.0]]), second),
        ("s3.jpg", np.array([[1.0]]), boxes([2.4, 3.6, 10, 10])),
    ])
    os.makedirs(os.path.join(root, "annotation", "test", "train_test"), exist_ok=True)
    scipy.io.savemat(os.path.join(root, "annotation", "Images.mat"), {"Img": img})
    scipy.io.savemat(os.path.join(root, "annotation", "pool.mat"), {"pool": cell(["s3.jpg", "s2.jpg"], (2, 1))})
    return root


def test_cuhk_sysu(tmp_path):
    root = make_cuhk_sysu(str(tmp_path / "CUHK-SYSU"))
    assert get_converter("cuhk_sysu").detect(root)
    out = str(tmp_path / "out")
    s, recs = build("cuhk_sysu", root, "train", out)
    assert (s.images, s.records) == (1, 2)               # train = Images.mat minus pool.mat
    r = recs["Image/SSM/s1.jpg"]
    # xywh [5, 6, 10, 20] -> [5, 6, 15, 26]; [40, 10, 30, 25] -> x2 = 70 clipped to W - 1 = 59.
    assert r["target"] == {"boxes": [[5, 6, 15, 26], [40, 10, 59, 35]]}
    assert (r["width"], r["height"], r["split"]) == (60, 40, "train")
    s, recs = build("cuhk_sysu", root, "test", out)
    assert sorted(recs) == ["Image/SSM/s2.jpg", "Image/SSM/s3.jpg"]
    assert recs["Image/SSM/s2.jpg"]["target"]["boxes"] == [[1, 2, 4, 6]]    # the w = 0 box is dropped
    assert recs["Image/SSM/s3.jpg"]["target"]["boxes"] == [[2, 4, 12, 14]]
    assert recs["Image/SSM/s3.jpg"]["answer"] == "There is 1 person in the picture. It is located in: [2, 4, 12, 14]."


def test_cuhk_sysu_malformed_entry(tmp_path):
    root = make_cuhk_sysu(str(tmp_path / "CUHK-SYSU"), bad_second=True)
    path = os.path.join(root, "annotation", "Images.mat")
    with pytest.raises(AnnotationError) as e:
        build("cuhk_sysu", root, "test", str(tmp_path / "out"))
    assert (e.value.path, e.value.key) == (path, "Img(2)") and "idlocate must have 4 columns" in str(e.value)
    s, recs = build("cuhk_sysu", root, "test", str(tmp_path / "out"), on_error="skip")
    assert (s.skipped, sorted(recs)) == (1, ["Image/SSM/s3.jpg"])


# ---- PRW -------------------------------------------------------------------------------------------------------------
def make_prw(root, bad=False):
    for stem in ("c1s1_000151", "c2s1_000201", "c3s2_000301"):
        write_image(os.path.join(root, "frames", stem + ".jpg"), 64, 36)
    scipy.io.savemat(os.path.join(root, "frame_train.mat"),
                     {"img_index_train": cell(["c1s1_000151", "c2s1_000201"], (2, 1))})
    scipy.io.savemat(os.path.join(root, "frame_test.mat"), {"img_index_test": cell(["c3s2_000301"], (1, 1))})
    ann = os.path.join(root, "annotations")
    os.makedirs(ann)
    scipy.io.savemat(os.path.join(ann, "c1s1_000151.jpg.mat"),
                     {"box_new": np.array([[1, -4, 2, 10, 12], [-2, 30, 5, 8.5, 20.2]], dtype=np.float64)})
    second = np.array([[5, 60, 20, 10]]) if bad else np.array([[5, 60, 20, 10, 30]])
    scipy.io.savemat(os.path.join(ann, "c2s1_000201.jpg.mat"), {"anno_file": second.astype(np.float64)})
    scipy.io.savemat(os.path.join(ann, "c3s2_000301.jpg.mat"),
                     {"anno_previous": np.array([[-2, 0, 0, 5, 5]], dtype=np.float64)})
    return root


def test_prw(tmp_path):
    root = make_prw(str(tmp_path / "PRW"))
    assert get_converter("prw").detect(root)
    out = str(tmp_path / "out")
    s, recs = build("prw", root, "train", out)
    assert (s.images, s.records) == (2, 4)
    # [x=-4, y=2, w=10, h=12] -> [-4, 2, 6, 14] -> clipped [0, 2, 6, 14] (SeqNet's clip-then-add would give x2 = 10);
    # the unlabeled person (pid -2) is kept; 38.5 rounds up to 39, 25.2 down to 25.
    assert recs["frames/c1s1_000151.jpg"]["target"]["boxes"] == [[0, 2, 6, 14], [30, 5, 39, 25]]
    # 'anno_file' when 'box_new' is absent; [60, 20, 70, 50] clipped to 63 x 35.
    assert recs["frames/c2s1_000201.jpg"]["target"]["boxes"] == [[60, 20, 63, 35]]
    s, recs = build("prw", root, "test", out)
    assert recs["frames/c3s2_000301.jpg"]["target"]["boxes"] == [[0, 0, 5, 5]]       # 'anno_previous'
    assert "64 and 36" in recs["frames/c3s2_000301.jpg"]["instruction"]


def test_prw_malformed_annotation(tmp_path):
    root = make_prw(str(tmp_path / "PRW"), bad=True)
    path = os.path.join(root, "annotations", "c2s1_000201.jpg.mat")
    with pytest.raises(AnnotationError) as e:
        build("prw", root, "train", str(tmp_path / "out"))
    assert (e.value.path, e.value.key) == (path, "anno_file") and "5 columns" in str(e.value)
    s, recs = build("prw", root, "train", str(tmp_path / "out"), on_error="skip")
    assert (s.skipped, sorted(recs)) == (1, ["frames/c1s1_000151.jpg"])


# ---- CityPersons -----------------------------------------------------------------------------------------------------
FIELDS = ("cityname", "im_name", "bbs")


def city_cell(city, name, rows):
    return struct_array(FIELDS, [(city, name, np.array(rows, dtype=np.float64))], shape=(1, 1))


def make_citypersons(root, bad=False):
    names = {("train", "aachen"): "aachen_000000_000019_leftImg8bit.png",
             ("train", "bochum"): "bochum_000000_000313_leftImg8bit.png",
             ("val", "frankfurt"): "frankfurt_000000_000294_leftImg8bit.png"}
    for (split, city), name in names.items():
        write_image(os.path.join(root, "leftImg8bit", split, city, name), 80, 40)
    aachen = [[1, 10, 5, 8, 20, 1, 10, 5, 8, 10],       # pedestrian, half visible
              [0, 50, 0, 20, 10, 0, 50, 0, 20, 10],     # ignore region
              [2, 30, 10, 6, 15, 2, 30, 10, 6, 15],     # rider
              [5, 60, 20, 30, 30, 0, 60, 20, 30, 30]]   # group of people
    bochum = [[0, 1, 1, 5, 5, 0, 1, 1, 5, 5]] if not bad else [[0, 1, 1, 5, 5, 0, 1, 1, 5]]
    os.makedirs(os.path.join(root, "annotations"))
    scipy.io.savemat(os.path.join(root, "annotations", "anno_train.mat"), {"anno_train_aligned": cell([
        city_cell("aachen", names[("train", "aachen")], aachen),
        city_cell("bochum", names[("train", "bochum")], bochum)])})
    scipy.io.savemat(os.path.join(root, "annotations", "anno_val.mat"), {"anno_val_aligned": cell([
        city_cell("frankfurt", names[("val", "frankfurt")], [[3, 5, 5, 10, 10, 7, 5, 5, 10, 10]])])})
    return root


def test_citypersons(tmp_path):
    root = make_citypersons(str(tmp_path / "citypersons"))
    assert get_converter("citypersons").detect(root)
    out = str(tmp_path / "out")
    s, recs = build("citypersons", root, "train", out)
    assert s.images == 1                       # bochum has only an ignore region: no person, dropped on train
    r = recs["leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png"]
    assert r["target"] == {"boxes": [[10, 5, 18, 25], [30, 10, 36, 25]], "box_labels": ["pedestrian", "rider"],
                           "visibility": [0.5, 1.0], "ignore_boxes": [[50, 0, 70, 10], [60, 20, 79, 39]]}
    assert r["answer"].startswith("There are 2 persons in the picture.")

    s, recs = build("citypersons", root, "test", out)            # test = val; a single squeezed bbs row
    r = recs["leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png"]
    assert r["target"]["boxes"] == [[5, 5, 15, 15]] and r["target"]["box_labels"] == ["sitting person"]

    s, recs = build("citypersons", root, "train", str(tmp_path / "o2"), person_labels=(1,))
    r = recs["leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png"]
    assert r["target"]["boxes"] == [[10, 5, 18, 25]] and [30, 10, 36, 25] in r["target"]["ignore_boxes"]


def test_citypersons_malformed_row(tmp_path):
    root = make_citypersons(str(tmp_path / "citypersons"), bad=True)
    with pytest.raises(AnnotationError) as e:
        build("citypersons", root, "train", str(tmp_path / "out"))
    assert e.value.path == os.path.join(root, "annotations", "anno_train.mat")
    assert e.value.key == "anno_train_aligned{2}" and "bbs must have 10 columns" in str(e.value)
    s, _ = build("citypersons", root, "train", str(tmp_path / "out"), on_error="skip")
    assert (s.skipped, s.images) == (1, 1)


# ---- Caltech ---------------------------------------------------------------------------------------------------------
def make_caltech(root, bad_id=False):
    frames00 = [jpeg_bytes(32, 24, (40 * k, 80, 120)) for k in range(4)]
    write_seq(os.path.join(root, "set00", "V000.seq"), frames00, 32, 24, trailer=16)
    write_vbb(os.path.join(root, "annotations", "set00", "V000.vbb"), 4, ["person", "people", "person"], {
        0: [{"id": 1, "pos": [1, 1, 5, 5]}],
        1: [{"id": 1, "pos": [2, 3, 10, 12], "occl": 1, "posv": [2, 3, 10, 6]},
            {"id": 2, "pos": [20, 2, 8, 8]}],
        3: [{"id": 5 if bad_id else 3, "pos": [25.6, 4, 10, 15]}],
    })
    frames06 = [jpeg_bytes(16, 12, (3 * k, 0, 0)) for k in range(31)]
    write_seq(os.path.join(root, "set06", "V000.seq"), frames06, 16, 12, trailer=8)
    write_vbb(os.path.join(root, "annotations", "set06", "V000.vbb"), 31, ["person"],
              {0: [{"id": 1, "pos": [0, 0, 4, 8]}]})
    return root, frames00, frames06


def test_seq_reader(tmp_path):
    root, frames00, frames06 = make_caltech(str(tmp_path / "caltech"))
    for path, frames, size in ((os.path.join(root, "set00", "V000.seq"), frames00, (32, 24)),
                               (os.path.join(root, "set06", "V000.seq"), frames06, (16, 12))):
        w, h, table = seq_frame_table(path)
        assert (w, h) == size and len(table) == len(frames)
        with open(path, "rb") as f:
            for (offset, length), jpg in zip(table, frames):
                f.seek(offset)
                assert f.read(length) == jpg
    bad = tmp_path / "bad.seq"
    bad.write_bytes(b"\x00" * 2048)
    with pytest.raises(AnnotationError, match="bad.seq: not a Norpix .seq"):
        seq_frame_table(str(bad))


def test_caltech(tmp_path):
    root, frames00, frames06 = make_caltech(str(tmp_path / "caltech"))
    assert get_converter("caltech").detect(root)
    out = str(tmp_path / "out")
    s, recs = build("caltech", root, "train", out, frame_step=2)
    # frame_step 2 samples frames 1 and 3 (0-based, dbInfo's skip-1:skip:nFrame-1); frame 0 is not sampled.
    assert sorted(recs) == ["frames/set00_V000_I00001.jpg", "frames/set00_V000_I00003.jpg"]
    r = recs["frames/set00_V000_I00001.jpg"]
    # The 'person' is half covered by its visible box; 'people' is an ignore region.
    assert r["target"] == {"boxes": [[2, 3, 12, 15]], "visibility": [0.5], "ignore_boxes": [[20, 2, 28, 10]]}
    assert (r["width"], r["height"]) == (32, 24)
    # [25.6, 4, 10, 15] -> [25.6, 4, 35.6, 19] -> x1 rounds to 26, x2 clipped to 31.
    assert recs["frames/set00_V000_I00003.jpg"]["target"]["boxes"] == [[26, 4, 31, 19]]
    with open(os.path.join(out, "caltech", "train.meta.json"), encoding="utf-8") as f:
        meta = json.load(f)
    assert meta["image_root"] == os.path.abspath(os.path.join(out, "caltech"))
    with open(os.path.join(meta["image_root"], "frames", "set00_V000_I00001.jpg"), "rb") as f:
        assert f.read() == frames00[1]                # copied out of the .seq byte for byte

    # Default step 30 on the test split: only frame 29, kept although nobody is in it (standard test set).
    s, recs = build("caltech", root, "test", out)
    assert list(recs) == ["frames/set06_V000_I00029.jpg"]
    r = recs["frames/set06_V000_I00029.jpg"]
    assert r["answer"] == "There are no persons in the picture." and (r["width"], r["height"]) == (16, 12)


def test_caltech_frames_extracted_by_workers_are_identical(tmp_path):
    root, _, _ = make_caltech(str(tmp_path / "caltech"))
    outputs = []
    for workers in (1, 2):
        out = str(tmp_path / f"out{workers}")
        builder.build("caltech", root, "train", out, workers=workers, frame_step=1, progress=False)
        with open(os.path.join(out, "caltech", "train-00000.jsonl"), "rb") as f:
            records = f.read()
        frames = sorted(os.listdir(os.path.join(out, "caltech", "frames")))
        outputs.append((records, frames))
    assert outputs[0] == outputs[1]
    # frame_step 1 reads every frame; frame 2 has nobody and is left out of the training split.
    assert outputs[0][1] == ["set00_V000_I00000.jpg", "set00_V000_I00001.jpg", "set00_V000_I00003.jpg"]


def test_registry_entries():
    for name in ("cuhk_sysu", "prw", "coco_person", "citypersons", "caltech"):
        conv = get_converter(name)
        assert (conv.name, conv.task, conv.splits) == (name, "pedestrian_detection", ("train", "test"))
    assert get_converter("coco_captions").task == "caption"


def test_caltech_malformed_object(tmp_path):
    root, _, _ = make_caltech(str(tmp_path / "caltech"), bad_id=True)
    vbb = os.path.join(root, "annotations", "set00", "V000.vbb")
    with pytest.raises(AnnotationError) as e:
        build("caltech", root, "train", str(tmp_path / "out"), frame_step=2)
    assert (e.value.path, e.value.key) == (vbb, "objLists{4}") and "id 5 is not in objLbl" in str(e.value)
    s, recs = build("caltech", root, "train", str(tmp_path / "out"), frame_step=2, on_error="skip")
    assert (s.skipped, list(recs)) == (1, ["frames/set00_V000_I00001.jpg"])


def test_caltech_frame_count_mismatch(tmp_path):
    root, _, _ = make_caltech(str(tmp_path / "caltech"))
    write_vbb(os.path.join(root, "annotations", "set06", "V000.vbb"), 30, ["person"], {})
    with pytest.raises(AnnotationError, match="nFrame is 30 but .*set06/V000.seq has 31 frames"):
        build("caltech", root, "test", str(tmp_path / "out"))
