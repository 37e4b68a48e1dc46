"""Log-average miss rate MR^-2 (CityPersons, Caltech), as ``eval_MR_multisetup.py`` of CityPersons computes it.

* **Subset** (default Reasonable: height >= 50 px, visibility >= 0.65). A gt box outside the subset, and every
  ignore region, becomes *ignore*: IoU with it is intersection over detection area, it may absorb any number of
  detections, and a detection on it counts neither as hit nor as false positive.
* **Detections** are kept only if their height is in ``[h_min / 1.25, h_max * 1.25)`` (the expand filter), sorted
  by score and cut to ``max_dets`` (1000); each takes the unmatched real box of highest IoU >= 0.5, else an ignore
  region.
* Over the whole set: miss rate MR(f) = 1 - recall at the last operating point whose false positives per image
  (FPPI) are <= f, for f in 10^[-2:0.25:0] (9 points), and MR^-2 = exp(mean_i log MR(f_i)). Lower is better.

Where no operating point has FPPI <= f (the first detection is already a false positive and there are few
images), the official script reads ``recall[-1]`` through a negative index, i.e. the final recall; this
implementation takes recall 0 (miss rate 1) there, which is what the definition says. On the 500 CityPersons
validation images the two never differ (1 / 500 < 0.01).

HumanIns records carry full boxes (``boxes``), ``ignore_boxes`` and, when the source has them, the visible
fraction per box (``visibility``); a box without a visibility value is taken as fully visible. Caltech uses the
same procedure here; its MATLAB toolkit (``dbEval.m``) additionally resizes gt boxes to aspect 0.41, which the
converter does when it writes the record.
"""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

import numpy as np

from .boxes import DetImage, overlaps

# 10^[-2:0.25:0], written rounded as eval_MR_multisetup.py does (so FPPI 0.1 on 10 images is <= the 5th point).
FPPI_POINTS = np.array([0.0100, 0.0178, 0.0316, 0.0562, 0.1000, 0.1778, 0.3162, 0.5623, 1.0000])
SUBSETS: Dict[str, Tuple[Tuple[float, float], Tuple[float, float]]] = {
    # name: ((height min, height max), (visibility min, visibility max)), from eval_MR_multisetup.py
    "Reasonable": ((50, 1e10), (0.65, 1e10)),
    "Reasonable_small": ((50, 75), (0.65, 1e10)),
    "Heavy": ((50, 1e10), (0.2, 0.65)),
    "All": ((20, 1e10), (0.2, 1e10)),
}


def _match_image(img: DetImage, heights: Tuple[float, float], vis: Tuple[float, float], iou_thr: float,
                 max_dets: int, exp_filter: float):
    h = img.gt[:, 3] - img.gt[:, 1]
    v = np.ones(len(img.gt)) if img.gt_visibility is None else img.gt_visibility
    out_of_subset = (h < heights[0]) | (h > heights[1]) | (v < vis[0]) | (v > vis[1])
    gt = np.concatenate([img.gt, img.ignore])
    gt_ig = np.concatenate([out_of_subset, np.ones(len(img.ignore), bool)])
    gorder = np.argsort(gt_ig, kind="mergesort")  # real boxes first
    gt, gt_ig = gt[gorder], gt_ig[gorder]
    order = np.argsort(-img.scores, kind="mergesort")[:max_dets]
    dets, scores = img.dets[order], img.scores[order]
    dh = dets[:, 3] - dets[:, 1]
    keep = (dh >= heights[0] / exp_filter) & (dh < heights[1] * exp_filter)
    dets, scores = dets[keep], scores[keep]
    ious = overlaps(dets, gt, crowd=gt_ig)
    matched = np.zeros(len(dets), bool)
    ignored = np.zeros(len(dets), bool)
    gt_taken = np.zeros(len(gt), bool)
    for d in range(len(dets)):
        best, m = min(iou_thr, 1 - 1e-10), -1
        for g in range(len(gt)):
            if gt_taken[g]:
                continue
            if m > -1 and not gt_ig[m] and gt_ig[g]:
                break
            if ious[d, g] < best:
                continue
            best, m = ious[d, g], g
        if m == -1:
            continue
        matched[d], ignored[d] = True, gt_ig[m]
        if not gt_ig[m]:
            gt_taken[m] = True  # ignore regions stay open for further detections
    return scores, matched, ignored, int((~gt_ig).sum())


def miss_rate_curve(images: Sequence[DetImage], subset: str = "Reasonable", iou_thr: float = 0.5,
                    max_dets: int = 1000, exp_filter: float = 1.25) -> np.ndarray:
    """Miss rate at each of :data:`FPPI_POINTS` (NaN everywhere if the subset has no gt box)."""
    heights, vis = SUBSETS[subset]
    per = [_match_image(img, heights, vis, iou_thr, max_dets, exp_filter) for img in images]
    n_gt = sum(p[3] for p in per)
    if n_gt == 0:
        return np.full(len(FPPI_POINTS), np.nan)
    scores = np.concatenate([p[0] for p in per])
    matched = np.concatenate([p[1] for p in per])
    ignored = np.concatenate([p[2] for p in per])
    order = np.argsort(-scores, kind="mergesort")
    tp = np.cumsum(matched[order] & ~ignored[order])
    fp = np.cumsum(~matched[order] & ~ignored[order])
    recall = tp / n_gt
    fppi = fp / max(len(images), 1)
    idx = np.searchsorted(fppi, FPPI_POINTS, side="right") - 1
    rec_at = np.where(idx >= 0, recall[np.clip(idx, 0, None)] if len(recall) else 0.0, 0.0)
    return 1.0 - rec_at


def log_average_miss_rate(images: Sequence[DetImage], subset: str = "Reasonable", **kwargs) -> float:
    """MR^-2 of ``subset`` as a fraction (the papers print it x100)."""
    mr = miss_rate_curve(images, subset, **kwargs)
    if np.isnan(mr).any():
        return float("nan")
    with np.errstate(divide="ignore"):
        return float(np.exp(np.mean(np.log(mr))))
