"""Serve L-Man over HTTP: an OpenAI-compatible chat-completions API with dynamic batching, and a web demo at /.

    python tools/serve.py --ckpt DIR [--config C] [--host 127.0.0.1] [--port 8000] [--max-batch-size 8]
    python tools/serve.py --export_dir D [--backend graphcell|lite]          (greedy decoding only)

DIR: a training checkpoint folder (OUTPUT/checkpoints/step_N/), a training output dir (its newest checkpoint) or a
self-contained model folder; its config.yaml unless --config. Then, for example:

    curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' -d '{"messages": [{"role":
      "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}},
      {"type": "text", "text": "Find every face."}]}], "max_tokens": 64}'

SIGTERM (or Ctrl-C) stops taking requests and finishes the ones in flight.
"""
import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _parser():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    from lman_ms.serve.engine import add_model_arguments
    add_model_arguments(ap)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--max-batch-size", type=int, default=8, help="requests answered together at most")
    ap.add_argument("--batch-window-ms", type=float, default=10.0,
                    help="how long the first request of a burst waits for others (default 10)")
    ap.add_argument("--served-model-name", help="model id in /v1/models and responses (default: the folder name)")
    ap.add_argument("--max-queue", type=int, default=256, help="queued requests beyond this get 503")
    ap.add_argument("--max-image-mb", type=float, default=10.0, help="largest image accepted (413 above)")
    ap.add_argument("--max-body-mb", type=float, default=16.0, help="largest request body accepted (413 above)")
    return ap


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    import uvicorn
    from lman_ms.serve.app import ServeLimits, create_app
    from lman_ms.serve.engine import load_engine
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    limits = ServeLimits(max_batch_size=args.max_batch_size, batch_window_s=args.batch_window_ms / 1000.0,
                         max_queue=args.max_queue, max_body_bytes=int(args.max_body_mb * (1 << 20)),
                         max_image_bytes=int(args.max_image_mb * (1 << 20)))

    def engine():
        e = load_engine(args.ckpt, args.config, args.set, args.export_dir, args.backend)
        e.name = args.served_model_name or e.name
        return e

    app = create_app(engine, limits)
    # no timeout_graceful_shutdown: on SIGTERM uvicorn waits for every request in flight, streams included
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
