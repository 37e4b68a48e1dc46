"""The model, one component per file: ``vision`` (CLIP ViT, eq. 1), ``adapter`` (QueryAdapter, eq. 2), ``text``
(frozen CLIP text encoder), ``llm`` (Vicuna through mindformers), ``lman`` (the whole model and its loss cells),
``losses`` (eq. 3-8), ``lora`` and ``loader`` (a path on disk -> a loaded model).

    from lman_ms.models import LMan, CLIPVisionEncoder, CLIPTextEncoder, QueryAdapter, VicunaDecoder

Names are imported on first use: importing one light submodule (``losses``, ``param_count``) does not build the
import chain of mindcv and mindformers.
"""
import importlib

_LAZY = {"CLIPVisionEncoder": "lman_ms.models.vision", "CLIPTextEncoder": "lman_ms.models.text",
         "QueryAdapter": "lman_ms.models.adapter", "VicunaDecoder": "lman_ms.models.llm", "LMan": "lman_ms.models.lman",
         "Stage1LossCell": "lman_ms.models.lman", "Stage2LossCell": "lman_ms.models.lman"}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lman_ms.models' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
