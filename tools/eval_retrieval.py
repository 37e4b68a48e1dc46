"""Stage-1 retrieval: image->text / text->image recall@K of V_g vs T_g on held-out image-caption records.

    python tools/eval_retrieval.py --config configs/tiny_cpu.yaml --ckpt output/stage1 [--records out/humanins] \
        [--split test] [--out result.json] [--batch-size 32] [--max-records N] [--ks 1 5 10] [--set key=value ...]

``--ckpt``: a training output dir (its newest checkpoint), one checkpoint folder, or a ``model.ckpt`` file.
``--records``: a HumanIns folder (``coco_captions`` records, task ``caption``) or a JSONL file; default: the
config's ``data.eval_path``. Prints a table and writes the JSON (default: ``retrieval_<split>.json`` beside the
checkpoint).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="the stage-1 YAML config the checkpoint was trained with")
    ap.add_argument("--ckpt", required=True, help="output dir, checkpoint folder or model.ckpt")
    ap.add_argument("--records", default=None,
                    help="HumanIns folder or JSONL with caption records (default: the config's data.eval_path)")
    ap.add_argument("--split", default="test",
                    help="split of a HumanIns folder (default: test, which is COCO val2017 for coco_captions)")
    ap.add_argument("--out", default=None, help="JSON path (default: retrieval_<split>.json beside the checkpoint)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-records", type=int, default=None, help="evaluate only the first N images")
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 5, 10], help="recall cut-offs")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="config overrides, e.g. context.device_target=CPU context.mode=PYNATIVE_MODE")
    args = ap.parse_args(argv)

    import mindspore as ms
    from lman_ms.config import ConfigError, load_config
    from lman_ms.data.humanins.errors import AnnotationError
    from lman_ms.eval.retrieval import format_result, run_retrieval
    try:
        cfg = load_config(args.config, args.set)
        records = args.records or cfg.data.eval_path
        if not records:
            raise ConfigError(f"no records to evaluate: pass --records or set data.eval_path in {args.config}")
        ms.set_context(mode=getattr(ms, cfg.context.mode), device_target=cfg.context.device_target)
        result = run_retrieval(cfg, args.ckpt, records, args.split, args.out, args.batch_size,
                               args.max_records, args.ks, progress=sys.stderr.isatty())
    except (ConfigError, AnnotationError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_result(result))
    print(f"written: {result['output']}")
    print(json.dumps({k: v for k, v in result.items() if k.startswith(("i2t_R@", "t2i_R@"))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
