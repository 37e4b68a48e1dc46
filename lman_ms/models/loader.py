"""One route from a path on disk to a model, for every consumer (predictor, export, retrieval, ablation, server).

    path -> checkpoint file (+ its config.yaml) -> LManConfig -> LMan(stage) -> [LoRA] -> weights -> [merge LoRA]

``path`` may be

* a training checkpoint folder ``OUTPUT/checkpoints/step_N/`` (``model.ckpt``, ``config.yaml``, ``state.json``);
* a training output dir ``OUTPUT/`` (its newest complete checkpoint);
* a self-contained model folder written by :func:`save_pretrained` (``model.ckpt`` with merged weights,
  ``config.yaml`` whose tokenizer paths are relative to the folder, ``tokenizer/``, ``clip_tokenizer/``);
* a ``.ckpt`` file (its config then comes from ``config.yaml`` beside it, or must be given).

LoRA: a checkpoint trained with ``train.lora.rank > 0`` holds ``...wq.lora_a`` / ``...wq.lora_b`` beside the base
weights (which keep their names). The loader wraps the same projections before loading, so those tensors land, and
for inference folds them into the base weights (:func:`~lman_ms.models.lora.merge_lora`): the model that
generation, export and the server see is a plain mindformers LLaMA with the LoRA update in its weights. A model
folder stores merged weights and says ``train.lora.rank: 0``.

Strictness for inference: every parameter of the model must come from the checkpoint, and every tensor of the
checkpoint must be a parameter of the model, except optimizer state (recognised by name, :func:`is_optimizer_state`).
A tensor that fits nowhere (a stage-1 head in a stage-2 load, LoRA tensors under a config without LoRA) is an error
naming it: loading "most" of a checkpoint is how a silently wrong model is served.

Training initialisation (``train.init_checkpoint``: stage 1's adapter for stage 2) is deliberately lenient and uses
:func:`load_matching`.
"""
from __future__ import annotations

import glob
import logging
import os
import re
import shutil
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

from lman_ms.config import ConfigError, LManConfig, load_config

logger = logging.getLogger("lman_ms.models")

CONFIG_NAME = "config.yaml"
WEIGHTS_NAME = "model.ckpt"
STATE_NAME = "state.json"
_STEP = re.compile(r"^step_(\d{8})$")

# Tensors a training checkpoint holds beside the model: the optimizer's moments and step, gradient-accumulation
# buffers and the (static) loss scale. Names as lman_ms.train writes them (FusedAdamW: mindformers' AdamW names).
_OPTIMIZER_PREFIXES = ("adam_m.", "adam_v.", "moment1.", "moment2.", "grad_accum.", "accu_grads.")
_OPTIMIZER_NAMES = {"global_step", "learning_rate", "loss_scale", "scale_sense", "current_iterator_step",
                    "last_overflow_iterator_step", "epoch_num", "step_num"}


def is_optimizer_state(name: str) -> bool:
    return name.startswith(_OPTIMIZER_PREFIXES) or name in _OPTIMIZER_NAMES


# ---- where the files are -------------------------------------------------------------------------------------------
def checkpoint_dir(output_dir: str) -> str:
    return os.path.join(output_dir, "checkpoints")


def list_checkpoints(root: str) -> list:
    """Complete training checkpoints under ``root`` (an output dir or its checkpoints dir), oldest first."""
    if os.path.isdir(checkpoint_dir(root)):
        root = checkpoint_dir(root)
    found = []
    for d in glob.glob(os.path.join(root, "step_*")):
        m = _STEP.match(os.path.basename(d))
        if m and os.path.isfile(os.path.join(d, STATE_NAME)) and os.path.isfile(os.path.join(d, WEIGHTS_NAME)):
            found.append((int(m.group(1)), d))
    return [d for _, d in sorted(found)]


def latest_checkpoint(root: str) -> Optional[str]:
    """The newest complete training checkpoint folder, ``root`` itself if it is one, or None."""
    if os.path.isfile(os.path.join(root, STATE_NAME)):
        return root
    ckpts = list_checkpoints(root)
    return ckpts[-1] if ckpts else None


def resolve_checkpoint(path: str) -> str:
    """Any of the accepted paths (module docstring) -> the ``.ckpt`` file; ``FileNotFoundError`` naming ``path``."""
    if os.path.isfile(path):
        return path
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, WEIGHTS_NAME)):
            return os.path.join(path, WEIGHTS_NAME)
        found = latest_checkpoint(path)
        if found:
            return os.path.join(found, WEIGHTS_NAME)
    raise FileNotFoundError(f"{path}: no checkpoint there (expected a model folder or checkpoint folder with "
                            f"{WEIGHTS_NAME}, a training output dir with checkpoints/step_*, or a .ckpt file)")


