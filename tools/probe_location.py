"""Where does the visual path lose location? Ridge (or small-MLP) probes for one person's box and joints on
(a) the ViT patch tokens, (b) the ViT states the adapter's cross-attention reads, (c) the adapter's query outputs,
(d) the projected visual tokens, with the same probe budget for every site (lman_ms/eval/probes.py).

    # every checkpoint a demo run left (visual warm-up, stage 1, stage 2) and a random model as the floor
    python tools/probe_location.py --demo output/demo [--out output/demo/probes.json]

    # any checkpoints, labelled; an empty path is a randomly initialised model built from --config
    python tools/probe_location.py --humanins OUT/humanins --config OUT/stage2/checkpoints/step_N/config.yaml \
        --checkpoint random= --checkpoint stage2=OUT/stage2 [--targets person_boxes joints face_boxes] \
        [--dim 128] [--fit ridge|mlp] [--seed 0] [--no-instruction] [--limit N] [--out probes.json]

Probes are fitted on the HumanIns train split and scored on its test split. Prints a Markdown table (rows:
feature sites; columns: target @ checkpoint; boxes: hit rate IoU >= 0.5 with the mean IoU, joints: PCKh@0.5;
the chance row predicts the training mean) and writes every score to --out (JSON) and the table beside it (.md).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def demo_checkpoints(out: str):
    """(humanins dir, config, {label: path}) of a demo run (``python -m lman_ms.demo --out OUT``): a random
    model first, then each stage that has a checkpoint."""
    from lman_ms.models.loader import find_config, latest_checkpoint
    humanins = os.path.join(out, "humanins")
    if not os.path.isdir(humanins):
        raise SystemExit(f"error: {humanins} not found: is {out} a demo output folder (python -m lman_ms.demo)?")
    found, config = {}, None
    warm = os.path.join(out, "visual_warmup", "visual_warmup.ckpt")
    if os.path.isfile(warm):
        found["warm-up"] = warm
    for stage in ("stage1", "stage2"):
        ckpt = latest_checkpoint(os.path.join(out, stage))
        if ckpt:
            found[stage] = ckpt
            config = find_config(ckpt)      # the newest stage's config: tokenizer and sizes for the others
    if config is None:
        raise SystemExit(f"error: {out} has no stage-1 or stage-2 checkpoint yet (their config.yaml names the "
                         "tokenizer and sizes); wait for stage 1 or pass --config")
    return humanins, config, {"random": None, **found}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo", help="a demo output folder: probe its warm-up, stage-1 and stage-2 checkpoints and a "
                                   "random model (sets --humanins, --config, --checkpoint)")
    ap.add_argument("--humanins", help="HumanIns folder with train and test splits")
    ap.add_argument("--config", help="YAML config for the random model and for checkpoints without a config.yaml "
                                     "beside them (the visual warm-up's .ckpt)")
    ap.add_argument("--checkpoint", action="append", default=[], metavar="LABEL=PATH",
                    help="a checkpoint to probe (output dir, checkpoint folder, model folder or .ckpt); "
                         "LABEL= with no path: a randomly initialised model from --config. Repeatable")
    ap.add_argument("--targets", nargs="+", default=["person_boxes", "joints"],
                    help="person_boxes (COCO), face_boxes (WIDER FACE), joints (MPII) (default: person_boxes joints)")
    ap.add_argument("--dim", type=int, default=128, help="features per site after PCA: the probe budget (default 128)")
    ap.add_argument("--fit", choices=["ridge", "mlp"], default="ridge",
                    help="ridge (penalty by 5-fold CV on the train split) or a 1-hidden-layer MLP (default ridge)")
    ap.add_argument("--seed", type=int, default=0, help="random model init, CV folds, MLP init (default 0)")
    ap.add_argument("--no-instruction", action="store_true",
                    help="feed the adapter an empty instruction instead of each record's own")
    ap.add_argument("--limit", type=int, default=None, help="at most N pictures per split and target")
    ap.add_argument("--out", default=None, help="JSON of every score (default: probes.json in --demo, else none); "
                                                "the table is written beside it as .md")
    args = ap.parse_args(argv)

    humanins, config, checkpoints = args.humanins, args.config, {}
    if args.demo:
        humanins, demo_config, checkpoints = demo_checkpoints(args.demo)
        humanins, config = args.humanins or humanins, args.config or demo_config
    for item in args.checkpoint:
        label, sep, path = item.partition("=")
        if not sep or not label:
            ap.error(f"--checkpoint {item!r}: expected LABEL=PATH (LABEL= for a random model)")
        checkpoints[label] = path or None
    if not humanins or not checkpoints:
        ap.error("give --demo, or --humanins and at least one --checkpoint")

    from lman_ms.eval.probes import TARGETS, dump, format_position_table, format_table, run_probes
    unknown = [t for t in args.targets if t not in TARGETS]
    if unknown:
        ap.error(f"unknown --targets {unknown}; known: {sorted(TARGETS)}")
    out = run_probes(checkpoints, humanins, args.targets, config, args.dim, args.fit, args.seed,
                     not args.no_instruction, args.limit, log=lambda m: print(m, flush=True))
    table = format_table(out["results"], {t: TARGETS[t][1] for t in args.targets})
    table += "\n\n" + format_position_table(out["results"])
    print(table)
    path = args.out or (os.path.join(args.demo, "probes.json") if args.demo else None)
    if path:
        dump(out, path)
        with open(os.path.splitext(path)[0] + ".md", "w", encoding="utf-8") as f:
            f.write(table + "\n")
        print(f"wrote {path} and {os.path.splitext(path)[0]}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
