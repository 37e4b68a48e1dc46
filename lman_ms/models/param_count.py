"""Parameter counts per component from the config alone, so the 7B model can be sized without allocating it.

The formulas are checked against the real cells on the tiny config (tests/models/test_param_count.py)."""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict

from lman_ms.config import LManConfig


def _dense(i: int, o: int, bias: bool = True) -> int:
    return i * o + (o if bias else 0)


def _clip_layer(d: int, inter: int) -> int:
    return 4 * _dense(d, d) + 2 * 2 * d + _dense(d, inter) + _dense(inter, d)


def vision_params(cfg: LManConfig) -> int:
    v = cfg.vision
    n_patches = (v.image_size // v.patch_size) ** 2
    embed = v.num_channels * v.patch_size ** 2 * v.hidden_size + v.hidden_size + (n_patches + 1) * v.hidden_size
    return embed + 2 * v.hidden_size + v.num_hidden_layers * _clip_layer(v.hidden_size, v.intermediate_size) \
        + 2 * v.hidden_size


def text_params(cfg: LManConfig) -> int:
    t = cfg.text
    embed = (t.vocab_size + t.max_position_embeddings) * t.hidden_size
    return embed + t.num_hidden_layers * _clip_layer(t.hidden_size, t.intermediate_size) + 2 * t.hidden_size \
        + _dense(t.hidden_size, t.projection_dim, bias=False)


def adapter_params(cfg: LManConfig) -> int:
    a, d, dv = cfg.adapter, cfg.adapter.hidden_size, cfg.adapter.encoder_hidden_size
    layer = (4 * _dense(d, d) + 2 * d                                   # SA_k + layer_norm1
             + 2 * _dense(d, d) + 2 * _dense(dv, d) + 2 * d + 2 * dv    # CA_k + its two layer norms
             + _dense(d, a.intermediate_size) + _dense(a.intermediate_size, d) + 2 * d)  # FFN_k + layer_norm2
    embed = a.num_query_tokens * d
    if a.instruction_aware:
        embed += (cfg.text.vocab_size + a.num_instruction_tokens) * d
    return embed + a.num_hidden_layers * layer + 2 * d


def llm_params(cfg: LManConfig) -> int:
    m = cfg.llm
    h, kv = m.hidden_size, m.num_key_value_heads or m.num_attention_heads
    kv_dim = h // m.num_attention_heads * kv
    layer = 2 * h * h + 2 * h * kv_dim + 3 * h * m.intermediate_size + 2 * h
    head = 0 if m.tie_word_embeddings else m.vocab_size * h
    return m.vocab_size * h + m.num_hidden_layers * layer + h + head


def count_parameters(cfg: LManConfig, stage: int = 2) -> Dict[str, int]:
    """{component: parameters} for the parts ``LMan(cfg, stage)`` builds, named as its attributes."""
    out = OrderedDict(vision_model=vision_params(cfg), adapter=adapter_params(cfg))
    if stage == 1:
        e, tw = cfg.loss.embed_dim, cfg.text.hidden_size
        out["text_model"] = text_params(cfg)
        out["vision_proj"] = _dense(cfg.adapter.hidden_size, e)
        out["logit_scale"] = 1
        out["vmlm_head"] = _dense(tw + e, tw) + 2 * tw + _dense(tw, cfg.text.vocab_size)
    else:
        out["language_projection"] = _dense(cfg.adapter.hidden_size, cfg.llm.hidden_size)
        out["llm"] = llm_params(cfg)
    return out
