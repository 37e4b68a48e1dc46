#!/usr/bin/env python
"""Build HumanIns: convert source datasets in their real formats into instruction records (JSONL, MindRecord).

One source:
    python tools/build_humanins.py --dataset wider_face --root data/WIDER_FACE --split train --out data/humanins
Every source of a config that is present on disk:
    python tools/build_humanins.py --all --config configs/humanins.yaml --out data/humanins

Prints one summary line per built split and writes the paper's Table 1 (``stats.md``, ``stats.json``) over
everything in ``--out``. Exit status: 0 on success, 1 on bad input (the message names the file and line or key),
2 on bad usage. See ``lman_ms.data.humanins.builder`` for the output layout.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import yaml  # noqa: E402

from lman_ms.data.humanins import AnnotationError, get_converter, list_datasets  # noqa: E402
from lman_ms.data.humanins import builder  # noqa: E402

BUILD_KEYS = {"workers": 1, "on_error": "raise", "seed": 0, "shard_size": 100_000, "instructions_per_image": None,
              "instruction_pool": None, "mindrecord": False, "embed_images": False}
DATASET_KEYS = {"root", "splits", "options", "enabled"}


class UsageError(Exception):
    """A bad command line or config file (exit status 2)."""


def parse_options(pairs) -> dict:
    """``key=value`` pairs; values are read as YAML scalars so ``4`` is an int and ``true`` a bool."""
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise UsageError(f"--option expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip().replace("-", "_")] = yaml.safe_load(value) if value.strip() else ""
    return out


def load_config(path: str) -> dict:
    """``configs/humanins.yaml``: ``data_root``, ``build`` defaults and one entry per registry name.

    Unknown keys and unknown dataset names are errors naming the key, as in the model configs."""
    try:
        with open(path, encoding="utf-8") as f:
            cfg = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as e:
        raise UsageError(f"{path}: cannot read config: {e}") from e
    unknown = set(cfg) - {"data_root", "build", "datasets"}
    if unknown:
        raise UsageError(f"{path} [{sorted(unknown)[0]}]: unknown key; known: build, data_root, datasets")
    build = cfg.get("build") or {}
    for k in build:
        if k not in BUILD_KEYS:
            raise UsageError(f"{path} [build.{k}]: unknown key; known: {', '.join(sorted(BUILD_KEYS))}")
    datasets = cfg.get("datasets") or {}
    known = set(list_datasets())
    for name, entry in datasets.items():
        if name not in known:
            raise UsageError(f"{path} [datasets.{name}]: unknown dataset; known: {', '.join(sorted(known))}")
        if not isinstance(entry, dict) or "root" not in entry:
            raise UsageError(f"{path} [datasets.{name}]: needs at least a 'root'")
        for k in entry:
            if k not in DATASET_KEYS:
                raise UsageError(f"{path} [datasets.{name}.{k}]: unknown key; known: {', '.join(sorted(DATASET_KEYS))}")
        if not isinstance(entry.get("options") or {}, dict):
            raise UsageError(f"{path} [datasets.{name}.options]: must be a mapping")
    return {"data_root": cfg.get("data_root") or ".", "build": {**BUILD_KEYS, **build}, "datasets": datasets}


def build_one(name: str, root: str, splits, out: str, settings: dict, options: dict, progress: bool) -> None:
    if settings["embed_images"] and not settings["mindrecord"]:
        raise UsageError("--embed-images (build.embed_images) needs --mindrecord (build.mindrecord)")
    for split in splits:
        summary = builder.build(name, root, split, out, workers=settings["workers"], on_error=settings["on_error"],
                                seed=settings["seed"], shard_size=settings["shard_size"],
                                instructions_per_image=settings["instructions_per_image"], progress=progress,
                                instruction_pool=settings["instruction_pool"], **options)
        print(summary.line(), flush=True)
        if summary.skipped:
            print(f"  skipped {summary.skipped} bad item(s):", flush=True)
            for example in summary.skip_examples:
                print(f"    {example}", flush=True)
        if settings["mindrecord"]:
            from lman_ms.data.mindrecord import write_split

            files = write_split(out, name, split, embed_images=settings["embed_images"],
                                shard_size=settings["shard_size"])
            print(f"  mindrecord: {len(files)} shard(s) {os.path.join(out, name, split)}-*.mindrecord"
                  f"{' (images embedded)' if settings['embed_images'] else ''}", flush=True)


def run_all(args, settings: dict, progress: bool) -> None:
    cfg = load_config(args.config)
    settings = {**cfg["build"], **{k: v for k, v in settings.items() if v is not None}}
    data_root = args.data_root or cfg["data_root"]
    missing = []
    for name, entry in cfg["datasets"].items():
        if entry.get("enabled", True) is False:
            print(f"{name}: disabled in {args.config}", flush=True)
            continue
        root = entry["root"] if os.path.isabs(entry["root"]) else os.path.join(data_root, entry["root"])
        if not os.path.isdir(root) or not get_converter(name).detect(root):
            why = "not found" if not os.path.isdir(root) else "does not have the expected layout"
            print(f"{name}: {root} {why}, skipped", flush=True)
            missing.append(name)
            continue
        splits = [args.split] if args.split else entry.get("splits") or list(get_converter(name).splits)
        build_one(name, root, splits, args.out, settings, {**(entry.get("options") or {}), **args.options},
                  progress)
    if missing:
        print(f"sources not present ({len(missing)}): {', '.join(missing)}", flush=True)


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="With --all, options given here override the config's build section.")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--dataset", choices=list_datasets(), metavar="NAME",
                      help="registry name of one source: " + ", ".join(list_datasets()))
    what.add_argument("--all", action="store_true", help="every source of --config whose root is present")
    what.add_argument("--list", action="store_true", help="print the registry names and exit")
    p.add_argument("--root", help="the source dataset's folder (with --dataset)")
    p.add_argument("--config", default="configs/humanins.yaml", help="sources and build defaults (with --all)")
    p.add_argument("--data-root", help="folder that the config's relative roots are under (overrides data_root)")
    p.add_argument("--split", help="train or test (val where the source has one); default: every split the "
                                   "config (or the converter) lists")
    p.add_argument("--out", help="output folder (JSONL shards, meta, stats, MindRecord)")
    p.add_argument("--workers", type=int, help="processes for image headers / frame decoding (default 1)")
    p.add_argument("--on-error", choices=["raise", "skip"],
                   help="raise: stop at the first bad item with its file and line; skip: drop and count it")
    p.add_argument("--seed", type=int, help="seed of the instruction choice; same seed, same bytes (default 0)")
    p.add_argument("--shard-size", type=int, help="records per JSONL / MindRecord shard (default 100000)")
    p.add_argument("--instructions-per-image", type=int,
                   help="instructions per image (default: the paper's Table 1 ratio, 2 or 1 per task)")
    p.add_argument("--instruction-pool", metavar="POOL.json",
                   help="instruction pool from tools/paraphrase_instructions.py (default: the hand-written seeds)")
    p.add_argument("--option", action="append", dest="option_pairs", metavar="KEY=VALUE",
                   help="converter option, repeatable (e.g. test_folds=9,10 for fddb)")
    p.add_argument("--frames-per-video", type=int, help="frames sampled per video (ucf101, hmdb51)")
    p.add_argument("--mindrecord", action="store_true", default=None, help="also write MindRecord shards")
    p.add_argument("--embed-images", action="store_true", default=None,
                   help="with --mindrecord: store the image bytes, not only their paths")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv=None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(list_datasets()))
        return 0
    try:
        if not args.out:
            raise UsageError("--out is required")
        if args.dataset and not args.root:
            raise UsageError("--dataset needs --root")
        args.options = parse_options(args.option_pairs)
        if args.frames_per_video is not None:
            args.options["frames_per_video"] = args.frames_per_video
        settings = {"workers": args.workers, "on_error": args.on_error, "seed": args.seed,
                    "shard_size": args.shard_size, "instructions_per_image": args.instructions_per_image,
                    "instruction_pool": args.instruction_pool, "mindrecord": args.mindrecord, "embed_images": args.embed_images}
        progress = not args.no_progress
        if args.all:
            run_all(args, settings, progress)
        else:
            settings = {**BUILD_KEYS, **{k: v for k, v in settings.items() if v is not None}}
            splits = [args.split] if args.split else list(get_converter(args.dataset).splits)
            build_one(args.dataset, args.root, splits, args.out, settings, args.options, progress)
        builder.write_stats(args.out)
        print(f"statistics (Table 1): {os.path.join(args.out, 'stats.md')}", flush=True)
        return 0
    except UsageError as e:
        parser.print_usage(sys.stderr)
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (AnnotationError, FileNotFoundError, ValueError, TypeError) as e:
        # Bad input: the message already names the file and line or key (TypeError: an unknown converter option).
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
