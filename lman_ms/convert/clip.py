"""HF CLIP <-> lman_ms CLIP towers: the name table (both directions) and the weight loaders behind ``from_hf``.

Vision (HF ``CLIPVisionModel`` -> mindcv ``VisionTransformer`` names, DESIGN.md section 3): ``class_embedding``
(D,) -> ``cls_token`` (1, 1, D); ``position_embedding.weight`` (N+1, D) -> ``pos_embed`` (1, N+1, D);
``patch_embedding`` -> ``patch_embed.proj``; ``pre_layrnorm`` -> ``norm_pre``; ``q/k/v_proj`` concatenated ->
``attn.qkv``; ``out_proj`` -> ``attn.proj``; ``layer_norm1/2`` -> ``norm1/2``; ``post_layernorm`` -> ``norm``
(mindcv LayerNorm calls weight/bias ``gamma``/``beta``).
Text: identity after dropping ``text_model.`` (the MindSpore tower keeps HF names); ``text_projection`` stays.

A converted full ``CLIPModel`` checkpoint (``tools/convert_weights.py --model clip``) holds ``vision_model.<mindcv
name>``, ``text_model.<HF text name>`` (including ``text_model.text_projection.weight``), ``visual_projection.weight``
and ``logit_scale`` (shape (1,): MindSpore checkpoints have no 0-d tensors); a single-tower folder gives only its
tower's prefix. These prefixes are the attribute names of the towers in ``lman_ms.models.lman``, and
:func:`load_tower_checkpoint` loads one tower from such a file. Writing such a file needs the towers' shapes, hence
the models: that half is ``lman_ms.convert.clip_checkpoint``, so that this module stays below ``lman_ms.models``.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

from lman_ms.config import TextConfig, VisionConfig
from lman_ms.convert.common import (CheckpointError, assign_parameters, iter_hf_tensors, iter_ms_checkpoint,
                                    parameter_shapes, read_hf_config)
from lman_ms.convert.mapping import WeightMap, concat, rename, unsqueeze

Shapes = Dict[str, Tuple[int, ...]]

# HF config defaults (CLIPVisionConfig / CLIPTextConfig): old config.json files only list non-default values.
_HF_VISION_DEFAULTS = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                           image_size=224, patch_size=32, num_channels=3, layer_norm_eps=1e-5,
                           hidden_act="quick_gelu")
_HF_TEXT_DEFAULTS = dict(vocab_size=49408, hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                         num_attention_heads=8, max_position_embeddings=77, layer_norm_eps=1e-5,
                         hidden_act="quick_gelu", projection_dim=512, bos_token_id=49406, eos_token_id=49407,
                         pad_token_id=1)
_HF_PROJECTION_DIM = 512

_LN = (("weight", "gamma"), ("bias", "beta"))


def _vision_rules():
    rules = [unsqueeze("cls_token", "embeddings.class_embedding", leading=2),
             unsqueeze("pos_embed", "embeddings.position_embedding.weight", leading=1),
             rename("patch_embed.proj.weight", "embeddings.patch_embedding.weight")]
    rules += [rename(f"norm_pre.{ms}", f"pre_layrnorm.{hf}") for hf, ms in _LN]
    layer = "encoder.layers.{i}."
    for p in ("weight", "bias"):
        rules.append(concat(f"blocks.{{i}}.attn.qkv.{p}", *(f"{layer}self_attn.{x}_proj.{p}" for x in "qkv")))
        rules.append(rename(f"blocks.{{i}}.attn.proj.{p}", f"{layer}self_attn.out_proj.{p}"))
        rules += [rename(f"blocks.{{i}}.mlp.{fc}.{p}", f"{layer}mlp.{fc}.{p}") for fc in ("fc1", "fc2")]
    for n in ("1", "2"):
        rules += [rename(f"blocks.{{i}}.norm{n}.{ms}", f"{layer}layer_norm{n}.{hf}") for hf, ms in _LN]
    rules += [rename(f"norm.{ms}", f"post_layernorm.{hf}") for hf, ms in _LN]
    return rules


def _text_rules():
    names = ["embeddings.token_embedding.weight", "embeddings.position_embedding.weight"]
    for p in ("weight", "bias"):
        names += [f"encoder.layers.{{i}}.self_attn.{x}_proj.{p}" for x in ("q", "k", "v", "out")]
        names += [f"encoder.layers.{{i}}.{m}.{p}" for m in ("layer_norm1", "layer_norm2", "mlp.fc1", "mlp.fc2")]
        names.append(f"final_layer_norm.{p}")
    return [rename(n, n) for n in names]


# buffers saved by older transformers versions; never parameters
_BUFFERS = (r"vision_model\.embeddings\.position_ids", r"text_model\.embeddings\.position_ids")


def vision_map() -> WeightMap:
    """mindcv ViT names <-> HF ``vision_model.*`` names."""
    return WeightMap(_vision_rules(), [_BUFFERS[0]]).prefixed("", "vision_model.")


def text_map() -> WeightMap:
    """lman_ms text names <-> HF ``text_model.*`` + ``text_projection.weight``."""
    tower = WeightMap(_text_rules(), [_BUFFERS[1]]).prefixed("", "text_model.")
    return WeightMap.merge(tower, WeightMap([rename("text_projection.weight", "text_projection.weight")]))


# ---- configs -----------------------------------------------------------------------------------------------------
def _pick(section: dict, defaults: dict, cls, extra: Optional[dict] = None):
    values = {k: section.get(k, v) for k, v in defaults.items()}
    values.update(extra or {})
    return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})


def clip_configs_from_hf(path: str) -> Tuple[str, Optional[VisionConfig], Optional[TextConfig], dict]:
    """``(architecture, vision, text, raw config)`` from an HF folder or ``config.json``; a tower the folder does
    not hold is None. ``architecture`` is the HF class name (``CLIPModel``, ``CLIPVisionModel``, ...)."""
    raw = read_hf_config(path)
    model_type = raw.get("model_type")
    arch = (raw.get("architectures") or [None])[0]
    if model_type == "clip":
        vision = _pick(raw.get("vision_config") or {}, _HF_VISION_DEFAULTS, VisionConfig)
        # CLIPModel sizes both projections with its own top-level projection_dim
        text = _pick(raw.get("text_config") or {}, _HF_TEXT_DEFAULTS, TextConfig,
                     {"projection_dim": raw.get("projection_dim", _HF_PROJECTION_DIM)})
        return arch or "CLIPModel", vision, text, raw
    if model_type == "clip_vision_model":
        return arch or "CLIPVisionModel", _pick(raw, _HF_VISION_DEFAULTS, VisionConfig), None, raw
    if model_type == "clip_text_model":
        return arch or "CLIPTextModelWithProjection", None, _pick(raw, _HF_TEXT_DEFAULTS, TextConfig), raw
    raise CheckpointError(f"{path}: model_type {model_type!r} is not a CLIP model "
                          "(clip, clip_vision_model, clip_text_model)")


# ---- from_hf -----------------------------------------------------------------------------------------------------
def vision_weights_map() -> WeightMap:
    """:func:`vision_map` that skips what a CLIPModel folder holds besides the vision tower."""
    return vision_map().ignoring(r"text_model\..*", r"text_projection\.weight", r"visual_projection\.weight",
                                 r"logit_scale")


def text_weights_map() -> WeightMap:
    """:func:`text_map` that skips what a CLIPModel folder holds besides the text tower."""
    return text_map().ignoring(r"vision_model\..*", r"visual_projection\.weight", r"logit_scale")


def load_vision_weights(cell, hf_dir: str, progress: bool = False) -> int:
    """Load an HF CLIP folder's vision tower into an existing ``CLIPVisionEncoder`` (e.g. ``LMan.vision_model``);
    returns the number of parameters set."""
    tensors = vision_weights_map().to_ms(iter_hf_tensors(hf_dir, progress), parameter_shapes(cell), hf_dir)
    return assign_parameters(cell, tensors, hf_dir)


def load_text_weights(cell, hf_dir: str, progress: bool = False) -> int:
    """Load an HF CLIP folder's text tower (with ``text_projection``) into an existing ``CLIPTextEncoder``."""
    tensors = text_weights_map().to_ms(iter_hf_tensors(hf_dir, progress), parameter_shapes(cell), hf_dir)
    return assign_parameters(cell, tensors, hf_dir)


def load_tower_checkpoint(cell, ckpt_path: str, prefix: str) -> int:
    """Load the ``prefix`` part (``"vision_model."`` / ``"text_model."``) of a converted CLIP ``.ckpt`` into a tower;
    the rest of the file is skipped. Missing, unexpected or mis-shaped parameters are errors naming them."""
    shapes = parameter_shapes(cell)
    identity = WeightMap([rename(n, n) for n in shapes])
    tensors = ((k[len(prefix):], v) for k, v in iter_ms_checkpoint(ckpt_path) if k.startswith(prefix))
    return assign_parameters(cell, identity.to_ms(tensors, shapes, f"{ckpt_path} [{prefix}*]"), ckpt_path)


__all__ = ["vision_map", "text_map", "vision_weights_map", "text_weights_map", "clip_configs_from_hf",
           "load_vision_weights", "load_text_weights", "load_tower_checkpoint"]
