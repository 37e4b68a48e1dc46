"""Eq. (3)-(8) against NumPy references written from the paper's formulas."""
import numpy as np
import mindspore as ms
import pytest

from lman_ms.data.masking import IGNORE_INDEX, mask_tokens
from lman_ms.models.losses import LogitScale, causal_lm_loss, contrastive_loss, vision_grounded_mlm_loss


def _log_softmax(x, axis=-1):
    x = x - x.max(axis, keepdims=True)
    return x - np.log(np.exp(x).sum(axis, keepdims=True))


def test_contrastive_loss_is_eq_3_to_5():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    rng = np.random.default_rng(0)
    v, t = rng.standard_normal((5, 7)).astype(np.float32), rng.standard_normal((5, 7)).astype(np.float32)
    for scale in (1.0, 1 / 0.07):
        loss, sim = contrastive_loss(ms.Tensor(v), ms.Tensor(t), ms.Tensor(scale, ms.float32))
        cos = (v / np.linalg.norm(v, axis=1, keepdims=True)) @ (t / np.linalg.norm(t, axis=1, keepdims=True)).T
        p_v2l = _log_softmax(cos * scale, 1)          # eq. (3): softmax over texts k for image i
        p_l2v = _log_softmax(cos.T * scale, 1)
        l_v2l = -np.mean(np.diag(p_v2l))              # eq. (4): y_ij = 1 only for i == j
        l_l2v = -np.mean(np.diag(p_l2v))
        np.testing.assert_allclose(loss.asnumpy(), l_v2l + l_l2v, rtol=1e-5)   # eq. (5)
        np.testing.assert_allclose(sim.asnumpy(), cos * scale, rtol=1e-5, atol=1e-5)


def test_logit_scale_learnable_clamped_and_literal():
    s = LogitScale(0.07, learnable=True, max_scale=100.0)
    assert s.log_scale.requires_grad and abs(float(s().asnumpy()) - 1 / 0.07) < 1e-3
    s.log_scale.set_data(ms.Tensor([np.log(1e4)], ms.float32))
    assert abs(float(s().asnumpy()) - 100.0) < 1e-3
    literal = LogitScale(1.0, learnable=False)
    assert not literal.log_scale.requires_grad and abs(float(literal().asnumpy()) - 1.0) < 1e-6


def test_vmlm_loss_is_mean_nll_over_masked_words():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((2, 4, 6)).astype(np.float32)
    labels = np.full((2, 4), IGNORE_INDEX, np.int32)
    labels[0, 1], labels[1, 0], labels[1, 3] = 2, 5, 0
    expect = -np.mean([_log_softmax(logits[0, 1])[2], _log_softmax(logits[1, 0])[5], _log_softmax(logits[1, 3])[0]])
    got = vision_grounded_mlm_loss(ms.Tensor(logits), ms.Tensor(labels)).asnumpy()
    np.testing.assert_allclose(got, expect, rtol=1e-5)


def test_causal_lm_loss_shifts_and_ignores_non_answer_tokens():
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((1, 5, 8)).astype(np.float32)
    labels = np.array([[IGNORE_INDEX, IGNORE_INDEX, 3, 4, IGNORE_INDEX]], np.int32)
    # eq. (8): tokens 3 (position 2) and 4 (position 3) are predicted from positions 1 and 2
    expect = -np.mean([_log_softmax(logits[0, 1])[3], _log_softmax(logits[0, 2])[4]])
    np.testing.assert_allclose(causal_lm_loss(ms.Tensor(logits), ms.Tensor(labels)).asnumpy(), expect, rtol=1e-5)
    none = np.full((1, 5), IGNORE_INDEX, np.int32)
    assert float(causal_lm_loss(ms.Tensor(logits), ms.Tensor(none)).asnumpy()) == 0.0


def test_mask_tokens_80_10_10_and_specials_untouched():
    rng = np.random.default_rng(3)
    ids = rng.integers(10, 100, (400, 50)).astype(np.int32)
    ids[:, 0] = 1  # a special token (BOS)
    att = np.ones_like(ids)
    att[:, 45:] = 0
    masked, labels = mask_tokens(ids, att, vocab_size=100, rng=rng, special_ids=[1], mask_id=3)
    picked = labels != IGNORE_INDEX
    assert not picked[:, 0].any() and not picked[:, 45:].any()
    assert abs(picked.sum() / (400 * 44) - 0.15) < 0.01
    np.testing.assert_array_equal(labels[picked], ids[picked])
    frac_mask = (masked[picked] == 3).mean()
    frac_keep = (masked[picked] == ids[picked]).mean()
    assert abs(frac_mask - 0.8) < 0.03 and abs(frac_keep - 0.1) < 0.03
    np.testing.assert_array_equal(masked[~picked], ids[~picked])
    short = np.array([[1, 50, 0]], np.int32)
    _, lab = mask_tokens(short, np.array([[1, 1, 0]]), 100, np.random.default_rng(0), 0.0, special_ids=[1])
    assert lab[0, 1] == 50  # every caption gets at least one masked word
