"""CLIP vision encoder, eq. (1): V_0..V_2m = the hidden state after the embeddings and after every layer.

Built on ``mindcv.models.vit.VisionTransformer`` with CLIP's choices: pre-norm (``norm_pre`` = HF
``pre_layrnorm``), no patch bias, QuickGELU, LayerNorm eps from the config. ``construct`` returns the same tuple as
HF ``CLIPVisionModel(..., output_hidden_states=True).hidden_states``; mindcv's final ``norm`` (HF
``post_layernorm``) is kept for weight round trips and :meth:`pooled_output` but is not part of the hidden states.

Multi-resolution (each HumanIns task has its own input size): when the patch grid differs from the trained one,
the patch position embeddings are resampled with the bicubic kernel of ``torch.nn.functional.interpolate(...,
mode="bicubic", align_corners=False)``, as HF ``interpolate_pos_encoding`` does. The kernel is applied as two small
interpolation matrices built from shape constants with plain ops, so it compiles in GRAPH_MODE for any size (mindcv's
own ``resample_abs_pos_embed`` is nearest-neighbour).
"""
from __future__ import annotations

from functools import partial
from typing import Tuple

import mindspore as ms
import numpy as np
from mindspore import Tensor, ops
from mindcv.models.layers.mlp import Mlp
from mindcv.models.vit import VisionTransformer

from lman_ms.config import VisionConfig
from lman_ms.models.layer_norm_kernel import MindcvLayerNorm
from lman_ms.models.layers import activation

_CUBIC_A = -0.75  # torch's bicubic coefficient (PIL/OpenCV-style kernels use -0.5)


def _cubic_near(t):
    """Keys kernel for |x| <= 1."""
    return ((_CUBIC_A + 2.0) * t - (_CUBIC_A + 3.0)) * t * t + 1.0


def _cubic_far(t):
    """Keys kernel for 1 < |x| < 2."""
    return ((_CUBIC_A * t - 5.0 * _CUBIC_A) * t + 8.0 * _CUBIC_A) * t - 4.0 * _CUBIC_A


def bicubic_matrix(in_size: int, out_size: int):
    """(out_size, in_size) matrix M with ``M @ v`` = torch bicubic resize of ``v`` (align_corners=False).

    Source coordinate (i + 0.5) * in/out - 0.5 is not clamped (torch does not clamp for cubic); the four taps
    floor(src) - 1 .. floor(src) + 2 are clamped to the border, so border taps accumulate on the edge sample."""
    src = (ops.arange(out_size).astype(ms.float32) + 0.5) * (in_size / out_size) - 0.5
    base = ops.floor(src)
    t = src - base
    weights = (_cubic_far(t + 1.0), _cubic_near(t), _cubic_near(1.0 - t), _cubic_far(2.0 - t))
    cols = ops.arange(in_size).astype(ms.float32).reshape(1, in_size)
    matrix = ops.zeros((out_size, in_size), ms.float32)
    for k in range(4):
        tap = ops.clamp(base + (k - 1), 0.0, float(in_size - 1)).reshape(out_size, 1)
        matrix = matrix + (tap == cols).astype(ms.float32) * weights[k].reshape(out_size, 1)
    return matrix


def sincos_position_embedding(dim: int, grid: int) -> np.ndarray:
    """(1 + grid * grid, dim) 2-D sine-cosine position embeddings (MAE's ``get_2d_sincos_pos_embed``; zeros for the
    class token): half the channels encode the column, half the row, at geometric frequencies.

    A ViT trained from scratch that starts from small random position embeddings (std 0.02, beside patch tokens
    of norm ~1) keeps where a patch is only in the token's index, not in its content: a cross-attention, which
    averages contents, then loses location (docs/localisation.md). At unit scale a token's content says where it
    is from the first step."""
    if dim % 4:
        raise ValueError(f"sin-cos position embeddings need a width divisible by 4, got {dim}")
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim // 4))
    ys, xs = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64), indexing="ij")

    def encode(pos):
        angles = pos.reshape(-1)[:, None] * omega[None]
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)
    patches = np.concatenate([encode(xs), encode(ys)], axis=1)
    return np.concatenate([np.zeros((1, dim)), patches]).astype(np.float32)


