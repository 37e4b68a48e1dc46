"""Turn the captions of CUHK-PEDES / ICFG-PEDES / UFine6926 into question/answer pairs, offline.

    python tools/caption_to_qa.py --dataset cuhk_pedes --root DIR --split train --out qa.json
                                  [--generator package.module:generate]

Without ``--generator`` the deterministic rule-based generator answers; with it, ``generate(prompt) -> str`` is asked
the paper's prompt "This is an overall appearance of a pedestrian: <caption>. Please answer the following question
according to it strictly: <question>.". Build the records from the file with
``python tools/build_humanins.py --dataset cuhk_pedes ...`` and the converter option ``qa_file=qa.json``.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lman_ms.data.humanins.caption_qa import LLMCaptionQA, RuleBasedCaptionQA  # noqa: E402
from lman_ms.data.humanins.paraphrase import import_callable  # noqa: E402
from lman_ms.data.humanins.text_pedes import write_qa_file  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", required=True, choices=["cuhk_pedes", "icfg_pedes", "ufine6926"])
    ap.add_argument("--root", required=True, help="the dataset folder (with its annotation JSON and images)")
    ap.add_argument("--split", required=True, choices=["train", "val", "test"])
    ap.add_argument("--out", required=True, help="JSON file to write, read back by the converter's qa_file option")
    ap.add_argument("--generator", help="LLM backend as package.module:function, generate(prompt) -> str")
    ap.add_argument("--annotation-file", help="annotation JSON relative to --root (UFine6926's name is not fixed)")
    ap.add_argument("--seed", type=int, default=0, help="chooses the wording of each question")
    args = ap.parse_args(argv)
    try:
        generator = (LLMCaptionQA(import_callable(args.generator), seed=args.seed) if args.generator
                     else RuleBasedCaptionQA(seed=args.seed))
        n = write_qa_file(args.dataset, args.root, args.split, args.out, generator,
                          annotation_file=args.annotation_file)
    except (ValueError, OSError) as e:  # AnnotationError / missing root: the message names the file and key
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {n} question/answer pairs to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
