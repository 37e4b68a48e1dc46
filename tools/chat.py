"""Chat with L-Man about an image in the terminal; tokens appear as they are generated.

    python tools/chat.py --ckpt DIR [--config C] [--image IMG] [--task TASK] [--max-new-tokens N]
    python tools/chat.py --export_dir D [--backend graphcell|lite] --image IMG           (greedy)

Commands: /image PATH, /reset, /quit. The conversation is the multi-turn Vicuna v1.1 prompt; when it fills the
model's context the chat says so and /reset starts over.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lman_ms.infer.generation_config import GenerationConfig  # noqa: E402


def _parser():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    from lman_ms.serve.engine import add_model_arguments
    add_model_arguments(ap)
    ap.add_argument("--image", help="the image to talk about (or /image PATH in the chat)")
    ap.add_argument("--task", help="task of the image (its input size)")
    defaults = GenerationConfig()
    ap.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens)
    ap.add_argument("--temperature", type=float, default=0.0, help="0: greedy (default)")
    ap.add_argument("--top-p", type=float, default=defaults.top_p)
    ap.add_argument("--seed", type=int, default=defaults.seed)
    return ap


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    from lman_ms.serve.chat import ChatSession, read_image, run_chat
    from lman_ms.serve.engine import load_engine
    try:
        image = read_image(args.image) if args.image else None
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    engine = load_engine(args.ckpt, args.config, args.set, args.export_dir, args.backend)
    session = ChatSession(engine, image, args.task, args.max_new_tokens, args.temperature, args.top_p, args.seed)
    try:
        run_chat(session, sys.stdin, sys.stdout)
    except KeyboardInterrupt:
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
