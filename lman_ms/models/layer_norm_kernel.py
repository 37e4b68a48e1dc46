"""``layer_norm_kernel.cc`` as a MindSpore ``Custom`` op with its backward: a LayerNorm for CPU training.

``fused_layer_norm()`` returns an op ``(x, gamma, beta, eps_tensor(eps)) -> y`` whose gradient is the second
kernel, or None when the kernels are unavailable: off CPU, without a compiler or a writable cache
(``lman_ms.utils.native``), or with ``LMAN_MS_NORM_KERNELS=0``. The norm cells
(:class:`lman_ms.models.layers.LayerNorm`, the ViT's :class:`MindcvLayerNorm`) use it only in training mode, where
MindSpore's CPU ``LayerNormGrad`` is the slow part; in inference they keep ``ops.LayerNorm``, so an exported MindIR
holds no custom op and runs in MindSpore Lite.
"""
from __future__ import annotations

import functools
import os
from typing import Callable, Optional

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn, ops

from lman_ms.utils import native

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "layer_norm_kernel.cc")


@functools.lru_cache(maxsize=None)
def _op(path: str):
    backward = ops.Custom(f"{path}:LmanLayerNormGrad", out_shape=lambda dy, x, g, e: (x, g, g),
                          out_dtype=lambda dy, x, g, e: (x, x, x), func_type="aot")

    def bprop(x, gamma, beta, eps, out, dout):
        # the kernel recomputes mean and rstd from x (layer_norm_kernel.cc says why)
        dx, dgamma, dbeta = backward(dout, x, gamma, eps)
        return dx, dgamma, dbeta, ops.zeros_like(eps)

    # the op carries its own bprop rather than a Cell's: MindSpore keeps cells with a custom bprop registered
    # until interpreter exit, where each one's Cell.__del__ printed an AttributeError traceback
    return ops.Custom(f"{path}:LmanLayerNorm", out_shape=lambda x, g, b, e: x, out_dtype=lambda x, g, b, e: x,
                      func_type="aot", bprop=bprop)


def eps_tensor(eps: float) -> Tensor:
    """The fused op's fourth input."""
    return Tensor(np.array([eps], np.float32))


class MindcvLayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` (mindcv's ViT builds its norms with it; parameter names ``gamma``/``beta`` kept) that trains
    with the fused kernels."""

    def __init__(self, normalized_shape, epsilon: float = 1e-7, **kwargs):
        super().__init__(normalized_shape, epsilon=epsilon, **kwargs)
        self.fused = fused_layer_norm() if len(normalized_shape) == 1 else None
        self.fused_eps = eps_tensor(epsilon)

    def construct(self, input_x):
        if self.training and self.fused is not None and input_x.dtype == ms.float32:
            return self.fused(input_x, self.gamma, self.beta, self.fused_eps)
        y, _, _ = self.layer_norm(input_x, self.gamma.astype(input_x.dtype), self.beta.astype(input_x.dtype))
        return y


def kernels_available() -> Optional[str]:
    """Path of the compiled kernels, or None (see the module docstring)."""
    if os.environ.get("LMAN_MS_NORM_KERNELS", "1") == "0" or ms.get_context("device_target") != "CPU":
        return None
    return native.build_library(SOURCE, "LayerNorm keeps MindSpore's LayerNorm / LayerNormGrad kernels")


def fused_layer_norm() -> Optional[Callable]:
    path = kernels_available()
    return None if path is None else _op(path)


__all__ = ["MindcvLayerNorm", "eps_tensor", "fused_layer_norm", "kernels_available"]
