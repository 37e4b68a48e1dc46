"""Writers of tiny pedestrian-detection / COCO fixtures in the sources' real on-disk formats.

Each writer takes plain Python values and produces exactly the files, keys, field order and coordinate base that
the real release has, so that the converters are tested against the format and not against themselves.
"""
from __future__ import annotations

import io
import json
import os
import struct
from typing import Dict, List, Optional, Sequence

import numpy as np
import scipy.io
from PIL import Image


# ---- images ---------------------------------------------------------------------------------------------------------
def write_image(path: str, width: int, height: int, color=(90, 120, 150)) -> str:
    """A solid image; the format follows the extension (.jpg / .png)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", (width, height), color).save(path)
    return path


def jpeg_bytes(width: int, height: int, color=(90, 120, 150)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def read_jsonl(path: str) -> List[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def by_image(records: List[dict]) -> Dict[str, dict]:
    """One record per image (the builder writes several instructions per image with the same target)."""
    out: Dict[str, dict] = {}
    for r in records:
        out.setdefault(r["image"], r)
    return out


# ---- COCO ------------------------------------------------------------------------------------------------------------
def write_coco_instances(root: str, split_dir: str, images: Sequence[dict], annotations: Sequence[dict]) -> str:
    """``annotations/instances_<split_dir>.json`` with COCO's top-level keys and category list head."""
    data = {
        "info": {"description": "COCO 2017 Dataset", "version": "1.0", "year": 2017},
        "licenses": [{"url": "http://creativecommons.org/licenses/by-nc-sa/2.0/", "id": 1, "name": "BY-NC-SA"}],
        "images": [dict(license=1, coco_url="", date_captured="2013-11-14 11:18:45", flickr_url="", **im)
                   for im in images],
        "annotations": list(annotations),
        "categories": [{"supercategory": "person", "id": 1, "name": "person"},
                       {"supercategory": "vehicle", "id": 2, "name": "bicycle"}],
    }
    path = os.path.join(root, "annotations", f"instances_{split_dir}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)
    return path


def write_coco_captions(root: str, split_dir: str, images: Sequence[dict], annotations: Sequence[dict]) -> str:
    data = {"info": {"description": "COCO 2017 Dataset"}, "licenses": [],
            "images": [dict(license=1, **im) for im in images], "annotations": list(annotations)}
    path = os.path.join(root, "annotations", f"captions_{split_dir}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=None)
    return path


# ---- MATLAB helpers ------------------------------------------------------------------------------------------------
def cell(items: Sequence, shape: Optional[tuple] = None) -> np.ndarray:
    """A MATLAB cell array (numpy object array)."""
    arr = np.empty(len(items), dtype=object)
    for i, it in enumerate(items):
        arr[i] = it
    return arr.reshape(shape or (1, len(items)))


def struct_array(fields: Sequence[str], rows: Sequence[Sequence], shape: Optional[tuple] = None) -> np.ndarray:
    """A MATLAB struct array with the given field order, one row of values per element."""
    arr = np.empty(len(rows), dtype=[(f, object) for f in fields])
    for i, row in enumerate(rows):
        for f, v in zip(fields, row):
            arr[i][f] = v
    return arr.reshape(shape or (1, len(rows)))


# ---- Caltech --------------------------------------------------------------------------------------------------------
def write_seq(path: str, frames: Sequence[bytes], width: int, height: int, trailer: int = 16) -> str:
    """A Norpix StreamPix .seq file of JPEG frames (image format 102), as in Caltech Pedestrian (version 3).

    1024-byte header: magic 0xFEED, ``Norpix seq`` in UTF-16, version, header size, 512-byte description, then
    width, height, bit depth, real bit depth, image size, image format, frame count, origin, true image size and
    fps. Each frame: uint32 size (counting its own 4 bytes), the JPEG, then ``trailer`` bytes (timestamp and padding).
    """
    header = bytearray(1024)
    struct.pack_into("<I", header, 0, 0xFEED)
    name = "Norpix seq".encode("utf-16-le")
    header[4:4 + len(name)] = name
    struct.pack_into("<iI", header, 28, 3, 1024)
    descr = "Caltech Pedestrian fixture".encode("utf-16-le")
    header[36:36 + len(descr)] = descr
    struct.pack_into("<9I", header, 548, width, height, 24, 8, width * height * 3, 102, len(frames), 0,
                     width * height * 3)
    struct.pack_into("<d", header, 584, 30.0)
    body = bytearray()
    for k, jpg in enumerate(frames):
        body += struct.pack("<I", len(jpg) + 4) + jpg
        body += struct.pack("<IHH", 1_200_000_000 + k, 33 * k % 1000, 0) + bytes(trailer - 8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(bytes(header) + bytes(body))
    return path


def write_vbb(path: str, n_frames: int, labels: Sequence[str], objects: Dict[int, List[dict]]) -> str:
    """A Caltech ``.vbb`` annotation (the MATLAB struct ``A`` that Piotr's toolbox ``vbb.m`` saves).

    ``labels``: ``objLbl`` per object id (ids are 1-based into it). ``objects``: frame (0-based) -> list of
    ``{"id": 1-based object id, "pos": [l, t, w, h], "occl": 0/1, "posv": [l, t, w, h] or zeros}``.
    """
    obj_fields = ("id", "pos", "occl", "lock", "posv")
    obj_lists = []
    for f in range(n_frames):
        objs = objects.get(f, [])
        if not objs:
            obj_lists.append(np.zeros((0, 0)))
            continue
        obj_lists.append(struct_array(obj_fields, [
            (np.array([[o["id"]]], dtype=np.float64), np.array([o["pos"]], dtype=np.float64),
             np.array([[o.get("occl", 0)]], dtype=np.float64), np.array([[0]], dtype=np.float64),
             np.array([o.get("posv", [0, 0, 0, 0])], dtype=np.float64)) for o in objs]))
    n_obj = len(labels)
    a_fields = ("nFrame", "objLists", "maxObj", "objInit", "objLbl", "objStr", "objEnd", "objHide", "altered",
                "log", "logLen")
    a = struct_array(a_fields, [(
        np.array([[n_frames]], dtype=np.float64), cell(obj_lists), np.array([[n_obj]], dtype=np.float64),
        np.ones((1, n_obj)), cell(list(labels)), np.ones((1, n_obj)), np.full((1, n_obj), n_frames),
        np.zeros((1, n_obj)), np.array([[0]], dtype=np.uint8), np.zeros((0, 0)), np.array([[0]], dtype=np.float64),
    )], shape=(1, 1))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    scipy.io.savemat(path, {"A": a}, appendmat=False)
    return path
