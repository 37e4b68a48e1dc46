"""Greedy L-Man inference on the graphs of an export folder (``lman_ms.infer.export``), with pluggable backends.

* ``"lite"``: MindSpore Lite (``mindspore_lite``, imported only when this backend is built: it has no wheel for
  every Python version); on Ascend the prefill and decode models share their weights through a ``ModelGroup``.
* ``"graphcell"``: ``mindspore.load`` + ``nn.GraphCell``, i.e. the same MindIR files run by MindSpore itself. It
  runs wherever MindSpore does (CPU included), so the runner loop is tested end to end without Lite.

The loop is ``Generator``'s cache loop (``lman_ms.infer.generate``) on fixed shapes: requests are left-padded to the
exported prefill length, the visual prefix and the prompt tokens are merged inside the prefill graph, each new
token goes through the decode graph with a static cache, and each sequence stops at its EOS (kept, as in
``Generator``). Only greedy decoding: the graphs return logits, so sampling could be added on the host side.
This module imports neither mindformers nor the model code.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from lman_ms.infer.export import GRAPHS, ExportError, load_manifest
from lman_ms.infer.generation_config import GenerationConfig

BACKENDS = ("graphcell", "lite")
LITE_MISSING = ("mindspore_lite is not installed (pip install mindspore-lite; there is no wheel for every Python "
                "version, e.g. none for 3.11 on PyPI). Use --backend graphcell to run the same MindIR graphs with "
                "MindSpore.")


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here (e.g. mindspore_lite missing)."""


class GraphCellBackend:
    """Runs each MindIR with ``nn.GraphCell(mindspore.load(file))``. Outputs stay MindSpore tensors, so the caches
    go from one decode step to the next without a host copy."""

    name = "graphcell"

    def __init__(self, device_target: str = "CPU"):
        import mindspore as ms
        # the device is the caller's context (tools/lite_infer.py sets it); a loaded graph is compiled for it
        self.device_target = device_target
        self._ms = ms
        self.cells = {}

    def load(self, files: Dict[str, str]) -> None:
        from mindspore import nn
        for name, path in files.items():
            self.cells[name] = nn.GraphCell(self._ms.load(path))

    def run(self, name: str, inputs: Sequence) -> list:
        args = [x if isinstance(x, self._ms.Tensor) else self._ms.Tensor(np.asarray(x)) for x in inputs]
        out = self.cells[name](*args)
        return list(out) if isinstance(out, (tuple, list)) else [out]

    @staticmethod
    def numpy(x) -> np.ndarray:
        return x.asnumpy()


class LiteBackend:
    """MindSpore Lite ``Model`` per graph (``ModelType.MINDIR``); inputs are copied in with
    ``set_data_from_numpy``."""

    name = "lite"

    def __init__(self, device_target: str = "CPU", threads: int = 0):
        try:
            import mindspore_lite as mslite
        except ImportError as e:
            raise BackendUnavailable(LITE_MISSING) from e
        self._lite = mslite
        self.context = mslite.Context()
        self.device = device_target.lower()
        self.context.target = [self.device]
        if self.device == "cpu" and threads > 0:
            self.context.cpu.thread_num = threads
        self.models = {}

    def load(self, files: Dict[str, str]) -> None:
        mslite = self._lite
        models = {name: mslite.Model() for name in files}
        if self.device == "ascend" and {"prefill", "decode"} <= set(models):
            # weight sharing between models is an Ascend (GE) feature of Lite; elsewhere each model holds a copy
            group = mslite.ModelGroup(mslite.ModelGroupFlag.SHARE_WEIGHT)
            group.add_model([models["prefill"], models["decode"]])
        for name, path in files.items():
            models[name].build_from_file(path, mslite.ModelType.MINDIR, self.context)
        self.models = models

    def run(self, name: str, inputs: Sequence) -> list:
        model = self.models[name]
        tensors = model.get_inputs()
        for t, x in zip(tensors, inputs):
            t.set_data_from_numpy(np.ascontiguousarray(self.numpy(x)))
        return list(model.predict(tensors))

    @staticmethod
    def numpy(x) -> np.ndarray:
        return x if isinstance(x, np.ndarray) else x.get_data_to_numpy()


def make_backend(name: str, device_target: str = "CPU", **options):
    if name == "graphcell":
        return GraphCellBackend(device_target)
    if name == "lite":
        return LiteBackend(device_target, **options)
    raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")


@dataclass
class RunnerOutput:
    sequences: List[List[int]]                # generated ids per prompt (EOS included when reached)
    finished: List[bool] = field(default_factory=list)
    scores: List[np.ndarray] = field(default_factory=list)  # per step logits (batch, vocab) if output_scores


