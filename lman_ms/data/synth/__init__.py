"""SynthHuman: the built-in synthetic source of HumanIns, written in the real on-disk formats.

Procedural pictures of simple human figures (``person.py``, ``pose.py``, ``render.py``, ``face.py``) whose
attributes, expressions, actions, joints and boxes are known exactly, written as six source datasets so that the
project's real converters (``lman_ms.data.humanins``) read them like the originals:

============  =====================  ===============================================
folder        registry name(s)       format
============  =====================  ===============================================
wider_face    wider_face             WIDER FACE bbx_gt.txt (``wider_face.py``)
coco          coco_person,           COCO 2017 instances / captions json (``coco.py``)
              coco_captions
pa100k        pa100k                 PA-100K annotation.mat (``pa100k.py``)
rafdb/basic   rafdb                  RAF-DB basic list_patition_label.txt (``rafdb.py``)
stanford40    stanford40             Stanford 40 XML + ImageSplits (``stanford40.py``)
mpii          mpii                   MPII mmpose/HRNet json + mpii_gt_val.mat (``mpii.py``)
============  =====================  ===============================================

:func:`make_synth` writes them (deterministic: the same seed gives byte-identical files) and
:func:`build_synth_humanins` runs the converters over them.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from typing import Dict, Optional, Tuple

from lman_ms.utils.io import atomic_write_text

from . import coco, mpii, pa100k, rafdb, stanford40, wider_face

logger = logging.getLogger(__name__)

# folder -> (writer module, registry names, the converter's root relative to the folder)
SOURCES = {
    "wider_face": (wider_face, ("wider_face",), ""),
    "coco": (coco, ("coco_person", "coco_captions"), ""),
    "pa100k": (pa100k, ("pa100k",), ""),
    "rafdb": (rafdb, ("rafdb",), "basic"),
    "stanford40": (stanford40, ("stanford40",), ""),
    "mpii": (mpii, ("mpii",), ""),
}
MANIFEST = "synth_manifest.json"
DEFAULT_IMAGE_SIZE = (128, 192)


def make_synth(out_dir: str, num: int, seed: int = 0, image_size: Tuple[int, int] = DEFAULT_IMAGE_SIZE,
               test_fraction: float = 0.2, sources: Optional[Tuple[str, ...]] = None,
               num_by_source: Optional[Dict[str, int]] = None) -> Dict[str, str]:
    """Write ``num`` images per source under ``out_dir/<folder>/`` and return registry name -> dataset root.
    ``num_by_source`` (folder -> count) overrides ``num`` for some sources.

    ``image_size``: (min, max) side in pixels of scene pictures (WIDER, COCO, Stanford 40, MPII, RAF-DB
    originals); PA-100K crops follow the figure and RAF-DB aligned faces are 100 x 100 as in the releases.
    ``test_fraction`` of each source's images (the last ones generated) form the test split (PA-100K: half of it
    val, half test). A manifest with the options, roots and counts is written last."""
    if num < 1:
        raise ValueError(f"num must be at least 1, got {num}")
    lo, hi = (int(v) for v in image_size)
    if not 64 <= lo <= hi:
        raise ValueError(f"image_size must be (min, max) with 64 <= min <= max, got {image_size}")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    chosen = tuple(SOURCES) if sources is None else tuple(sources)
    num_by_source = dict(num_by_source or {})
    unknown = sorted((set(chosen) | set(num_by_source)) - set(SOURCES))
    if unknown:
        raise KeyError(f"unknown SynthHuman source(s) {unknown}; known: {sorted(SOURCES)}")
    bad = {k: v for k, v in num_by_source.items() if not isinstance(v, int) or v < 1}
    if bad:
        raise ValueError(f"num_by_source: counts must be integers >= 1, got {bad}")
    roots: Dict[str, str] = {}
    counts: Dict[str, Dict[str, int]] = {}
    rerun = os.path.isfile(os.path.join(out_dir, MANIFEST))
    for folder in chosen:
        module, names, sub = SOURCES[folder]
        t0 = time.perf_counter()
        path = os.path.join(out_dir, folder)
        if rerun and os.path.isdir(path):
            # Our own earlier output (the manifest says so): images of a larger run would otherwise linger.
            shutil.rmtree(path)
        n = num_by_source.get(folder, num)
        counts[folder] = module.write(path, n, seed, (lo, hi), test_fraction)
        logger.info("synth %s: %d images in %.2fs", folder, n, time.perf_counter() - t0)
        for name in names:
            roots[name] = os.path.join(path, sub) if sub else path
    manifest = {"seed": seed, "num": num, "num_by_source": num_by_source, "image_size": [lo, hi],
                "test_fraction": test_fraction, "counts": counts,
                "roots": {k: os.path.relpath(v, out_dir) for k, v in roots.items()}}
    atomic_write_text(os.path.join(out_dir, MANIFEST), json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return roots


def synth_roots(synth_dir: str) -> Dict[str, str]:
    """registry name -> dataset root, from the manifest :func:`make_synth` wrote."""
    path = os.path.join(synth_dir, MANIFEST)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: not a SynthHuman folder (run tools/make_synth.py first)")
    with open(path, encoding="utf-8") as f:
        try:
            manifest = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from e
    if not isinstance(manifest, dict) or not isinstance(manifest.get("roots"), dict):
        raise ValueError(f"{path} [roots]: missing; the manifest must map registry names to dataset folders")
    return {k: os.path.join(synth_dir, v) for k, v in manifest["roots"].items()}


def build_synth_humanins(synth_dir: str, out_dir: str, workers: int = 1, seed: int = 0, on_error: str = "raise",
                         progress: bool = False, require_all: bool = False):
    """Run the real HumanIns converters over every SynthHuman source, then write ``stats.json``/``stats.md``.

    Returns ``(summaries, missing)``: the :class:`BuildSummary` of every (dataset, split) built, and the registry
    names whose converter module is not installed (skipped, or an error with ``require_all``)."""
    from lman_ms.data.humanins.builder import build, write_stats
    from lman_ms.data.humanins.registry import MODULES, get_converter

    summaries, missing = [], []
    for name, root in synth_roots(synth_dir).items():
        try:
            conv = get_converter(name)
        except ModuleNotFoundError as e:
            if require_all or e.name != f"lman_ms.data.humanins.{MODULES[name]}":
                raise
            missing.append(name)
            logger.warning("no converter for %s yet: skipped", name)
            continue
        for split in conv.splits:
            if name == "pa100k" and split == "val":
                continue    # the converter's default folds val into train (the trainval protocol)
            summaries.append(build(name, root, split, out_dir, workers=workers, on_error=on_error, seed=seed,
                                   progress=progress))
    write_stats(out_dir)
    return summaries, missing
