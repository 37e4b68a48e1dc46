"""Autoregressive generation for ``VicunaDecoder``: host-side loop in NumPy over compiled prefill/decode cells.

Three backends:

* ``"cache"`` (default, any device): a prompt pass over the left-padded ``[prefix embeddings ; prompt]`` then one
  decode call per new token against a static key/value cache: by default the cache stays on the device in Parameter
  buffers updated in place (``inplace_cache.py``), and on CPU the decode step runs on fused kernels
  (``FusedDecodeCell``, ``decode_kernels.cc``); with ``Generator(inplace_cache=False)`` the functional
  ``PrefillCell``/``DecodeCell`` of ``kv_cache.py`` (the cells exported to MindIR) pass the caches in and out at
  every step;
* ``"recompute"``: no cache, the decoder's full forward over the whole sequence at every step (the reference the
  cache must reproduce, and the baseline of ``tools/benchmark.py``);
* ``"mindformers"``: mindformers' own ``LlamaForCausalLM.generate`` with ``use_past`` (paged attention), Ascend only,
  token prompts only; needs ``VicunaDecoder(config, use_past=True)``.

Token selection follows Hugging Face ``generate`` order: repetition penalty (over prompt and generated ids) ->
greedy argmax, or temperature -> top-k -> top-p -> sampling with a seeded ``numpy.random.Generator``. Each sequence
stops at its EOS (which is kept in its output, as in HF); the loop stops when all have or at ``max_new_tokens``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import mindspore as ms
import numpy as np
from mindspore import Tensor

from lman_ms.infer.decode_kernels import load_decode_kernels
from lman_ms.infer.fused_decode import FusedDecodeCell
from lman_ms.infer.generation_config import GenerationConfig  # noqa: F401  (part of this module's API)
from lman_ms.infer.inplace_cache import CacheBuffers, InplaceDecodeCell, InplacePrefillCell
from lman_ms.infer.kv_cache import DecodeCell, PrefillCell, RecomputeCell
from lman_ms.models.llm import VicunaDecoder

BACKENDS = ("cache", "recompute", "mindformers")


@dataclass
class GenerationOutput:
    sequences: List[List[int]]         # generated ids per prompt (EOS included when reached), prompt excluded
    finished: List[bool] = field(default_factory=list)  # True where the sequence ended with EOS
    scores: List[np.ndarray] = field(default_factory=list)  # per step raw logits (batch, vocab) if output_scores


# ---- token selection (host side) -----------------------------------------------------------------------------------
def apply_repetition_penalty(logits: np.ndarray, seen: np.ndarray, penalty: float) -> np.ndarray:
    """HF ``RepetitionPenaltyLogitsProcessor``: for ids already in the sequence (``seen`` bool (batch, vocab)),
    divide positive logits by ``penalty`` and multiply negative ones by it."""
    if penalty == 1.0:
        return logits
    penalised = np.where(logits > 0, logits / penalty, logits * penalty)
    return np.where(seen, penalised, logits)


def top_k_filter(logits: np.ndarray, k: int) -> np.ndarray:
    """Keep the k largest logits per row (ties with the k-th kept), -inf elsewhere."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = np.partition(logits, -k, axis=-1)[:, -k][:, None]
    return np.where(logits < kth, -np.inf, logits)


def top_p_filter(logits: np.ndarray, p: float) -> np.ndarray:
    """Nucleus filtering: keep the smallest set of most probable ids whose probability reaches ``p`` (at least one)."""
    if p >= 1.0:
        return logits
    order = np.argsort(-logits, axis=-1, kind="stable")
    sorted_logits = np.take_along_axis(logits, order, -1)
    probs = _softmax(sorted_logits)
    # an id is dropped when the ids ranked above it already reach p
    drop_sorted = (np.cumsum(probs, -1) - probs) >= p
    drop = np.zeros_like(drop_sorted)
    np.put_along_axis(drop, order, drop_sorted, -1)
    return np.where(drop, -np.inf, logits)


