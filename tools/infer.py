"""Ask L-Man about images.

One question:
    python tools/infer.py --ckpt CKPT --image IMG --instruction TEXT [--visualize OUT.png]
Many (JSONL of {"id", "image", "instruction"[, "task"]} -> {"id", "answer"}):
    python tools/infer.py --ckpt CKPT --input REQUESTS.jsonl --output ANSWERS.jsonl [--batch-size B]
        [--on-error skip]     (leave out and count bad lines / unreadable images instead of stopping)
The test split of a HumanIns build (predictions that tools/evaluate.py scores):
    python tools/infer.py --ckpt CKPT --references HUMANINS_DIR --split test --output PREDS.jsonl

CKPT is a model folder (written at the end of training, or by LManPredictor.save_pretrained), a training checkpoint
folder (checkpoints/step_N), a training output dir (its newest checkpoint) or a .ckpt file; the config is the
config.yaml beside the weights unless --config is given.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lman_ms.infer.generation_config import GenerationConfig  # noqa: E402


def _parser():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True,
                    help="model folder, training checkpoint folder, training output dir or .ckpt file")
    ap.add_argument("--config", help="YAML config of the checkpoint (default: the config.yaml beside its weights)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="one image file (with --instruction)")
    src.add_argument("--input", help="JSONL of requests {id, image, instruction[, task]}")
    src.add_argument("--references", help="HumanIns build folder or JSONL: answer its records (see --split)")
    ap.add_argument("--instruction", help="the question about --image")
    ap.add_argument("--task", help="task of --image (for the input size and --visualize; guessed from the answer)")
    ap.add_argument("--image-root", default="", help="folder that relative image paths of --input are under")
    ap.add_argument("--split", default="test", help="split of --references (default test)")
    ap.add_argument("--limit", type=int, default=0, help="answer only the first N references/requests")
    ap.add_argument("--output", help="answers JSONL (with --input / --references)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                    help="a bad request / reference (broken line, unreadable image): stop with its file and line "
                         "(raise, default) or leave it out and count it (skip)")
    ap.add_argument("--visualize", metavar="OUT.png", help="draw the parsed answer on --image")
    g = ap.add_argument_group("generation (defaults: lman_ms.infer.generation_config.GenerationConfig)")
    d = GenerationConfig()
    g.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens, help="default %(default)s")
    g.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding")
    g.add_argument("--temperature", type=float, default=d.temperature, help="default %(default)s")
    g.add_argument("--top-k", type=int, default=d.top_k, help="default %(default)s (off)")
    g.add_argument("--top-p", type=float, default=d.top_p, help="default %(default)s (off)")
    g.add_argument("--repetition-penalty", type=float, default=d.repetition_penalty, help="default %(default)s")
    g.add_argument("--seed", type=int, default=None, help="sampling seed")
    return ap


def check_image(path: str) -> None:
    """Decode ``path`` fully: a missing, truncated or non-image file is an error naming it."""
    from PIL import Image
    from lman_ms.data.humanins.errors import AnnotationError
    if not os.path.isfile(path):
        raise AnnotationError(path, "image file not found")
    try:
        with Image.open(path) as im:
            im.load()
    except (OSError, ValueError) as e:
        raise AnnotationError(path, f"cannot decode image: {e}") from e


def read_requests(path: str, image_root: str, on_error: str = "raise", skipped=None):
    """Requests of a JSONL file. A bad line (invalid JSON, missing fields) and then a request whose image is missing
    or unreadable are errors naming ``path:line``; with ``on_error="skip"`` they are left out and their messages
    appended to ``skipped``. The whole file is parsed before any image is opened."""
    from lman_ms.data.humanins.errors import AnnotationError

    def bad(err):
        if on_error != "skip":
            raise err
        skipped.append(str(err))

    parsed = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                bad(AnnotationError(path, f"invalid JSON: {e.msg}", line=lineno))
                continue
            if not isinstance(r, dict):
                bad(AnnotationError(path, f"expected a JSON object, got {type(r).__name__}", line=lineno))
                continue
            missing = [k for k in ("id", "image", "instruction") if k not in r]
            if missing:
                bad(AnnotationError(path, f"request lacks {missing}", line=lineno))
                continue
            parsed.append((lineno, r))
    out = []
    for lineno, r in parsed:
        img = r["image"] if os.path.isabs(r["image"]) or not image_root else os.path.join(image_root, r["image"])
        try:
            check_image(img)
        except AnnotationError as e:
            bad(AnnotationError(path, f"request {r['id']!r}: {e}", line=lineno))
            continue
        out.append({**r, "image_path": img})
    return out


def main(argv=None):
    args = _parser().parse_args(argv)
    if args.image and not args.instruction:
        _parser().error("--image needs --instruction")
    if (args.input or args.references) and not args.output:
        _parser().error("--input / --references need --output")
    from lman_ms.config import ConfigError
    from lman_ms.data.humanins.errors import AnnotationError
    from lman_ms.models.loader import load_model_config
    gen = dict(max_new_tokens=args.max_new_tokens, do_sample=args.do_sample, temperature=args.temperature,
               top_k=args.top_k, top_p=args.top_p, repetition_penalty=args.repetition_penalty, seed=args.seed)
    skipped = []
    try:
        cfg = load_model_config(args.ckpt, args.config, args.set)
        # the inputs first (fast): a bad request line or image fails before the model is built
        if args.image:
            check_image(args.image)
        elif args.input:
            requests = read_requests(args.input, args.image_root, args.on_error, skipped)
        else:
            from lman_ms.data.pipeline import RecordSet
            requests = []
            for r in RecordSet.load(args.references, args.split).records:
                if args.limit and len(requests) >= args.limit:
                    break
                try:
                    check_image(r["image_path"])
                except AnnotationError as e:
                    if args.on_error != "skip":
                        raise AnnotationError(r["image_path"], f"image of record {r['id']}: {e.message}") from e
                    skipped.append(str(e))
                    continue
                requests.append(r)
        import mindspore as ms
        ms.set_context(mode=getattr(ms, cfg.context.mode), device_target=cfg.context.device_target)
        from lman_ms.infer.predictor import LManPredictor, predict_records
        predictor = LManPredictor(cfg, args.ckpt)
        if args.image:
            answer = predictor.answer([args.image], [args.instruction], [args.task], **gen)[0]
            print(answer)
            if args.visualize:
                from lman_ms.infer.show import show_answer
                task = show_answer(args.image, answer, args.visualize, args.task)
                print(f"[{task}] drawn on {args.visualize}", file=sys.stderr)
            return 0
        preds = predict_records(predictor, requests[: args.limit or None], args.batch_size, **gen)
        from lman_ms.utils.io import atomic_open
        with atomic_open(args.output) as f:
            for p in preds:
                f.write(json.dumps(p, ensure_ascii=False) + "\n")
        print(f"{len(preds)} answers written to {args.output}, {len(skipped)} skipped")
        if skipped:
            print(f"  skipped {len(skipped)} bad request(s):")
            for msg in skipped[:20]:
                print(f"    {msg}")
        return 0
    except (ConfigError, AnnotationError, OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
