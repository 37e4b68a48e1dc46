"""FDDB discrete-score ROC and the true positive rate at 1000 false positives.

The FDDB program (``evaluate -a ellipseList -d detections ...``) matches, per image, detections to faces one to one
with a maximum-weight bipartite matching (Hungarian) on overlap; in the *discrete* ROC a matched detection whose
overlap exceeds 0.5 is a true positive and every other detection a false positive. The ROC is traced by lowering
the score threshold over all detections of the set; TPR = true positives / number of faces.

The overlap is that of the detection box with the annotated *ellipse* region, as in FDDB, when the record keeps
the ellipses (``target["ellipses"]``, ``[a, b, angle, cx, cy]`` per face, written by the FDDB converter): both are
rasterised on the pixel grid (pixel centres at ``x + 0.5``) and IoU = common pixels / pixels in either, like the
program's masks. Records with boxes only fall back to box IoU against the tight box of each ellipse, which is a
little more lenient for detections that cover the whole head; the report says which was used.

The faces scored are exactly those the reference answer states: ``ellipses[i]`` is the face of ``boxes[i]``, and
a record whose two lists differ in length is refused (:func:`record_ellipses`), since which ellipse belongs to
which stated box, and whether an unstated ellipse counts as a missed face, could only be guessed.

With LLM answers the "score" is the answer rank (see ``boxes.rank_scores``), so the ROC has as many operating
points as the longest answer has boxes. TPR@1000FP is the best TPR among operating points with at most 1000 false
positives (an operating point includes every detection with a score >= its threshold, ties together).
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from .boxes import DetImage, overlaps


def _ellipse_mask(a: float, b: float, angle: float, cx: float, cy: float):
    """Pixels (x0, y0 offset and boolean grid) whose centres fall inside the ellipse; a = radius along ``angle``."""
    c, s = math.cos(angle), math.sin(angle)
    hw, hh = math.hypot(a * c, b * s), math.hypot(a * s, b * c)  # half extents of the rotated ellipse
    x0, y0 = math.floor(cx - hw), math.floor(cy - hh)
    xs = np.arange(x0, math.ceil(cx + hw) + 1) + 0.5 - cx
    ys = np.arange(y0, math.ceil(cy + hh) + 1) + 0.5 - cy
    dx, dy = np.meshgrid(xs, ys)
    u, v = dx * c + dy * s, -dx * s + dy * c
    return x0, y0, (u / a) ** 2 + (v / b) ** 2 <= 1.0


def ellipse_overlaps(dets: Sequence, ellipses: Sequence) -> np.ndarray:
    """IoU of every detection box (rows) with every ellipse region (columns), counted in pixels."""
    d = np.asarray(dets if len(dets) else np.zeros((0, 4)), dtype=np.float64).reshape(-1, 4)
    out = np.zeros((len(d), len(ellipses)))
    for j, e in enumerate(ellipses):
        a, b, angle, cx, cy = (float(v) for v in e[:5])
        x0, y0, mask = _ellipse_mask(a, b, angle, cx, cy)
        area_e = int(mask.sum())
        px = np.arange(mask.shape[1]) + x0 + 0.5
        py = np.arange(mask.shape[0]) + y0 + 0.5
        for i, (x1, y1, x2, y2) in enumerate(d):
            inx, iny = (px >= x1) & (px < x2), (py >= y1) & (py < y2)
            inter = int(mask[np.ix_(iny, inx)].sum())
            if not inter:
                continue
            # pixel centres inside the box: the integers k with x1 <= k + 0.5 < x2, and the same in y
            area_d = (max(0, math.ceil(x2 - 0.5) - math.ceil(x1 - 0.5))
                      * max(0, math.ceil(y2 - 0.5) - math.ceil(y1 - 0.5)))
            out[i, j] = inter / (area_d + area_e - inter)
    return out


def record_ellipses(target: dict) -> Optional[list]:
    """The ellipse of each face the record's answer states (``target["ellipses"]`` aligned with
    ``target["boxes"]``), or None for a record that keeps boxes only. A ValueError if the two do not align."""
    ellipses = target.get("ellipses")
    if ellipses is None:
        return None
    boxes = target.get("boxes", [])
    if len(ellipses) != len(boxes):
        raise ValueError(f"target has {len(boxes)} boxes but {len(ellipses)} ellipses; the answer states the boxes, "
                         "so the faces to score are ambiguous (FDDB records written before the converter kept "
                         "the two aligned: rebuild them)")
    return ellipses


def match_image(img: DetImage, iou_thr: float = 0.5, ellipses: Optional[Sequence] = None) -> np.ndarray:
    """Per detection: True if the one-to-one matching pairs it with a face at overlap > ``iou_thr``; the faces
    are ``ellipses`` if given, else ``img.gt`` boxes."""
    n_faces = len(ellipses) if ellipses is not None else len(img.gt)
    hit = np.zeros(len(img.dets), bool)
    if not len(img.dets) or not n_faces:
        return hit
    iou = ellipse_overlaps(img.dets, ellipses) if ellipses is not None else overlaps(img.dets, img.gt)
    weight = np.where(iou > iou_thr, iou, 0.0)
    rows, cols = linear_sum_assignment(weight, maximize=True)
    good = weight[rows, cols] > 0
    hit[rows[good]] = True
    return hit


def roc(images: Sequence[DetImage], iou_thr: float = 0.5,
        ellipses: Optional[Sequence[Optional[Sequence]]] = None) -> Tuple[np.ndarray, np.ndarray, int]:
    """(false positives, true positives) at each distinct score threshold, highest first, and the face count.
    ``ellipses[i]`` (or None) are image i's ellipse regions."""
    ell = list(ellipses) if ellipses is not None else [None] * len(images)
    if len(ell) != len(images):
        raise ValueError(f"{len(images)} images but {len(ell)} ellipse lists")
    for i, (img, e) in enumerate(zip(images, ell)):
        if e is not None and len(e) != len(img.gt):
            raise ValueError(f"image {i}: {len(img.gt)} faces in the answer but {len(e)} ellipses")
    n_faces = sum(len(e) if e is not None else len(img.gt) for img, e in zip(images, ell))
    scores = np.concatenate([img.scores for img in images]) if images else np.zeros(0)
    hits = (np.concatenate([match_image(img, iou_thr, e) for img, e in zip(images, ell)]) if images
            else np.zeros(0, bool))
    order = np.argsort(-scores, kind="mergesort")
    scores, hits = scores[order], hits[order]
    tp, fp = np.cumsum(hits), np.cumsum(~hits)
    last_of_tie = np.r_[scores[1:] != scores[:-1], True] if len(scores) else np.zeros(0, bool)
    return fp[last_of_tie], tp[last_of_tie], n_faces


def tpr_at_fp(images: Sequence[DetImage], max_fp: int = 1000, iou_thr: float = 0.5,
              ellipses: Optional[Sequence[Optional[Sequence]]] = None) -> Dict[str, float]:
    """``{"TPR@1000FP": ...}`` (the key follows ``max_fp``); NaN without faces, 0 without detections."""
    fp, tp, n_faces = roc(images, iou_thr, ellipses)
    if n_faces == 0:
        return {f"TPR@{max_fp}FP": float("nan")}
    ok = fp <= max_fp
    best = float(tp[ok].max()) if ok.any() else 0.0
    return {f"TPR@{max_fp}FP": best / n_faces}
