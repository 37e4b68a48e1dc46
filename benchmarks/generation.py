"""Benchmark 2: greedy decoding tokens/s of ``lman_ms.infer.generate.Generator`` (GRAPH_MODE, static KV cache kept
on the device, decode step on the fused CPU kernels of ``lman_ms/infer/decode_kernels.cc`` when they can be built:
the details name the decode cell that ran) against recomputing the whole sequence at every step
(``backend="recompute"``) and against Hugging Face ``generate()`` in PyTorch (its dynamic KV cache), for the same
LLaMA weights, at growing total lengths.

One random ``LlamaForCausalLM`` is written by ``transformers`` and loaded with ``lman_ms.convert.llama``, so both
sides decode the same weights (the greedy tokens are compared too). For each total length L (prompt + new tokens)
the decoder is built with ``max_position_embeddings = L``: the cache holds L slots and the recompute baseline runs
the fixed-length L forward at every step, as ``Generator`` does. The recompute baseline's steps all cost the same,
so it is timed over a few tokens; the cache and Hugging Face are timed over all L - prompt new tokens, prefill
included. Compilation (the first call at each length) is excluded. Each side runs in its own worker process
(``worker.py``).
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Dict, List

import numpy as np

from .common import (BenchContext, BenchmarkResult, Figure, set_mindspore_threads, set_torch_threads,
                     threads_label)
from .sizes import generation_llm
from .worker import Worker


class HfGenerationSide:
    """Hugging Face side (its own process): writes the random model that both sides decode, then times
    ``generate()`` (greedy, its default dynamic KV cache)."""

    def __init__(self, folder: str, quick: bool):
        import torch
        import transformers

        set_torch_threads()
        torch.manual_seed(0)
        cfg = transformers.LlamaConfig(**generation_llm(quick), max_position_embeddings=4096)
        self.model = transformers.LlamaForCausalLM(cfg).eval()
        self.model.save_pretrained(folder)

    def generate(self, prompt: List[int], new: int) -> Dict[str, Any]:
        import torch
        ids = torch.tensor([prompt])
        t0 = time.perf_counter()
        with torch.no_grad():  # min_new_tokens: never stop at EOS, like eos_token_id=-1 on our side
            out = self.model.generate(ids, max_new_tokens=new, min_new_tokens=new, do_sample=False, use_cache=True,
                                      pad_token_id=0)
        return {"seconds": time.perf_counter() - t0, "tokens": out[0, len(prompt):].tolist()}


class MsGenerationSide:
    """MindSpore side (its own process): one decoder and ``Generator`` per total length, compiled by ``prepare``."""

    def __init__(self, folder: str):
        import mindspore as ms

        from lman_ms.convert.llama import llama_config_from_hf, load_llama_state
        set_mindspore_threads()
        ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
        self.folder = folder
        self.config = llama_config_from_hf(folder)
        self.state = load_llama_state(folder)
        self.generators = {}

    def prepare(self, length: int, prompt: List[int]) -> float:
        """Build the decoder for ``length`` and compile its prefill, decode and recompute cells; returns seconds."""
        from lman_ms.infer.generate import Generator
        from lman_ms.models.llm import VicunaDecoder

        t0 = time.perf_counter()
        decoder = VicunaDecoder(dataclasses.replace(self.config, max_position_embeddings=length))
        decoder.set_train(False)
        decoder.load_state(self.state, source=self.folder)
        gen = Generator(decoder, max_cache_len=length, prefill_bucket=len(prompt))
        gen.generate([prompt], max_new_tokens=2, **_NEVER_STOP)
        gen.generate([prompt], max_new_tokens=1, backend="recompute", **_NEVER_STOP)
        self.generators[length] = gen
        return time.perf_counter() - t0

    def decode_cell(self, length: int, batch_size: int = 1) -> str:
        """Class of the decode step the cache backend ran: ``FusedDecodeCell`` (CPU kernels), ``InplaceDecodeCell``
        (the fallback when they cannot be built) or ``DecodeCell`` (functional cache)."""
        gen = self.generators[length]
        if not gen.inplace_cache:
            return "DecodeCell"
        return type(gen._inplace_cells(batch_size)[1]).__name__

    def generate(self, length: int, prompt: List[int], new: int, backend: str) -> Dict[str, Any]:
        gen = self.generators[length]
        t0 = time.perf_counter()
        out = gen.generate([prompt], max_new_tokens=new, backend=backend, **_NEVER_STOP)
        return {"seconds": time.perf_counter() - t0, "tokens": out.sequences[0]}


_NEVER_STOP = dict(eos_token_id=-1)  # no id is -1: every run decodes exactly max_new_tokens


def _best_interleaved(rounds: int, calls: Dict[str, tuple]) -> Dict[str, Dict[str, Any]]:
    """Fastest of ``rounds`` runs of each named ``(worker, args)``, the runs interleaved round by round (a burst of
    load from other users then hits every side instead of one); the order rotates between rounds."""
    best: Dict[str, Dict[str, Any]] = {}
    names = list(calls)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            side, args = calls[name]
            out = side.call("generate", *args)
            if name not in best or out["seconds"] < best[name]["seconds"]:
                best[name] = out
    return best


def _measure(ctx: BenchContext, threads: int, folder: str, prompt: List[int], lengths, recompute_tokens: int,
             rounds: int):
    """Per-length rows of tokens/s (cache, recompute, HF) with ``threads`` intra-op threads per side."""
    rows: Dict[int, Dict[str, float]] = {}
    same_tokens = []
    ctx.log(f"generation: {threads_label(threads)}: starting the HF PyTorch and MindSpore workers")
    with Worker(__name__, "HfGenerationSide", {"folder": folder, "quick": ctx.quick}, ctx.work_dir, threads) as hf, \
            Worker(__name__, "MsGenerationSide", {"folder": folder}, ctx.work_dir, threads) as ms_side:
        hf.call("generate", prompt, 2)
        for length in lengths:
            new = length - len(prompt)
            ctx.log(f"generation: L={length}: compiling, then timing {new} new tokens")
            compile_s = ms_side.call("prepare", length, prompt)
            n_re = min(new, recompute_tokens)
            best = _best_interleaved(rounds, {"cache": (ms_side, (length, prompt, new, "cache")),
                                              "hf": (hf, (prompt, new)),
                                              "recompute": (ms_side, (length, prompt, n_re, "recompute"))})
            cache, recompute, ref = best["cache"], best["recompute"], best["hf"]
            decode_cell = ms_side.call("decode_cell", length)
            same_tokens.append(cache["tokens"] == ref["tokens"])
            rows[length] = {"new_tokens": new, "cache_tok_s": new / cache["seconds"],
                            "recompute_tok_s": n_re / recompute["seconds"], "hf_tok_s": new / ref["seconds"],
                            "cache_ms_per_token": 1e3 * cache["seconds"] / new,
                            "recompute_ms_per_token": 1e3 * recompute["seconds"] / n_re,
                            "hf_ms_per_token": 1e3 * ref["seconds"] / new, "compile_seconds": compile_s,
                            "decode_cell": decode_cell}
    return rows, same_tokens


def run(ctx: BenchContext) -> BenchmarkResult:
    prompt_len, lengths, recompute_tokens, rounds = (8, (16, 32), 4, 1) if ctx.quick else (16, (64, 128, 256), 12, 2)
    folder = os.path.join(ctx.work_dir, "generation_llama")
    vocab = generation_llm(ctx.quick)["vocab_size"]
    prompt = np.random.default_rng(0).integers(3, vocab, prompt_len).tolist()
    figures, per_threads, same_tokens = [], {}, []
    for threads in ctx.comparison_threads():
        rows, same = _measure(ctx, threads, folder, prompt, lengths, recompute_tokens, rounds)
        same_tokens += same
        per_threads[str(threads)] = {str(k): v for k, v in rows.items()}
        label = threads_label(threads)
        for length, r in rows.items():
            figures.append(Figure(f"greedy decode, L={length}, {label}", "tokens/s", r["cache_tok_s"],
                                  "recompute (no cache)", r["recompute_tok_s"],
                                  note=f"prompt {prompt_len} + {r['new_tokens']} new tokens"))
            figures.append(Figure(f"greedy decode, L={length}, {label}", "tokens/s", r["cache_tok_s"],
                                  "HF generate() PyTorch", r["hf_tok_s"]))
        lo, hi = lengths[0], lengths[-1]
        figures.append(Figure(f"per-token cost L={hi} vs L={lo}, cache, {label}", "ms/token",
                              rows[hi]["cache_ms_per_token"], f"same with cache at L={lo}",
                              rows[lo]["cache_ms_per_token"], better="lower", note="~1 = flat in the sequence length"))
        figures.append(Figure(f"per-token cost L={hi} vs L={lo}, recompute, {label}", "ms/token",
                              rows[hi]["recompute_ms_per_token"], f"recompute at L={lo}",
                              rows[lo]["recompute_ms_per_token"], better="lower", note="grows with L without a cache"))
    h = generation_llm(ctx.quick)
    details = {"llm": f"LLaMA {h['num_hidden_layers']}x{h['hidden_size']} (intermediate {h['intermediate_size']}, "
                      f"vocab {h['vocab_size']}), batch 1, greedy, fp32", "prompt_tokens": prompt_len,
               "timing": f"best of {rounds} interleaved runs per figure; tokens/s over the whole generate() call "
                         "(prefill included)", "per_threads": per_threads,
               "same_greedy_tokens_as_hf": all(same_tokens)}
    return BenchmarkResult("generation", "Generation (KV cache vs recompute vs HF generate)", figures, details)
