#!/usr/bin/env python
"""Benchmarks of lman_ms, each figure a ratio against a reference measured in the same run on this machine.

    python tools/benchmark.py                                        # every section, default sizes (~10 min, 2 cores)
    python tools/benchmark.py --only train,generate --out bench.md --json bench.json
    python tools/benchmark.py --quick                                # toy sizes, a smoke run (< 3 min)
    python tools/benchmark.py --threads 2                            # comparisons at 2 threads only

Sections (--only, comma-separated):
  train     stage-2 training step in GRAPH_MODE vs the same model in HF PyTorch (samples/s), and the model FLOPs
            utilisation of both steps against the fp32 matmul peak measured in the same run
  generate  greedy decoding with the KV cache vs recompute vs HF generate() (tokens/s), at growing lengths
  convert   sharded HF LLaMA of real width -> MindSpore: peak RSS vs the largest shard, seconds vs a file copy
  build     HumanIns build on SynthHuman, records/s with 2 workers vs 1
Prints the machine description and the Markdown table (figure, ours, reference, ratio) on stdout, progress on
stderr. --out / --json are written atomically. Exit status 2 on bad usage.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("GLOG_v", "3")  # MindSpore: errors only

from benchmarks import SECTIONS, resolve, run_benchmarks  # noqa: E402
from benchmarks.report import dumps, markdown  # noqa: E402
from lman_ms.utils.io import atomic_write_text  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", metavar="SECTIONS",
                    help=f"comma-separated sections to run (of: {','.join(SECTIONS)}); default: all")
    ap.add_argument("--quick", action="store_true", help="toy sizes and few iterations (smoke test)")
    ap.add_argument("--out", "--markdown", dest="out", metavar="FILE.md", help="write the Markdown report here")
    ap.add_argument("--json", metavar="FILE.json", help="write the full run (machine, figures, details) here")
    ap.add_argument("--threads", default="",
                    help="comma-separated intra-op thread counts the train and generate comparisons run at, the same "
                         "for every framework (default: 1 and the number of cores); conversion and build use the "
                         "largest")
    ap.add_argument("--work-dir", help="scratch folder (kept); default: a temporary folder, removed at the end")
    args = ap.parse_args(argv)
    try:
        args.benchmarks = resolve(args.only)
    except ValueError as e:
        ap.error(str(e))
    try:
        args.thread_counts = [int(t) for t in args.threads.split(",") if t.strip()]
    except ValueError:
        ap.error(f"--threads: not a comma-separated list of integers: {args.threads!r}")
    if any(t < 1 for t in args.thread_counts):
        ap.error("--threads: counts must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    # mindformers logs every model build at INFO; the benchmark's own progress lines are what matter here
    logging.getLogger("mindformers").setLevel(logging.WARNING)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    run = run_benchmarks(args.benchmarks, quick=args.quick, work_dir=args.work_dir, log=log,
                         threads=args.thread_counts)
    text = markdown(run)
    if args.json:
        atomic_write_text(args.json, dumps(run))
    if args.out:
        atomic_write_text(args.out, text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
