"""HumanIns JSONL -> MindRecord -> records, by path and with embedded images, through FileReader and MindDataset."""
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "humanins"))
from fixtures_face_pose import build_records, write_wider  # noqa: E402

from lman_ms.data.humanins import AnnotationError  # noqa: E402
from lman_ms.data.mindrecord import (IMAGE_BYTES, mind_dataset, mindrecord_info, read_mindrecord,  # noqa: E402
                                     to_record, write_mindrecord, write_split)


@pytest.fixture()
def built(tmp_path):
    write_wider(tmp_path / "wider")
    _, records = build_records("wider_face", tmp_path / "wider", "train", tmp_path / "out")
    return tmp_path / "out", records


def test_round_trip_by_path(built):
    out, records = built
    files = write_split(str(out), "wider_face", "train")
    assert [os.path.basename(f) for f in files] == ["train-00000.mindrecord"]
    base = str(out / "wider_face" / "train")
    info = mindrecord_info(base)
    assert info["records"] == 6 and info["embedded"] is False
    meta = json.loads((out / "wider_face" / "train.meta.json").read_text())
    assert info["image_root"] == meta["image_root"]
    back = list(read_mindrecord(base))
    assert back == records                     # every field, same types, same order; no image bytes
    assert back[0]["target"]["ignore_boxes"] == [[50, 5, 70, 30]]


def test_round_trip_embedded_sharded(built):
    out, records = built
    files = write_split(str(out), "wider_face", "train", embed_images=True, shard_size=4)
    assert [os.path.basename(f) for f in files] == ["train-00000.mindrecord", "train-00001.mindrecord"]
    base = str(out / "wider_face" / "train")
    root = mindrecord_info(base)["image_root"]
    for reader in (lambda: read_mindrecord(base),
                   lambda: (to_record(r) for r in mind_dataset(base).create_dict_iterator(output_numpy=True,
                                                                                          num_epochs=1))):
        back = list(reader())
        assert [{k: v for k, v in r.items() if k != IMAGE_BYTES} for r in back] == records
        for r in back:
            with open(os.path.join(root, r["image"]), "rb") as f:
                assert r[IMAGE_BYTES] == f.read()
    # Data-parallel ranks see disjoint halves of the 6 rows.
    ids = [set(to_record(r)["id"] for r in mind_dataset(base, num_shards=2, shard_id=k)
               .create_dict_iterator(output_numpy=True, num_epochs=1)) for k in (0, 1)]
    assert len(ids[0]) == len(ids[1]) == 3 and not ids[0] & ids[1]


def test_trailing_nul_bytes_survive(tmp_path):
    (tmp_path / "img.bin").write_bytes(b"\x89PNG\x00\x00")
    rec = {"id": "x/train/a/0", "task": "face_detection", "dataset": "x", "split": "train", "image": "img.bin",
           "width": 2, "height": 3, "instruction": "q", "answer": "There are no faces in the picture.",
           "target": {"boxes": []}}
    write_mindrecord([rec], str(tmp_path / "mr" / "train"), embed_images=True, image_root=str(tmp_path))
    (back,) = list(to_record(r) for r in mind_dataset(str(tmp_path / "mr" / "train"))
                   .create_dict_iterator(output_numpy=True, num_epochs=1))
    assert back[IMAGE_BYTES] == b"\x89PNG\x00\x00"
    assert back["target"] == {"boxes": []} and (back["width"], back["height"]) == (2, 3)


def test_rewrite_is_atomic_and_drops_stale_shards(built):
    out, records = built
    write_split(str(out), "wider_face", "train", shard_size=2)
    ds_dir = out / "wider_face"
    assert sorted(p for p in os.listdir(ds_dir) if p.endswith(".mindrecord")) == [
        "train-00000.mindrecord", "train-00001.mindrecord", "train-00002.mindrecord"]
    before = {p: (ds_dir / p).read_bytes() for p in os.listdir(ds_dir)}

    # A failed write (an image vanished while embedding) names the file and leaves the old set untouched.
    image = os.path.join(mindrecord_info(str(ds_dir / "train"))["image_root"], records[-1]["image"])
    os.rename(image, image + ".away")
    with pytest.raises(AnnotationError, match="0_Parade_Parade_0_12.jpg: cannot embed the image"):
        write_split(str(out), "wider_face", "train", embed_images=True, shard_size=4)
    assert {p: (ds_dir / p).read_bytes() for p in os.listdir(ds_dir)} == before   # no temp folder left either
    os.rename(image + ".away", image)

    write_split(str(out), "wider_face", "train", shard_size=100)
    assert sorted(p for p in os.listdir(ds_dir) if ".mindrecord" in p) == [
        "train-00000.mindrecord", "train-00000.mindrecord.db", "train.mindrecord.json"]
    assert list(read_mindrecord(str(ds_dir / "train"))) == records


def test_split_must_be_built_first(tmp_path):
    with pytest.raises(FileNotFoundError, match="train.meta.json: build wider_face/train first"):
        write_split(str(tmp_path), "wider_face", "train")
