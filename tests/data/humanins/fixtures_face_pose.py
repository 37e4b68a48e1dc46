"""Tiny WIDER FACE, FDDB, AI Challenger and MPII trees in the datasets' real on-disk layouts.

Every writer returns nothing: the tests state the expected boxes and keypoints by hand next to their assertions.
Image sizes are chosen so that some boxes need clipping.
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image

from lman_ms.data.humanins import builder


def write_image(path: str, width: int, height: int, mode: str = "RGB") -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new(mode, (width, height), color=0 if mode == "L" else (90, 120, 150)).save(path, "JPEG")


def write_lines(path: str, lines: List[str]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + "\n")


def build_records(name: str, root: str, split: str, out: str, **kw) -> Tuple[builder.BuildSummary, List[dict]]:
    kw.setdefault("progress", False)
    summary = builder.build(name, str(root), split, str(out), **kw)
    return summary, list(builder.iter_records(os.path.join(str(out), name), split=split))


def by_image(records: List[dict]) -> Dict[str, List[dict]]:
    out: Dict[str, List[dict]] = {}
    for r in records:
        out.setdefault(r["image"], []).append(r)
    return out


# ---- WIDER FACE ----------------------------------------------------------------------------------------------------
WIDER_TRAIN = [
    "0--Parade/0_Parade_marchingband_1_5.jpg",     # line 1   (image 100 x 80)
    "2",
    "10 20 30 40 0 0 0 0 0 0 ",                     # line 3   -> [10, 20, 40, 60]   (real files end lines with a space)
    "50 5 20 25 2 0 0 1 0 0 ",                      # line 4   invalid -> ignore [50, 5, 70, 30]
    "1--Handshaking/1_Handshaking_Handshaking_1_7.jpg",  # line 5 (image 64 x 48), no face
    "0",
    "0 0 0 0 0 0 0 0 0 0 ",                         # line 7   the dummy line that must be consumed
    "0--Parade/0_Parade_Parade_0_12.jpg",           # line 8   (image 80 x 64)
    "3",
    "70 60 20 30 0 0 0 0 0 0 ",                     # line 10  -> clipped to [70, 60, 79, 63]
    "5 5 0 10 0 0 0 0 0 0 ",                        # line 11  zero width: dropped
    "0 0 8 8 1 0 0 0 0 0 ",                         # line 12  -> [0, 0, 8, 8], index 2
]
WIDER_VAL = [
    "2--Demonstration/2_Demonstration_Protesters_2_3.jpg",   # image 40 x 30
    "1",
    "3 4 10 12 0 0 0 0 0 0 ",                       # -> [3, 4, 13, 16]
]
WIDER_SIZES = {"WIDER_train/images/0--Parade/0_Parade_marchingband_1_5.jpg": (100, 80),
               "WIDER_train/images/1--Handshaking/1_Handshaking_Handshaking_1_7.jpg": (64, 48),
               "WIDER_train/images/0--Parade/0_Parade_Parade_0_12.jpg": (80, 64),
               "WIDER_val/images/2--Demonstration/2_Demonstration_Protesters_2_3.jpg": (40, 30),
               "WIDER_val/images/3--Riot/3_Riot_Riot_3_8.jpg": (60, 40)}


def write_wider(root, train: Optional[List[str]] = None, val: Optional[List[str]] = None,
                subsets: Optional[Dict[str, Dict[str, List[int]]]] = None) -> None:
    """``subsets``: "<event>/<image name>" -> {"easy"|"medium"|"hard": 1-based gt_list}, written as the
    ``eval_tools/ground_truth`` files of the evaluation zip."""
    root = str(root)
    for rel, (w, h) in WIDER_SIZES.items():
        write_image(os.path.join(root, rel), w, h)
    write_lines(os.path.join(root, "wider_face_split", "wider_face_train_bbx_gt.txt"), train or WIDER_TRAIN)
    write_lines(os.path.join(root, "wider_face_split", "wider_face_val_bbx_gt.txt"), val or WIDER_VAL)
    if subsets:
        write_wider_subsets(os.path.join(root, "eval_tools", "ground_truth"), subsets)


def _cell(items) -> np.ndarray:
    out = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        out[i, 0] = item
    return out


def write_wider_subsets(folder: str, subsets: Dict[str, Dict[str, List[int]]]) -> None:
    """``wider_{easy,medium,hard}_val.mat`` as the evaluation zip ships them: ``event_list`` (events x 1 cell),
    ``file_list`` and ``gt_list`` (per event a cell of images; gt_list holds k x 1 1-based face indices)."""
    from scipy.io import savemat

    os.makedirs(folder, exist_ok=True)
    events: Dict[str, List[str]] = {}
    for path in subsets:
        event, name = path.split("/")
        events.setdefault(event, []).append(name)
    for level in ("easy", "medium", "hard"):
        gts = []
        for event, names in events.items():
            lists = [subsets[f"{event}/{n}"][level] for n in names]
            gts.append(_cell([np.asarray(g, dtype=np.float64).reshape(-1, 1) if g else np.zeros((0, 0))
                              for g in lists]))
        savemat(os.path.join(folder, f"wider_{level}_val.mat"),
                {"event_list": _cell(list(events)), "file_list": _cell([_cell(v) for v in events.values()]),
                 "gt_list": _cell(gts)})


# ---- FDDB ----------------------------------------------------------------------------------------------------------
FDDB_FOLDS = {
    1: ["2002/08/11/big/img_591", "2",
        "30.000000 20.000000 1.570796 50.000000 40.000000  1",    # -> [30, 10, 70, 70]
        "10.000000 10.000000 0.000000 95.000000 5.000000  1"],    # -> [85, -5, 105, 15] -> clipped [85, 0, 99, 15]
    5: ["2002/07/19/big/img_591", "1",                           # same file name, other date folder
        "5.000000 4.000000 0.000000 20.000000 20.000000  1"],     # -> [15, 16, 25, 24]
    10: ["2003/01/01/big/img_1", "2",
         "20.000000 10.000000 0.000000 30.000000 25.000000  1",   # -> [10, 15, 50, 35]
         "20.000000 10.000000 0.785398 30.000000 25.000000  1"],  # hw = hh = sqrt(200 + 50) = 15.81 -> [14, 9, 46, 41]
}
FDDB_SIZES = {"2002/08/11/big/img_591": (100, 80), "2002/07/19/big/img_591": (40, 40), "2003/01/01/big/img_1": (60, 50)}


def write_fddb(root, folds: Optional[Dict[int, List[str]]] = None) -> None:
    root = str(root)
    for rel, (w, h) in FDDB_SIZES.items():
        write_image(os.path.join(root, "originalPics", rel + ".jpg"), w, h, mode="L")   # FDDB has grey images
    folds = folds or FDDB_FOLDS
    for k in range(1, 11):
        lines = folds.get(k, [])
        write_lines(os.path.join(root, "FDDB-folds", f"FDDB-fold-{k:02d}.txt"), [ln for ln in lines if "/" in ln])
        write_lines(os.path.join(root, "FDDB-folds", f"FDDB-fold-{k:02d}-ellipseList.txt"), lines)


# ---- AI Challenger ------------------------------------------------------------------------------------------------
AIC_TRAIN_DIR = "ai_challenger_keypoint_train_20170902"
AIC_VAL_DIR = "ai_challenger_keypoint_validation_20170911"
AIC_A = "054d9ce9201beffc76e5ff2169d2af2f027002ca"   # 120 x 100
AIC_B = "ea2db3ab2ef2f7c4ff1bd00b7e2d3bbf24c4d6e5"   # 80 x 60
AIC_V = "0a5b6dc8b1ba4b28c3ae2cbb3b6ee9d7d0d7a0e1"   # 50 x 50


def aic_joints(base_x: int, base_y: int, codes: List[int]) -> List[int]:
    """14 triplets at (base_x + j, base_y + 2j) with AIC visibility codes; code 3 has x = y = 0 as in the data."""
    out = []
    for j, v in enumerate(codes):
        out += [0, 0, 3] if v == 3 else [base_x + j, base_y + 2 * j, v]
    return out


AIC_CODES_1 = [1, 1, 2, 1, 3, 1, 1, 1, 1, 1, 1, 2, 1, 1]
AIC_CODES_2 = [1] * 14
AIC_CODES_10 = [3] * 13 + [2]


def aic_train_entries() -> list:
    return [
        {"url": "http://www.sinaimg.cn/dy/slidenews/a.jpg", "image_id": AIC_A,
         "keypoint_annotations": {"human1": aic_joints(10, 20, AIC_CODES_1), "human10": aic_joints(60, 5, AIC_CODES_10),
                                  "human2": aic_joints(40, 30, AIC_CODES_2)},
         "human_annotations": {"human1": [5, 10, 40, 90], "human10": [55, 0, 119, 99], "human2": [35, 25, 70, 99]}},
        {"url": "http://www.sinaimg.cn/dy/slidenews/b.jpg", "image_id": AIC_B,
         "keypoint_annotations": {"human1": aic_joints(20, 10, AIC_CODES_2)},
         "human_annotations": {"human1": [70, 10, 90, 70]}},                        # -> clipped [70, 10, 79, 59]
    ]


def write_aic(root, train_entries: Optional[list] = None) -> None:
    root = str(root)
    write_image(os.path.join(root, AIC_TRAIN_DIR, "keypoint_train_images_20170902", AIC_A + ".jpg"), 120, 100)
    write_image(os.path.join(root, AIC_TRAIN_DIR, "keypoint_train_images_20170902", AIC_B + ".jpg"), 80, 60)
    write_image(os.path.join(root, AIC_VAL_DIR, "keypoint_validation_images_20170911", AIC_V + ".jpg"), 50, 50)
    with open(os.path.join(root, AIC_TRAIN_DIR, "keypoint_train_annotations_20170909.json"), "w") as f:
        json.dump(aic_train_entries() if train_entries is None else train_entries, f)
    val = [{"url": "http://www.sinaimg.cn/dy/slidenews/v.jpg", "image_id": AIC_V,
            "keypoint_annotations": {"human1": aic_joints(3, 4, AIC_CODES_2)},
            "human_annotations": {"human1": [1, 2, 30, 45]}}]
    with open(os.path.join(root, AIC_VAL_DIR, "keypoint_validation_annotations_20170911.json"), "w") as f:
        json.dump(val, f)


# ---- MPII (HRNet / mmpose converted annotations) -------------------------------------------------------------------
def mpii_person(image: str, x0: float, y0: float, missing: Tuple[int, ...] = (), center=(50.0, 40.0),
                scale: float = 1.5) -> dict:
    joints = [[-1.0, -1.0] if j in missing else [x0 + 2 * j, y0 + j + 0.5] for j in range(16)]
    vis = [0 if j in missing else 1 for j in range(16)]
    return {"joints_vis": vis, "joints": joints, "image": image, "scale": scale, "center": list(center)}


def mpii_train_entries() -> list:
    return [mpii_person("000000001.jpg", 10.0, 20.0, missing=(6, 15)),
            mpii_person("000000002.jpg", 4.0, 3.0, center=(20.0, 30.0), scale=0.9),
            mpii_person("000000001.jpg", 50.25, 10.0, center=(70.0, 35.0), scale=1.2)]


def write_mpii(root, train_entries: Optional[list] = None) -> None:
    root = str(root)
    write_image(os.path.join(root, "images", "000000001.jpg"), 100, 80)
    write_image(os.path.join(root, "images", "000000002.jpg"), 64, 64)
    write_image(os.path.join(root, "images", "000000003.jpg"), 90, 70)
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    with open(os.path.join(root, "annotations", "mpii_train.json"), "w") as f:
        json.dump(mpii_train_entries() if train_entries is None else train_entries, f)
    val = [mpii_person("000000003.jpg", 5.0, 6.0, center=(30.0, 40.0)),
           mpii_person("000000003.jpg", 40.0, 7.0, missing=(0, 1), center=(60.0, 40.0))]
    with open(os.path.join(root, "annotations", "mpii_val.json"), "w") as f:
        json.dump(val, f)
    # mpii_gt_val.mat as HRNet ships it: 1-based joints and head boxes, one slice per val person, in file order.
    # headboxes_src[corner, xy, person]: person 0 head [11, 3]-[21, 15], person 1 [46, 2]-[58, 16].
    hb = np.zeros((2, 2, len(val)))
    hb[:, :, 0] = [[11, 3], [21, 15]]
    hb[:, :, 1] = [[46, 2], [58, 16]]
    pos = np.stack([np.asarray(p["joints"]) + 1 for p in val], axis=-1)
    missing = np.stack([1 - np.asarray(p["joints_vis"]) for p in val], axis=-1)
    names = np.array(["rank", "rkne", "rhip", "lhip", "lkne", "lank", "pelv", "thor", "neck", "head", "rwri",
                      "relb", "rsho", "lsho", "lelb", "lwri"], dtype=object).reshape(1, 16)
    from scipy.io import savemat

    savemat(os.path.join(root, "annotations", "mpii_gt_val.mat"),
            {"dataset_joints": names, "jnt_missing": missing, "pos_gt_src": pos, "headboxes_src": hb})
