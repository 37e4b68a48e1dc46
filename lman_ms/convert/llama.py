"""HF ``LlamaForCausalLM`` (Vicuna) <-> mindformers ``LlamaForCausalLM``: config, name table, streaming conversion.

Names (DESIGN.md section 3): ``embed_tokens`` -> ``model.tok_embeddings.embedding_weight``; ``q/k/v/o_proj`` ->
``attention.wq/wk/wv/wo``; ``gate/down/up_proj`` -> ``feed_forward.w1/w2/w3``; ``input_layernorm`` ->
``attention_norm``; ``post_attention_layernorm`` -> ``ffn_norm``; ``norm`` -> ``model.norm_out``; ``lm_head`` ->
``lm_head``. No q/k permutation: both sides rotate halves (mindformers with ``use_rope_slice=True``).

The MindSpore names are mindformers-native (what ``LlamaForCausalLM.parameters_and_names()`` gives), so the
output of :func:`load_llama_state` loads into ``lman_ms.models.llm.VicunaDecoder`` and a converted ``.ckpt`` loads
into a plain mindformers model.
"""
from __future__ import annotations

from typing import Dict, Iterator, Optional, Tuple

import numpy as np

from lman_ms.config import LLMConfig
from lman_ms.convert.common import (CheckpointError, NamedArray, cast_float, check_dtype, iter_hf_tensors,
                                    iter_ms_checkpoint, read_hf_config, write_hf_safetensors, write_ms_checkpoint)
from lman_ms.convert.mapping import WeightMap, rename

Shapes = Dict[str, Tuple[int, ...]]

_LAYER_RULES = (("attention.wq.weight", "self_attn.q_proj.weight"),
                ("attention.wk.weight", "self_attn.k_proj.weight"),
                ("attention.wv.weight", "self_attn.v_proj.weight"),
                ("attention.wo.weight", "self_attn.o_proj.weight"),
                ("feed_forward.w1.weight", "mlp.gate_proj.weight"),
                ("feed_forward.w2.weight", "mlp.down_proj.weight"),
                ("feed_forward.w3.weight", "mlp.up_proj.weight"),
                ("attention_norm.weight", "input_layernorm.weight"),
                ("ffn_norm.weight", "post_attention_layernorm.weight"))


