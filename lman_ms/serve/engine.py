"""The model behind the server and the chat: one interface over a checkpoint (eager ``Generator``, KV cache, every
sampling option) and over an export folder (``LiteRunner``: graphcell or lite backend, greedy only).

Every method that touches MindSpore is called from one thread only (MindSpore is not thread-safe): the server's
model thread (``batching.Batcher``) or the chat's main thread. Construction included: ``load_engine`` is run there.
"""
from __future__ import annotations

import io
import os
from typing import Callable, List, Optional, Sequence

import numpy as np

from lman_ms.data.conversation import VicunaTemplate
from lman_ms.data.pipeline import load_image
from lman_ms.serve.conversation import Conversation, prompt_ids

# on_token(step, tokens (batch,), finished (batch,)) -> optional bool mask of rows to end now
OnToken = Callable[[int, np.ndarray, np.ndarray], Optional[np.ndarray]]


class _Engine:
    """What both engines do alike once they have a tokenizer, a template and per-task input sizes."""

    tokenizer = None
    template: VicunaTemplate

    def input_size(self, task: Optional[str]) -> int:
        raise NotImplementedError

    def prompt_ids(self, conv: Conversation) -> List[int]:
        return prompt_ids(self.tokenizer, self.template, conv)

    def pixels(self, image_bytes: bytes, task: Optional[str]) -> np.ndarray:
        return load_image(io.BytesIO(image_bytes), self.input_size(task))


def add_model_arguments(ap) -> None:
    """The model-source options of tools/serve.py and tools/chat.py (the arguments of :func:`load_engine`)."""
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--ckpt", help="checkpoint folder, training output dir or model folder")
    src.add_argument("--export_dir", "--export-dir", dest="export_dir", help="folder written by tools/export.py")
    ap.add_argument("--config", help="YAML config (default: config.yaml beside the weights)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    ap.add_argument("--backend", choices=("graphcell", "lite"), default="graphcell",
                    help="runtime of --export_dir (default graphcell)")


class CheckpointEngine(_Engine):
    """A training checkpoint folder, output dir or model folder, through ``LManPredictor``."""

    greedy_only = False
    fixed_system = False

    def __init__(self, predictor, name: str):
        self.predictor = predictor
        self.name = name
        self.tokenizer = predictor.tok
        self.template: VicunaTemplate = predictor.template
        self.visual_len = predictor.prefix.shape[1] + predictor.cfg.adapter.num_query_tokens
        self.context_len = predictor.generator.max_cache_len

    def input_size(self, task: Optional[str]) -> int:
        return self.predictor.image_size(task)

    def known_task(self, task: str) -> bool:
        # a HumanIns task without its own input size in the config runs at the vision default
        from lman_ms.data.tasks import HUMANINS_TASKS
        return task in HUMANINS_TASKS or task in self.predictor.cfg.data.tasks

    def room(self, prompt_len: int, system: Optional[str] = None) -> int:
        """New tokens the cache allows after this many prompt ids (the visual prefix is added here)."""
        extra = len(self._prefix(system)[0]) - self.predictor.prefix.shape[1]
        return self.predictor.generator.room(self.visual_len + extra + prompt_len)

    def _prefix(self, system: Optional[str]) -> np.ndarray:
        """BOS + "{system} USER:" ids, (1, P): the template's, or with a request's own system line."""
        if system is None or system == self.template.system:
            return self.predictor.prefix
        from lman_ms.data.conversation import prefix_ids as template_prefix
        t = VicunaTemplate(system=system, user=self.template.user, assistant=self.template.assistant)
        return template_prefix(self.tokenizer, t)[None].astype(np.int32)

    def generate(self, pixels: np.ndarray, adapter_texts: Sequence[str], prompts: Sequence[List[int]],
                 generation: dict, on_token: Optional[OnToken] = None,
                 system: Optional[str] = None) -> List[List[int]]:
        """Generated ids per row (EOS kept where reached) for one left-padded batch of one input size."""
        from mindspore import Tensor
        from lman_ms.data.tokenizers import fixed_length
        p = self.predictor
        pixels, adapter_texts, prompts, on_token = _pad_batch(pixels, adapter_texts, prompts, on_token)
        ins = [fixed_length(p.clip_tok, t, p.cfg.adapter.num_instruction_tokens) for t in adapter_texts]
        prefix = p.prefix_cell(Tensor(np.asarray(pixels, np.float32)), Tensor(np.stack([i for i, _ in ins])),
                               Tensor(np.stack([m for _, m in ins])), Tensor(self._prefix(system))).asnumpy()
        generation = dict(generation, eos_token_id=self.tokenizer.eos_id, pad_token_id=self.tokenizer.pad_id)
        # the batch's longest prompt sets the room: the server refuses prompts with no room before batching
        room = p.generator.room(prefix.shape[1] + max(len(x) for x in prompts))
        generation["max_new_tokens"] = max(1, min(generation["max_new_tokens"], room))
        out = p.generator.generate(input_ids=[list(x) for x in prompts], prefix_embeds=prefix, on_token=on_token,
                                   **generation)
        return out.sequences[:on_token.rows]


