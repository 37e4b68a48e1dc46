#!/usr/bin/env python
"""Score model answers against HumanIns records.

    python tools/evaluate.py --predictions preds.jsonl --references humanins_out/ --split test \
        --json metrics.json --out report.md
    python tools/evaluate.py --predictions preds.jsonl --config configs/lman_7b_stage2_finetune.yaml --split test

Predictions: one ``{"id": ..., "answer": ...}`` per line. References: a HumanIns JSONL file or folder; without
``--references``, the ``data.eval_path`` of ``--config``.
Prints the Markdown report. Exit status: 0 on success, 1 on bad input (the message names the file and line),
2 on bad usage.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lman_ms.config import ConfigError, load_config  # noqa: E402
from lman_ms.data.humanins.errors import AnnotationError  # noqa: E402
from lman_ms.eval.evaluate import evaluate_files  # noqa: E402
from lman_ms.eval.report import markdown_report  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--predictions", required=True, help="JSONL of {id, answer}")
    ap.add_argument("--references", help="HumanIns JSONL file or folder of *.jsonl (default: data.eval_path of "
                    "--config)")
    ap.add_argument("--config", help="YAML config whose data.eval_path holds the references")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    ap.add_argument("--split", help="only the reference records of this split (e.g. test); default: all")
    ap.add_argument("--json", help="write {dataset: {metric: value}} here (fractions; null = undefined)")
    ap.add_argument("--out", help="write the Markdown report here")
    ap.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    args = ap.parse_args(argv)
    references = args.references
    if not references and args.config:
        try:
            references = load_config(args.config, args.set).data.eval_path
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    if not references:
        ap.print_usage(sys.stderr)
        print("error: no references: pass --references, or --config with data.eval_path set"
              + (f" (empty in {args.config})" if args.config else ""), file=sys.stderr)
        return 2
    try:
        ev = evaluate_files(args.predictions, references, args.json, args.out, progress=not args.no_progress,
                            split=args.split)
    except (AnnotationError, ValueError, OSError) as e:     # the message names the file and line (or path)
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(markdown_report(ev), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
