"""Benchmark 5: HumanIns build throughput (records/s) per worker count on SynthHuman.

SynthHuman (``lman_ms.data.synth.make_synth``) is written once in the real source formats; the real converters then
build its HumanIns (``build_synth_humanins``: every source and split) with 1 and with 2 worker processes,
alternately, keeping each count's best run. Each build runs in a fresh interpreter (``child.py``), as
``tools/build_humanins.py`` would: worker processes are forked from a process without the benchmark's frameworks. The rate counts the converters' own seconds (index, load and decode
of every image header and annotation, instruction generation, JSONL shards), summed over the (dataset, split)
builds; 1 worker is the reference of the 2-worker rate. Only the per-image load stage runs in the worker pool (one
pool per (dataset, split)); on SynthHuman an image's load is a fraction of a millisecond, so the pool's start-up and
the result pickling weigh against it (see the report).
"""
from __future__ import annotations

import os
import shutil
from typing import Dict

from .child import run_child
from .common import BenchContext, BenchmarkResult, Figure

WORKERS = (1, 2)


def run(ctx: BenchContext) -> BenchmarkResult:
    from lman_ms.data.synth import make_synth

    num, rounds = (12, 1) if ctx.quick else (1000, 2)
    synth = os.path.join(ctx.work_dir, "synthhuman")
    ctx.log(f"humanins_build: writing SynthHuman ({num} images per source)")
    make_synth(synth, num, seed=0)
    best: Dict[int, Dict[str, float]] = {}
    for _ in range(rounds):
        for workers in WORKERS:
            out = os.path.join(ctx.work_dir, f"humanins_w{workers}")
            shutil.rmtree(out, ignore_errors=True)
            built = run_child(["humanins", synth, out, str(workers)], ctx.work_dir, threads=ctx.threads)
            if built["missing"]:
                raise RuntimeError(f"HumanIns converters missing for {built['missing']}: the build would be partial")
            summaries = built["builds"]
            seconds = sum(s["seconds"] for s in summaries)
            records, images = sum(s["records"] for s in summaries), sum(s["images"] for s in summaries)
            run_ = {"records": records, "images": images, "seconds": seconds, "records_s": records / seconds,
                    "images_s": images / seconds, "builds": len(summaries)}
            if workers not in best or run_["records_s"] > best[workers]["records_s"]:
                best[workers] = run_
            shutil.rmtree(out, ignore_errors=True)
    one, two = best[1], best[2]
    figures = [Figure("HumanIns build, 2 workers", "records/s", two["records_s"], "1 worker", one["records_s"],
                      note=f"{one['records']} records from {one['images']} images in {one['builds']} "
                           f"(dataset, split) builds, best of {rounds}")]
    details = {"images_per_source": num, "per_workers": {str(k): v for k, v in best.items()},
               "parallel_stage": "only each image's load runs in the workers (a fork pool per (dataset, split) "
                                 "build); instructions and JSONL writing stay in the main process",
               "sources": sorted(os.listdir(synth))}
    return BenchmarkResult("humanins_build", "HumanIns build (SynthHuman, records/s per worker count)", figures,
                           details)
