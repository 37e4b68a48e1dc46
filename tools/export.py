"""Export a stage-2 L-Man checkpoint to MindIR for serving (MindSpore Lite or mindspore.load).

    python tools/export.py --ckpt CKPT --output_dir EXPORT_DIR [--config CONFIG] [--batch-size B]
                           [--prefill-len P] [--cache-len C] [--set KEY=VALUE ...]

Writes three static-shape graphs into EXPORT_DIR:
  visual_prefix.mindir  image + instruction tokens -> LLM input embeddings (vision + adapter + projection)
  prefill.mindir        left-padded [visual prefix ; prompt] -> next-token logits + KV caches
  decode.mindir         one token + static KV caches -> logits + updated caches (same weights as prefill)
and export.json (every input/output shape and dtype, lengths, template, token ids), config.yaml (the resolved
config) and copies of the tokenizers. Run the graphs with tools/lite_infer.py or scripts/run_lite_infer.sh.

P (default: visual prefix + 64 prompt tokens) bounds the prompt; C (default llm.max_position_embeddings) bounds
P + max_new_tokens - 1. CKPT is a model folder, a checkpoint folder, a training output dir (its newest checkpoint)
or a .ckpt file; a LoRA-trained checkpoint is exported with its adapters merged into the weights
(lman_ms.models.loader).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _parser():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True,
                    help="stage-2 model folder, checkpoint folder, training output dir or .ckpt file")
    ap.add_argument("--config", help="YAML config of the checkpoint (default: the config.yaml beside its weights)")
    ap.add_argument("--output_dir", "--output-dir", dest="output_dir", required=True,
                    help="folder receiving the graphs, export.json and config.yaml")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    ap.add_argument("--batch-size", type=int, default=1, help="static batch size of every graph (default 1)")
    ap.add_argument("--prefill-len", type=int, default=None,
                    help="static prompt length of the prefill graph, visual prefix included")
    ap.add_argument("--cache-len", type=int, default=None,
                    help="static KV-cache length of the decode graph (default llm.max_position_embeddings)")
    return ap


def main(argv=None):
    args = _parser().parse_args(argv)
    from lman_ms.config import ConfigError
    from lman_ms.models.loader import load_model_config, resolve_checkpoint
    try:
        ckpt = resolve_checkpoint(args.ckpt)  # before the (slow) model build: a wrong path fails at once
        cfg = load_model_config(args.ckpt, args.config, args.set)
        from lman_ms.infer.export import export_model
        import mindspore as ms
        ms.set_context(mode=ms.GRAPH_MODE, device_target=cfg.context.device_target)
        export_model(cfg, ckpt, args.output_dir, batch_size=args.batch_size, prefill_len=args.prefill_len,
                     cache_len=args.cache_len, log=lambda msg: print(msg, file=sys.stderr))
        print(os.path.join(args.output_dir, "export.json"))
        return 0
    except (ConfigError, FileNotFoundError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
