"""Supervised warm-up of the ViT + query adapter on the labelled HumanIns training pictures (expression, action,
pedestrian attributes): the tiny demo's stand-in for a pretrained CLIP ViT (lman_ms/train/visual_warmup.py).

    python tools/warmup_visual.py --config configs/tiny_stage1_pretrain.yaml --records out/humanins \
        --out out/visual_warmup.ckpt [--steps 600] [--lr 1e-3] [--batch-size 32] [--location] \
        [--sources coco_person ...] [--set key=value ...]

Writes the ViT and adapter weights under the model's parameter names (stage 1 loads them with
``train.init_checkpoint=out/visual_warmup.ckpt``) and prints the held-out accuracy / mA before and after.
"""
import argparse
import json
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="YAML config giving the vision and adapter sizes")
    ap.add_argument("--records", required=True, help="HumanIns folder (train split to learn, test split to score)")
    ap.add_argument("--out", required=True, help="checkpoint to write (.ckpt)")
    ap.add_argument("--steps", type=int, default=600,
                    help="optimizer steps, shared by the sources in proportion to the labels per head (a where-head "
                         "counts as 16), interleaved")
    ap.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (warmup + cosine)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--location", action="store_true",
                    help="also train a where-head per localisation source (person / face box coverage and joint "
                         "heatmaps on a grid, from the query outputs side by side)")
    ap.add_argument("--sources", nargs="*", default=None, metavar="DATASET",
                    help="train only these source datasets (e.g. coco_person); default: every one found")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stdout)

    import mindspore as ms
    from lman_ms.config import ConfigError, load_config
    from lman_ms.data.humanins.errors import AnnotationError
    from lman_ms.train.visual_warmup import warmup_visual
    try:
        cfg = load_config(args.config, args.set)
        ms.set_context(mode=getattr(ms, cfg.context.mode), device_target=cfg.context.device_target)
        result = warmup_visual(cfg, args.records, args.out, args.steps, args.lr, args.batch_size, cfg.train.seed,
                               location=args.location, sources=args.sources)
    except (ConfigError, AnnotationError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
