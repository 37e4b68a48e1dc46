"""What the box metrics share: one image's ground truth and detections, and the overlap matrices."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np


@dataclass
class DetImage:
    """One image: ``gt`` boxes, ``ignore`` regions (crowds, "don't care" areas) and scored detections.

    Boxes are ``[x1, y1, x2, y2]`` in pixels. ``gt_visibility`` (visible fraction of each gt person, for the
    miss-rate subsets) is optional and means "fully visible" when absent. WIDER FACE difficulty masks are passed
    beside the images (``wider_face.subset_masks``)."""

    gt: np.ndarray
    dets: np.ndarray
    scores: np.ndarray
    ignore: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    gt_visibility: Optional[np.ndarray] = None

    @classmethod
    def make(cls, gt: Sequence, dets: Sequence, scores: Sequence = None, ignore: Sequence = (),
             gt_visibility: Sequence = None) -> "DetImage":
        dets = as_boxes(dets)
        scores = np.ones(len(dets)) if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(scores) != len(dets):
            raise ValueError(f"{len(dets)} detections but {len(scores)} scores")
        vis = None if gt_visibility is None else np.asarray(gt_visibility, dtype=np.float64).reshape(-1)
        gt = as_boxes(gt)
        if vis is not None and len(vis) != len(gt):
            raise ValueError(f"{len(gt)} gt boxes but {len(vis)} visibility values")
        return cls(gt, dets, scores, as_boxes(ignore), vis)


def as_boxes(boxes: Sequence) -> np.ndarray:
    arr = np.asarray(boxes if len(boxes) else np.zeros((0, 4)), dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"boxes must be a list of [x1, y1, x2, y2], got shape {arr.shape}")
    return arr


def overlaps(dets: np.ndarray, gts: np.ndarray, crowd: Sequence[bool] = None, plus_one: bool = False) -> np.ndarray:
    """IoU of every detection (rows) with every gt box (columns).

    For a ``crowd`` gt the union is the detection's own area (intersection over detection), as COCO and the
    CityPersons/Caltech evaluations do for ignore regions: a detection inside a crowd is "explained" by it however
    small it is. ``plus_one`` uses the inclusive-pixel convention ``w = x2 - x1 + 1`` of the WIDER FACE toolkit."""
    d, g = as_boxes(dets), as_boxes(gts)
    if not len(d) or not len(g):
        return np.zeros((len(d), len(g)))
    one = 1.0 if plus_one else 0.0
    iw = np.minimum(d[:, None, 2], g[None, :, 2]) - np.maximum(d[:, None, 0], g[None, :, 0]) + one
    ih = np.minimum(d[:, None, 3], g[None, :, 3]) - np.maximum(d[:, None, 1], g[None, :, 1]) + one
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    da = (d[:, 2] - d[:, 0] + one) * (d[:, 3] - d[:, 1] + one)
    ga = (g[:, 2] - g[:, 0] + one) * (g[:, 3] - g[:, 1] + one)
    union = da[:, None] + ga[None, :] - inter
    if crowd is not None:
        crowd = np.asarray(crowd, dtype=bool)
        union = np.where(crowd[None, :], da[:, None], union)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
    return out


def rank_scores(n: int) -> List[float]:
    """Scores for the boxes of one LLM answer, which has no confidences: the k-th box (0-based) gets 1 / (k + 1).

    The answer order is the rank: the first box of every answer outranks the second box of any answer, and
    ties (the k-th boxes of different images) keep record order, as pycocotools' stable sort does."""
    return [1.0 / (k + 1) for k in range(n)]
