"""Convert Hugging Face weights to a MindSpore checkpoint, or back.

    python tools/convert_weights.py --model llama --input_path vicuna-7b-v1.1/ --output_path vicuna.ckpt --dtype bf16
    python tools/convert_weights.py --model clip --input_path clip-vit-large-patch14/ --output_path clip.ckpt
    python tools/convert_weights.py --model clip --reverse --input_path clip.ckpt \\
        --config_path clip-vit-large-patch14/ --output_path clip_hf/

HF folders may hold ``model.safetensors``, ``pytorch_model.bin`` or sharded ``*.index.json`` checkpoints; they are
read shard by shard. ``.bin`` files are read with ``torch.load(weights_only=True)`` only.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lman_ms.convert.common import OUTPUT_DTYPES, CheckpointError, peak_rss_mb  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, choices=("clip", "llama"))
    p.add_argument("--input_path", required=True, help="HF folder, or a MindSpore .ckpt with --reverse")
    p.add_argument("--output_path", required=True, help="MindSpore .ckpt, or an HF folder with --reverse")
    p.add_argument("--dtype", default="fp32", choices=OUTPUT_DTYPES, help="dtype of the floating-point output")
    p.add_argument("--reverse", action="store_true", help="MindSpore .ckpt -> HF safetensors folder")
    p.add_argument("--config_path", help="with --reverse: HF folder or config.json describing the model")
    p.add_argument("--max_shard_size_mb", type=int, default=5120, help="with --reverse: safetensors shard size")
    p.add_argument("--no_progress", action="store_true", help="hide the per-shard progress bars")
    args = p.parse_args(argv)
    if args.reverse and not args.config_path:
        p.error("--reverse needs --config_path (the HF folder or config.json the checkpoint came from)")
    return args


def run(args: argparse.Namespace) -> dict:
    if args.model == "clip":
        from lman_ms.convert import clip_checkpoint as module
        to_ms, to_hf = module.convert_clip_to_ms, module.convert_clip_to_hf
    else:
        from lman_ms.convert import llama as module
        to_ms, to_hf = module.convert_llama_to_ms, module.convert_llama_to_hf
    if args.reverse:
        return to_hf(args.input_path, args.config_path, args.output_path, args.dtype,
                     max_shard_bytes=args.max_shard_size_mb << 20)
    return to_ms(args.input_path, args.output_path, args.dtype, progress=not args.no_progress)


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.time()
    try:
        summary = run(args)
    except (CheckpointError, OSError) as e:     # OSError: an unwritable output path (the message names it)
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{args.model}: wrote {summary['tensors']} tensors ({summary['bytes'] / 2**20:.1f} MiB, {args.dtype}) "
          f"to {args.output_path} in {time.time() - start:.1f} s; peak RSS {peak_rss_mb():.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
