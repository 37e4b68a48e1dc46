"""The machine a benchmark ran on: CPU model, cores, memory, load, library versions and the BLAS in use.

The load average is part of the description because the machine may be shared: a ratio measured under load is
still meaningful (both sides ran under it), an absolute rate is not.
"""
from __future__ import annotations

import importlib
import os
import platform
from typing import Any, Dict, List

# OpenBLAS reads these at load time; on some processors they are set to avoid crashes of old builds and then
# select a slower generic kernel. The benchmark reports them and never changes them.
BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
VERSIONED = ("mindspore", "mindformers", "mindcv", "torch", "transformers", "numpy")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / (1 << 20)
    except OSError:
        pass
    return float("nan")


def load_average() -> List[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def versions() -> Dict[str, str]:
    """Installed versions, read from the package metadata (the frameworks are not imported in this process)."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            try:
                out[name] = getattr(importlib.import_module(name), "__version__", "?")
            except ImportError:
                out[name] = "not installed"
    return out


def blas_info() -> List[Dict[str, Any]]:
    """The BLAS/OpenMP pools loaded in this process (threadpoolctl, when installed): library, kernel, threads."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keep = ("user_api", "internal_api", "version", "architecture", "num_threads", "filepath")
    return [{k: pool.get(k) for k in keep if k in pool} for pool in threadpool_info()]


def describe(threads: int) -> Dict[str, Any]:
    """The machine, and ``threads``: the intra-op thread count every framework of the run is set to."""
    import numpy  # noqa: F401 - loaded first so that its OpenBLAS shows in blas_info
    return {
        "cpu": cpu_model(), "cores": os.cpu_count(), "memory_gib": round(memory_gib(), 1),
        "platform": platform.platform(), "load_average_start": load_average(), "versions": versions(),
        "blas_env": {k: os.environ.get(k, "unset") for k in BLAS_ENV}, "blas": blas_info(), "threads": threads,
    }


def describe_markdown(info: Dict[str, Any]) -> str:
    v = info["versions"]
    lines = [f"- CPU: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB memory ({info['platform']})",
             "- versions: " + ", ".join(f"{k} {v[k]}" for k in ("python", *VERSIONED) if k in v),
             "- load average (1/5/15 min) at start: " + " / ".join(str(x) for x in info["load_average_start"])]
    if "load_average_end" in info:
        lines.append("- load average at end: " + " / ".join(str(x) for x in info["load_average_end"]))
    blas = "; ".join(f"{p.get('internal_api')} {p.get('version')} ({p.get('architecture', '-')} kernel, "
                     f"{p.get('num_threads')} threads)" for p in info["blas"]) or "threadpoolctl not installed"
    lines.append(f"- numpy BLAS: {blas}")
    lines.append("- BLAS environment: " + ", ".join(f"{k}={v}" for k, v in info["blas_env"].items()))
    if "threads" in info:
        counts = info.get("thread_counts") or [info["threads"]]
        lines.append("- threads per framework (torch.set_num_threads, MindSpore CPU op threads, OMP/BLAS), the same "
                     f"on both sides, each framework in its own process: comparisons at {' and '.join(map(str, counts))}"
                     f"; conversion, HumanIns build: {info['threads']}")
    return "\n".join(lines)