def find_config(path: str) -> Optional[str]:
    """The ``config.yaml`` that belongs to the checkpoint at ``path`` (beside its weights), or None."""
    candidate = os.path.join(os.path.dirname(os.path.abspath(resolve_checkpoint(path))), CONFIG_NAME)
    return candidate if os.path.isfile(candidate) else None


def load_model_config(path: str, config: Optional[str] = None, overrides: Sequence[str] = ()) -> LManConfig:
    """The config of the checkpoint at ``path``: ``config`` when given, else the ``config.yaml`` beside the weights.
    Relative tokenizer paths that exist relative to that config's folder are taken from there (a model folder is
    self-contained and may be moved); others stay relative to the working directory (a training run's config)."""
    source = config or find_config(path)
    if source is None:
        raise ConfigError(f"{path}: no {CONFIG_NAME} beside the checkpoint; pass the config it was trained with "
                          "(--config)")
    cfg = load_config(source, list(overrides))
    base = os.path.dirname(os.path.abspath(source))
    for key in ("tokenizer_path", "clip_tokenizer_path"):
        value = getattr(cfg.data, key)
        if value and not os.path.isabs(value) and os.path.exists(os.path.join(base, value)):
            setattr(cfg.data, key, os.path.join(base, value))
    return cfg


# ---- loading -------------------------------------------------------------------------------------------------------
def _read(ckpt: str) -> Dict:
    import mindspore as ms
    try:
        return ms.load_checkpoint(ckpt)
    except (ValueError, RuntimeError, OSError) as e:
        raise ValueError(f"{ckpt}: not a readable MindSpore checkpoint: {e}") from e


def check_shapes(ckpt: str, params: Dict, own: Dict) -> None:
    """A tensor whose model parameter has another shape is an error listing them (a checkpoint of another config)."""
    wrong = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
             for k, v in params.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        raise ValueError(f"{ckpt}: shapes differ from this config's model (a checkpoint of another config?): "
                         + "; ".join(wrong[:8]))


def load_weights(model, path: str, strict: bool = True) -> int:
    """Load the checkpoint at ``path`` into ``model``; returns how many tensors were loaded. ``strict`` (inference):
    the checkpoint must hold every model parameter and nothing else but optimizer state; shapes must agree."""
    ckpt = resolve_checkpoint(path)
    params = _read(ckpt)
    own = {p.name: p for p in model.get_parameters()}
    check_shapes(ckpt, params, own)
    unexpected = sorted(k for k in params if k not in own and not is_optimizer_state(k))
    missing = sorted(set(own) - set(params))
    if strict and unexpected:
        hint = " (LoRA tensors: the config has train.lora.rank 0)" if any(".lora_" in k for k in unexpected) else \
            " (a checkpoint of another stage or config?)"
        raise ValueError(f"{ckpt}: {len(unexpected)} tensor(s) are not parameters of this model{hint}: "
                         f"{unexpected[:8]}")
    if strict and missing:
        raise ValueError(f"{ckpt}: {len(missing)} model parameter(s) are not in the checkpoint (a checkpoint of "
                         f"another stage or config?): {missing[:8]}")
    loaded = 0
    for name, value in params.items():
        p = own.get(name)
        if p is not None:
            p.set_data(value.astype(p.dtype))
            loaded += 1
    if loaded == 0:
        raise ValueError(f"{ckpt}: no tensor matches this model (a checkpoint of another model?)")
    return loaded


def load_matching(model, path: str) -> int:
    """Training initialisation (``train.init_checkpoint``): load every tensor whose name and shape match; the rest
    (optimizer state, heads of the other stage) is reported, not loaded. Returns how many were loaded."""
    loaded = load_weights(model, path, strict=False)
    logger.info("init_checkpoint %s: %d parameters loaded", resolve_checkpoint(path), loaded)
    return loaded


def load_model(path: str, cfg: Optional[LManConfig] = None, stage: int = 2, config: Optional[str] = None,
               overrides: Sequence[str] = (), merge: bool = True) -> Tuple[object, LManConfig]:
    """``(model, cfg)``: the ``stage`` model of the checkpoint at ``path`` with every weight loaded (strict), LoRA
    applied and (``merge``) merged; in inference mode. ``cfg`` defaults to the checkpoint's own config."""
    from lman_ms.models.lman import LMan
    if cfg is None:
        cfg = load_model_config(path, config, overrides)
    resolve_checkpoint(path)          # a wrong path fails before the (slow) model build
    model = LMan(cfg, stage=stage)
    lora = stage == 2 and cfg.train.lora.rank > 0
    if lora:
        from lman_ms.models.lora import apply_lora
        apply_lora(model, cfg.train.lora)
    n = load_weights(model, path, strict=True)
    if lora and merge:
        from lman_ms.models.lora import merge_lora
        merge_lora(model)
    model.set_train(False)
    logger.info("loaded %d tensors from %s (stage %d%s)", n, resolve_checkpoint(path), stage,
                f", LoRA rank {cfg.train.lora.rank} {'merged' if merge else 'kept apart'}" if lora else "")
    return model, cfg


