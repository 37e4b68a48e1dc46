"""Benchmark 4: model FLOPs utilisation of the stage-2 training step against the machine's fp32 matmul peak.

MFU = (model FLOPs of one step, ``flops.py``) / (step seconds) / (peak fp32 GFLOP/s), the ratio column of each
figure, at each thread count of the comparison. The peak is measured in the same run, in the training workers
themselves (so with the same thread settings, right after the timed steps): the best of a large square fp32 matmul
in MindSpore (its worker), PyTorch and numpy's BLAS (the PyTorch worker), each the fastest of a few calls.
``matmul_peaks`` measures the same in fresh processes, for use outside the benchmark. The PyTorch step's MFU
against the same peak is given beside ours.
"""
from __future__ import annotations

from typing import Any, Callable, Dict

import numpy as np

from .child import run_child
from .common import BenchContext, BenchmarkResult, Figure, best_of, threads_label
from .flops import naive_6nt, training_step_flops
from .sizes import matmul_size
from . import train_step


def _numpy_matmul(n: int) -> Callable[[], Any]:
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    return lambda: a @ b


def _torch_matmul(n: int) -> Callable[[], Any]:
    import torch
    a, b = torch.randn(n, n), torch.randn(n, n)
    return lambda: torch.mm(a, b)


def _mindspore_matmul(n: int) -> Callable[[], Any]:
    import mindspore as ms
    from mindspore import ops
    a = ms.Tensor(np.random.default_rng(0).standard_normal((n, n), dtype=np.float32))
    b = ms.Tensor(np.random.default_rng(1).standard_normal((n, n), dtype=np.float32))
    return lambda: ops.matmul(a, b).asnumpy()  # asnumpy waits for the (possibly asynchronous) kernel


_MATMULS = {"numpy": _numpy_matmul, "torch": _torch_matmul, "mindspore": _mindspore_matmul}


def matmul_gflops(library: str, n: int, repeat: int) -> float:
    """fp32 GFLOP/s of an n x n x n matmul (2 n^3 FLOPs) in ``library``, best of ``repeat`` after one warmup call.
    The MindSpore figure includes copying the result to numpy (n^2 floats, small next to the n^3 work). The
    caller sets the library's threads (the training workers have; ``child.py matmul`` does)."""
    fn = _MATMULS[library](n)
    fn()
    return 2.0 * n ** 3 / best_of(fn, repeat) / 1e9


def matmul_peaks(n: int, repeat: int, cwd: str, threads: int = 0) -> Dict[str, float]:
    """``matmul_gflops`` of each library, each in a fresh process (their thread pools would compete in one);
    the benchmark itself measures them in the training workers instead (``train_step.measure``)."""
    return {lib: run_child(["matmul", lib, str(n), str(repeat)], cwd, threads=threads)["gflops"] for lib in _MATMULS}


def run(ctx: BenchContext) -> BenchmarkResult:
    n, _ = matmul_size(ctx.quick)
    figures, all_peaks = [], {}
    for threads in ctx.comparison_threads():
        m = train_step.measure(ctx, threads)
        cfg, shape = m["config"], m["shape"]
        flops = training_step_flops(cfg, shape)
        label = threads_label(threads)
        peaks = m["matmul_gflops"]  # measured in the training workers, with their thread settings
        all_peaks[str(threads)] = peaks
        peak = max(peaks.values())
        best = max(peaks, key=peaks.get)
        peak_name = f"fp32 matmul peak ({best}, {n}^3, {label})"
        figures += [  # the ratio column reads as the MFU itself
            Figure(f"model GFLOP/s of the MindSpore step = MFU, {label}", "GFLOP/s",
                   flops["total"] / m["ms_seconds"] / 1e9, peak_name, peak),
            Figure(f"model GFLOP/s of the HF PyTorch step = its MFU, {label}", "GFLOP/s",
                   flops["total"] / m["torch_seconds"] / 1e9, peak_name, peak),
        ]
    total_params = sum(c["total"] for c in m["ms_counts"].values())
    llm_tokens = shape.batch * (shape.prefix + cfg.adapter.num_query_tokens + shape.text)
    details = {"step_gflop": flops["total"] / 1e9,
               "step_gflop_by_component": {k: v / 1e9 for k, v in flops.items() if k != "total"},
               "naive_6NT_gflop": naive_6nt(total_params, llm_tokens) / 1e9,
               "matmul_gflops_by_threads": all_peaks, "matmul_size": n,
               "formula": "sum_W T_W |W| (2 + 2 [input grad] + 2 [trained]) + 3 * 4 Lq Lk d per attention"}
    return BenchmarkResult("mfu", "Model FLOPs utilisation (training step vs fp32 matmul peak)", figures, details)