class LiteRunner:
    """Image + instruction -> answer on an export folder. ``backend``: ``"graphcell"``, ``"lite"`` or a backend
    object with ``load(files)``, ``run(name, inputs)`` and ``numpy(x)``."""

    def __init__(self, export_dir: str, backend="graphcell", device_target: str = "CPU", **backend_options):
        self.export_dir = export_dir
        self.manifest = m = load_manifest(export_dir)
        self.batch_size, self.prefill_len, self.cache_len = m["batch_size"], m["prefill_len"], m["cache_len"]
        self.backend = make_backend(backend, device_target, **backend_options) if isinstance(backend, str) \
            else backend
        self.backend.load({n: os.path.join(export_dir, m["graphs"][n]["file"]) for n in GRAPHS})
        self._tok = self._clip_tok = None

    # ---- tokenizers and preprocessing (the folder's own copies) --------------------------------------------------
    @property
    def tokenizer(self):
        if self._tok is None:
            from lman_ms.data.tokenizers import load_llm_tokenizer
            self._tok = load_llm_tokenizer(os.path.join(self.export_dir, self.manifest["tokenizer"]))
        return self._tok

    @property
    def clip_tokenizer(self):
        if self._clip_tok is None:
            from lman_ms.data.tokenizers import load_clip_tokenizer
            self._clip_tok = load_clip_tokenizer(os.path.join(self.export_dir, self.manifest["clip_tokenizer"]))
        return self._clip_tok

    def prompt_ids(self, instruction: str) -> List[int]:
        """Token ids after the visual tokens: the Vicuna template's "\\n{instruction} ASSISTANT:" (as predictor)."""
        text = f"\n{instruction.strip()} {self.manifest['template']['assistant']}"
        return self.tokenizer.encode(text, bos=False, eos=False)

    # ---- graphs -------------------------------------------------------------------------------------------------
    def _chunks(self, n: int):
        for start in range(0, n, self.batch_size):
            yield start, min(start + self.batch_size, n)

    def _fill(self, rows: np.ndarray) -> np.ndarray:
        """Pad a short last batch up to the exported batch size by repeating its first row (discarded later)."""
        if len(rows) == self.batch_size:
            return rows
        return np.concatenate([rows, np.repeat(rows[:1], self.batch_size - len(rows), 0)])

    def visual_prefix(self, pixel_values: np.ndarray, instruction_ids: np.ndarray,
                      instruction_mask: np.ndarray) -> np.ndarray:
        """(N, visual_len, hidden) float32 embeddings for N images, in chunks of the exported batch size."""
        prefix = np.asarray([self.manifest["prefix_ids"]], np.int32)
        out = []
        for a, b in self._chunks(len(pixel_values)):
            res = self.backend.run("visual_prefix", [self._fill(np.asarray(pixel_values[a:b], np.float32)),
                                                     self._fill(np.asarray(instruction_ids[a:b], np.int32)),
                                                     self._fill(np.asarray(instruction_mask[a:b], np.float32)),
                                                     prefix])
            out.append(self.backend.numpy(res[0])[:b - a])
        return np.concatenate(out)

    def generate(self, input_ids: Sequence[Sequence[int]], prefix_embeds: np.ndarray,
                 max_new_tokens: Optional[int] = None, eos_token_id: Optional[int] = None,
                 pad_token_id: Optional[int] = None, output_scores: bool = False) -> RunnerOutput:
        """Greedy continuation of ``[prefix_embeds[i] ; input_ids[i]]`` for each i (any number of requests).
        ``max_new_tokens`` None: ``GenerationConfig``'s default, capped by the room the exported cache leaves after
        the prefill (as the predictor caps it); a larger explicit value is an error."""
        if max_new_tokens is None:
            max_new_tokens = min(GenerationConfig.max_new_tokens, self.cache_len - self.prefill_len + 1)
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        prefix_embeds = np.asarray(prefix_embeds, np.float32)
        if prefix_embeds.ndim != 3 or len(prefix_embeds) != len(input_ids) \
                or prefix_embeds.shape[2] != self.manifest["hidden_size"]:
            raise ValueError(f"prefix_embeds must have shape ({len(input_ids)}, length, "
                             f"{self.manifest['hidden_size']}), got {prefix_embeds.shape}")
        longest = prefix_embeds.shape[1] + max((len(t) for t in input_ids), default=0)
        if longest > self.prefill_len:
            raise ValueError(f"prompt of {longest} positions exceeds the exported prefill length {self.prefill_len} "
                             "(re-export with a larger --prefill-len)")
        if self.prefill_len + max_new_tokens - 1 > self.cache_len:
            raise ValueError(f"prefill length {self.prefill_len} + max_new_tokens {max_new_tokens} - 1 exceeds the "
                             f"exported cache length {self.cache_len} (re-export with a larger --cache-len)")
        eos = self.manifest["eos_token_id"] if eos_token_id is None else eos_token_id
        pad = self.manifest["pad_token_id"] if pad_token_id is None else pad_token_id
        result = RunnerOutput([], [], [])
        for a, b in self._chunks(len(input_ids)):
            rows = list(range(a, b)) + [a] * (self.batch_size - (b - a))
            out = self._generate_batch([list(input_ids[i]) for i in rows], prefix_embeds[rows], max_new_tokens,
                                       eos, pad, output_scores)
            result.sequences += out.sequences[:b - a]
            result.finished += out.finished[:b - a]
            result.scores += [s[:b - a] for s in out.scores]  # the steps of each chunk in turn
        return result

    def _generate_batch(self, prompts, prefix, max_new_tokens, eos, pad, output_scores) -> RunnerOutput:
        bsz, width, hidden = self.batch_size, self.prefill_len, prefix.shape[2]
        ids = np.full((bsz, width), pad, np.int32)
        embeds = np.zeros((bsz, width, hidden), np.float32)
        embeds_mask = np.zeros((bsz, width), np.int32)
        attention = np.zeros((bsz, width), np.int32)
        for r, tokens in enumerate(prompts):
            start = width - prefix.shape[1] - len(tokens)   # left padding, as Generator lays prompts out
            embeds[r, start:start + prefix.shape[1]] = prefix[r]
            embeds_mask[r, start:start + prefix.shape[1]] = 1
            ids[r, start + prefix.shape[1]:] = tokens
            attention[r, start:] = 1
        positions = np.maximum(np.cumsum(attention, 1) - 1, 0).astype(np.int32)
        logits, keys, values = self.backend.run("prefill", [ids, embeds, embeds_mask, attention, positions])
        cache_mask = np.zeros((bsz, self.cache_len), np.int32)
        cache_mask[:, :width] = attention
        next_pos = attention.sum(1).astype(np.int32)
        write = width
        sequences = [[] for _ in range(bsz)]
        finished = np.zeros(bsz, bool)
        scores = []
        for step in range(max_new_tokens):
            step_logits = self.backend.numpy(logits)
            if output_scores:
                scores.append(step_logits)
            tokens = np.where(finished, pad, np.argmax(step_logits, -1))  # finished rows feed padding
            for r in np.flatnonzero(~finished):
                sequences[r].append(int(tokens[r]))
            finished |= tokens == eos
            if finished.all() or step == max_new_tokens - 1:
                break
            cache_mask[:, write] = 1
            logits, keys, values = self.backend.run(
                "decode", [tokens.astype(np.int32).reshape(bsz, 1), next_pos.reshape(bsz, 1), keys, values,
                           cache_mask, np.array(write, np.int32)])
            next_pos += 1
            write += 1
        return RunnerOutput(sequences, finished.tolist(), scores)

    # ---- end to end ---------------------------------------------------------------------------------------------
    def preprocess(self, images: Sequence, instructions: Sequence[str], boxes: Optional[Sequence] = None):
        """(pixels, instruction ids, instruction mask) as the predictor builds them; images are paths or
        preprocessed (3, S, S) arrays."""
        from lman_ms.data.pipeline import load_image
        from lman_ms.data.tokenizers import fixed_length
        size = self.manifest["image_size"]
        boxes = list(boxes or [None] * len(images))
        pixels = np.stack([im if isinstance(im, np.ndarray) else load_image(im, size, b)
                           for im, b in zip(images, boxes)]).astype(np.float32)
        ins = [fixed_length(self.clip_tokenizer, t, self.manifest["num_instruction_tokens"]) for t in instructions]
        return pixels, np.stack([i for i, _ in ins]), np.stack([m for _, m in ins])

    def answer_ids(self, images: Sequence, instructions: Sequence[str], max_new_tokens: Optional[int] = None,
                   boxes: Optional[Sequence] = None) -> RunnerOutput:
        if len(images) != len(instructions):
            raise ValueError(f"{len(images)} images but {len(instructions)} instructions")
        prefix = self.visual_prefix(*self.preprocess(images, instructions, boxes))
        return self.generate([self.prompt_ids(t) for t in instructions], prefix, max_new_tokens,
                             eos_token_id=self.tokenizer.eos_id, pad_token_id=self.tokenizer.pad_id)

    def answer(self, images: Sequence, instructions: Sequence[str], max_new_tokens: Optional[int] = None,
               boxes: Optional[Sequence] = None) -> List[str]:
        out = self.answer_ids(images, instructions, max_new_tokens, boxes)
        return [self.tokenizer.decode(seq).strip() for seq in out.sequences]


__all__ = ["BACKENDS", "BackendUnavailable", "ExportError", "GraphCellBackend", "LiteBackend", "LiteRunner",
           "RunnerOutput", "make_backend"]