# ---- a self-contained model folder ---------------------------------------------------------------------------------
def merged_state(model) -> List[Dict]:
    """The model's parameters as ``ms.save_checkpoint`` takes them, with every LoRA update folded into its base
    weight and the ``lora_a`` / ``lora_b`` tensors left out; ``model`` itself is not changed."""
    from mindspore import Tensor
    from lman_ms.models.lora import lora_cells
    deltas = {cell.weight.name: cell.delta_weight() for _, cell in lora_cells(model)}
    out = []
    for p in model.get_parameters():
        if ".lora_" in p.name:
            continue
        data = p
        if p.name in deltas:
            data = Tensor(p.asnumpy().astype("float32") + deltas[p.name], dtype=p.dtype)
        out.append({"name": p.name, "data": data})
    return out


def copy_tokenizers(cfg: LManConfig, dest: str) -> Dict[str, str]:
    """Copy the LLM (``tokenizer.model``) and CLIP (``vocab.json`` + ``merges.txt``, or a sentencepiece model)
    tokenizers into ``dest/tokenizer`` and ``dest/clip_tokenizer``; returns those paths relative to ``dest``."""
    d = cfg.data
    llm = os.path.join(d.tokenizer_path, "tokenizer.model") if os.path.isdir(d.tokenizer_path) else d.tokenizer_path
    if not os.path.isfile(llm):
        raise FileNotFoundError(f"data.tokenizer_path: no tokenizer.model at {d.tokenizer_path!r}")
    os.makedirs(os.path.join(dest, "tokenizer"), exist_ok=True)
    shutil.copyfile(llm, os.path.join(dest, "tokenizer", "tokenizer.model"))
    clip = d.clip_tokenizer_path or d.tokenizer_path
    if os.path.isdir(clip) and os.path.isfile(os.path.join(clip, "vocab.json")):
        src, names = clip, ["vocab.json", "merges.txt"]
    elif os.path.isdir(clip):
        src, names = clip, ["tokenizer.model"]
    else:
        src, names = os.path.dirname(clip) or ".", [os.path.basename(clip)]
    os.makedirs(os.path.join(dest, "clip_tokenizer"), exist_ok=True)
    for n in names:
        if not os.path.isfile(os.path.join(src, n)):
            raise FileNotFoundError(f"data.clip_tokenizer_path: {os.path.join(src, n)} not found")
        # the tokenizer loaders look for tokenizer.model / vocab.json + merges.txt by name
        shutil.copyfile(os.path.join(src, n),
                        os.path.join(dest, "clip_tokenizer", "tokenizer.model" if n.endswith(".model") else n))
    return {"tokenizer": "tokenizer", "clip_tokenizer": "clip_tokenizer"}


def model_folder_config(cfg: LManConfig) -> LManConfig:
    """The config a model folder stores: tokenizers inside the folder, merged weights (no LoRA), and no paths to
    the training run's data or initial weights (a model folder carries none of them)."""
    out = LManConfig.from_dict(cfg.to_dict())
    out.data.tokenizer_path, out.data.clip_tokenizer_path = "tokenizer", "clip_tokenizer"
    out.data.train_path = out.data.eval_path = out.data.image_root = ""
    out.train.lora.rank = 0
    out.train.init_checkpoint = out.train.vision_init = out.train.text_init = out.train.llm_init = ""
    out.train.eval_steps = 0          # it evaluated data.eval_path, which the folder does not name
    out.train.stage = 2
    return out.finalize()           # what from_pretrained will check, checked before anything is written


def save_pretrained(model, cfg: LManConfig, folder: str) -> str:
    """Write the stage-2 ``model`` as a self-contained model folder (module docstring), atomically: the folder is
    assembled beside ``folder`` and renamed into place, replacing an earlier one only when complete."""
    import mindspore as ms
    from lman_ms.utils.io import atomic_write_text
    folder = os.path.abspath(folder)
    parent = os.path.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(folder)}.", dir=parent)
    try:
        copy_tokenizers(cfg, staging)
        ms.save_checkpoint(merged_state(model), os.path.join(staging, WEIGHTS_NAME))
        atomic_write_text(os.path.join(staging, CONFIG_NAME), model_folder_config(cfg).to_yaml())
        old = None
        if os.path.exists(folder):
            old = f"{staging}.old"
            os.rename(folder, old)
        os.rename(staging, folder)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "checkpoint_dir", "copy_tokenizers", "find_config", "is_optimizer_state",
           "check_shapes", "latest_checkpoint", "list_checkpoints", "load_matching", "load_model", "load_model_config",
           "load_weights", "merged_state", "model_folder_config", "resolve_checkpoint", "save_pretrained"]
