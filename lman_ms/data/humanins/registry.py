"""The converter registry: one entry per source dataset, each in its own module.

A converter is a class with ``name``, ``task`` and ``splits``, registered with :func:`register_converter`. It
splits its work in two so that ``--workers`` can scale the build:

* ``index(split)`` parses the annotation files (main process) and yields :class:`Sample` items;
* ``load(sample)`` does the per-item work in a worker (by default: check the image exists and read its size from
  the file header). Video converters override it to decode frames and may return several samples.
"""
from __future__ import annotations

import importlib
import os
from typing import Dict, Iterable, List, Optional, Type

from .errors import AnnotationError, ErrorPolicy
from .imagesize import image_size
from .sample import Sample

_REGISTRY: Dict[str, Type["Converter"]] = {}

# Module per registry name; imported lazily so that one broken module cannot break the others.
MODULES = {
    "stanford40": "stanford40", "ucf101": "ucf101", "voc2012_action": "voc2012_action", "hmdb51": "hmdb51",
    "cuhk_sysu": "cuhk_sysu", "prw": "prw", "coco_person": "coco", "citypersons": "citypersons",
    "caltech": "caltech",
    "pa100k": "pa100k", "market1501_attr": "market_duke_attr", "dukemtmc_attr": "market_duke_attr",
    "cuhk_pedes": "text_pedes", "icfg_pedes": "text_pedes", "ufine6926": "text_pedes",
    "rafdb": "rafdb", "expw": "expw",
    "wider_face": "wider_face", "fddb": "fddb",
    "aic_pose": "aic_pose", "mpii": "mpii",
    "coco_captions": "coco",
}


class Converter:
    name: str = ""
    task: str = ""
    splits: tuple = ("train", "test")
    # Target fields that say where a listing came from, not what the image shows (FDDB's fold): two listings of
    # one key that differ only there are the same annotation (see duplicates.py).
    provenance_keys: tuple = ()

    def __init__(self, root: str, policy: Optional[ErrorPolicy] = None, out_dir: Optional[str] = None, **options):
        if not os.path.isdir(root):
            raise FileNotFoundError(f"{self.name}: dataset root not found: {root}")
        self.root = root
        self.policy = policy or ErrorPolicy("raise")
        self.out_dir = out_dir          # where converters that extract files (video frames) put them
        unknown = set(options) - set(self.option_defaults())
        if unknown:
            raise TypeError(f"{self.name}: unknown option(s) {sorted(unknown)}; known: {sorted(self.option_defaults())}")
        self.options = {**self.option_defaults(), **options}

    # -- to override ----------------------------------------------------------------------------------------------
    @classmethod
    def option_defaults(cls) -> dict:
        """Converter-specific options (e.g. ``frames_per_video``) and their defaults."""
        return {}

    @classmethod
    def detect(cls, root: str) -> bool:
        """Whether ``root`` looks like this dataset (used by ``--all`` to find what is present)."""
        return os.path.isdir(root)

    def index(self, split: str) -> Iterable[Sample]:
        raise NotImplementedError

    def load(self, sample: Sample) -> List[Sample]:
        """Per-item work in a worker process. Default: the image must exist; its size comes from the header."""
        if sample.width is None or sample.height is None:
            path = self.path(sample.image)
            try:
                sample.width, sample.height = image_size(path)
            except AnnotationError:
                raise
            except Exception as e:  # noqa: BLE001
                raise AnnotationError(path, f"cannot read image header: {e}") from e
        return [sample]

    # -- helpers ---------------------------------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def require(self, *parts: str) -> str:
        """Path of a file the dataset must have, or an error naming it."""
        p = self.path(*parts)
        if not os.path.exists(p):
            raise AnnotationError(p, f"{self.name}: expected file or folder is missing")
        return p

    def check_split(self, split: str) -> None:
        if split not in self.splits:
            raise ValueError(f"{self.name}: unknown split {split!r}; this dataset has {self.splits}")


def register_converter(cls: Type[Converter]) -> Type[Converter]:
    if not cls.name or not cls.task:
        raise ValueError(f"{cls.__name__} needs a name and a task")
    _REGISTRY[cls.name] = cls
    return cls


def get_converter(name: str) -> Type[Converter]:
    if name not in MODULES:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(sorted(MODULES))}")
    if name not in _REGISTRY:
        importlib.import_module(f"{__package__}.{MODULES[name]}")
    if name not in _REGISTRY:
        raise KeyError(f"module {MODULES[name]!r} did not register {name!r}")
    return _REGISTRY[name]


def list_datasets() -> List[str]:
    return sorted(MODULES)
