"""Fused LLaMA decode-step kernels for CPU (``decode_kernels.cc``) as MindSpore ``Custom`` ops, built on first use.

Why, measured on the generation benchmark's LLaMA (4 x 512, vocab 32000), batch 1, 1 thread, machine shared: with
the in-place cache, a decode step ran ~207 MindSpore ops in ~15 ms; its matrix-vector products took ~10-14 ms in
MindSpore's MatMul (oneDNN), ~9 ms in PyTorch's MKL, and the other ~180 ops ~4 ms, mostly per-op dispatch. The
kernels here stream each weight row once (as fast as MKL) and fuse each layer into ~10 ops: ~10 ms per step.

Large products are shared by rows with helper threads: ``$LMAN_MS_KERNEL_THREADS`` threads in all, else
``$OMP_NUM_THREADS`` (the variable ``tools/benchmark.py`` sets per framework), else the cores up to 8. MindSpore's
``op_tuning.threads_num`` cannot be read back, so it is not followed.

The source is compiled once per machine on first use (``lman_ms.utils.native``). Without a compiler or a writable
cache, on a non-CPU device, or with ``LMAN_MS_DECODE_KERNELS=0``, ``load_decode_kernels`` returns None and the
decode step keeps mindformers' cells.
"""
from __future__ import annotations

import os
from typing import NamedTuple, Optional

import mindspore as ms
from mindspore import ops

from lman_ms.utils import native

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "decode_kernels.cc")


def build_library() -> Optional[str]:
    """Path of the compiled ``decode_kernels.cc`` (built if missing), or None when it cannot be built."""
    return native.build_library(SOURCE, "decoding keeps mindformers' cells (slower on CPU)")


class DecodeKernels(NamedTuple):
    """The ``decode_kernels.cc`` kernels as ops; see the signatures at the top of ``decode_kernels.cc``."""
    gemv: ops.Custom              # (x, w) -> x . w^T
    norm_gemv: ops.Custom         # (x, g, eps, w) -> rms(x) . w^T
    norm_gated_gemv: ops.Custom   # (x, g, eps, gate, up) -> silu(rms(x) . gate^T) * (rms(x) . up^T)
    norm_qkv_rope: ops.Custom     # (x, g, eps, wq, wk, wv, cos, sin) -> (q, k, v), q and k rotated
    attention: ops.Custom         # (q, keys, values, pad_count, write_index, layout) -> context, like q


def load_decode_kernels() -> Optional[DecodeKernels]:
    """The ``decode_kernels.cc`` ops, float32 on CPU; None when unavailable (see the module docstring)."""
    if os.environ.get("LMAN_MS_DECODE_KERNELS", "1") == "0" or ms.get_context("device_target") != "CPU":
        return None
    path = build_library()
    if path is None:
        return None

    def rows_by(x, w):
        return tuple(x[:-1]) + (w[0],)

    def op(symbol, out_shape, outputs=1):
        out_dtype = (lambda x, *rest: x) if outputs == 1 else (lambda x, *rest: (x,) * outputs)
        return ops.Custom(f"{path}:{symbol}", out_shape=out_shape, out_dtype=out_dtype, func_type="aot")

    return DecodeKernels(
        gemv=op("LmanGemv", lambda x, w: rows_by(x, w)),
        norm_gemv=op("LmanNormGemv", lambda x, g, eps, w: rows_by(x, w)),
        norm_gated_gemv=op("LmanNormGatedGemv", lambda x, g, eps, gate, up: rows_by(x, gate)),
        norm_qkv_rope=op("LmanNormQkvRope", lambda x, g, eps, wq, wk, wv, cos, sin: (
            rows_by(x, wq), rows_by(x, wk), rows_by(x, wv)), outputs=3),
        attention=op("LmanAttention", lambda q, *rest: tuple(q)))


__all__ = ["DecodeKernels", "build_library", "load_decode_kernels"]
