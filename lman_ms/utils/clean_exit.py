"""Scripts that keep cells in their globals end without ``Cell.__del__`` tracebacks.

At interpreter exit, CPython clears the modules still alive in reverse import order, and ``__main__`` was imported
first, so its globals go last. dill (which MindSpore imports) keeps ``__main__`` alive as ``dill._dill._main_module``
and ``dill.session._main_module``; a model held in a script's global is then freed after ``mindspore.nn.cell`` was
cleared, and every cell's ``__del__`` fails on ``Cell`` being None (with MindSpore 2.9 and mindcv 0.3.0, 49
tracebacks for a 2-block mindcv ``VisionTransformer``, ~125 for ``CLIPVisionEncoder``). Unpinned before that
clearing, ``__main__`` goes when ``sys.modules`` is emptied, and its cells are freed while MindSpore is whole.

:func:`install` registers that unpinning as an ``atexit`` hook, which runs after the script and before module
teardown. dill keeps a weak proxy, so anything still pickling from a later hook sees the same ``__main__``.
"""
from __future__ import annotations

import atexit
import sys
import weakref

_installed = False


def unpin_main() -> int:
    """Replace dill's strong references to ``__main__`` by weak proxies; returns how many were replaced."""
    main = sys.modules.get("__main__")
    if main is None:
        return 0
    replaced = 0
    for name in ("dill._dill", "dill.session"):
        module = sys.modules.get(name)
        if module is not None and getattr(module, "_main_module", None) is main:
            module._main_module = weakref.proxy(main)
            replaced += 1
    return replaced


def install() -> None:
    """Register :func:`unpin_main` at exit, once per process."""
    global _installed
    if not _installed:
        atexit.register(unpin_main)
        _installed = True


__all__ = ["install", "unpin_main"]
