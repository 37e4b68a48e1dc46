"""Answer questions about images with the MindIR graphs written by tools/export.py (greedy decoding).

One question:
    python tools/lite_infer.py --export_dir EXPORT_DIR --image IMG --instruction TEXT [--backend lite|graphcell]
Many (JSONL of {"id", "image", "instruction"} -> {"id", "answer"}):
    python tools/lite_infer.py --export_dir EXPORT_DIR --input REQUESTS.jsonl --output ANSWERS.jsonl

Backends: "lite" runs the graphs with MindSpore Lite (the mindspore_lite package; exits with an error naming it
where it is not installed), "graphcell" with mindspore.load + nn.GraphCell (works wherever MindSpore does). Both
run the same loop: one visual-prefix call, one prefill call, one decode call per new token on a static KV cache.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lman_ms.infer.generation_config import GenerationConfig  # noqa: E402


def _parser():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export_dir", "--export-dir", dest="export_dir", required=True,
                    help="folder written by tools/export.py")
    ap.add_argument("--backend", choices=("lite", "graphcell"), default="lite",
                    help="runtime for the graphs (default lite)")
    ap.add_argument("--device", default="CPU", help="CPU or Ascend (default CPU)")
    ap.add_argument("--threads", type=int, default=0, help="Lite CPU threads (default: Lite's own choice)")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="one image file (with --instruction)")
    src.add_argument("--input", help="JSONL of requests {id, image, instruction}")
    ap.add_argument("--instruction", help="the question about --image")
    ap.add_argument("--image-root", default="", help="folder that relative image paths of --input are under")
    ap.add_argument("--output", help="answers JSONL (with --input)")
    ap.add_argument("--max-new-tokens", type=int, default=None,
                    help=f"default {GenerationConfig.max_new_tokens} (lman_ms.infer.generation_config), capped by "
                         "the room the exported cache leaves after the prefill")
    return ap


def main(argv=None):
    ap = _parser()
    args = ap.parse_args(argv)
    if args.image and not args.instruction:
        ap.error("--image needs --instruction")
    if args.input and not args.output:
        ap.error("--input needs --output")
    from lman_ms.infer.lite import BackendUnavailable, ExportError, LiteRunner
    try:
        if args.image:
            if not os.path.isfile(args.image):
                raise FileNotFoundError(f"--image {args.image}: file not found")
            requests = [{"id": "0", "image_path": args.image, "instruction": args.instruction}]
        else:
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            from infer import read_requests  # the request format of tools/infer.py
            requests = read_requests(args.input, args.image_root)
            for r in requests:
                if not os.path.isfile(r["image_path"]):
                    raise FileNotFoundError(f"image of request {r['id']} not found: {r['image_path']}")
        options = {"threads": args.threads} if args.backend == "lite" else {}
        if args.backend == "graphcell":
            import mindspore as ms
            ms.set_context(mode=ms.GRAPH_MODE, device_target=args.device)
        runner = LiteRunner(args.export_dir, backend=args.backend, device_target=args.device, **options)
        answers = []
        for start in range(0, len(requests), runner.batch_size):
            chunk = requests[start:start + runner.batch_size]
            answers += runner.answer([r["image_path"] for r in chunk], [r["instruction"] for r in chunk],
                                     max_new_tokens=args.max_new_tokens)
        if args.image:
            print(answers[0])
            return 0
        from lman_ms.utils.io import atomic_open
        with atomic_open(args.output) as f:
            for r, a in zip(requests, answers):
                f.write(json.dumps({"id": r["id"], "answer": a}, ensure_ascii=False) + "\n")
        print(f"{len(answers)} answers written to {args.output}")
        return 0
    except BackendUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except (ExportError, FileNotFoundError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
