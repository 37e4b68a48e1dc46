"""Print L-Man's parameter count per component from a config, without building (or allocating) the model.

    python tools/count_params.py --config configs/lman_7b.yaml [--stage 1|2]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lman_ms.config import ConfigError, load_config  # noqa: E402
from lman_ms.models.param_count import count_parameters  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="YAML config (e.g. configs/lman_7b.yaml)")
    ap.add_argument("--stage", type=int, choices=(1, 2), default=2, help="which parts to count (default 2)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    args = ap.parse_args(argv)
    try:
        counts = count_parameters(load_config(args.config, args.set), args.stage)
    except ConfigError as e:    # names the file and the key path
        print(f"error: {e}", file=sys.stderr)
        return 2
    width = max(len(k) for k in counts) + 2
    for name, n in counts.items():
        print(f"{name:<{width}}{n:>16,}  ({n / 1e6:,.1f}M)")
    total = sum(counts.values())
    print(f"{'total':<{width}}{total:>16,}  ({total / 1e9:,.3f}B)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
