"""COCO-style box AP for one category (person / face): AP@[.50:.05:.95] and AP50.

Follows ``pycocotools.cocoeval.COCOeval`` with ``iouType="bbox"``, area range "all" and ``maxDets=100``:

* per image, detections are sorted by score (stable) and cut to ``max_dets``; each takes the unmatched gt box of
  highest IoU >= t, preferring real boxes over crowd/ignore regions (which it may share with other detections,
  and whose IoU is intersection over detection area). Detections on an ignore region count neither way;
* all detections of the dataset are then sorted by score (stable, images in the given order), precision is made
  monotone and read at the 101 recall points 0, 0.01, ..., 1 (zero where the recall is never reached);
* AP_t is the mean of those 101 values and AP the mean of AP_t over t = 0.50, 0.55, ..., 0.95.

An image with neither gt nor detections is skipped, as in pycocotools. With no gt box in the whole set the AP is
undefined (pycocotools prints -1); it is returned as NaN.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

from .boxes import DetImage, overlaps

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def _match_image(img: DetImage, iou_thrs: np.ndarray, max_dets: int):
    gt = np.concatenate([img.gt, img.ignore])
    gt_ig = np.concatenate([np.zeros(len(img.gt), bool), np.ones(len(img.ignore), bool)])
    order = np.argsort(-img.scores, kind="mergesort")[:max_dets]
    dets, scores = img.dets[order], img.scores[order]
    ious = overlaps(dets, gt, crowd=gt_ig)
    T, D, G = len(iou_thrs), len(dets), len(gt)
    dt_matched = np.zeros((T, D), bool)
    dt_ignored = np.zeros((T, D), bool)
    for ti, t in enumerate(iou_thrs):
        gt_taken = np.zeros(G, bool)
        for d in range(D):
            best, m = min(t, 1 - 1e-10), -1
            for g in range(G):
                if gt_taken[g] and not gt_ig[g]:
                    continue
                if m > -1 and not gt_ig[m] and gt_ig[g]:
                    break  # real boxes come first (gt_ig is sorted): a real match beats any ignore region
                if ious[d, g] < best:
                    continue
                best, m = ious[d, g], g
            if m == -1:
                continue
            dt_matched[ti, d] = True
            dt_ignored[ti, d] = gt_ig[m]
            gt_taken[m] = True
    return scores, dt_matched, dt_ignored, int((~gt_ig).sum())


def precision_at_recalls(scores: np.ndarray, matched: np.ndarray, ignored: np.ndarray, n_gt: int) -> np.ndarray:
    """Interpolated precision at :data:`RECALL_POINTS` for one IoU threshold (pycocotools ``accumulate``)."""
    order = np.argsort(-scores, kind="mergesort")
    tp = np.cumsum(matched[order] & ~ignored[order]).astype(np.float64)
    fp = np.cumsum(~matched[order] & ~ignored[order]).astype(np.float64)
    q = np.zeros(len(RECALL_POINTS))
    if not len(tp):
        return q
    rc = tp / n_gt
    pr = tp / (fp + tp + np.spacing(1))
    pr = np.maximum.accumulate(pr[::-1])[::-1]
    idx = np.searchsorted(rc, RECALL_POINTS, side="left")
    ok = idx < len(pr)
    q[ok] = pr[idx[ok]]
    return q


def coco_ap(images: Sequence[DetImage], max_dets: int = 100) -> Dict[str, float]:
    """``{"AP": ..., "AP50": ..., "AP75": ...}`` over ``images`` (fractions in [0, 1])."""
    per = [_match_image(img, IOU_THRESHOLDS, max_dets) for img in images if len(img.gt) + len(img.ignore)
           + len(img.dets)]
    n_gt = sum(p[3] for p in per)
    if n_gt == 0:
        return {"AP": float("nan"), "AP50": float("nan"), "AP75": float("nan")}
    scores = np.concatenate([p[0] for p in per]) if per else np.zeros(0)
    matched = np.concatenate([p[1] for p in per], axis=1) if per else np.zeros((len(IOU_THRESHOLDS), 0), bool)
    ignored = np.concatenate([p[2] for p in per], axis=1) if per else matched
    ap_t: List[float] = [float(precision_at_recalls(scores, matched[t], ignored[t], n_gt).mean())
                         for t in range(len(IOU_THRESHOLDS))]
    return {"AP": float(np.mean(ap_t)), "AP50": ap_t[0], "AP75": ap_t[5]}
