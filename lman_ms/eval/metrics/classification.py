"""Single-label classification: accuracy, per-class and mean per-class accuracy, Stanford40-style mAP, and the
video-level top-1 of UCF101 / HMDB51.

An answer names one class (or none: unparsed, encoded -1, which is wrong for every class).

**mAP from one label.** Stanford40 (like VOC Action) ranks every test image for every class by a confidence and
averages the per-class VOC AP. An LLM answer gives no ranking, so the score of image i for class c is 1 if the
answer names c, else 0. With so many ties the order inside a tie would decide a VOC AP computed detection by
detection; here each distinct score is one operating point instead (all tied images enter together), i.e. the
PR curve has two points: (recall_c, precision_c) of the images answered c, and (1, prevalence_c) of all images.
AP_c = recall_c * max(precision_c, prevalence_c) + (1 - recall_c) * prevalence_c. With real-valued scores and no
ties this is exactly the VOC all-point AP. Classes with no test image are left out of the mean.

**Video top-1.** Frames of one video (``target["video"]``) vote with their parsed labels; the most frequent label
wins, a tie goes to the label whose first vote comes earliest in frame order (``target["frame_index"]``), and a
video whose frames all failed to parse is wrong.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from typing import Dict, Hashable, List, Sequence

import numpy as np


def accuracy(gt: Sequence[int], pred: Sequence[int]) -> float:
    gt, pred = np.asarray(gt), np.asarray(pred)
    return float(np.mean(gt == pred)) if len(gt) else float("nan")


def per_class_accuracy(gt: Sequence[int], pred: Sequence[int], num_classes: int) -> np.ndarray:
    """Recall of each class (NaN for a class without test samples)."""
    gt, pred = np.asarray(gt, dtype=int), np.asarray(pred, dtype=int)
    out = np.full(num_classes, np.nan)
    for c in range(num_classes):
        mask = gt == c
        if mask.any():
            out[c] = float(np.mean(pred[mask] == c))
    return out


def mean_class_accuracy(gt: Sequence[int], pred: Sequence[int], num_classes: int) -> float:
    pc = per_class_accuracy(gt, pred, num_classes)
    return float(np.nanmean(pc)) if not np.isnan(pc).all() else float("nan")


def average_precision(scores: Sequence[float], positive: Sequence[bool]) -> float:
    """All-point interpolated AP with tied scores forming one operating point (NaN without positives)."""
    scores, positive = np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    s, pos = scores[order], positive[order]
    last = np.r_[s[1:] != s[:-1], True]  # the end of each group of equal scores
    tp = np.cumsum(pos)[last].astype(np.float64)
    n = (np.arange(len(s)) + 1)[last]
    recall, precision = tp / n_pos, tp / n
    mrec = np.concatenate(([0.0], recall))
    mpre = np.maximum.accumulate(np.concatenate((precision, [0.0]))[::-1])[::-1][:-1]
    return float(np.sum((mrec[1:] - mrec[:-1]) * mpre))


def mean_average_precision(gt: Sequence[int], scores: np.ndarray) -> Dict[str, object]:
    """``scores``: (samples, classes). Per-class AP (NaN for absent classes) and their mean."""
    gt = np.asarray(gt, dtype=int)
    scores = np.asarray(scores, dtype=np.float64)
    aps = np.array([average_precision(scores[:, c], gt == c) for c in range(scores.shape[1])])
    return {"mAP": float(np.nanmean(aps)) if not np.isnan(aps).all() else float("nan"), "AP": aps}


def one_hot_scores(pred: Sequence[int], num_classes: int) -> np.ndarray:
    """Score 1 for the class an answer names, 0 elsewhere (all 0 for an unparsed answer, ``pred == -1``)."""
    pred = np.asarray(pred, dtype=int)
    out = np.zeros((len(pred), num_classes))
    ok = (pred >= 0) & (pred < num_classes)
    out[np.nonzero(ok)[0], pred[ok]] = 1.0
    return out


def video_top1(videos: Sequence[Hashable], gt: Sequence[int], pred: Sequence[int],
               frame_index: Sequence[float]) -> Dict[str, float]:
    """Majority vote over each video's frames; returns ``{"top1": ..., "videos": n}``."""
    frames: Dict[Hashable, List] = defaultdict(list)
    labels: Dict[Hashable, int] = {}
    for v, g, p, f in zip(videos, gt, pred, frame_index):
        if labels.setdefault(v, int(g)) != int(g):
            raise ValueError(f"video {v!r} has frames labelled {labels[v]} and {g}")
        frames[v].append((f, int(p)))
    if not frames:
        return {"top1": float("nan"), "videos": 0}
    correct = 0
    for v, fr in frames.items():
        votes = [p for _, p in sorted(fr, key=lambda x: x[0]) if p >= 0]
        if not votes:
            continue
        counts = Counter(votes)
        top = max(counts.values())
        winner = next(p for p in votes if counts[p] == top)  # earliest-voting label among the tied ones
        correct += winner == labels[v]
    return {"top1": correct / len(frames), "videos": len(frames)}
