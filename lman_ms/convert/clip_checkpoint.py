"""Whole-folder CLIP conversion (``tools/convert_weights.py --model clip``): HF folder -> one MindSpore ``.ckpt`` and
back. The expected shapes come from building the towers without weight memory, so this module sits above
``lman_ms.models``; the name tables and loaders it uses are in ``lman_ms.convert.clip``.
"""
from __future__ import annotations

from typing import Tuple

from lman_ms.convert.clip import _HF_PROJECTION_DIM, Shapes, clip_configs_from_hf, text_map, vision_map
from lman_ms.convert.common import (iter_hf_tensors, iter_ms_checkpoint, parameter_shapes, write_hf_safetensors,
                                    write_ms_checkpoint)
from lman_ms.convert.mapping import WeightMap, rename, unsqueeze
from lman_ms.models.text import CLIPTextEncoder
from lman_ms.models.vision import CLIPVisionEncoder


def _tower_shapes(factory) -> Shapes:
    from mindspore.nn.utils import no_init_parameters

    with no_init_parameters():  # names and shapes only: no weight memory for a ViT-L
        return parameter_shapes(factory())


def clip_layout(config_path: str) -> Tuple[WeightMap, Shapes, dict]:
    """The map and expected MindSpore shapes of a converted checkpoint for the HF folder/config at ``config_path``."""
    arch, vision, text, raw = clip_configs_from_hf(config_path)
    maps, shapes = [], {}
    if vision is not None:
        maps.append(vision_map().prefixed("vision_model.", ""))
        shapes.update({"vision_model." + k: v for k, v in _tower_shapes(lambda: CLIPVisionEncoder(vision)).items()})
    if text is not None:
        maps.append(text_map().prefixed("text_model.", ""))
        shapes.update({"text_model." + k: v for k, v in _tower_shapes(lambda: CLIPTextEncoder(text)).items()})
    extra = []
    if arch in ("CLIPModel", "CLIPVisionModelWithProjection"):
        proj_dim = raw.get("projection_dim", _HF_PROJECTION_DIM)
        extra.append(rename("visual_projection.weight", "visual_projection.weight"))
        shapes["visual_projection.weight"] = (proj_dim, vision.hidden_size)
    if arch == "CLIPModel":
        # a MindSpore checkpoint stores a 0-d tensor as shape (1,)
        extra.append(unsqueeze("logit_scale", "logit_scale", leading=1))
        shapes["logit_scale"] = (1,)
    return WeightMap.merge(*maps, WeightMap(extra)), shapes, raw


def convert_clip_to_ms(hf_dir: str, output_path: str, dtype: str = "fp32", progress: bool = True) -> dict:
    wmap, shapes, _ = clip_layout(hf_dir)
    return write_ms_checkpoint(wmap.to_ms(iter_hf_tensors(hf_dir, progress), shapes, hf_dir), output_path, dtype)


def convert_clip_to_hf(ckpt_path: str, config_path: str, output_dir: str, dtype: str = "fp32",
                       max_shard_bytes: int = 5 << 30) -> dict:
    wmap, shapes, raw = clip_layout(config_path)
    return write_hf_safetensors(wmap.to_hf(iter_ms_checkpoint(ckpt_path), shapes, ckpt_path), output_dir,
                                config=raw, dtype=dtype, max_shard_bytes=max_shard_bytes)


__all__ = ["clip_layout", "convert_clip_to_ms", "convert_clip_to_hf"]
