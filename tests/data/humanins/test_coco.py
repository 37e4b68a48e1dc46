"""COCO person detection (``coco_person``) and COCO captions (``coco_captions``) on fixtures in the real format."""
import os

import pytest

from fixtures_detection import (by_image, read_jsonl, write_coco_captions,
                                write_coco_instances, write_image)

from lman_ms.data.humanins import AnnotationError, builder, get_converter
from lman_ms.data.humanins.coco import clip_box, xywh_to_xyxy

TRAIN_IMAGES = [
    {"file_name": "000000000139.jpg", "height": 48, "width": 64, "id": 139},
    {"file_name": "000000000285.jpg", "height": 32, "width": 32, "id": 285},
    {"file_name": "000000000632.jpg", "height": 30, "width": 40, "id": 632},
]
TRAIN_ANNS = [
    {"segmentation": [[10, 6, 30, 6, 30, 35]], "area": 602.0, "iscrowd": 0, "image_id": 139,
     "bbox": [10.2, 5.6, 20.0, 30.1], "category_id": 1, "id": 1001},
    {"segmentation": [[50, 40, 63, 47]], "area": 600.0, "iscrowd": 0, "image_id": 139,
     "bbox": [50.0, 40.0, 30.0, 20.0], "category_id": 1, "id": 1002},
    {"segmentation": {"counts": [0, 600], "size": [48, 64]}, "area": 600.0, "iscrowd": 1, "image_id": 139,
     "bbox": [0.0, 0.0, 30.0, 20.0], "category_id": 1, "id": 1003},
    {"segmentation": [[1, 1, 5, 5]], "area": 16.0, "iscrowd": 0, "image_id": 139,
     "bbox": [1.0, 1.0, 4.0, 4.0], "category_id": 2, "id": 1004},          # a bicycle: not a person
    {"segmentation": [[1, 1, 5, 5]], "area": 16.0, "iscrowd": 0, "image_id": 285,
     "bbox": [1.0, 1.0, 4.0, 4.0], "category_id": 2, "id": 1005},
    {"segmentation": [[0, 2, 7, 12]], "area": 100.0, "iscrowd": 0, "image_id": 632,
     "bbox": [-3.0, 2.0, 10.0, 10.0], "category_id": 1, "id": 1006},
]
VAL_IMAGES = [
    {"file_name": "000000000724.jpg", "height": 20, "width": 20, "id": 724},
    {"file_name": "000000000776.jpg", "height": 20, "width": 30, "id": 776},
]
VAL_ANNS = [{"segmentation": [[2, 3, 12, 13]], "area": 100.0, "iscrowd": 0, "image_id": 776,
             "bbox": [1.5, 2.5, 10.0, 10.0], "category_id": 1, "id": 2001}]


def make_coco(root, train_anns=TRAIN_ANNS):
    for split_dir, images in (("train2017", TRAIN_IMAGES), ("val2017", VAL_IMAGES)):
        for im in images:
            write_image(os.path.join(root, split_dir, im["file_name"]), im["width"], im["height"])
    write_coco_instances(root, "train2017", TRAIN_IMAGES, train_anns)
    write_coco_instances(root, "val2017", VAL_IMAGES, VAL_ANNS)
    return root


def test_box_helpers():
    assert xywh_to_xyxy([10.2, 5.6, 20.0, 30.1]) == pytest.approx([10.2, 5.6, 30.2, 35.7])
    assert clip_box([10.5, 11.5, 20.49, 30.5], 64, 48) == [11, 12, 20, 31]     # half-up rounding
    assert clip_box([-5, -5, 100, 100], 64, 48) == [0, 0, 63, 47]              # clipped to [0, W-1] x [0, H-1]
    assert clip_box([70, 10, 90, 20], 64, 48) is None                          # wholly outside the image
    with pytest.raises(ValueError, match="4 numbers"):
        xywh_to_xyxy([1, 2, 3])


def test_coco_person_train_and_test(tmp_path):
    root = make_coco(str(tmp_path / "coco"))
    out = str(tmp_path / "out")
    s = builder.build("coco_person", root, "train", out, progress=False)
    # 000000000285 has no person (only a bicycle): dropped on train; 2 images x 2 instructions.
    assert (s.images, s.records, s.skipped) == (2, 4, 0)
    recs = by_image(read_jsonl(os.path.join(out, "coco_person", "train-00000.jsonl")))
    assert sorted(recs) == ["train2017/000000000139.jpg", "train2017/000000000632.jpg"]
    r = recs["train2017/000000000139.jpg"]
    assert (r["task"], r["dataset"], r["split"], r["width"], r["height"]) == \
        ("pedestrian_detection", "coco_person", "train", 64, 48)
    # [10.2, 5.6, 20, 30.1] -> [10.2, 5.6, 30.2, 35.7] -> [10, 6, 30, 36]; [50, 40, 30, 20] clipped to 63 x 47.
    assert r["target"] == {"boxes": [[10, 6, 30, 36], [50, 40, 63, 47]], "ignore_boxes": [[0, 0, 30, 20]]}
    assert r["answer"] == ("There are 2 persons in the picture. They are located in: "
                           "[10, 6, 30, 36], [50, 40, 63, 47].")
    assert "64 and 48" in r["instruction"]
    assert r["id"] == "coco_person/train/000000000139/0"
    assert recs["train2017/000000000632.jpg"]["target"]["boxes"] == [[0, 2, 7, 12]]   # x = -3 clipped to 0

    s = builder.build("coco_person", root, "test", out, progress=False)
    assert (s.images, s.records) == (2, 4)            # the test split keeps the image without persons
    recs = by_image(read_jsonl(os.path.join(out, "coco_person", "test-00000.jsonl")))
    assert recs["val2017/000000000724.jpg"]["answer"] == "There are no persons in the picture."
    assert recs["val2017/000000000776.jpg"]["target"]["boxes"] == [[2, 3, 12, 13]]   # 1.5 -> 2, 11.5 -> 12
    assert recs["val2017/000000000776.jpg"]["split"] == "test"

    # The option overrides the split's default.
    s = builder.build("coco_person", root, "test", str(tmp_path / "out2"), progress=False, keep_empty=False)
    assert s.images == 1


