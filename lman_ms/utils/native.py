"""Building the repository's C++ CPU kernels (MindSpore ``Custom`` "aot" ops) on first use.

A source is compiled once per machine with the system C++ compiler (``$CXX``, else ``g++``) at ``-O3 -march=native``
into ``$LMAN_MS_KERNEL_CACHE`` (default ``~/.cache/lman_ms/kernels``), under a name hashing the source, the flags,
the compiler and the CPU flags, so that a cache shared between machines never loads a library built for another
CPU. Without a compiler or a writable cache, ``build_library`` returns None and the caller keeps its MindSpore ops.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from typing import Optional, Tuple

logger = logging.getLogger(__name__)

FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC")


def _cpu_signature() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        return platform.processor()


def cache_dir() -> str:
    default = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "lman_ms", "kernels")
    return os.environ.get("LMAN_MS_KERNEL_CACHE") or default


@functools.lru_cache(maxsize=None)
def build_library(source_path: str, fallback: str, extra_flags: Tuple[str, ...] = ()) -> Optional[str]:
    """Path of the compiled ``source_path`` (built if missing), or None when it cannot be built; ``fallback`` says
    in the warning what the caller does then. ``extra_flags`` follow ``FLAGS``."""
    compiler = shutil.which(os.environ.get("CXX", "g++"))
    if compiler is None:
        logger.warning("no C++ compiler found: %s", fallback)
        return None
    with open(source_path, "rb") as f:
        source = f.read()
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    flags = FLAGS + tuple(extra_flags)
    key = hashlib.sha256(b"\0".join([source, " ".join(flags).encode(), version.encode(), platform.machine().encode(),
                                     _cpu_signature().encode()])).hexdigest()[:16]
    folder = cache_dir()
    stem = os.path.splitext(os.path.basename(source_path))[0]
    path = os.path.join(folder, f"lman_{stem}_{key}.so")
    if os.path.exists(path):
        return path
    try:
        os.makedirs(folder, exist_ok=True)
        # build beside the target and rename: concurrent processes never load a half-written library
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=folder)
    except OSError as e:
        logger.warning("cannot write the kernel cache %s (%s): %s", folder, e, fallback)
        return None
    os.close(fd)
    res = subprocess.run([compiler, *flags, "-o", tmp, source_path], capture_output=True, text=True)
    if res.returncode != 0:
        os.unlink(tmp)
        logger.warning("building %s failed, %s: %s", source_path, fallback, res.stderr[-2000:])
        return None
    os.replace(tmp, path)
    return path


__all__ = ["FLAGS", "build_library", "cache_dir"]
