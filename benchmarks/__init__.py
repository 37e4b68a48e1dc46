"""Performance of lman_ms as ratios against named references measured in the same run (``tools/benchmark.py``).

One module per benchmark, each with ``run(ctx) -> BenchmarkResult``:

========  ==============  ==========================================================================
section   module          what, against what
========  ==============  ==========================================================================
train     train_step      stage-2 training step in GRAPH_MODE vs the same model in HF PyTorch (samples/s)
train     mfu             model FLOPs utilisation of that step vs the measured fp32 matmul peak
generate  generation      KV-cache greedy decoding vs recompute and vs HF ``generate()`` (tokens/s)
convert   conversion      HF LLaMA -> MindSpore conversion: peak RSS vs largest shard, seconds vs a file copy
build     humanins_build  HumanIns build records/s with 2 workers vs 1, on SynthHuman
serving   serving         tools/serve.py: answer tokens/s with N concurrent clients vs one by one
========  ==============  ==========================================================================

Every framework runs in a process of its own with the same intra-op thread count. The framework comparisons
(train, generate) are measured at each count of ``threads`` (default: 1 and the number of cores): on a shared
machine, other users' load oversubscribes the cores and hits multi-threaded runs unevenly (OpenMP barriers wait for
descheduled threads), so the single-thread figures are given beside the all-cores ones. Conversion, HumanIns
build and the machine description use the largest count.

Nothing here asserts a speed: tests check the structure of the output only.
"""
from __future__ import annotations

import importlib
import os
import shutil
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .common import BenchContext, BenchmarkResult, Figure, default_threads, thread_env
from .machine import BLAS_ENV, describe, load_average
from .report import run_to_dict

BENCHMARKS = ("train_step", "mfu", "generation", "conversion", "humanins_build", "serving")
SECTIONS = {"train": ("train_step", "mfu"), "generate": ("generation",), "convert": ("conversion",),
            "build": ("humanins_build",), "serving": ("serving",)}


def resolve(only: Optional[Sequence[str]]) -> List[str]:
    """Benchmark modules of ``only``: section names (``train,generate,convert,build,serving``) or module names, given as
    a list and/or comma-separated; empty or None: all. Raises ``ValueError`` on an unknown name."""
    if not only:
        return list(BENCHMARKS)
    names: List[str] = []
    for item in only:
        for name in (n.strip() for n in str(item).split(",")):
            if not name:
                continue
            if name in SECTIONS:
                names += SECTIONS[name]
            elif name in BENCHMARKS:
                names.append(name)
            else:
                raise ValueError(f"unknown benchmark {name!r}; choose from {', '.join(SECTIONS)} "
                                 f"(or {', '.join(BENCHMARKS)})")
    if not names:
        raise ValueError("no benchmark chosen")
    return sorted(dict.fromkeys(names), key=BENCHMARKS.index)


def _runner(name: str) -> Callable[[BenchContext], BenchmarkResult]:
    return importlib.import_module(f"{__name__}.{name}").run


def default_thread_counts() -> Tuple[int, ...]:
    return tuple(sorted({1, default_threads()}))


def run_benchmarks(only: Optional[Sequence[str]] = None, quick: bool = False, work_dir: Optional[str] = None,
                   log: Callable[[str], None] = print, threads: Sequence[int] = ()) -> Dict:
    """Run the chosen benchmarks (``resolve(only)``, in ``BENCHMARKS`` order) and return the run as a dict
    (``report.markdown`` renders it). ``work_dir``: scratch folder (default: a temporary one, removed after);
    ``threads``: the intra-op thread counts the framework comparisons run at (default: 1 and the core count)."""
    names = resolve(only)  # mfu reuses train_step's timing when both run
    counts = tuple(sorted(set(int(t) for t in threads))) or default_thread_counts()
    if counts[0] < 1:
        raise ValueError(f"thread counts must be >= 1, got {list(threads)}")
    threads = counts[-1]
    machine = describe(threads)
    machine["thread_counts"] = list(counts)
    child_env = thread_env(threads)
    machine["blas_env"] = {k: child_env.get(k, os.environ.get(k, "unset")) for k in BLAS_ENV}
    own_dir = work_dir is None
    work = tempfile.mkdtemp(prefix="lman_bench_") if own_dir else work_dir
    os.makedirs(work, exist_ok=True)
    ctx = BenchContext(quick=quick, work_dir=work, log=log, threads=threads, thread_counts=counts)
    results: List[BenchmarkResult] = []
    try:
        for name in names:
            log(f"== {name} ==")
            t0 = time.perf_counter()
            result = _runner(name)(ctx)
            result.seconds = time.perf_counter() - t0
            results.append(result)
            for f in result.figures:
                log(f"   {f.metric}: {f.value:.4g} {f.unit} vs {f.reference} {f.reference_value:.4g} "
                    f"-> {f.ratio:.2f}x")
    finally:
        if own_dir:
            shutil.rmtree(work, ignore_errors=True)
    machine["load_average_end"] = load_average()
    return run_to_dict(machine, results, {"quick": quick, "only": ",".join(names),
                                                 "threads": ",".join(map(str, counts))})


__all__ = ["BENCHMARKS", "SECTIONS", "BenchContext", "BenchmarkResult", "Figure", "resolve", "run_benchmarks"]
