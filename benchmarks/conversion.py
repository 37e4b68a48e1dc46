"""Benchmark 3: conversion of a sharded HF LLaMA checkpoint of real width with
``lman_ms.convert.llama.convert_llama_to_ms`` (what ``tools/convert_weights.py`` runs).

The checkpoint (hidden 4096, intermediate 11008, vocab 32000, 4 layers, fp16 as Vicuna ships, 3 shards of about
700 MiB) is written by ``transformers`` ``save_pretrained`` in the scratch folder. The conversion runs in a child
process (``child.py``); its peak resident set is the child's own ``getrusage`` (``os.wait4`` in a small launcher
process, see ``child.py``; ``VmHWM`` is kept as a cross-check) and is compared with the largest shard, the least a
shard-by-shard converter could hold; the same peak minus that of a child that only imports the converter and
MindSpore is given beside it. The seconds of the conversion (interpreter start and imports excluded) are compared
with a plain copy of the same shards; both write their output with an fsync, since the converter's atomic writer
syncs its file.
"""
from __future__ import annotations

import glob
import os
import shutil
import time
from typing import List

from .child import run_child
from .common import BenchContext, BenchmarkResult, Figure

_SIZES = {True: dict(vocab_size=8000, hidden_size=512, intermediate_size=1376, num_hidden_layers=2,
                     num_attention_heads=8),
          False: dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=4,
                      num_attention_heads=32)}
NUM_SHARDS = 3


def write_checkpoint(folder: str, quick: bool) -> List[str]:
    """An fp16 random LLaMA saved by ``transformers`` in about ``NUM_SHARDS`` safetensors shards; returns them."""
    import torch
    import transformers

    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(**_SIZES[quick], max_position_embeddings=2048)
    model = transformers.LlamaForCausalLM._from_config(cfg, dtype=torch.float16)
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    # HF packs whole tensors greedily: a little headroom keeps it at NUM_SHARDS instead of NUM_SHARDS + 1
    model.save_pretrained(folder, max_shard_size=int(total / NUM_SHARDS * 1.1), safe_serialization=True)
    del model
    return sorted(glob.glob(os.path.join(folder, "*.safetensors")))


def copy_shards(shards: List[str], dest: str) -> float:
    os.makedirs(dest, exist_ok=True)
    t0 = time.perf_counter()
    for path in shards:
        with open(path, "rb") as src, open(os.path.join(dest, os.path.basename(path)), "wb") as dst:
            shutil.copyfileobj(src, dst, 16 << 20)
            dst.flush()
            os.fsync(dst.fileno())
    return time.perf_counter() - t0


def run(ctx: BenchContext) -> BenchmarkResult:
    folder = os.path.join(ctx.work_dir, "conversion_llama_hf")
    ctx.log("conversion: writing the HF checkpoint with transformers")
    shards = write_checkpoint(folder, ctx.quick)
    largest = max(os.path.getsize(p) for p in shards)
    total = sum(os.path.getsize(p) for p in shards)
    ctx.log(f"conversion: {len(shards)} shards, {total / 2**20:.0f} MiB; copying and converting")
    copy_s = copy_shards(shards, os.path.join(ctx.work_dir, "conversion_copy"))
    baseline = run_child(["imports"], ctx.work_dir, launch=True, threads=ctx.threads)
    out_path = os.path.join(ctx.work_dir, "conversion_llama.ckpt")
    conv = run_child(["convert", folder, out_path, "fp16"], ctx.work_dir, launch=True, threads=ctx.threads)
    for r in (baseline, conv):
        r["peak_rss_mib"] = r["ru_maxrss_kib"] / 1024.0  # Linux reports KiB
    copy_s = min(copy_s, copy_shards(shards, os.path.join(ctx.work_dir, "conversion_copy")))
    largest_mib = largest / 2**20
    figures = [
        Figure("conversion peak RSS", "MiB", conv["peak_rss_mib"], "largest shard", largest_mib, better="lower",
               note=f"child process; python + mindspore alone: {baseline['peak_rss_mib']:.0f} MiB"),
        Figure("conversion peak RSS above the import baseline", "MiB",
               conv["peak_rss_mib"] - baseline["peak_rss_mib"], "largest shard", largest_mib, better="lower",
               note="what the conversion itself holds (peak minus python + mindspore imported)"),
        Figure("conversion time", "s", conv["seconds"], "plain copy of the shards (fsync)", copy_s, better="lower",
               note=f"{total / 2**20:.0f} MiB in {len(shards)} shards, fp16 -> fp16 .ckpt"),
    ]
    s = _SIZES[ctx.quick]
    details = {"checkpoint": f"LLaMA {s['num_hidden_layers']}x{s['hidden_size']} (intermediate "
                             f"{s['intermediate_size']}, vocab {s['vocab_size']}), fp16 safetensors",
               "shards_mib": [round(os.path.getsize(p) / 2**20, 1) for p in shards],
               "output_mib": round(os.path.getsize(out_path) / 2**20, 1), "tensors": conv.get("tensors"),
               "import_only_peak_rss_mib": baseline["peak_rss_mib"],
               "peak_rss_above_imports_mib": conv["peak_rss_mib"] - baseline["peak_rss_mib"],
               "vm_hwm_mib": conv["vm_hwm_kib"] / 1024.0, "child_process_seconds": conv["process_seconds"]}
    shutil.rmtree(os.path.join(ctx.work_dir, "conversion_copy"), ignore_errors=True)
    return BenchmarkResult("conversion", "Weight conversion (sharded HF LLaMA, real width)", figures, details)
