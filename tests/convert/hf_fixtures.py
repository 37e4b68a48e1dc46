"""Tiny random Hugging Face models saved with ``save_pretrained``: the references for conversion and parity tests.

Sizes are deliberately odd (3 heads of 8 = width 24, image 30 with patch 6) so that a transposed or mis-split
tensor cannot pass by symmetry. Every builder returns the folder (``str``); ``*_model`` variants also return the
torch model (eval mode) for computing reference outputs.
"""
from __future__ import annotations

import os
from typing import Tuple

import torch
import transformers

VISION = dict(hidden_size=24, intermediate_size=40, num_hidden_layers=3, num_attention_heads=3, image_size=30,
              patch_size=6, num_channels=3, layer_norm_eps=1e-5, hidden_act="quick_gelu")
TEXT = dict(vocab_size=99, hidden_size=24, intermediate_size=36, num_hidden_layers=2, num_attention_heads=3,
            max_position_embeddings=16, layer_norm_eps=1e-5, hidden_act="quick_gelu", projection_dim=20,
            bos_token_id=97, eos_token_id=98, pad_token_id=98)
LLAMA = dict(vocab_size=101, hidden_size=24, intermediate_size=40, num_hidden_layers=2, num_attention_heads=3,
             num_key_value_heads=3, max_position_embeddings=16, rms_norm_eps=1e-6, rope_theta=10000.0,
             bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False, hidden_act="silu")


def _randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random values everywhere (HF inits LayerNorm to 1/0, which would hide a gamma/beta swap)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            centre = 1.0 if p.ndim == 1 and "norm" in name and name.endswith("weight") else 0.0  # norm gains
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2 + centre)
    return model.eval()


def _save(model, folder, safetensors: bool = True, max_shard_size=None) -> str:
    os.makedirs(folder, exist_ok=True)
    kwargs = {"safe_serialization": safetensors}
    if max_shard_size is not None:
        kwargs["max_shard_size"] = max_shard_size
    model.save_pretrained(str(folder), **kwargs)
    return str(folder)


def tiny_clip_model(tmp_path, kind: str = "full", seed: int = 0, safetensors: bool = True,
                    max_shard_size=None, **overrides) -> Tuple[str, torch.nn.Module]:
    """``kind``: "full" (CLIPModel), "vision" (CLIPVisionModel), "vision_proj" (CLIPVisionModelWithProjection),
    "text" (CLIPTextModelWithProjection). ``overrides`` go to both sub-configs where the field exists."""
    vision = {**VISION, **{k: v for k, v in overrides.items() if k in VISION}}
    text = {**TEXT, **{k: v for k, v in overrides.items() if k in TEXT}}
    if kind == "full":
        cfg = transformers.CLIPConfig(vision_config=vision, text_config=text, projection_dim=text["projection_dim"])
        model = transformers.CLIPModel(cfg)
    elif kind == "vision":
        model = transformers.CLIPVisionModel(transformers.CLIPVisionConfig(**vision))
    elif kind == "vision_proj":
        model = transformers.CLIPVisionModelWithProjection(transformers.CLIPVisionConfig(projection_dim=20, **vision))
    elif kind == "text":
        model = transformers.CLIPTextModelWithProjection(transformers.CLIPTextConfig(**text))
    else:
        raise ValueError(f"unknown kind {kind!r}")
    model.config._attn_implementation = "eager"  # the reference path: explicit softmax, additive masks
    _randomize(model, seed)
    folder = os.path.join(str(tmp_path), f"clip_{kind}_{seed}")
    return _save(model, folder, safetensors, max_shard_size), model


def tiny_clip(tmp_path, kind: str = "full", **kwargs) -> str:
    return tiny_clip_model(tmp_path, kind, **kwargs)[0]


def tiny_llama_model(tmp_path, sharded: bool = False, safetensors: bool = True, seed: int = 0, dtype=None,
                     **overrides) -> Tuple[str, torch.nn.Module]:
    """LLaMA with 3 heads of 8; ``sharded`` splits it into several files with an ``*.index.json``."""
    cfg = transformers.LlamaConfig(**{**LLAMA, **overrides})
    cfg._attn_implementation = "eager"
    model = _randomize(transformers.LlamaForCausalLM(cfg), seed)
    if dtype is not None:
        model = model.to(dtype)
    folder = os.path.join(str(tmp_path), f"llama_{'sharded' if sharded else 'single'}_"
                                         f"{'st' if safetensors else 'bin'}_{seed}")
    return _save(model, folder, safetensors, "6KB" if sharded else None), model


def tiny_llama(tmp_path, sharded: bool = False, safetensors: bool = True, **kwargs) -> str:
    return tiny_llama_model(tmp_path, sharded=sharded, safetensors=safetensors, **kwargs)[0]
