"""Tiny pedestrian-attribute datasets in their real on-disk formats, for the converter tests.

PA-100K ``annotation.mat`` and the vana77 ``market_attribute.mat`` / ``duke_attribute.mat`` are written with
``scipy.io.savemat`` in the shapes ``scipy.io.loadmat`` returns for the released files (Nx1 cells of names, Nx26
labels; structs ``train``/``test`` of (1, N) rows with a cell ``image_index`` of 4-digit pids). The text datasets
are JSON lists as CUHK-PEDES ``reid_raw.json`` ships them.
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import scipy.io
from PIL import Image

from lman_ms.data.humanins import builder

PA100K_ATTRIBUTES = [
    "Female", "AgeOver60", "Age18-60", "AgeLess18", "Front", "Side", "Back", "Hat", "Glasses", "HandBag",
    "ShoulderBag", "Backpack", "HoldObjectsInFront", "ShortSleeve", "LongSleeve", "UpperStride", "UpperLogo",
    "UpperPlaid", "UpperSplice", "LowerStripe", "LowerPattern", "LongCoat", "Trousers", "Shorts", "Skirt&Dress",
    "boots"]

# Field order of the released market_attribute.mat structs (as vana77's attributes.py lists it).
MARKET_FIELDS = [
    "age", "backpack", "bag", "handbag", "downblack", "downblue", "downbrown", "downgray", "downgreen", "downpink",
    "downpurple", "downwhite", "downyellow", "upblack", "upblue", "upgreen", "upgray", "uppurple", "upred",
    "upwhite", "upyellow", "clothes", "down", "up", "hair", "hat", "gender"]
# duke_attribute.mat stores train and test in different field orders.
DUKE_TRAIN_FIELDS = [
    "backpack", "bag", "handbag", "boots", "gender", "hat", "shoes", "top", "upblack", "upwhite", "upred",
    "uppurple", "upgray", "upblue", "upgreen", "upbrown", "downblack", "downwhite", "downred", "downgray",
    "downblue", "downgreen", "downbrown"]
DUKE_TEST_FIELDS = [
    "boots", "shoes", "top", "gender", "hat", "backpack", "bag", "handbag", "downblack", "downwhite", "downred",
    "downgray", "downblue", "downgreen", "downbrown", "upblack", "upwhite", "upred", "upgray", "upblue", "upgreen",
    "uppurple", "upbrown"]


def write_image(path, width: int, height: int, fmt: Optional[str] = None) -> None:
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    Image.new("RGB", (width, height), (90, 120, 150)).save(str(path), format=fmt)


def build_records(name: str, root, split: str, out, **kw) -> Tuple[builder.BuildSummary, List[dict]]:
    summary = builder.build(name, str(root), split, str(out), progress=False, **kw)
    return summary, [r for f in summary.files for r in builder.iter_records(f)]


def by_image(records: List[dict]) -> Dict[str, List[dict]]:
    out: Dict[str, List[dict]] = {}
    for r in records:
        out.setdefault(r["image"], []).append(r)
    return out


def _cell(strings: Sequence[str], shape) -> np.ndarray:
    cell = np.empty(len(strings), dtype=object)
    for i, s in enumerate(strings):
        cell[i] = s
    return cell.reshape(shape)


# ---- PA-100K -------------------------------------------------------------------------------------------------------
def pa100k_labels(*positives: str) -> List[int]:
    return [int(a in positives) for a in PA100K_ATTRIBUTES]


PA100K_PARTS = {
    "train": [("000001.jpg", (40, 90), pa100k_labels("Female", "Age18-60", "Backpack", "LongSleeve", "Trousers")),
              ("000002.jpg", (52, 120), pa100k_labels("Age18-60", "Side", "ShortSleeve", "Shorts"))],
    "val": [("080001.jpg", (33, 77), pa100k_labels("AgeOver60", "Hat", "boots"))],
    "test": [("090001.jpg", (48, 100), pa100k_labels("Female", "AgeLess18", "Skirt&Dress")),
             ("090002.jpg", (50, 101), pa100k_labels())],
}


def write_pa100k(root, parts=None, labels_override: Optional[Dict[str, np.ndarray]] = None) -> None:
    parts = PA100K_PARTS if parts is None else parts
    variables = {"attributes": _cell(PA100K_ATTRIBUTES, (len(PA100K_ATTRIBUTES), 1))}
    for part, items in parts.items():
        variables[f"{part}_images_name"] = _cell([n for n, _, _ in items], (len(items), 1))
        variables[f"{part}_label"] = np.array([lab for _, _, lab in items], dtype=np.uint8).reshape(len(items), 26)
        for name, (w, h), _ in items:
            write_image(os.path.join(str(root), "data", name), w, h)
    variables.update(labels_override or {})
    scipy.io.savemat(os.path.join(str(root), "annotation.mat"), variables)


# ---- Market-1501 / DukeMTMC attributes -----------------------------------------------------------------------------
def identity_struct(fields: Sequence[str], identities: Dict[str, Dict[str, int]], default: Dict[str, int]) -> dict:
    """A struct of (1, N) uint8 rows, one column per identity, plus the ``image_index`` cell of pids."""
    pids = list(identities)
    struct = {f: np.array([[identities[p].get(f, default.get(f, 1)) for p in pids]], dtype=np.uint8)
              for f in fields}
    struct["image_index"] = _cell(pids, (1, len(pids)))
    return struct


MARKET_TRAIN = {"0002": {"gender": 2, "hair": 2, "age": 2, "backpack": 2, "upred": 2, "downblue": 2},
                "0007": {"age": 4, "up": 2, "clothes": 1, "hat": 2, "upwhite": 2, "downblack": 2}}
MARKET_TEST = {"0001": {"age": 3, "handbag": 2, "upgray": 2, "down": 2, "clothes": 2},
               "0003": {"age": 1, "bag": 2, "gender": 2}}
# clothes: 1 = dress, 2 = pants; the default identity wears pants.
MARKET_DEFAULT = {"age": 3, "clothes": 2}
MARKET_IMAGES = {
    "bounding_box_train": ["0002_c1s1_000451_03.jpg", "0002_c2s1_000301_01.jpg", "0007_c1s6_028546_01.jpg"],
    "bounding_box_test": ["0001_c1s1_001051_03.jpg", "0003_c3s3_075694_01.jpg", "-1_c1s1_000401_03.jpg",
                          "0000_c1s1_000151_01.jpg"],
    "query": ["0001_c1s1_001051_00.jpg"],
}


def write_market(root, train=None, test=None, images=None) -> None:
    root = str(root)
    train = MARKET_TRAIN if train is None else train
    test = MARKET_TEST if test is None else test
    mat = {"market_attribute": {"test": identity_struct(MARKET_FIELDS, test, MARKET_DEFAULT),
                                "train": identity_struct(MARKET_FIELDS, train, MARKET_DEFAULT)}}
    os.makedirs(root, exist_ok=True)
    scipy.io.savemat(os.path.join(root, "market_attribute.mat"), mat)
    for folder, names in (MARKET_IMAGES if images is None else images).items():
        for n in names:
            write_image(os.path.join(root, folder, n), 64, 128)
    # The release has a Windows thumbnail cache among the crops.
    with open(os.path.join(root, "bounding_box_test", "Thumbs.db"), "wb") as f:
        f.write(b"\xd0\xcf\x11\xe0 not an image")


DUKE_TRAIN = {"0001": {"gender": 2, "top": 0, "boots": 2, "upblack": 2, "downblue": 2},
              "0005": {"top": 2, "backpack": 2, "shoes": 2, "upbrown": 2, "downblack": 2}}
DUKE_TEST = {"0002": {"hat": 2, "handbag": 2, "uppurple": 2, "downgray": 2, "top": 1}}
DUKE_IMAGES = {"bounding_box_train": ["0001_c2_f0046182.jpg", "0005_c5_f0051781.jpg"],
               "bounding_box_test": ["0002_c1_f0044158.jpg"], "query": ["0002_c5_f0054353.jpg"]}


def write_duke(root, train=None, test=None) -> None:
    root = str(root)
    mat = {"duke_attribute": {"test": identity_struct(DUKE_TEST_FIELDS, DUKE_TEST if test is None else test, {}),
                              "train": identity_struct(DUKE_TRAIN_FIELDS, DUKE_TRAIN if train is None else train, {})}}
    os.makedirs(root, exist_ok=True)
    scipy.io.savemat(os.path.join(root, "duke_attribute.mat"), mat)
    for folder, names in DUKE_IMAGES.items():
        for n in names:
            write_image(os.path.join(root, folder, n), 70, 150)


# ---- CUHK-PEDES / ICFG-PEDES / UFine6926 ---------------------------------------------------------------------------
def write_text_pedes(root, annotation: str, records: list, image_dir: str = "imgs", sizes=None,
                     raw: Optional[str] = None) -> None:
    """The annotation JSON (``raw`` text instead, for syntax errors) and one image per record's ``file_path``."""
    root = str(root)
    os.makedirs(root, exist_ok=True)
    for i, rec in enumerate(records):
        if isinstance(rec, dict) and isinstance(rec.get("file_path"), str):
            w, h = (sizes or {}).get(rec["file_path"], (60 + i, 140 + i))
            write_image(os.path.join(root, image_dir, rec["file_path"]), w, h)
    with open(os.path.join(root, annotation), "w", encoding="utf-8") as f:
        f.write(raw if raw is not None else json.dumps(records))
