"""Train L-Man: stage 1 (representation learning) or stage 2 (instruction tuning), chosen by ``train.stage``.

    python tools/train.py --config configs/tiny_cpu.yaml [--resume OUTPUT_DIR_OR_CKPT] [--set key=value ...]

Distributed (msrun): bash scripts/run_distribute_train.sh CONFIG WORKER_NUM ...
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="YAML config (see configs/)")
    ap.add_argument("--resume", default=None, metavar="DIR",
                    help="output dir (its newest complete checkpoint) or one checkpoint folder to resume from")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="config overrides, e.g. train.max_steps=100 data.train_path=out/humanins")
    args = ap.parse_args(argv)

    from lman_ms.config import ConfigError, load_config
    from lman_ms.data.conversation import TokenizationError
    from lman_ms.data.humanins.errors import AnnotationError
    try:
        cfg = load_config(args.config, args.set)
        from lman_ms.train.trainer import train
        result = train(cfg, args.resume)
    except (ConfigError, AnnotationError, TokenizationError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"done: {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
