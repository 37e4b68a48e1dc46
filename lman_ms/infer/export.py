"""MindIR export of L-Man for serving: three static-shape graphs and a manifest.

    EXPORT_DIR/
      visual_prefix.mindir  image + CLIP-tokenised instruction + template prefix ids -> LLM input embeddings
                            [embed(prefix) ; projection(adapter(ViT(image), instruction))]   (VisualPrefixCell)
      prefill.mindir        left-padded [visual prefix ; prompt tokens] -> next-token logits + KV caches (PrefillCell)
      decode.mindir         one token + caches -> logits + updated caches (DecodeCell, static cache length)
      export.json           shapes/dtypes of every graph input and output, lengths, template, token ids
      config.yaml           the resolved config the graphs were built from
      tokenizer/, clip_tokenizer/  copies of the tokenizers, so the folder is self-contained

The prefill and decode graphs are exported from cells holding the *same* Parameter objects (``kv_cache.py``), so
they carry identical LLM weights (recorded as one fingerprint in ``export.json``; Lite on Ascend can share them
in memory with a ``ModelGroup``). Graph shapes are static: batch size, prefill length and cache length are chosen
at export time and recorded; the runner (``lman_ms.infer.lite``) left-pads to them.

Files are written into a staging folder and moved into place; ``export.json`` is written last (atomically), so a
folder with an ``export.json`` is a complete export.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from typing import Dict, List, Optional

import numpy as np

from lman_ms.models.loader import copy_tokenizers, load_model, resolve_checkpoint

MANIFEST = "export.json"
FORMAT_VERSION = 1
GRAPHS = ("visual_prefix", "prefill", "decode")
# Prompt tokens budgeted after the visual prefix when --prefill-len is not given; the Vicuna template plus a
# one-sentence instruction stays well under it.
DEFAULT_PROMPT_BUDGET = 64


class ExportError(ValueError):
    """A bad export request or a bad export folder; the message names the file or option."""


def _spec(name: str, shape, dtype) -> Dict:
    # dtype names as numpy spells them, plus "bfloat16" (no numpy dtype) for bf16 caches on Ascend
    return {"name": name, "shape": [int(s) for s in shape],
            "dtype": dtype if isinstance(dtype, str) else str(np.dtype(dtype))}


def _tensor(array: np.ndarray, dtype: str):
    import mindspore as ms
    if dtype == "bfloat16":
        return ms.Tensor(array.astype(np.float32), ms.bfloat16)
    return ms.Tensor(array.astype(dtype))


def _dtype_name(ms_dtype) -> str:
    import mindspore as ms
    return {ms.float32: "float32", ms.float16: "float16", ms.bfloat16: "bfloat16"}.get(ms_dtype, str(ms_dtype))


def weights_fingerprint(parameters) -> str:
    """sha256 over (name, shape, dtype, bytes) of the parameters sorted by name: equal fingerprints, equal weights."""
    h = hashlib.sha256()
    for p in sorted(parameters, key=lambda p: p.name):
        data = p.asnumpy()
        h.update(f"{p.name}|{data.shape}|{data.dtype}|".encode())
        h.update(np.ascontiguousarray(data).tobytes())
    return h.hexdigest()


def _file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class ExportedCells:
    """The three cells that are exported, built around one stage-2 model: their input/output specs (as recorded
    in export.json) and example inputs of the export shapes."""

    def __init__(self, model, prefix: np.ndarray, batch_size: int, prefill_len: int, cache_len: int):
        from lman_ms.infer.kv_cache import DecodeCell, PrefillCell, cache_shape
        from lman_ms.infer.predictor import VisualPrefixCell
        cfg = model.config
        decoder = model.llm
        self.batch_size, self.prefill_len, self.cache_len = batch_size, prefill_len, cache_len
        self.visual_len = prefix.shape[-1] + cfg.adapter.num_query_tokens
        if not 0 < self.visual_len < prefill_len < cache_len <= decoder.seq_length:
            raise ExportError(f"need visual prefix ({self.visual_len}) < prefill_len ({prefill_len}) < cache_len "
                              f"({cache_len}) <= llm.max_position_embeddings ({decoder.seq_length})")
        self.cells = {"visual_prefix": VisualPrefixCell(model), "prefill": PrefillCell(decoder, cache_len),
                      "decode": DecodeCell(decoder, cache_len)}
        for c in self.cells.values():
            c.set_train(False)
        self.compute_dtype = _dtype_name(decoder.compute_dtype)
        kv_dtype = self.compute_dtype
        b, p, h, s, ni = batch_size, prefill_len, cfg.llm.hidden_size, cfg.vision.image_size, \
            cfg.adapter.num_instruction_tokens
        cache = cache_shape(decoder, b, cache_len)
        vocab = cfg.llm.vocab_size
        self.inputs = {
            "visual_prefix": [_spec("pixel_values", (b, 3, s, s), np.float32),
                              _spec("instruction_ids", (b, ni), np.int32),
                              _spec("instruction_mask", (b, ni), np.float32),
                              _spec("prefix_ids", prefix.shape, np.int32)],
            "prefill": [_spec("input_ids", (b, p), np.int32), _spec("input_embeds", (b, p, h), np.float32),
                        _spec("embeds_mask", (b, p), np.int32), _spec("attention_mask", (b, p), np.int32),
                        _spec("position_ids", (b, p), np.int32)],
            "decode": [_spec("input_ids", (b, 1), np.int32), _spec("position_ids", (b, 1), np.int32),
                       _spec("key_cache", cache, kv_dtype), _spec("value_cache", cache, kv_dtype),
                       _spec("cache_mask", (b, cache_len), np.int32), _spec("write_index", (), np.int32)],
        }
        self.outputs = {
            "visual_prefix": [_spec("prefix_embeds", (b, self.visual_len, h), np.float32)],
            "prefill": [_spec("logits", (b, vocab), np.float32), _spec("key_cache", cache, kv_dtype),
                        _spec("value_cache", cache, kv_dtype)],
            "decode": [_spec("logits", (b, vocab), np.float32), _spec("key_cache", cache, kv_dtype),
                       _spec("value_cache", cache, kv_dtype)],
        }
        self.prefix = prefix.astype(np.int32)

    def example_inputs(self, name: str) -> List[np.ndarray]:
        """Valid inputs of the export shapes (the values only matter for tracing: any in-range ids)."""
        arrays = [np.zeros(s["shape"], np.float32 if s["dtype"] == "bfloat16" else s["dtype"])
                  for s in self.inputs[name]]
        if name == "visual_prefix":
            arrays[2][:, 0] = 1.0
            arrays[3] = self.prefix
        elif name == "prefill":
            arrays[3][:] = 1
            arrays[4][:] = np.arange(self.prefill_len, dtype=np.int32)
        else:
            arrays[4][:, :self.prefill_len + 1] = 1
            arrays[5] = np.array(self.prefill_len, np.int32)
        return arrays


def export_model(cfg, checkpoint: Optional[str], output_dir: str, batch_size: int = 1,
                 prefill_len: Optional[int] = None, cache_len: Optional[int] = None, model=None,
                 log=print) -> Dict:
    """Export the three graphs of the stage-2 model of ``cfg`` (weights from ``checkpoint``, or the given
    ``model``) into ``output_dir``; returns the manifest written to ``export.json``."""
    import mindspore as ms
    from lman_ms.data.conversation import prefix_ids, template_from_config
    from lman_ms.data.tokenizers import load_llm_tokenizer
    from lman_ms.utils.io import atomic_write_text

    if batch_size < 1:
        raise ExportError(f"batch_size must be >= 1, got {batch_size}")
    ckpt = None
    if model is None:
        if not checkpoint:
            raise ExportError("a checkpoint is needed (--ckpt)")
        ckpt = resolve_checkpoint(checkpoint)
        # the one loader: a LoRA-trained checkpoint gets its adapters applied and merged before the graphs are built
        model, _ = load_model(ckpt, cfg, stage=2)
    model.set_train(False)
    tok = load_llm_tokenizer(cfg.data.tokenizer_path)
    template = template_from_config(cfg)
    prefix = prefix_ids(tok, template)[None].astype(np.int32)
    visual_len = prefix.shape[1] + cfg.adapter.num_query_tokens
    limit = cfg.llm.max_position_embeddings
    prefill_len = prefill_len or min(visual_len + DEFAULT_PROMPT_BUDGET, limit - 1)
    cache_len = cache_len or limit
    cells = ExportedCells(model, prefix, batch_size, prefill_len, cache_len)

    os.makedirs(output_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".export.", dir=output_dir)
    try:
        files = copy_tokenizers(cfg, staging)
        graphs = {}
        for name in GRAPHS:
            log(f"exporting {name} ...")
            inputs = [_tensor(a, s["dtype"]) for a, s in zip(cells.example_inputs(name), cells.inputs[name])]
            ms.export(cells.cells[name], *inputs,
                      file_name=os.path.join(staging, name), file_format="MINDIR")
            path = os.path.join(staging, name + ".mindir")
            # mindspore.export leaves the file owner-read-only; give it a plain file's permissions so that a
            # serving user can read it and a re-export can replace it
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(path, 0o666 & ~mask)
            graphs[name] = {"file": name + ".mindir", "inputs": cells.inputs[name], "outputs": cells.outputs[name],
                            "sha256": _file_sha256(path), "bytes": os.path.getsize(path)}
        cfg.save(os.path.join(staging, "config.yaml"))
        llm_params = list(model.llm.get_parameters())
        manifest = {
            "format_version": FORMAT_VERSION,
            "checkpoint": os.path.abspath(ckpt) if ckpt else None,
            "config": "config.yaml",
            "mindspore_version": ms.__version__,
            "batch_size": batch_size,
            "image_size": cfg.vision.image_size,
            "num_instruction_tokens": cfg.adapter.num_instruction_tokens,
            "visual_len": visual_len,
            "prefill_len": prefill_len,
            "cache_len": cache_len,
            "hidden_size": cfg.llm.hidden_size,
            "vocab_size": cfg.llm.vocab_size,
            "compute_dtype": cells.compute_dtype,
            "prefix_ids": prefix[0].tolist(),
            "template": {"system": template.system, "user": template.user, "assistant": template.assistant},
            "bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id, "pad_token_id": tok.pad_id,
            **files,
            "graphs": graphs,
            "shared_weights": {"graphs": ["prefill", "decode"], "parameters": len(llm_params),
                               "sha256": weights_fingerprint(llm_params)},
        }
        # a re-export into the same folder: it is incomplete from the first moved file until export.json is back
        if os.path.exists(os.path.join(output_dir, MANIFEST)):
            os.remove(os.path.join(output_dir, MANIFEST))
        for entry in os.listdir(staging):
            target = os.path.join(output_dir, entry)
            if os.path.isdir(target):
                shutil.rmtree(target)
            os.replace(os.path.join(staging, entry), target)
        atomic_write_text(os.path.join(output_dir, MANIFEST), json.dumps(manifest, indent=2) + "\n")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log(f"exported {', '.join(GRAPHS)} to {output_dir} (batch {batch_size}, prefill {prefill_len}, "
        f"cache {cache_len})")
    return manifest


_REQUIRED = ("format_version", "batch_size", "image_size", "num_instruction_tokens", "visual_len", "prefill_len",
             "cache_len", "hidden_size", "vocab_size", "prefix_ids", "template", "eos_token_id", "pad_token_id",
             "tokenizer", "clip_tokenizer", "graphs")


def load_manifest(export_dir: str) -> Dict:
    """``export.json`` of an export folder, checked: every key the runner needs, every graph file present."""
    path = os.path.join(export_dir, MANIFEST)
    if not os.path.isfile(path):
        raise ExportError(f"{export_dir}: no {MANIFEST} (not an export folder, or an unfinished export; run "
                          "tools/export.py)")
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except json.JSONDecodeError as e:
        raise ExportError(f"{path}: invalid JSON: {e.msg}") from e
    missing = [k for k in _REQUIRED if k not in manifest]
    if missing:
        raise ExportError(f"{path}: missing key(s) {missing}")
    if manifest["format_version"] != FORMAT_VERSION:
        raise ExportError(f"{path}: format_version {manifest['format_version']}, this code reads {FORMAT_VERSION}")
    for name in GRAPHS:
        g = manifest["graphs"].get(name)
        if g is None:
            raise ExportError(f"{path}: graphs.{name} missing")
        if not os.path.isfile(os.path.join(export_dir, g["file"])):
            raise ExportError(f"{export_dir}: graph file {g['file']} missing")
    return manifest


__all__ = ["ExportError", "ExportedCells", "GRAPHS", "MANIFEST", "export_model", "load_manifest",
           "resolve_checkpoint", "weights_fingerprint"]