def _softmax(x: np.ndarray) -> np.ndarray:
    x = x - np.max(x, -1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


def select_tokens(logits: np.ndarray, seen: np.ndarray, cfg: GenerationConfig,
                  rng: Optional[np.random.Generator]) -> np.ndarray:
    """Next id per row of float logits (batch, vocab)."""
    logits = apply_repetition_penalty(logits.astype(np.float64), seen, cfg.repetition_penalty)
    if not cfg.do_sample:
        return np.argmax(logits, -1)
    logits = top_p_filter(top_k_filter(logits / cfg.temperature, cfg.top_k), cfg.top_p)
    probs = _softmax(logits)
    # inverse-CDF sampling: one uniform draw per row, reproducible for a given seed
    u = rng.random((probs.shape[0], 1))
    cdf = np.cumsum(probs, -1)
    return np.minimum((cdf < u * cdf[:, -1:]).sum(-1), probs.shape[-1] - 1)


# ---- prompt layout ------------------------------------------------------------------------------------------------
@dataclass
class _Batch:
    input_ids: np.ndarray      # (B, P) int32, pad id at padding and embedding positions
    input_embeds: np.ndarray   # (B, P, H) float32, zeros outside embedding positions
    embeds_mask: np.ndarray    # (B, P) int32
    attention_mask: np.ndarray  # (B, P) int32, 0 = left padding
    seen_ids: List[List[int]]  # prompt token ids, for the repetition penalty


def _layout(input_ids, prefix_embeds, inputs_embeds, hidden: int, pad_id: int, bucket: int) -> _Batch:
    """Left-pad every prompt to a common length P (a multiple of ``bucket``, so few shapes get compiled).

    Each sequence is ``[pad ... pad ; prefix_embeds[b] ; input_ids[b]]`` or ``[pad ... ; inputs_embeds[b]]``.
    """
    if inputs_embeds is not None:
        if input_ids is not None or prefix_embeds is not None:
            raise ValueError("give inputs_embeds alone, or input_ids with optional prefix_embeds")
        rows = [(np.asarray(e, np.float32), []) for e in inputs_embeds]
        for b, (e, _) in enumerate(rows):
            if e.ndim != 2 or e.shape[1] != hidden:
                raise ValueError(f"inputs_embeds[{b}] must have shape (length, {hidden}), got {e.shape}")
    else:
        if input_ids is None:
            raise ValueError("generate needs input_ids, prefix_embeds + input_ids, or inputs_embeds")
        ids = [[int(t) for t in row] for row in input_ids]
        if prefix_embeds is None:
            prefix = np.zeros((len(ids), 0, hidden), np.float32)
        else:
            prefix = np.asarray(prefix_embeds, np.float32)
            if prefix.ndim != 3 or prefix.shape[0] != len(ids) or prefix.shape[2] != hidden:
                raise ValueError(f"prefix_embeds must have shape ({len(ids)}, length, {hidden}), got {prefix.shape}")
        rows = [(prefix[b], ids[b]) for b in range(len(ids))]
    if not rows:
        raise ValueError("generate got an empty batch")
    lengths = [len(e) + len(t) for e, t in rows]
    if min(lengths) == 0:
        raise ValueError(f"prompt {lengths.index(0)} is empty")
    width = -(-max(lengths) // bucket) * bucket
    batch = len(rows)
    out = _Batch(np.full((batch, width), pad_id, np.int32), np.zeros((batch, width, hidden), np.float32),
                 np.zeros((batch, width), np.int32), np.zeros((batch, width), np.int32), [])
    for b, (emb, tok) in enumerate(rows):
        start = width - lengths[b]
        out.input_embeds[b, start:start + len(emb)] = emb
        out.embeds_mask[b, start:start + len(emb)] = 1
        out.input_ids[b, start + len(emb):] = tok
        out.attention_mask[b, start:] = 1
        out.seen_ids.append(list(tok))
    return out


class Generator:
    """Generation driver for one ``VicunaDecoder``; compiled cells are kept between calls.

    Args:
        decoder: the decoder (its Parameters are used directly, never copied).
        max_cache_len: static cache length = the longest prompt + max_new_tokens served (default:
            ``llm.max_position_embeddings``); the decode cell is compiled once per (batch size, max_cache_len).
        prefill_bucket: prompts are left-padded to a multiple of this, bounding the number of prefill compiles.
        inplace_cache: keep the cache in device buffers written in place (default; the buffers, 2 x layers x batch x
            kv_heads x max_cache_len x head_dim values, are allocated per batch size served and kept); False runs
            the functional cells that take and return the whole cache at every step (as exported to MindIR).
        cpu_kernels: with the in-place cache on CPU, run the decode step on the fused kernels of
            ``decode_kernels.cc`` (``FusedDecodeCell``; built on first use, MindSpore's ops when that is impossible).
    """

    def __init__(self, decoder: VicunaDecoder, max_cache_len: Optional[int] = None, prefill_bucket: int = 16,
                 inplace_cache: bool = True, cpu_kernels: bool = True):
        self.decoder = decoder
        self.config = decoder.config
        self.max_cache_len = max_cache_len or decoder.seq_length
        if not 0 < self.max_cache_len <= decoder.seq_length:
            raise ValueError(f"max_cache_len must be in 1..{decoder.seq_length} (llm.max_position_embeddings), "
                             f"got {self.max_cache_len}")
        if prefill_bucket < 1:
            raise ValueError(f"prefill_bucket must be >= 1, got {prefill_bucket}")
        self.prefill_bucket = prefill_bucket
        self.inplace_cache = inplace_cache
        self.cpu_kernels = cpu_kernels
        self._cells = {}

    def room(self, prompt_length: int) -> int:
        """The most new tokens the cache allows after a prompt of ``prompt_length`` positions (prefix embeddings
        included), bucketed as the cache backend lays it out; < 1 when the prompt alone fills the cache."""
        width = -(-prompt_length // self.prefill_bucket) * self.prefill_bucket
        return self.max_cache_len - width + 1

    def _cell(self, kind: str):
        if kind not in self._cells:
            if kind == "recompute":
                cell = RecomputeCell(self.decoder)
            else:
                cell = (PrefillCell if kind == "prefill" else DecodeCell)(self.decoder, self.max_cache_len)
            cell.set_train(False)
            self._cells[kind] = cell
        return self._cells[kind]

    def _inplace_cells(self, batch_size: int):
        """(prefill, decode) sharing the cache buffers of ``batch_size`` sequences."""
        key = ("inplace", batch_size)
        if key not in self._cells:
            buffers = CacheBuffers(self.decoder, batch_size, self.max_cache_len)
            prefill = InplacePrefillCell(self.decoder, buffers, self.max_cache_len)
            kernels = load_decode_kernels() if self.cpu_kernels and FusedDecodeCell.supports(self.decoder) else None
            if kernels is None:
                decode = InplaceDecodeCell(self.decoder, buffers, self.max_cache_len)
            else:
                decode = FusedDecodeCell(self.decoder, buffers, self.max_cache_len, kernels)
            for cell in (prefill, decode):
                cell.set_train(False)
            # MindSpore's incremental-inference phase: once compiled, calls go straight to the graph instead of
            # re-checking the arguments and re-tagging every sub-cell (~0.5 ms per step here). Sound because this
            # cell only ever sees the same input shapes; the prefill's vary with the prompt bucket.
            decode.phase = "increment"
            self._cells[key] = (prefill, decode)
        return self._cells[key]

    def generate(self, input_ids: Optional[Sequence[Sequence[int]]] = None,
                 prefix_embeds: Optional[np.ndarray] = None,
                 inputs_embeds: Optional[Sequence[np.ndarray]] = None,
                 generation_config: Optional[GenerationConfig] = None,
                 backend: str = "cache", on_token=None, **overrides) -> GenerationOutput:
        """Generate for a batch of prompts of any lengths (left-padded together).

        ``input_ids``: token id lists; ``prefix_embeds`` (batch, Q, hidden): embeddings placed before each prompt
        (L-Man's projected visual tokens); or ``inputs_embeds``: one (length, hidden) array per prompt, already
        assembled. ``overrides`` set ``GenerationConfig`` fields (``max_new_tokens=8, do_sample=True`` ...).
        ``on_token(step, tokens, finished)`` (cache and recompute backends; for streaming servers): called after
        each step with the batch's new ids (padding in rows already done) and a copy of the EOS mask; it may return
        a bool mask (batch,) of rows to end now, without EOS (a stop string matched, a client left).
        """
        cfg = dataclasses.replace(generation_config or GenerationConfig(), **overrides).validate()
        eos = cfg.eos_token_id if cfg.eos_token_id is not None else self.config.eos_token_id
        eos_ids = np.array([eos] if isinstance(eos, int) else list(eos), np.int64)
        pad = cfg.pad_token_id if cfg.pad_token_id is not None else self.config.pad_token_id
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "mindformers":
            return self._generate_mindformers(input_ids, prefix_embeds, inputs_embeds, cfg, eos, pad)
        if self.decoder.use_past:
            raise ValueError(f"backend={backend!r} needs VicunaDecoder(use_past=False)")

        batch = _layout(input_ids, prefix_embeds, inputs_embeds, self.config.hidden_size, pad,
                        self.prefill_bucket if backend == "cache" else 1)
        bsz, width = batch.input_ids.shape
        # the last new token is returned, never fed back: it needs no cache slot
        if width + cfg.max_new_tokens - 1 > self.max_cache_len:
            raise ValueError(f"prompt length {width} + max_new_tokens {cfg.max_new_tokens} - 1 exceeds the cache "
                             f"length {self.max_cache_len} (Generator max_cache_len / llm.max_position_embeddings)")
        rng = np.random.default_rng(cfg.seed) if cfg.do_sample else None
        seen = np.zeros((bsz, self.config.vocab_size), bool)
        for b, ids in enumerate(batch.seen_ids):
            seen[b, [t for t in ids if 0 <= t < self.config.vocab_size]] = True
        if backend == "recompute":
            step_fn = self._recompute_steps(batch)
        else:
            step_fn = self._inplace_steps(batch) if self.inplace_cache else self._cache_steps(batch)

        sequences = [[] for _ in range(bsz)]
        finished = np.zeros(bsz, bool)
        halted = np.zeros(bsz, bool)  # rows the on_token callback ended
        scores = []
        logits = next(step_fn)
        for step in range(cfg.max_new_tokens):
            if cfg.output_scores:
                scores.append(logits)
            tokens = select_tokens(logits, seen, cfg, rng)
            done = finished | halted
            tokens = np.where(done, pad, tokens)  # finished rows keep feeding padding, never emitted
            for b in np.flatnonzero(~done):
                sequences[b].append(int(tokens[b]))
                seen[b, tokens[b]] = True
            finished |= np.isin(tokens, eos_ids) & ~done
            if on_token is not None:
                halt = on_token(step, tokens, finished.copy())
                if halt is not None:
                    halted |= np.asarray(halt, bool) & ~finished
            if (finished | halted).all() or step == cfg.max_new_tokens - 1:
                break
            logits = step_fn.send(tokens.astype(np.int32))
        step_fn.close()
        return GenerationOutput(sequences, finished.tolist(), scores)

    # ---- backends -------------------------------------------------------------------------------------------------
    def _cache_steps(self, batch: _Batch):
        """Coroutine: yields next-token logits; receives the chosen tokens (batch,)."""
        prefill, decode = self._cell("prefill"), self._cell("decode")
        bsz, width = batch.input_ids.shape
        positions = np.maximum(np.cumsum(batch.attention_mask, 1) - 1, 0).astype(np.int32)
        logits, key_cache, value_cache = prefill(Tensor(batch.input_ids), Tensor(batch.input_embeds),
                                                 Tensor(batch.embeds_mask), Tensor(batch.attention_mask),
                                                 Tensor(positions))
        cache_mask = np.zeros((bsz, self.max_cache_len), np.int32)
        cache_mask[:, :width] = batch.attention_mask
        next_pos = batch.attention_mask.sum(1).astype(np.int32)
        write = width
        while True:
            tokens = yield logits.asnumpy()
            cache_mask[:, write] = 1
            logits, key_cache, value_cache = decode(Tensor(tokens.reshape(bsz, 1)), Tensor(next_pos.reshape(bsz, 1)),
                                                    key_cache, value_cache, Tensor(cache_mask),
                                                    Tensor(write, ms.int32))
            next_pos += 1
            write += 1

    def _inplace_steps(self, batch: _Batch):
        """Coroutine like ``_cache_steps`` on the in-place cells: per step only the tokens and the slot index go in."""
        bsz, width = batch.input_ids.shape
        prefill, decode = self._inplace_cells(bsz)
        positions = np.maximum(np.cumsum(batch.attention_mask, 1) - 1, 0).astype(np.int32)
        logits = prefill(Tensor(batch.input_ids), Tensor(batch.input_embeds), Tensor(batch.embeds_mask),
                         Tensor(batch.attention_mask), Tensor(positions))
        pad_count = Tensor((width - batch.attention_mask.sum(1)).astype(np.int32).reshape(bsz, 1))
        write = width
        while True:
            tokens = yield logits.asnumpy()
            logits = decode(Tensor(tokens.reshape(bsz, 1)), pad_count, Tensor(write, ms.int32))
            write += 1

    def _recompute_steps(self, batch: _Batch):
        """Coroutine like ``_cache_steps``, recomputing the whole fixed-length sequence every step."""
        cell = self._cell("recompute")
        bsz, width = batch.input_ids.shape
        total = self.max_cache_len  # one fixed shape for every step: right padding is masked (and causal)
        ids = np.zeros((bsz, total), np.int32)  # any valid id: positions past ``last`` are masked out
        ids[:, :width] = batch.input_ids
        embeds = np.zeros((bsz, total, self.config.hidden_size), np.float32)
        embeds[:, :width] = batch.input_embeds
        embeds_mask = np.zeros((bsz, total), np.int32)
        embeds_mask[:, :width] = batch.embeds_mask
        mask = np.zeros((bsz, total), np.int32)
        mask[:, :width] = batch.attention_mask
        last = width - 1
        embeds_t, embeds_mask_t = Tensor(embeds), Tensor(embeds_mask)
        while True:
            tokens = yield cell(Tensor(ids), embeds_t, embeds_mask_t, Tensor(mask), Tensor([last], ms.int32)).asnumpy()
            last += 1
            ids[:, last] = tokens
            mask[:, last] = 1

    def _generate_mindformers(self, input_ids, prefix_embeds, inputs_embeds, cfg, eos, pad) -> GenerationOutput:
        """mindformers' ``generate`` with ``use_past`` (Ascend paged attention); token prompts only."""
        if not self.decoder.use_past:
            raise ValueError("backend='mindformers' needs VicunaDecoder(config, use_past=True) (Ascend only)")
        if prefix_embeds is not None or inputs_embeds is not None or input_ids is None:
            raise ValueError("backend='mindformers' takes token prompts only; use backend='cache' for embeddings")
        prompts = [[int(t) for t in row] for row in input_ids]
        outputs = self.decoder.llama.generate(
            prompts, max_new_tokens=cfg.max_new_tokens, do_sample=cfg.do_sample, temperature=cfg.temperature,
            top_k=cfg.top_k, top_p=cfg.top_p, repetition_penalty=cfg.repetition_penalty, eos_token_id=eos,
            pad_token_id=pad, seed=cfg.seed)
        eos_ids = {eos} if isinstance(eos, int) else set(eos)
        sequences, finished = [], []
        for prompt, out in zip(prompts, outputs):
            new = [int(t) for t in list(out)[len(prompt):]]
            stop = next((i for i, t in enumerate(new) if t in eos_ids), None)
            sequences.append(new if stop is None else new[:stop + 1])
            finished.append(stop is not None)
        return GenerationOutput(sequences, finished)


__all__ = ["BACKENDS", "GenerationConfig", "GenerationOutput", "Generator", "apply_repetition_penalty",
           "select_tokens", "top_k_filter", "top_p_filter"]
