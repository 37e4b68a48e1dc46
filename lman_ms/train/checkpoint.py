"""Checkpoints that survive interruption.

Layout: ``OUTPUT_DIR/checkpoints/step_00000120/`` holding ``model.ckpt`` (every parameter of the train cell:
model weights, AdamW moments, the optimizer's step), ``state.json`` (step, data position, seed) and
``config.yaml`` (the resolved config). A checkpoint is written into ``.step_00000120.tmp`` and renamed into place
only when complete (a rename is atomic on POSIX), so a crash during a write leaves the previous checkpoints intact
and the half-written folder is ignored (and cleaned up) later. The last ``keep_last`` checkpoints are kept; an
old one is renamed to a hidden ``.step_N.old`` before it is deleted, so a crash while pruning never leaves a visible
half-deleted folder. Every file is fsynced before the rename (durable across a power cut, not only a kill).
"""
from __future__ import annotations

import glob
import json
import os
import shutil

import mindspore as ms

# where checkpoints are found is the loader's business (below training: inference reads them too)
from lman_ms.models.loader import check_shapes, checkpoint_dir, latest_checkpoint, list_checkpoints  # noqa: F401


def save_checkpoint(cell, output_dir: str, step: int, state: dict, config_yaml: str, keep_last: int = 3) -> str:
    root = checkpoint_dir(output_dir)
    os.makedirs(root, exist_ok=True)
    name = f"step_{step:08d}"
    final, tmp = os.path.join(root, name), os.path.join(root, f".{name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    ms.save_checkpoint(cell, os.path.join(tmp, "model.ckpt"))
    _fsync_file(os.path.join(tmp, "model.ckpt"))
    with open(os.path.join(tmp, "config.yaml"), "w", encoding="utf-8") as f:
        f.write(config_yaml)
        f.flush()
        os.fsync(f.fileno())
    # state.json last: its presence marks the folder complete even if a later rename were replayed
    with open(os.path.join(tmp, "state.json"), "w", encoding="utf-8") as f:
        json.dump({**state, "step": step}, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(tmp)
    if os.path.isdir(final):          # a re-save of the same step (e.g. the final one) replaces it
        _hide(final)
    os.rename(tmp, final)
    _fsync_dir(root)
    for old in list_checkpoints(root)[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(_hide(old), ignore_errors=True)
    for stale in glob.glob(os.path.join(root, ".step_*")):     # .tmp of interrupted writes, .old of prunes
        shutil.rmtree(stale, ignore_errors=True)
    return final


def _hide(ckpt_dir: str) -> str:
    """Rename a checkpoint folder to ``.step_N.old`` (atomic): from then on it is invisible, whole or not."""
    hidden = os.path.join(os.path.dirname(ckpt_dir), f".{os.path.basename(ckpt_dir)}.old")
    shutil.rmtree(hidden, ignore_errors=True)
    os.rename(ckpt_dir, hidden)
    return hidden


def load_checkpoint(cell, ckpt_dir: str, strict: bool = True) -> dict:
    """Restore every parameter of ``cell`` from ``ckpt_dir``; returns its state.json. With ``strict`` a missing
    or unexpected parameter, or one of another shape, is an error listing them (a checkpoint of another config)."""
    path = os.path.join(ckpt_dir, "model.ckpt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no model.ckpt in checkpoint folder {ckpt_dir}")
    params = ms.load_checkpoint(path)
    own = {p.name: p for p in cell.get_parameters()}
    check_shapes(path, params, own)
    not_loaded, _ = ms.load_param_into_net(cell, params, strict_load=True)
    unexpected = sorted(set(params) - set(own))
    if strict and (not_loaded or unexpected):
        raise ValueError(f"{path}: parameters missing from the checkpoint: {sorted(not_loaded)[:10]}; "
                         f"unexpected in it: {unexpected[:10]}")
    with open(os.path.join(ckpt_dir, "state.json"), encoding="utf-8") as f:
        return json.load(f)


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
