"""Enlarge the HumanIns instruction pools by paraphrase and write them as JSON for ``instructions_for(pool=...)``.

    python tools/paraphrase_instructions.py --out pools.json [--per-template 5] [--rounds 1] [--tasks face_detection ...]
                                            [--seeds seeds.json] [--generator package.module:generate]

Without ``--generator`` the deterministic rule-based paraphraser is used; with it, ``generate(prompt) -> str`` is sent
the paper's prompt "Please generate 5 sentences that have the same meaning as the following: ...". The paper
refines the replies by hand: the output is plain JSON, one list per task, meant to be read and edited.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lman_ms.data.humanins.paraphrase import (LLMParaphraser, RuleBasedParaphraser, enlarge_pool,  # noqa: E402
                                              import_callable, load_pool, save_pool)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="JSON file to write: {task: [instruction, ...]}")
    ap.add_argument("--per-template", type=int, default=5, help="paraphrases asked for per instruction")
    ap.add_argument("--rounds", type=int, default=1, help="paraphrase the previous round's output again")
    ap.add_argument("--tasks", nargs="*", help="tasks to include (default: every task with seeds)")
    ap.add_argument("--seeds", help="a pool JSON to start from instead of the built-in seeds")
    ap.add_argument("--generator", help="LLM backend as package.module:function, generate(prompt) -> str")
    args = ap.parse_args(argv)
    try:
        paraphraser = LLMParaphraser(import_callable(args.generator)) if args.generator else RuleBasedParaphraser()
        seeds = load_pool(args.seeds) if args.seeds else None
        pool = enlarge_pool(paraphraser, seeds, per_template=args.per_template, rounds=args.rounds, tasks=args.tasks)
        save_pool(args.out, pool)
    except KeyError as e:       # an unknown --tasks name
        print(f"error: {e.args[0]}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as e:  # AnnotationError names the pool file and line or task key
        print(f"error: {e}", file=sys.stderr)
        return 1
    for task, templates in pool.items():
        print(f"{task}: {len(templates)} instructions")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
