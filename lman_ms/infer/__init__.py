"""Inference: generation with a static KV cache (``generate``) and its compiled cells (``kv_cache``).

Names are imported lazily so that light modules of this package (export, Lite runner, visualisation) do not pull
in mindformers.
"""
import importlib

_LAZY = {"GenerationConfig": "lman_ms.infer.generate", "GenerationOutput": "lman_ms.infer.generate",
         "Generator": "lman_ms.infer.generate"}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lman_ms.infer' has no attribute {name!r}")
