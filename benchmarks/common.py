"""Shared pieces of the benchmarks: the result records, the run context and the timing helpers.

Every figure is a ratio against a named reference measured in the same run on the same machine, so that a slow or
busy machine moves both sides together. Comparisons alternate the two sides in rounds and keep the median of each
(the machine may be shared: a burst of load then hits both sides instead of one).
"""
from __future__ import annotations

import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

HIGHER, LOWER = "higher", "lower"


@dataclass
class Figure:
    """One reported number: ``value`` of ours against ``reference_value`` of ``reference``.

    ``ratio`` is always ``value / reference_value``; ``better`` says which direction is good (samples/s: higher;
    peak memory or seconds: lower)."""
    metric: str
    unit: str
    value: float
    reference: str
    reference_value: float
    better: str = HIGHER
    note: str = ""

    @property
    def ratio(self) -> float:
        if not self.reference_value:
            return float("nan")
        return self.value / self.reference_value

    def to_dict(self) -> Dict[str, Any]:
        out = asdict(self)
        out["ratio"] = self.ratio
        return out


@dataclass
class BenchmarkResult:
    name: str
    title: str
    figures: List[Figure] = field(default_factory=list)
    details: Dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "title": self.title, "seconds": self.seconds,
                "figures": [f.to_dict() for f in self.figures], "details": self.details}


@dataclass
class BenchContext:
    """What every benchmark receives: sizes (``quick``), a scratch folder, and results other benchmarks may reuse
    (the MFU benchmark reads the training-step timing instead of measuring it twice)."""
    quick: bool
    work_dir: str
    shared: Dict[str, Any] = field(default_factory=dict)
    log: Callable[[str], None] = print
    threads: int = 0  # intra-op threads of every framework (0: the number of cores)
    # thread counts at which the framework comparisons (train, generate) run, each a separate measurement
    thread_counts: Tuple[int, ...] = ()

    def comparison_threads(self) -> Tuple[int, ...]:
        return self.thread_counts or (self.threads or default_threads(),)


def threads_label(n: int) -> str:
    return f"{n} thread" + ("" if n == 1 else "s")


# ---- thread counts --------------------------------------------------------------------------------------------------
# The benchmark process passes the thread count to its workers and children in this variable (and in the OpenMP /
# BLAS variables, read by the libraries when they load): each framework then runs with the same count.
THREADS_ENV = "LMAN_BENCH_THREADS"
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def default_threads() -> int:
    return max(1, os.cpu_count() or 1)


def bench_threads() -> int:
    """The thread count of this run: ``$LMAN_BENCH_THREADS``, else the number of cores."""
    try:
        return max(1, int(os.environ.get(THREADS_ENV, "")))
    except ValueError:
        return default_threads()


def thread_env(threads: int) -> Dict[str, str]:
    """Environment of a worker or child process running with ``threads`` intra-op threads."""
    return {THREADS_ENV: str(threads), **{k: str(threads) for k in _THREAD_VARS}}


def set_torch_threads() -> int:
    """PyTorch: ``bench_threads()`` intra-op threads, one inter-op thread (nothing here runs ops concurrently)."""
    import torch

    n = bench_threads()
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only settable before the first parallel work; harmless when already set
        pass
    return torch.get_num_threads()


def set_mindspore_threads() -> int:
    """MindSpore CPU: ``bench_threads()`` kernel threads (its default is 25 whatever the core count); call before
    building the first cell. The runtime's dispatch threads (actors, not kernels) keep their default."""
    import mindspore as ms

    n = bench_threads()
    ms.device_context.cpu.op_tuning.threads_num(n)
    return n


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def time_call(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def best_of(fn: Callable[[], Any], repeat: int) -> float:
    """Fastest of ``repeat`` calls: for peak-rate measurements, where only interference makes a call slower."""
    return min(time_call(fn) for _ in range(max(1, repeat)))


def fmt_number(x: Optional[float]) -> str:
    if x is None or x != x:
        return "n/a"
    ax = abs(x)
    if ax >= 1000:
        return f"{x:,.0f}"
    if ax >= 100:
        return f"{x:.1f}"
    if ax >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"
