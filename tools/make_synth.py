#!/usr/bin/env python
"""Write SynthHuman, the built-in synthetic source, in the real formats of WIDER FACE, COCO, PA-100K, RAF-DB,
Stanford 40 and MPII; optionally convert it into HumanIns with the real converters.

    python tools/make_synth.py --out data/synth --num 500 --seed 0
    python tools/make_synth.py --out data/synth --num 500 --seed 0 --image-size 96 160 --build data/humanins_synth

``--num`` images per source; the last ``--test-fraction`` of them are the test split. The same arguments give
byte-identical files. Exit status: 0 on success, 1 on bad input, 2 on bad usage.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lman_ms.data.synth import DEFAULT_IMAGE_SIZE, SOURCES, build_synth_humanins, make_synth  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder to write the sources into")
    ap.add_argument("--num", type=int, required=True, help="images per source (train + test)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--image-size", type=int, nargs=2, default=list(DEFAULT_IMAGE_SIZE), metavar=("MIN", "MAX"),
                    help="side range in pixels of scene pictures (default %(default)s)")
    ap.add_argument("--test-fraction", type=float, default=0.2)
    ap.add_argument("--sources", nargs="+", choices=sorted(SOURCES), default=None,
                    help="only these source folders (default: all)")
    ap.add_argument("--build", metavar="HUMANINS_DIR", default=None,
                    help="then run the HumanIns converters over the result into this folder")
    ap.add_argument("--workers", type=int, default=1, help="converter workers for --build")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        t0 = time.perf_counter()
        roots = make_synth(args.out, args.num, args.seed, tuple(args.image_size), args.test_fraction, args.sources)
        dt = time.perf_counter() - t0
        folders = len(args.sources or SOURCES)
        print(f"wrote {args.num} images x {folders} sources to {args.out} in {dt:.1f}s "
              f"({args.num * folders / dt:.0f} images/s)")
        for name, root in roots.items():
            print(f"  {name}: {root}")
        if args.build:
            summaries, missing = build_synth_humanins(args.out, args.build, workers=args.workers, seed=args.seed)
            for s in summaries:
                print(s.line())
            if missing:
                print(f"no converter yet for: {', '.join(missing)}")
            print(f"statistics: {os.path.join(args.build, 'stats.md')}")
    except (ValueError, OSError) as e:  # AnnotationError: names the file and line or key; OSError: the path
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
