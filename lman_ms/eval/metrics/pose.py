"""Pose metrics: MPII PCKh@0.5 and AI Challenger OKS-mAP.

Keypoints are per person ``[[x, y, v], ...]`` in the record's joint order, v COCO-style: 2 visible, 1 labelled but
occluded, 0 not labelled (ground truth) or not given (prediction). PCKh counts every labelled joint (MPII's
converted files keep no visible/occluded flag); OKS counts the joints with v >= ``min_visibility``, which
``lman_ms.eval.evaluate`` sets to 2 for AI Challenger, whose official evaluation uses visible joints only.

**PCKh@0.5 (MPII).** A joint is correct if its distance to the truth is <= 0.5 x head size, where head size =
0.6 x the diagonal of the person's head box (``SC_BIAS`` of the MPII toolkit / mmpose ``MpiiPCKAccuracy``). The
MPII benchmark evaluates each annotated person given its position; an LLM answer lists persons in its own order,
so predicted and true persons are paired one to one by a maximum matching on the number of correct joints (ties
broken by the smaller summed normalised distance). A true person without a partner has all its joints wrong; extra
predicted persons cost nothing (PCKh has no false positives). Reported: Head (head top), Shoulder, Elbow, Wrist,
Hip, Knee, Ankle and Mean = correct / labelled over all joints except pelvis and thorax.

**OKS-mAP (AI Challenger, ``keypoint_eval.py``).** OKS(gt, pred) = mean over the gt's labelled joints k of
exp(-d_k^2 / (2 (s + 1) delta_k^2)), with s the gt box area and delta = 2 sigma (the AIC sigmas); a joint the
answer does not give contributes 0. Each gt person takes its best OKS over the image's predictions (no one-to-one
matching, as the official code), a gt without labelled joints scores 0, and each image adds max(#gt, #pred) to the
denominator so extra predictions are penalised. AP_t = #(OKS > t) / denominator, OKS-mAP = mean over
t = 0.50, 0.55, ..., 0.95. Without a gt box (``boxes``) s is the area of the box around the labelled joints.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from lman_ms.data.humanins.answers import joint_phrase

AIC_SIGMAS = np.array([0.01388152, 0.01515228, 0.01057665, 0.01417709, 0.01497891, 0.01402144, 0.03909642,
                       0.03686941, 0.01981803, 0.03843971, 0.03412318, 0.02415081, 0.01291456, 0.01236173])
MPII_GROUPS = (("Head", ("head top",)), ("Shoulder", ("shoulder",)), ("Elbow", ("elbow",)), ("Wrist", ("wrist",)),
               ("Hip", ("hip",)), ("Knee", ("knee",)), ("Ankle", ("ankle",)))
MPII_NOT_IN_MEAN = ("pelvis", "thorax")
SC_BIAS = 0.6


def _persons(x) -> np.ndarray:
    arr = np.asarray(x if len(x) else np.zeros((0, 0, 3)), dtype=np.float64)
    if arr.ndim != 3 or (arr.size and arr.shape[2] != 3):
        raise ValueError(f"keypoints must be [[[x, y, v], ...] per person], got shape {arr.shape}")
    return arr


def _joint_group(name: str) -> str:
    phrase = joint_phrase(name).replace("headtop", "head top")
    for group, keys in MPII_GROUPS:
        if any(k in phrase for k in keys):
            return group
    return ""


# ---- PCKh ----------------------------------------------------------------------------------------------------------
def pckh_image(gt, head_boxes, pred, thr: float = 0.5):
    """Per joint (correct, labelled) counts for one image, after pairing persons."""
    gt, pred = _persons(gt), _persons(pred)
    head_boxes = np.asarray(head_boxes, dtype=np.float64).reshape(-1, 4)
    if len(head_boxes) != len(gt):
        raise ValueError(f"{len(gt)} persons but {len(head_boxes)} head boxes")
    k = gt.shape[1] if len(gt) else 0
    correct, labelled = np.zeros(k), np.zeros(k)
    if not len(gt):
        return correct, labelled
    size = SC_BIAS * np.linalg.norm(head_boxes[:, 2:] - head_boxes[:, :2], axis=1)  # (P,)
    lab = gt[:, :, 2] > 0
    labelled += lab.sum(0)
    if not len(pred):
        return correct, labelled
    if pred.shape[1] != k:
        raise ValueError(f"prediction has {pred.shape[1]} joints, ground truth {k}")
    d = np.linalg.norm(gt[:, None, :, :2] - pred[None, :, :, :2], axis=-1) / size[:, None, None]  # (P, Q, K)
    given = pred[None, :, :, 2] > 0
    ok = (d <= thr) & given & lab[:, None, :]
    n_ok = ok.sum(-1)
    dist = np.where(lab[:, None, :], np.where(given, np.minimum(d, 10.0), 10.0), 0.0).sum(-1)
    rows, cols = linear_sum_assignment(n_ok - 1e-6 * dist, maximize=True)
    for r, c in zip(rows, cols):
        correct += ok[r, c]
    return correct, labelled


def pckh(gts: Sequence, head_boxes: Sequence, preds: Sequence, joint_names: Sequence[str],
         thr: float = 0.5) -> Dict[str, float]:
    """``PCKh@0.5`` (the Mean) plus the per-group values of the MPII table, as fractions."""
    correct, labelled = np.zeros(len(joint_names)), np.zeros(len(joint_names))
    for gt, hb, pr in zip(gts, head_boxes, preds):
        c, n = pckh_image(gt, hb, pr, thr)
        if len(c):
            correct += c
            labelled += n
    groups = np.array([_joint_group(n) for n in joint_names])
    in_mean = np.array([joint_phrase(n) not in MPII_NOT_IN_MEAN for n in joint_names])
    out: Dict[str, float] = {}
    for group, _ in MPII_GROUPS:
        m = groups == group
        out[group] = float(correct[m].sum() / labelled[m].sum()) if labelled[m].sum() else float("nan")
    total = labelled[in_mean].sum()
    out[f"PCKh@{thr:g}"] = float(correct[in_mean].sum() / total) if total else float("nan")
    return out


# ---- OKS-mAP --------------------------------------------------------------------------------------------------------
def oks_matrix(gt, pred, sigmas: np.ndarray, gt_boxes: Optional[Sequence] = None,
               min_visibility: int = 1) -> np.ndarray:
    """OKS of every gt person (rows) with every predicted person (columns), AI Challenger formula, over the gt
    joints with v >= ``min_visibility``."""
    gt, pred = _persons(gt), _persons(pred)
    out = np.zeros((len(gt), len(pred)))
    if not len(gt) or not len(pred):
        return out
    delta = 2.0 * np.asarray(sigmas, dtype=np.float64)
    for i, person in enumerate(gt):
        lab = person[:, 2] >= min_visibility
        if not lab.any():
            continue
        if gt_boxes is not None and len(gt_boxes):
            b = np.asarray(gt_boxes[i], dtype=np.float64)
        else:
            xy = person[lab, :2]
            b = np.r_[xy.min(0), xy.max(0)]
        s = (b[2] - b[0]) * (b[3] - b[1])
        for j, p in enumerate(pred):
            d2 = ((person[lab, :2] - p[lab, :2]) ** 2).sum(1)
            e = np.exp(-d2 / 2.0 / delta[lab] ** 2 / (s + 1.0))
            out[i, j] = float(np.mean(np.where(p[lab, 2] > 0, e, 0.0)))
    return out


def oks_map(gts: Sequence, preds: Sequence, sigmas: Sequence[float] = AIC_SIGMAS,
            gt_boxes: Optional[Sequence] = None, min_visibility: int = 1) -> Dict[str, float]:
    """``{"OKS-mAP": ...}`` over images; ``gt_boxes[i]`` are image i's person boxes (or None). The official AIC
    protocol counts visible joints only: ``min_visibility=2`` with HumanIns' COCO-style v (2 visible, 1 occluded)."""
    sigmas = np.asarray(sigmas, dtype=np.float64)
    best: List[np.ndarray] = []
    denom = 0
    for i, (gt, pred) in enumerate(zip(gts, preds)):
        gt, pred = _persons(gt), _persons(pred)
        if len(gt) and gt.shape[1] != len(sigmas):
            raise ValueError(f"image {i}: {gt.shape[1]} joints but {len(sigmas)} sigmas")
        if len(pred) and len(gt) and pred.shape[1] != gt.shape[1]:
            raise ValueError(f"image {i}: prediction has {pred.shape[1]} joints, ground truth {gt.shape[1]}")
        boxes = None if gt_boxes is None else gt_boxes[i]
        m = oks_matrix(gt, pred, sigmas, boxes, min_visibility)
        best.append(m.max(1) if m.shape[1] else np.zeros(len(gt)))
        denom += max(len(gt), len(pred))
    if denom == 0:
        return {"OKS-mAP": float("nan")}
    oks = np.concatenate(best) if best else np.zeros(0)
    aps = [float(np.sum(oks > t)) / denom for t in np.linspace(0.5, 0.95, 10)]
    return {"OKS-mAP": float(np.mean(aps))}
