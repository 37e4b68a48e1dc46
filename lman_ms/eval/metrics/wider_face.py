"""WIDER FACE easy / medium / hard AP, as the official toolkit (and its Python port ``evaluation.py``) computes it.

Per subset every gt face outside the subset is *ignored*: a detection whose best-overlap face (IoU >= 0.5,
inclusive-pixel areas ``(x2 - x1 + 1) * (y2 - y1 + 1)``) is outside the subset is dropped from the proposals;
one whose best face is inside recalls it (a second detection of the same face stays a proposal and so lowers
precision). Scores are min-max normalised over the whole set and the PR curve is read at 1000 thresholds
t = 1 - k/1000, k = 1..1000, summed over images (an image with no gt or no detection adds nothing but its faces
still count in the recall denominator); AP is the VOC all-point area under the precision envelope.

Difficulty subsets. The official ones (``wider_{easy,medium,hard}_val.mat``, ``gt_list`` per image) come from
EdgeBox detection rates and cannot be recomputed from the boxes. A record may carry them as
``target["subsets"] = {"easy": [i, ...], "medium": [...], "hard": [...]}`` (0-based positions in the annotation
file, mapped to boxes through ``box_index`` / ``ignore_index``, see :func:`record_faces`); when it does not,
:func:`subset_masks` falls back to nested face-height bands -- easy: h >= 50 px, medium: h >= 30 px,
hard: h >= 10 px -- the scale ranges the WIDER FACE paper reports for its three levels. Numbers computed with the
fallback are *not* comparable with published WIDER FACE results; the report says which was used.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .boxes import DetImage, overlaps

LEVELS = ("easy", "medium", "hard")
FALLBACK_MIN_HEIGHT = {"easy": 50.0, "medium": 30.0, "hard": 10.0}


def subset_masks(boxes: Sequence, subsets: Optional[Dict[str, List[int]]] = None) -> Dict[str, np.ndarray]:
    """Per level a boolean mask over ``boxes``: the official index lists if given, else the height fallback."""
    boxes = np.asarray(boxes if len(boxes) else np.zeros((0, 4)), dtype=np.float64).reshape(-1, 4)
    out = {}
    for level in LEVELS:
        mask = np.zeros(len(boxes), bool)
        if subsets is not None:
            idx = np.asarray(subsets.get(level, []), dtype=int)
            if len(idx) and (idx.min() < 0 or idx.max() >= len(boxes)):
                raise IndexError(f"subsets[{level!r}] has index {int(idx.max())} but there are {len(boxes)} boxes")
            mask[idx] = True
        else:
            mask = (boxes[:, 3] - boxes[:, 1]) >= FALLBACK_MIN_HEIGHT[level]
        out[level] = mask
    return out


def record_faces(target: dict) -> Tuple[np.ndarray, Dict[str, np.ndarray], Dict[str, int], bool]:
    """The gt faces of a HumanIns WIDER FACE record as the official evaluation sees them.

    Returns (faces, masks, unmatchable, official). ``faces`` = ``boxes`` + ``ignore_boxes`` (the invalid faces: in
    the official ground truth but in no subset, so detections on them are dropped). With ``subsets``, whose
    entries are positions in the annotation file (``box_index`` / ``ignore_index`` give each box's position), a
    face is in a level if its position is listed; listed positions with no box (zero-size or clipped away by the
    converter) can never be found but, as in the official ``count_face``, still count: ``unmatchable[level]``.
    Without ``subsets`` the height fallback applies to ``boxes`` and the ignore boxes are in no level."""
    boxes = [list(b) for b in target.get("boxes", [])]
    ignore = [list(b) for b in target.get("ignore_boxes", [])]
    faces = np.asarray(boxes + ignore, dtype=np.float64).reshape(-1, 4)
    subsets = target.get("subsets")
    if subsets is None:
        fb = subset_masks(boxes)
        masks = {lv: np.r_[fb[lv], np.zeros(len(ignore), bool)] for lv in LEVELS}
        return faces, masks, {lv: 0 for lv in LEVELS}, False
    positions = list(target.get("box_index", range(len(boxes)))) + list(target.get("ignore_index", [-1] * len(ignore)))
    if len(positions) != len(faces):
        raise ValueError(f"{len(faces)} boxes but {len(positions)} entries in box_index + ignore_index")
    masks, unmatchable = {}, {}
    for lv in LEVELS:
        listed = {int(i) for i in subsets.get(lv, [])}
        masks[lv] = np.array([p in listed for p in positions], bool)
        unmatchable[lv] = len(listed - set(positions))
    return faces, masks, unmatchable, True


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point interpolated area: sum over recall steps of the step times the precision envelope after it."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def wider_face_ap(images: Sequence[DetImage], in_subset: Sequence[np.ndarray], thresh_num: int = 1000,
                  iou_thr: float = 0.5, unmatchable: int = 0) -> float:
    """AP of one difficulty level; ``in_subset[i]`` marks which gt faces of image i belong to it, and
    ``unmatchable`` faces of the level that have no box still count in the recall denominator."""
    if len(images) != len(in_subset):
        raise ValueError(f"{len(images)} images but {len(in_subset)} subset masks")
    all_scores = np.concatenate([img.scores for img in images]) if images else np.zeros(0)
    lo, hi = (all_scores.min(), all_scores.max()) if len(all_scores) else (0.0, 1.0)
    thresholds = 1.0 - np.arange(1, thresh_num + 1) / thresh_num
    proposals = np.zeros(thresh_num)
    recalled = np.zeros(thresh_num)
    n_faces = int(unmatchable)
    for img, keep in zip(images, in_subset):
        keep = np.asarray(keep, bool)
        n_faces += int(keep.sum())
        if not len(img.gt) or not len(img.dets):
            continue
        # equal scores everywhere (one box per answer) would divide by zero: every detection then scores 1
        s = (img.scores - lo) / (hi - lo) if hi > lo else np.ones(len(img.scores))
        order = np.argsort(-s, kind="mergesort")
        s, dets = s[order], img.dets[order]
        ious = overlaps(dets, img.gt, plus_one=True)
        state = np.zeros(len(img.gt))  # 0 not yet recalled, 1 recalled, -1 outside the subset
        is_proposal = np.ones(len(dets), bool)
        recall_after = np.zeros(len(dets))
        for h in range(len(dets)):
            g = int(ious[h].argmax())
            if ious[h, g] >= iou_thr:
                if not keep[g]:
                    state[g], is_proposal[h] = -1, False
                elif state[g] == 0:
                    state[g] = 1
            recall_after[h] = np.count_nonzero(state == 1)
        n_above = np.count_nonzero(s[:, None] >= thresholds[None, :], axis=0)  # detections kept per threshold
        cum_prop = np.cumsum(is_proposal)
        has = n_above > 0
        proposals[has] += cum_prop[n_above[has] - 1]
        recalled[has] += recall_after[n_above[has] - 1]
    if n_faces == 0:
        return float("nan")
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(proposals > 0, recalled / np.where(proposals > 0, proposals, 1), 0.0)
    return voc_ap(recalled / n_faces, precision)


def wider_face_aps(images: Sequence[DetImage], masks: Sequence[Dict[str, np.ndarray]],
                   unmatchable: Optional[Dict[str, int]] = None) -> Dict[str, float]:
    """``{"AP_easy", "AP_medium", "AP_hard"}`` from per-image masks (:func:`subset_masks`, :func:`record_faces`)."""
    unmatchable = unmatchable or {}
    return {f"AP_{level}": wider_face_ap(images, [m[level] for m in masks], unmatchable=unmatchable.get(level, 0))
            for level in LEVELS}
