"""Model FLOPs of one stage-2 training step, for model FLOPs utilisation (MFU).

The usual estimate is 6 N T (N parameters, T tokens: 2 N T forward, 4 N T backward) plus attention. Stage 2 of
L-Man (eq. 8) trains only part of the model and its components see different token counts, so the estimate is
taken per weight matrix:

    FLOPs = sum_W  T_W * |W| * (2 + 2 [gradient flows into W's input] + 2 [W is trained])
          + sum_attention 3 * 4 * Lq * Lk * d          (QK^T and AV, forward once and backward twice)

with T_W the tokens that pass through W in the batch:

* vision tower (trained, eq. 1): B (1 + (S/p)^2) tokens; the patch projection has no input gradient (pixels);
* adapter (trained, eq. 2): B (Nq + Ti) tokens through SA/FFN and the cross-attention queries; the
  cross-attention keys/values project every layer's V_2k, B (1 + (S/p)^2) tokens;
* projection (trained): B Nq tokens;
* LLM (eq. 8): B L tokens (L = prefix + Nq + text); frozen layers and the frozen LM head still pass gradients
  back to the visual tokens (factor 4), the last ``trainable_llm_layers`` layers and the final norm are trained
  (factor 6). Embedding lookups, norms, activations, softmax and the optimiser are not counted (as in PaLM's MFU,
  Chowdhery et al. 2022, appendix B); attention is counted over the full Lq x Lk score matrix, which is what the
  kernels compute for a causal or padded mask.
"""
from __future__ import annotations

from typing import Dict

from lman_ms.config import LManConfig

from .sizes import StepShape


def _factor(trained: bool, input_grad: bool = True) -> int:
    return 2 + (2 if input_grad else 0) + (2 if trained else 0)


def training_step_flops(cfg: LManConfig, shape: StepShape) -> Dict[str, float]:
    """Per-component model FLOPs of one stage-2 training step, and their ``total``."""
    v, a, m = cfg.vision, cfg.adapter, cfg.llm
    b = shape.batch
    n_vis = 1 + (v.image_size // v.patch_size) ** 2
    t_vis = b * n_vis
    n_ada = a.num_query_tokens + (a.num_instruction_tokens if a.instruction_aware else 0)
    t_ada = b * n_ada
    seq = shape.prefix + a.num_query_tokens + shape.text
    t_llm = b * seq
    out: Dict[str, float] = {}

    dv, iv = v.hidden_size, v.intermediate_size
    vis_layer = 4 * dv * dv + 2 * dv * iv
    out["vision_model"] = (t_vis * v.num_hidden_layers * vis_layer * _factor(True)
                           + b * (n_vis - 1) * v.num_channels * v.patch_size ** 2 * dv * _factor(True, False)
                           + 3 * 4 * b * v.num_hidden_layers * n_vis * n_vis * dv)

    d, dkv = a.hidden_size, a.encoder_hidden_size
    per_layer = (t_ada * (4 * d * d + 2 * d * d + 2 * d * a.intermediate_size)   # SA, CA q/out, FFN
                 + t_vis * 2 * dkv * d) * _factor(True)                          # CA k/v over V_2k
    attn = 3 * 4 * b * (n_ada * n_ada * d + n_ada * n_vis * d)
    out["adapter"] = a.num_hidden_layers * (per_layer + attn)

    out["language_projection"] = b * a.num_query_tokens * d * m.hidden_size * _factor(True)

    h, inter = m.hidden_size, m.intermediate_size
    kv = (m.num_key_value_heads or m.num_attention_heads) * (h // m.num_attention_heads)
    llm_layer = 2 * h * h + 2 * h * kv + 3 * h * inter
    trained = min(cfg.train.trainable_llm_layers, m.num_hidden_layers) if cfg.train.freeze_llm \
        else m.num_hidden_layers
    frozen = m.num_hidden_layers - trained
    out["llm"] = (t_llm * llm_layer * (frozen * _factor(False) + trained * _factor(True))
                  + 3 * 4 * b * m.num_hidden_layers * seq * seq * h
                  + t_llm * h * m.vocab_size * _factor(False))  # LM head, frozen
    out["total"] = float(sum(out.values()))
    return out


def naive_6nt(num_params: int, tokens: int) -> float:
    """The rule of thumb 6 N T, reported beside the per-matrix count for comparison."""
    return 6.0 * num_params * tokens
