"""MPII Human Pose (Andriluka et al., CVPR 2014) -> pose estimation records.

Expected layout under ``root`` (the images of the official release plus the converted annotations that HRNet and
mmpose distribute)::

    images/<image>.jpg                      e.g. 015601864.jpg
    annotations/mpii_train.json             train split (Tompson et al.), one entry per person
    annotations/mpii_val.json               val split: 2,958 persons, the de facto test set
    annotations/mpii_gt_val.mat             head boxes of the val persons (``headboxes_src``), for PCKh

Each JSON entry is ``{"image", "center", "scale", "joints": [[x, y] * 16], "joints_vis": [0/1 * 16]}``. The joints
are 0-based (the converted files already subtracted MATLAB's 1, and mmpose's evaluation adds it back before
comparing with ``mpii_gt_val.mat``); ``center`` is still 1-based; ``scale`` * 200 is the person's height in pixels.

Decisions:

* the split is the standard Tompson/HRNet one: ``train`` = ``mpii_train.json``, ``test`` = ``mpii_val.json``.
  The official ``mpii_human_pose_v1_u12_1.mat`` is not read: its training images contain the val persons of this
  split (a leak) and its test labels are withheld, so it cannot give a clean pair of splits;
* persons of one image are grouped into one record, in file order; ``person_index`` keeps each person's position
  in the annotation file so the evaluator can align a record with ``mpii_gt_val.mat``;
* annotated joints (``joints_vis`` 1) get v = 2, missing ones are ``[0, 0, 0]``: the converted files do not keep
  MPII's visible/occluded flag, only whether a joint was annotated;
* ``centers`` are converted to 0-based, ``scales`` kept as is; ``head_boxes`` (0-based ``[x1, y1, x2, y2]``) come
  from ``headboxes_src`` of ``mpii_gt_val.mat`` and exist for the test split only, since the train JSON has no
  head boxes (PCKh is only computed on val).
"""
from __future__ import annotations

import json
import os
from collections import OrderedDict
from typing import Iterator, Optional

import numpy as np

from .errors import AnnotationError
from .registry import Converter, register_converter
from .sample import Sample
from .wider_face import round_half_up

MPII_KEYPOINT_NAMES = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "pelvis", "thorax",
    "upper_neck", "head_top", "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow",
    "left_wrist",
)
ANNOTATION_FILES = {"train": "mpii_train.json", "test": "mpii_val.json"}
PERSON_FIELDS = ("image", "center", "scale", "joints", "joints_vis")


def _numbers(value, shape: tuple, what: str, path: str, key: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise AnnotationError(path, f"{what} must be numbers, got {value!r}", key=key) from e
    if arr.shape != shape or not np.all(np.isfinite(arr)):
        raise AnnotationError(path, f"{what} must have shape {list(shape)} of finite numbers, got {value!r}", key=key)
    return arr


def parse_person(path: str, i: int, entry) -> dict:
    key = f"[{i}]"
    if not isinstance(entry, dict):
        raise AnnotationError(path, f"expected an object, got {type(entry).__name__}", key=key)
    missing = [f for f in PERSON_FIELDS if f not in entry]
    if missing:
        raise AnnotationError(path, f"missing field(s) {missing}", key=key)
    if not isinstance(entry["image"], str) or not entry["image"]:
        raise AnnotationError(path, f"image must be a file name, got {entry['image']!r}", key=key)
    key = f"[{i}] {entry['image']}"
    n = len(MPII_KEYPOINT_NAMES)
    joints = _numbers(entry["joints"], (n, 2), "joints", path, key)
    vis = _numbers(entry["joints_vis"], (n,), "joints_vis", path, key)
    if not np.all(np.isin(vis, (0, 1))):
        raise AnnotationError(path, f"joints_vis must be 0 or 1, got {entry['joints_vis']}", key=key)
    center = _numbers(entry["center"], (2,), "center", path, key)
    scale = _numbers(entry["scale"], (), "scale", path, key)
    keypoints = [[round_half_up(x), round_half_up(y), 2] if v else [0, 0, 0] for (x, y), v in zip(joints, vis)]
    return {"image": entry["image"], "keypoints": keypoints,
            "center": [float(center[0]) - 1.0, float(center[1]) - 1.0], "scale": float(scale)}


def load_head_boxes(path: str, persons: int) -> np.ndarray:
    """``headboxes_src`` of ``mpii_gt_val.mat`` (2 x 2 x N, 1-based [[x1, y1], [x2, y2]]) as 0-based N x 4."""
    from scipy.io import loadmat

    try:
        mat = loadmat(path)
    except Exception as e:  # noqa: BLE001 - scipy raises several types for a broken file
        raise AnnotationError(path, f"not a readable MATLAB file: {e}") from e
    if "headboxes_src" not in mat:
        raise AnnotationError(path, "missing variable", key="headboxes_src")
    hb = np.asarray(mat["headboxes_src"], dtype=np.float64)
    if hb.shape != (2, 2, persons):
        raise AnnotationError(path, f"expected shape (2, 2, {persons}) to match the val persons, got {hb.shape}",
                              key="headboxes_src")
    # [corner, xy, person] -> [person, (x1, y1, x2, y2)], then MATLAB's 1-based pixels -> 0-based.
    return hb.transpose(2, 0, 1).reshape(persons, 4) - 1.0


@register_converter
class MPII(Converter):
    name = "mpii"
    task = "pose_estimation"
    splits = ("train", "test")

    @classmethod
    def detect(cls, root: str) -> bool:
        return any(os.path.isfile(os.path.join(root, "annotations", f)) for f in ANNOTATION_FILES.values())

    def index(self, split: str) -> Iterator[Sample]:
        self.check_split(split)
        path = self.require("annotations", ANNOTATION_FILES[split])
        with open(path, "r", encoding="utf-8") as f:
            try:
                entries = json.load(f)
            except json.JSONDecodeError as e:
                raise AnnotationError(path, f"invalid JSON: {e.msg}", line=e.lineno) from e
        if not isinstance(entries, list):
            raise AnnotationError(path, f"expected a JSON list of persons, got {type(entries).__name__}")
        head_boxes: Optional[np.ndarray] = None
        if split == "test":
            head_boxes = load_head_boxes(self.require("annotations", "mpii_gt_val.mat"), len(entries))
        images: "OrderedDict[str, dict]" = OrderedDict()
        for i, entry in enumerate(entries):
            with self.policy.guard(path, key=f"[{i}]") as g:
                person = parse_person(path, i, entry)
            if not g.ok:
                continue
            t = images.setdefault(person["image"], {"keypoints": [], "keypoint_names": list(MPII_KEYPOINT_NAMES),
                                                    "centers": [], "scales": [], "person_index": []})
            t["keypoints"].append(person["keypoints"])
            t["centers"].append(person["center"])
            t["scales"].append(person["scale"])
            t["person_index"].append(i)
            if head_boxes is not None:
                t.setdefault("head_boxes", []).append([round_half_up(v) for v in head_boxes[i]])
        for image, target in images.items():
            yield Sample(key=os.path.splitext(image)[0], image=f"images/{image}", target=target, source=path)