class ExportEngine(_Engine):
    """An export folder (``tools/export.py``) through ``LiteRunner``: fixed shapes, greedy decoding. Tokens reach
    ``on_token`` after the batch is decoded (the runner's loop has no callback), so a stream arrives in one piece."""

    greedy_only = True
    fixed_system = True   # the system line is part of the exported prefix ids

    def __init__(self, runner, name: str):
        self.runner = runner
        self.name = name
        m = runner.manifest
        self.tokenizer = runner.tokenizer
        t = m["template"]
        self.template = VicunaTemplate(system=t["system"], user=t["user"], assistant=t["assistant"])
        self.visual_len = m["visual_len"]
        self.context_len = m["cache_len"]

    def input_size(self, task: Optional[str]) -> int:
        return self.runner.manifest["image_size"]  # one exported size for every task

    def known_task(self, task: str) -> bool:
        from lman_ms.data.tasks import HUMANINS_TASKS
        return task in HUMANINS_TASKS

    def room(self, prompt_len: int, system: Optional[str] = None) -> int:
        if self.visual_len + prompt_len > self.runner.prefill_len:
            return 0
        return self.runner.cache_len - self.runner.prefill_len + 1

    def generate(self, pixels: np.ndarray, adapter_texts: Sequence[str], prompts: Sequence[List[int]],
                 generation: dict, on_token: Optional[OnToken] = None,
                 system: Optional[str] = None) -> List[List[int]]:
        from lman_ms.data.tokenizers import fixed_length
        n = self.runner.manifest["num_instruction_tokens"]
        ins = [fixed_length(self.runner.clip_tokenizer, t, n) for t in adapter_texts]
        prefix = self.runner.visual_prefix(np.asarray(pixels, np.float32), np.stack([i for i, _ in ins]),
                                           np.stack([m for _, m in ins]))
        limit = max(1, min(generation["max_new_tokens"], self.room(max(len(x) for x in prompts))))
        out = self.runner.generate([list(x) for x in prompts], prefix, limit, eos_token_id=self.tokenizer.eos_id,
                                   pad_token_id=self.tokenizer.pad_id)
        seqs = out.sequences
        if on_token is not None:
            # replay the decoded steps so that stop strings and per-request max_tokens cut the text as they would
            halted = np.zeros(len(seqs), bool)
            kept: List[List[int]] = [[] for _ in seqs]
            for step in range(max((len(s) for s in seqs), default=0)):
                live = np.array([step < len(s) and not halted[b] for b, s in enumerate(seqs)])
                tokens = np.array([s[step] if live[b] else self.tokenizer.pad_id for b, s in enumerate(seqs)])
                for b in np.flatnonzero(live):
                    kept[b].append(int(tokens[b]))
                finished = np.array([len(s) <= step + 1 and bool(out.finished[b]) for b, s in enumerate(seqs)])
                halt = on_token(step, tokens, finished)
                if halt is not None:
                    halted |= np.asarray(halt, bool)
            seqs = kept
        return seqs


def batch_bucket(n: int) -> int:
    """The batch size ``n`` requests run at: the next power of two. Each batch size compiles its own graphs (and
    cache buffers); padding keeps those to log2(max batch) + 1 shapes instead of one per request count."""
    return 1 << (max(1, n) - 1).bit_length()


class _RealRows:
    """``on_token`` for a padded batch: the caller sees its ``rows`` real rows; padding rows end at once."""

    def __init__(self, on_token: Optional[OnToken], rows: int):
        self.on_token, self.rows = on_token, rows

    def __call__(self, step, tokens, finished):
        halt = np.ones(len(tokens), bool)
        user = self.on_token(step, tokens[:self.rows], finished[:self.rows]) if self.on_token else None
        halt[:self.rows] = False if user is None else np.asarray(user, bool)
        return halt


def _pad_batch(pixels, adapter_texts, prompts, on_token):
    """Pad a batch to ``batch_bucket`` rows by repeating its first request; the padding is never seen outside."""
    n = len(prompts)
    size = batch_bucket(n)
    pad = size - n
    pixels = np.asarray(pixels, np.float32)
    if pad:
        pixels = np.concatenate([pixels, np.repeat(pixels[:1], pad, 0)])
    return (pixels, list(adapter_texts) + [adapter_texts[0]] * pad, list(prompts) + [prompts[0]] * pad,
            _RealRows(on_token, n))


def load_engine(ckpt: Optional[str] = None, config: Optional[str] = None, overrides: Sequence[str] = (),
                export_dir: Optional[str] = None, backend: str = "graphcell"):
    """The engine of a checkpoint (``ckpt``: checkpoint folder, output dir or model folder; its ``config.yaml``
    unless ``config``) or of an export folder (``export_dir`` with ``backend``)."""
    if export_dir:
        import mindspore as ms
        from lman_ms.infer.lite import LiteRunner
        ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
        return ExportEngine(LiteRunner(export_dir, backend=backend), os.path.basename(os.path.normpath(export_dir)))
    if not ckpt:
        raise ValueError("give a checkpoint (--ckpt) or an export folder (--export_dir)")
    import mindspore as ms
    from lman_ms.infer.predictor import LManPredictor
    from lman_ms.models.loader import load_model_config
    cfg = load_model_config(ckpt, config, overrides)
    ms.set_context(mode=getattr(ms, cfg.context.mode), device_target=cfg.context.device_target)
    predictor = LManPredictor.from_pretrained(ckpt, config, overrides)
    return CheckpointEngine(predictor, os.path.basename(os.path.normpath(ckpt)) or "lman")
