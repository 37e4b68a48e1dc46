"""lman_ms: a MindSpore port of L-Man and HumanIns.

    from lman_ms import LMan, LManConfig, LManPredictor, load_config

The names are resolved on first use, so that ``import lman_ms`` and ``import lman_ms.config`` (what config-only
tools need) do not import MindSpore.
"""
import importlib

from lman_ms.utils import clean_exit

__version__ = "0.1.0"

_LAZY = {"LManConfig": "lman_ms.config", "load_config": "lman_ms.config", "LMan": "lman_ms.models.lman",
         "LManPredictor": "lman_ms.infer.predictor"}

__all__ = sorted(_LAZY) + ["__version__"]

# every process that uses the library ends without Cell.__del__ tracebacks (see lman_ms/utils/clean_exit.py)
clean_exit.install()


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lman_ms' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