def test_coco_person_rerun_and_workers_are_byte_identical(tmp_path):
    root = make_coco(str(tmp_path / "coco"))
    outs = []
    for i, workers in enumerate((1, 1, 2)):
        out = str(tmp_path / f"out{i}")
        builder.build("coco_person", root, "train", out, workers=workers, seed=3, progress=False)
        with open(os.path.join(out, "coco_person", "train-00000.jsonl"), "rb") as f:
            outs.append(f.read())
    assert outs[0] == outs[1] == outs[2]


def test_coco_person_malformed_annotation(tmp_path):
    anns = [dict(a) for a in TRAIN_ANNS]
    anns[5]["bbox"] = [1.0, 2.0, 3.0]                 # annotations[5] belongs to image 632
    root = make_coco(str(tmp_path / "coco"), anns)
    path = os.path.join(root, "annotations", "instances_train2017.json")
    with pytest.raises(AnnotationError) as e:
        builder.build("coco_person", root, "train", str(tmp_path / "out"), progress=False)
    assert (e.value.path, e.value.key) == (path, "annotations[5]")
    assert "instances_train2017.json [annotations[5]]" in str(e.value) and "4 numbers" in str(e.value)

    s = builder.build("coco_person", root, "train", str(tmp_path / "out"), on_error="skip", progress=False)
    # The whole image goes: an answer that misses a person would teach the model to miss people.
    assert (s.skipped, s.images) == (1, 1)
    assert "annotations[5]" in s.skip_examples[0]


def test_coco_json_syntax_error_names_line(tmp_path):
    root = make_coco(str(tmp_path / "coco"))
    path = os.path.join(root, "annotations", "instances_val2017.json")
    with open(path, "w", encoding="utf-8") as f:
        f.write('{"images": [],\n "annotations": [,]}\n')
    with pytest.raises(AnnotationError) as e:
        builder.build("coco_person", root, "test", str(tmp_path / "out"), progress=False)
    assert (e.value.path, e.value.line) == (path, 2)


def test_coco_size_mismatch_with_header(tmp_path):
    root = make_coco(str(tmp_path / "coco"))
    write_image(os.path.join(root, "val2017", "000000000776.jpg"), 31, 20)    # json says 30 x 20
    with pytest.raises(AnnotationError, match="30x20 .* header says 31x20"):
        builder.build("coco_person", root, "test", str(tmp_path / "out"), progress=False)


def test_coco_captions(tmp_path):
    root = make_coco(str(tmp_path / "coco"))
    images = TRAIN_IMAGES[:2]
    anns = [{"image_id": 139, "id": 37, "caption": "A man riding a horse on a beach. \n"},
            {"image_id": 285, "id": 49, "caption": "A bicycle  leaning on a wall."},
            {"image_id": 139, "id": 58, "caption": "A person on horseback near the  sea."}]
    write_coco_captions(root, "train2017", images, anns)
    conv = get_converter("coco_captions")
    assert conv.detect(root) and not get_converter("coco_captions").detect(str(tmp_path))
    out = str(tmp_path / "out")
    s = builder.build("coco_captions", root, "train", out, progress=False)
    assert (s.images, s.records) == (2, 2)           # one instruction per image for captions
    recs = by_image(read_jsonl(os.path.join(out, "coco_captions", "train-00000.jsonl")))
    r = recs["train2017/000000000139.jpg"]
    assert r["task"] == "caption"
    assert r["target"] == {"captions": ["A man riding a horse on a beach.", "A person on horseback near the sea."]}
    assert r["answer"] == "A man riding a horse on a beach."
    assert recs["train2017/000000000285.jpg"]["target"]["captions"] == ["A bicycle leaning on a wall."]

    anns.append({"image_id": 999, "id": 60, "caption": "An orphan caption."})
    path = write_coco_captions(root, "train2017", images, anns)
    with pytest.raises(AnnotationError) as e:
        builder.build("coco_captions", root, "train", out, progress=False)
    assert (e.value.path, e.value.key) == (path, "annotations[3]") and "999" in str(e.value)
    s = builder.build("coco_captions", root, "train", out, on_error="skip", progress=False)
    assert (s.skipped, s.images) == (1, 2)


def test_coco_missing_annotation_file(tmp_path):
    root = str(tmp_path / "coco")
    os.makedirs(root)
    with pytest.raises(AnnotationError, match="instances_val2017.json"):
        builder.build("coco_person", root, "test", str(tmp_path / "out"), progress=False)