def llama_map() -> WeightMap:
    rules = [rename("model.tok_embeddings.embedding_weight", "model.embed_tokens.weight")]
    rules += [rename(f"model.layers.{{i}}.{ms}", f"model.layers.{{i}}.{hf}") for ms, hf in _LAYER_RULES]
    rules += [rename("model.norm_out.weight", "model.norm.weight"), rename("lm_head.weight", "lm_head.weight")]
    # rotary inverse frequencies: a buffer that older transformers versions saved (Vicuna v1.1 .bin files)
    return WeightMap(rules, [r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq"])


def llama_config_from_hf(hf_dir: str) -> LLMConfig:
    """:class:`LLMConfig` from an HF LLaMA folder or ``config.json``; features mindformers' LLaMA lacks are errors."""
    raw = read_hf_config(hf_dir)
    if raw.get("model_type") != "llama":
        raise CheckpointError(f"{hf_dir}: model_type {raw.get('model_type')!r} is not 'llama'")
    for key in ("rope_scaling", "attention_bias", "mlp_bias"):
        if raw.get(key):
            raise CheckpointError(f"{hf_dir}: config key {key}={raw[key]!r} is not supported by this converter")
    heads = raw.get("num_attention_heads", 32)
    hidden = raw.get("hidden_size", 4096)
    if raw.get("head_dim") not in (None, hidden // heads):
        raise CheckpointError(f"{hf_dir}: head_dim {raw['head_dim']} != hidden_size / num_attention_heads")
    if raw.get("hidden_act", "silu") != "silu":
        raise CheckpointError(f"{hf_dir}: hidden_act {raw['hidden_act']!r} is not supported (silu)")
    defaults = LLMConfig()
    values = {f: raw[f] for f in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                   "num_attention_heads", "num_key_value_heads", "max_position_embeddings",
                                   "rms_norm_eps", "rope_theta", "bos_token_id", "eos_token_id", "pad_token_id",
                                   "tie_word_embeddings") if raw.get(f) is not None}
    if isinstance(values.get("eos_token_id"), list):  # newer configs list several stop ids; the first is EOS
        values["eos_token_id"] = values["eos_token_id"][0]
    cfg = LLMConfig(**{**{f: getattr(defaults, f) for f in ("compute_dtype", "use_flash_attention")}, **values})
    if cfg.num_key_value_heads == cfg.num_attention_heads:
        cfg.num_key_value_heads = None  # plain multi-head attention
    return cfg


def llama_param_shapes(cfg: LLMConfig) -> Shapes:
    """Shapes of mindformers ``LlamaForCausalLM`` parameters (weights are (out, in) like torch Linear)."""
    h, i, v = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    kv = (cfg.num_key_value_heads or cfg.num_attention_heads) * (h // cfg.num_attention_heads)
    layer = {"attention.wq.weight": (h, h), "attention.wk.weight": (kv, h), "attention.wv.weight": (kv, h),
             "attention.wo.weight": (h, h), "feed_forward.w1.weight": (i, h), "feed_forward.w2.weight": (h, i),
             "feed_forward.w3.weight": (i, h), "attention_norm.weight": (h,), "ffn_norm.weight": (h,)}
    shapes = {"model.tok_embeddings.embedding_weight": (v, h), "model.norm_out.weight": (h,),
              "lm_head.weight": (v, h)}
    for n in range(cfg.num_hidden_layers):
        shapes.update({f"model.layers.{n}.{k}": s for k, s in layer.items()})
    return shapes


def _with_tied_head(tensors: Iterator[NamedArray], tied: bool) -> Iterator[NamedArray]:
    """HF omits ``lm_head.weight`` when it is tied to the embeddings; mindformers always has the parameter."""
    embed, head_seen = None, False
    for name, arr in tensors:
        if tied and name == "model.embed_tokens.weight":
            embed = arr
        head_seen = head_seen or name == "lm_head.weight"
        yield name, arr
    if tied and not head_seen and embed is not None:
        yield "lm_head.weight", embed


def iter_llama_ms_tensors(hf_dir: str, dtype: Optional[str] = None, progress: bool = False
                          ) -> Iterator[NamedArray]:
    """Stream ``(mindformers name, array)`` from an HF LLaMA folder, shard by shard, every name and shape checked.

    ``dtype``: None keeps the stored dtype (bf16 is read as fp32), "fp32"/"fp16" cast; "bf16" yields fp32 arrays
    (numpy has no bf16; :func:`write_ms_checkpoint` rounds them)."""
    check_dtype(dtype)
    cfg = llama_config_from_hf(hf_dir)
    stream = _with_tied_head(iter_hf_tensors(hf_dir, progress), cfg.tie_word_embeddings)
    for name, arr in llama_map().to_ms(stream, llama_param_shapes(cfg), hf_dir):
        yield name, cast_float(arr, dtype)


def load_llama_state(hf_dir: str, dtype: Optional[str] = "fp32") -> Dict[str, np.ndarray]:
    """Every mindformers ``LlamaForCausalLM`` parameter as numpy, keyed by its native name."""
    return dict(iter_llama_ms_tensors(hf_dir, dtype))


def convert_llama_to_ms(hf_dir: str, output_path: str, dtype: str = "fp32", progress: bool = True) -> dict:
    return write_ms_checkpoint(iter_llama_ms_tensors(hf_dir, dtype, progress), output_path, dtype)


def convert_llama_to_hf(ckpt_path: str, config_path: str, output_dir: str, dtype: str = "fp32",
                       max_shard_bytes: int = 5 << 30) -> dict:
    cfg = llama_config_from_hf(config_path)
    tensors = llama_map().to_hf(iter_ms_checkpoint(ckpt_path), llama_param_shapes(cfg), ckpt_path)
    return write_hf_safetensors(tensors, output_dir, config=read_hf_config(config_path), dtype=dtype,
                                max_shard_bytes=max_shard_bytes)
