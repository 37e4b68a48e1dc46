"""Training objectives of L-Man.

Stage 1 (multi-modal representation learning): L = L_lic + lambda * L_vmlm, eq. (7), with
* L_lic, eq. (3)-(5): symmetric image-text InfoNCE between V_g (pooled visual tokens, projected) and T_g (CLIP
  text embedding), cosine similarity scaled by 1/temperature;
* L_vmlm, eq. (6): masked words predicted from [h_t ; V_g] at the masked positions.
Stage 2 (instruction tuning), eq. (8): next-token cross-entropy on the answer tokens only (labels -100 elsewhere).
"""
from __future__ import annotations

from typing import Tuple

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn, ops

from lman_ms.data.masking import IGNORE_INDEX


def _l2_normalize(x: Tensor) -> Tensor:
    return x / ops.sqrt((x * x).sum(-1, keepdims=True) + 1e-12)


def _cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy over rows whose label is not IGNORE_INDEX (0 when there are none)."""
    logits = logits.astype(ms.float32)
    valid = (labels != IGNORE_INDEX).astype(ms.float32)
    safe = ops.select(labels != IGNORE_INDEX, labels, ops.zeros_like(labels))
    logp = ops.log_softmax(logits, -1)
    nll = -ops.gather_elements(logp, -1, safe.expand_dims(-1)).squeeze(-1)
    return (nll * valid).sum() / ops.maximum(valid.sum(), ops.ones((), ms.float32))


def contrastive_loss(v_g: Tensor, t_g: Tensor, logit_scale: Tensor) -> Tuple[Tensor, Tensor]:
    """L_lic = L_v2l + L_l2v, eq. (3)-(5). ``logit_scale`` is 1/temperature (already clamped).

    Returns (loss, similarity logits (N, N)). Matched pairs are the diagonal (y_ij = 1 iff i == j). A caption that
    appears twice in a batch needs no special targets: the twin's column of ``sim`` equals its own, so spreading
    y over both would give the same loss and gradients."""
    sim = ops.matmul(_l2_normalize(v_g.astype(ms.float32)), _l2_normalize(t_g.astype(ms.float32)).T) * logit_scale
    target = ops.arange(sim.shape[0], dtype=ms.int32)
    return _cross_entropy(sim, target) + _cross_entropy(sim.T, target), sim


def vision_grounded_mlm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """L_vmlm, eq. (6): mean negative log-likelihood of the masked words. logits (N, T, V); labels (N, T) hold the
    original token at masked positions and IGNORE_INDEX elsewhere."""
    return _cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))


def causal_lm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Eq. (8): -log p(Z_a | Z_ins) averaged over answer tokens; position t predicts label t+1.

    The labels are shifted (the last position gets IGNORE_INDEX), not the logits: the same loss without copying
    the (batch, seq - 1, vocab) logits slice and its gradient, as transformers' ``ForCausalLMLoss`` does."""
    ignore = ops.fill(labels.dtype, (labels.shape[0], 1), IGNORE_INDEX)
    shift_labels = ops.concat((labels[:, 1:], ignore), axis=1)
    return _cross_entropy(logits.reshape(-1, logits.shape[-1]), shift_labels.reshape(-1))


class LogitScale(nn.Cell):
    """1/temperature for L_lic: learnable (init 1/0.07, clamped to ``max_scale`` as CLIP does) or fixed.
    ``temperature=1.0, learnable=False`` is eq. (3) literally (plain cosine similarity)."""

    def __init__(self, temperature: float = 0.07, learnable: bool = True, max_scale: float = 100.0):
        super().__init__()
        # shape (1,), not (): the fused AdamWeightDecay kernel rejects 0-d parameters
        self.log_scale = ms.Parameter(Tensor([np.log(1.0 / temperature)], ms.float32), name="log_scale",
                                      requires_grad=learnable)
        self.max_log = float(np.log(max_scale))

    def construct(self):
        return ops.exp(ops.clamp(self.log_scale, max=self.max_log)).reshape(())
