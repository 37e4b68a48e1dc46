"""PCKh (MPII) and OKS-mAP (AI Challenger) against hand-computed values."""
import math

import numpy as np
import pytest

from lman_ms.eval.metrics.pose import AIC_SIGMAS, oks_map, oks_matrix, pckh, pckh_image

NAMES = ["head_top", "r_shoulder", "pelvis"]
HEAD = [0, 0, 30, 40]  # diagonal 50 -> head size 0.6 * 50 = 30 -> PCKh@0.5 radius 15 px


def test_pckh_pairs_persons_and_counts_misses():
    gt1 = [[100, 100, 2], [120, 150, 2], [130, 200, 2]]
    gt2 = [[300, 100, 2], [320, 150, 1], [0, 0, 0]]
    # answer order is reversed; B's head top is exactly on the radius (15 px), its shoulder not given
    pred_a = [[305, 100, 1], [320, 170, 1], [0, 0, 0]]   # gt2: head 5 px (ok), shoulder 20 px (wrong)
    pred_b = [[100, 115, 1], [0, 0, 0], [130, 200, 1]]   # gt1: head 15 px (ok), pelvis exact (ok)
    c, n = pckh_image([gt1, gt2], [HEAD, HEAD], [pred_a, pred_b])
    assert c.tolist() == [2, 0, 1] and n.tolist() == [2, 2, 1]
    # a second image whose person gets no answer: all its labelled joints are wrong
    out = pckh([[gt1, gt2], [gt1]], [[HEAD, HEAD], [HEAD]], [[pred_a, pred_b], []], NAMES)
    assert out["Head"] == pytest.approx(2 / 3)
    assert out["Shoulder"] == 0.0
    assert math.isnan(out["Elbow"])
    assert out["PCKh@0.5"] == pytest.approx(2 / 6)  # pelvis is left out of the mean


def test_pckh_extra_predictions_are_free_and_shapes_checked():
    gt = [[[10, 10, 2], [20, 20, 2], [30, 30, 2]]]
    far = [[500, 500, 1]] * 3
    out = pckh([gt], [[HEAD]], [[far, gt[0]]], NAMES)
    assert out["PCKh@0.5"] == 1.0
    with pytest.raises(ValueError, match="head boxes"):
        pckh_image(gt, [HEAD, HEAD], [])


def test_oks_map_hand_computed():
    sig = [0.1, 0.1]
    gt = [[[0, 0, 2], [10, 10, 2]]]
    box = [[0, 0, 10, 10]]  # s = 100; 2 (s + 1) delta^2 = 2 * 101 * 0.04 = 8.08
    pred = [[0, 0, 1], [10, 11, 1]]
    oks = (1 + math.exp(-1 / 8.08)) / 2  # 0.9418: above every threshold but .95
    assert oks_matrix(gt, [pred], np.array(sig), box)[0, 0] == pytest.approx(oks)
    assert oks_map([gt], [[pred]], sig, [box])["OKS-mAP"] == pytest.approx(0.9)
    far = [[900, 900, 1], [900, 900, 1]]
    assert oks_map([gt], [[pred, far]], sig, [box])["OKS-mAP"] == pytest.approx(0.45)  # max(#gt, #pred) = 2
    assert oks_map([gt, gt], [[pred, far], []], sig, [box, box])["OKS-mAP"] == pytest.approx(0.3)
    missing = [[0, 0, 1], [0, 0, 0]]  # a joint not given scores 0: OKS .5 is not > .5
    assert oks_map([gt], [[missing]], sig, [box])["OKS-mAP"] == 0.0
    assert math.isnan(oks_map([], [])["OKS-mAP"])
    # without a box, s is the area around the labelled joints (here the same 10 x 10)
    assert oks_map([gt], [[pred]], sig)["OKS-mAP"] == pytest.approx(0.9)
    # no gt person but a prediction: one false positive in the denominator
    assert oks_map([gt, []], [[pred], [pred]], sig, [box, []])["OKS-mAP"] == pytest.approx(0.45)


def test_aic_sigmas_formula():
    rng = np.random.default_rng(0)
    gt = np.concatenate([rng.uniform(0, 200, (1, 14, 2)), np.full((1, 14, 1), 2.0)], -1)
    gt[0, 3, 2] = 0  # an unlabelled joint does not count
    pred = gt.copy()
    pred[..., :2] += rng.normal(0, 3, (1, 14, 2))
    box = [0, 0, 200, 150]
    lab = gt[0, :, 2] > 0
    d2 = ((gt[0, lab, :2] - pred[0, lab, :2]) ** 2).sum(1)
    expected = np.mean(np.exp(-d2 / (2 * (200 * 150 + 1) * (2 * AIC_SIGMAS[lab]) ** 2)))
    assert oks_matrix(gt, pred, AIC_SIGMAS, [box])[0, 0] == pytest.approx(expected)


def test_oks_visible_joints_only():
    sig = [0.1, 0.1]
    gt = [[[0, 0, 2], [10, 10, 1]]]  # the second joint is labelled but occluded
    box = [[0, 0, 10, 10]]
    pred = [[0, 0, 1], [90, 90, 1]]  # far off on the occluded joint
    assert oks_map([gt], [[pred]], sig, [box])["OKS-mAP"] == 0.0  # all labelled joints: OKS ~ .5
    assert oks_map([gt], [[pred]], sig, [box], min_visibility=2)["OKS-mAP"] == 1.0  # AIC: visible only, OKS 1
