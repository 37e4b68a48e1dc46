"""Transformer building blocks with Hugging Face parameter names, in classic ``mindspore.nn``/``ops``.

Why not ``nn.LayerNorm`` / ``nn.Embedding``: their parameters are called ``gamma``/``beta``/``embedding_table``;
keeping HF's ``weight``/``bias`` makes weight conversion the identity map. Why not ``mint``: several ``mint``
kernels (LayerNormExt, Embedding backward) are missing on CPU.
"""
from __future__ import annotations

from typing import Optional

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import Normal, initializer

from .layer_norm_kernel import eps_tensor, fused_layer_norm


class LayerNorm(nn.Cell):
    """LayerNorm over the last axis with HF names ``weight`` and ``bias``."""

    def __init__(self, hidden_size: int, eps: float = 1e-5):
        super().__init__()
        self.weight = Parameter(initializer("ones", (hidden_size,), ms.float32), name="weight")
        self.bias = Parameter(initializer("zeros", (hidden_size,), ms.float32), name="bias")
        self.norm = ops.LayerNorm(begin_norm_axis=-1, begin_params_axis=-1, epsilon=eps)
        self.fused = fused_layer_norm()        # CPU training only (layer_norm_kernel.py says why)
        self.fused_eps = eps_tensor(eps)

    def construct(self, x):
        if self.training and self.fused is not None and x.dtype == ms.float32:
            return self.fused(x, self.weight, self.bias, self.fused_eps)
        return self.norm(x, self.weight, self.bias)[0]


class Embedding(nn.Cell):
    """Lookup table with the HF name ``weight`` of shape (num, dim)."""

    def __init__(self, num: int, dim: int, init_std: float = 0.02):
        super().__init__()
        self.weight = Parameter(initializer(Normal(init_std), (num, dim), ms.float32), name="weight")
        self.gather = ops.Gather()

    def construct(self, ids):
        return self.gather(self.weight, ids, 0)


class QuickGELU(nn.Cell):
    """CLIP's activation: x * sigmoid(1.702 x)."""

    def construct(self, x):
        return x * ops.sigmoid(1.702 * x)


def activation(name: str) -> nn.Cell:
    if name == "quick_gelu":
        return QuickGELU()
    if name == "gelu":
        return nn.GELU(approximate=False)
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return nn.GELU(approximate=True)
    raise ValueError(f"unsupported hidden_act {name!r} (quick_gelu, gelu, gelu_new)")


class CLIPAttention(nn.Cell):
    """Multi-head attention as in HF ``CLIPAttention``; with ``kv_dim`` it is cross-attention (keys and values
    projected from another width, e.g. the ViT's 1024 into the adapter's 768).

    ``attn_mask`` is additive and broadcastable to (batch, heads, q_len, kv_len): 0 where allowed, a large negative
    number where not."""

    def __init__(self, hidden_size: int, num_heads: int, kv_dim: Optional[int] = None):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}")
        kv_dim = kv_dim or hidden_size
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.scale = self.head_dim ** -0.5
        self.q_proj = nn.Dense(hidden_size, hidden_size)
        self.k_proj = nn.Dense(kv_dim, hidden_size)
        self.v_proj = nn.Dense(kv_dim, hidden_size)
        self.out_proj = nn.Dense(hidden_size, hidden_size)
        self.softmax = nn.Softmax(axis=-1)

    def _heads(self, x):
        b, t, _ = x.shape
        return x.reshape(b, t, self.num_heads, self.head_dim).transpose(0, 2, 1, 3)

    def construct(self, hidden_states, key_value_states=None, attn_mask=None):
        kv = hidden_states if key_value_states is None else key_value_states
        q = self._heads(self.q_proj(hidden_states) * self.scale)
        k = self._heads(self.k_proj(kv))
        v = self._heads(self.v_proj(kv))
        scores = ops.matmul(q, k.transpose(0, 1, 3, 2))
        if attn_mask is not None:
            scores = scores + attn_mask
        probs = self.softmax(scores.astype(ms.float32)).astype(v.dtype)
        out = ops.matmul(probs, v).transpose(0, 2, 1, 3)
        b, t = out.shape[0], out.shape[1]
        return self.out_proj(out.reshape(b, t, self.num_heads * self.head_dim))


class CLIPMLP(nn.Cell):
    def __init__(self, hidden_size: int, intermediate_size: int, hidden_act: str = "quick_gelu"):
        super().__init__()
        self.fc1 = nn.Dense(hidden_size, intermediate_size)
        self.act = activation(hidden_act)
        self.fc2 = nn.Dense(intermediate_size, hidden_size)

    def construct(self, x):
        return self.fc2(self.act(self.fc1(x)))


class CLIPEncoderLayer(nn.Cell):
    """Pre-LN transformer layer with HF CLIP names: layer_norm1 -> self_attn -> residual -> layer_norm2 -> mlp."""

    def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int, eps: float = 1e-5,
                 hidden_act: str = "quick_gelu"):
        super().__init__()
        self.layer_norm1 = LayerNorm(hidden_size, eps)
        self.self_attn = CLIPAttention(hidden_size, num_heads)
        self.layer_norm2 = LayerNorm(hidden_size, eps)
        self.mlp = CLIPMLP(hidden_size, intermediate_size, hidden_act)

    def construct(self, hidden_states, attn_mask=None):
        h = hidden_states + self.self_attn(self.layer_norm1(hidden_states), None, attn_mask)
        return h + self.mlp(self.layer_norm2(h))


NEG_INF = -1e9  # additive mask value; finite so that fully masked rows stay NaN-free in fp32/fp16


def padding_mask(mask: Tensor) -> Tensor:
    """(batch, kv_len) 1/0 keep mask -> additive (batch, 1, 1, kv_len)."""
    return ((1.0 - mask.astype(ms.float32)) * NEG_INF).reshape(mask.shape[0], 1, 1, mask.shape[1])


def causal_mask(length: int) -> Tensor:
    """Additive (1, 1, length, length) mask hiding future positions."""
    m = np.triu(np.full((length, length), NEG_INF, np.float32), k=1)
    return Tensor(m.reshape(1, 1, length, length))
