"""Pedestrian attribute metrics as PA-100K papers report them (``get_pedestrian_metrics`` of Rethinking_of_PAR).

With G_i / Y_i the true / predicted positive attributes of sample i, P_j / N_j the positive / negative samples of
attribute j and eps = 1e-20 guarding empty sets:

* label-based **mA** = mean_j 1/2 (TP_j / P_j + TN_j / N_j);
* instance-based **Accu** = mean_i |G_i ∩ Y_i| / |G_i ∪ Y_i|, **Prec** = mean_i |G_i ∩ Y_i| / |Y_i|,
  **Recall** = mean_i |G_i ∩ Y_i| / |G_i|, and **F1** = 2 Prec Recall / (Prec + Recall) from the averaged Prec and
  Recall (not a mean of per-sample F1), as in the paper's Tables 5 and 6.

An attribute with no positive (or no negative) sample contributes 0 for that half of its mA term, and a sample
with no true and no predicted attribute scores 0 on Accu/Prec/Recall: both as the reference code does, so that
numbers are comparable. An unparsed answer is scored as "no attribute predicted".
"""
from __future__ import annotations

from typing import Dict

import numpy as np

EPS = 1e-20


def attribute_metrics(gt, pred) -> Dict[str, float]:
    """``gt``, ``pred``: (samples, attributes) 0/1 arrays. Returns mA, Accu, Prec, Recall, F1 as fractions."""
    gt = np.asarray(gt, dtype=np.int64)
    pred = np.asarray(pred, dtype=np.int64)
    if not gt.size and not pred.size:
        return {k: float("nan") for k in ("mA", "Accu", "Prec", "Recall", "F1")}
    if gt.shape != pred.shape or gt.ndim != 2:
        raise ValueError(f"gt {gt.shape} and pred {pred.shape} must be the same (samples, attributes) shape")
    g, p = gt == 1, pred == 1
    pos_recall = (g & p).sum(0) / (g.sum(0) + EPS)
    neg_recall = (~g & ~p).sum(0) / ((~g).sum(0) + EPS)
    inter, union = (g & p).sum(1), (g | p).sum(1)
    prec = float(np.mean(inter / (p.sum(1) + EPS)))
    rec = float(np.mean(inter / (g.sum(1) + EPS)))
    return {
        "mA": float(np.mean((pos_recall + neg_recall) / 2)),
        "Accu": float(np.mean(inter / (union + EPS))),
        "Prec": prec,
        "Recall": rec,
        "F1": 2 * prec * rec / (prec + rec + EPS),
    }


def masked_attribute_metrics(gt, pred) -> Dict[str, float]:
    """The same five metrics where -1 means "not stated" (descriptions state only some attributes).

    A gt -1 takes the attribute out of that sample (neither positive nor negative, not in G_i or Y_i); a predicted
    -1 on a stated attribute is neither a positive nor a negative prediction, so it costs recall on both sides.
    Each attribute's mA term averages the halves that exist (positive recall if some sample has it, negative recall
    if some sample has it stated absent): a handful of descriptions rarely states every attribute both ways, and
    the reference's "empty half scores 0" would then punish a perfect answer. Otherwise the formulas are those of
    :func:`attribute_metrics`, which this equals whenever every attribute has positives and negatives."""
    gt = np.asarray(gt, dtype=np.int64)
    pred = np.asarray(pred, dtype=np.int64)
    if not gt.size and not pred.size:
        return {k: float("nan") for k in ("mA", "Accu", "Prec", "Recall", "F1")}
    if gt.shape != pred.shape or gt.ndim != 2:
        raise ValueError(f"gt {gt.shape} and pred {pred.shape} must be the same (samples, attributes) shape")
    stated = gt >= 0
    g, n = gt == 1, gt == 0
    p, q = (pred == 1) & stated, (pred == 0) & stated
    if not stated.any():
        return {k: float("nan") for k in ("mA", "Accu", "Prec", "Recall", "F1")}
    halves = np.stack([np.where(g.any(0), (g & p).sum(0) / (g.sum(0) + EPS), np.nan),
                       np.where(n.any(0), (n & q).sum(0) / (n.sum(0) + EPS), np.nan)])
    used = stated.any(0)
    inter, union = (g & p).sum(1), (g | p).sum(1)
    prec = float(np.mean(inter / (p.sum(1) + EPS)))
    rec = float(np.mean(inter / (g.sum(1) + EPS)))
    return {
        "mA": float(np.mean(np.nanmean(halves[:, used], axis=0))),
        "Accu": float(np.mean(inter / (union + EPS))),
        "Prec": prec,
        "Recall": rec,
        "F1": 2 * prec * rec / (prec + rec + EPS),
    }


def per_attribute_accuracy(gt, pred) -> np.ndarray:
    """Fraction of samples whose value of each attribute is right (Market/Duke's official per-attribute view)."""
    return (np.asarray(gt) == np.asarray(pred)).mean(0)