class CLIPVisionEncoder(VisionTransformer):
    """CLIP ViT returning all ``num_hidden_layers + 1`` hidden states (paper eq. 1).

    Parameter names are mindcv's (``cls_token``, ``pos_embed``, ``patch_embed.proj``, ``norm_pre``,
    ``blocks.{i}.attn.qkv`` ...); :mod:`lman_ms.convert.clip` maps them to and from HF ``CLIPVisionModel``."""

    def __init__(self, config: VisionConfig):
        # mindcv sizes the MLP as int(dim * mlp_ratio); pass the exact width so any intermediate_size works.
        mlp_layer = partial(_FixedWidthMlp, width=config.intermediate_size)
        super().__init__(
            image_size=config.image_size, patch_size=config.patch_size, in_channels=config.num_channels,
            embed_dim=config.hidden_size, depth=config.num_hidden_layers, num_heads=config.num_attention_heads,
            qkv_bias=True, pre_norm=True,  # pre_norm also drops the patch bias, as in CLIP
            act_layer=partial(activation, config.hidden_act),
            norm_layer=partial(MindcvLayerNorm, epsilon=config.layer_norm_eps),
            mlp_layer=mlp_layer, num_classes=0, global_pool="token")
        self.config = config
        self.grid = config.image_size // config.patch_size
        if config.position_embedding_init == "sincos":
            self.pos_embed.set_data(Tensor(sincos_position_embedding(config.hidden_size, self.grid)[None],
                                           self.pos_embed.dtype))

    def _position_embeddings(self, height: int, width: int):
        """(1, 1 + height * width, D) position embeddings for a height x width patch grid."""
        if height == self.grid and width == self.grid:
            return self.pos_embed
        dim = self.pos_embed.shape[-1]
        cls_pos = self.pos_embed[:, :1]
        grid = self.pos_embed[0, 1:].astype(ms.float32).reshape(self.grid, self.grid * dim)
        rows = ops.matmul(bicubic_matrix(self.grid, height), grid).reshape(height, self.grid, dim)
        # (1, W, g) @ (H, g, D) -> (H, W, D): the same column matrix for every row
        cols = ops.matmul(bicubic_matrix(self.grid, width).reshape(1, width, self.grid), rows)
        patch_pos = cols.reshape(1, height * width, dim).astype(self.pos_embed.dtype)
        return ops.concat((cls_pos, patch_pos), axis=1)

    def _patch_tokens(self, pixel_values):
        """(B, C, H, W) -> ((B, (H//p)(W//p), D) patch tokens, H//p, W//p): the stride-p convolution
        ``patch_embed.proj`` (same weight, trailing pixels dropped like HF's conv) computed as one matmul over the
        unfolded patches. Same result to float rounding; MindSpore's CPU Conv2d kernel is ~30x slower on this
        kernel = stride = p convolution (0.19 s vs 6 ms for 4 x 3 x 112 x 112, p = 14, D = 256)."""
        p = self.config.patch_size
        b, c, height, width = pixel_values.shape
        h, w = height // p, width // p
        if h * p != height or w * p != width:  # static shapes: decided at compile time (a slice costs on CPU)
            pixel_values = pixel_values[:, :, :h * p, :w * p]
        x = pixel_values.reshape(b, c, h, p, w, p).transpose(0, 2, 4, 1, 3, 5)
        weight = self.patch_embed.proj.weight  # (D, C, p, p)
        weight = weight.reshape(weight.shape[0], c * p * p).astype(x.dtype)
        return ops.matmul(x.reshape(b, h * w, c * p * p), weight.T), h, w

    def construct(self, pixel_values) -> Tuple:
        """pixel_values (B, C, H, W), any H, W >= patch size -> tuple of (B, 1 + (H//p)(W//p), D) states."""
        x, h, w = self._patch_tokens(pixel_values)
        b, d = x.shape[0], x.shape[2]
        cls = ops.broadcast_to(self.cls_token.astype(x.dtype), (b, 1, d))
        x = ops.concat((cls, x), axis=1) + self._position_embeddings(h, w).astype(x.dtype)
        x = self.norm_pre(x)
        states = (x,)
        for block in self.blocks:
            x = block(x)
            states = states + (x,)
        return states

    def pooled_output(self, last_hidden_state):
        """HF ``pooler_output``: post-layernorm of the class token."""
        return self.norm(last_hidden_state[:, 0])

    @classmethod
    def from_hf(cls, hf_dir: str, progress: bool = False) -> "CLIPVisionEncoder":
        """Build from an HF ``CLIPVisionModel`` / ``CLIPVisionModelWithProjection`` / ``CLIPModel`` folder."""
        from lman_ms.convert.clip import clip_configs_from_hf, load_vision_weights
        from lman_ms.convert.common import CheckpointError

        _, config, _, _ = clip_configs_from_hf(hf_dir)
        if config is None:
            raise CheckpointError(f"{hf_dir}: a CLIP text model folder has no vision tower")
        model = cls(config)
        load_vision_weights(model, hf_dir, progress)
        return model


class _FixedWidthMlp(Mlp):
    def __init__(self, in_features, hidden_features=None, act_layer=None, drop=0.0, width=None):
        super().__init__(in_features=in_features, hidden_features=width, act_layer=act_layer, drop=drop)
