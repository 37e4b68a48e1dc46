"""The paper's ablations on a small config: Table 6 (lic, vmlm, multi_grained, instruction_aware) and the
Figure 6 query-token sweep, each a short stage-1 + stage-2 run, evaluated on held-out records, in one table.

    python tools/ablation.py --config configs/tiny_cpu.yaml --data out/humanins --out out/ablation \
        [--steps 20] [--settings 'T6-*' F6-q4] [--eval-data DIR] [--eval-split test] [--max-eval-records N] \
        [--no-task-metrics] [--query-tokens 2 4 8 16] [--set key=value ...]

Settings: T6-00 .. T6-15 (No. = mg + 2 ins + 4 lic + 8 vmlm, as Table 6) and F6-q<N>. Writes OUT/ablation.md and
OUT/ablation.json; settings already in OUT/ablation.json with the same steps and overrides are kept, not rerun.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lman_ms.infer.generation_config import GenerationConfig  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="small model YAML, e.g. configs/tiny_cpu.yaml")
    ap.add_argument("--data", required=True, help="HumanIns folder: caption records (stage 1) + task records")
    ap.add_argument("--out", required=True, help="folder for the runs and the table")
    ap.add_argument("--steps", type=int, default=20, help="train.max_steps of each stage (default 20)")
    ap.add_argument("--settings", nargs="*", default=None, metavar="PATTERN",
                    help="run only these settings (shell patterns: T6-15 'T6-*' F6-q4); default: all")
    ap.add_argument("--query-tokens", type=int, nargs="+", default=[2, 4, 8, 16], help="Figure 6 sweep values")
    ap.add_argument("--eval-data", default="", help="held-out records (default: --data)")
    ap.add_argument("--eval-split", default="test", help="split of the held-out records (default: test)")
    ap.add_argument("--max-eval-records", type=int, default=None, help="held-out records per task")
    ap.add_argument("--no-task-metrics", action="store_true", help="skip generation + task metrics")
    ap.add_argument("--max-new-tokens", type=int, default=GenerationConfig.max_new_tokens)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="overrides for every run, e.g. data.tokenizer_path=out/tokenizer llm.vocab_size=400")
    args = ap.parse_args(argv)

    from lman_ms.config import ConfigError
    from lman_ms.data.conversation import TokenizationError
    from lman_ms.data.humanins.errors import AnnotationError
    from lman_ms.ablation import AblationPlan, all_settings, markdown_table, run_ablation, select_settings
    plan = AblationPlan(config=args.config, data=args.data, out=args.out, steps=args.steps, overrides=args.set,
                        eval_data=args.eval_data, eval_split=args.eval_split, max_eval_records=args.max_eval_records,
                        task_metrics=not args.no_task_metrics, max_new_tokens=args.max_new_tokens)
    try:
        settings = select_settings(all_settings(args.query_tokens), args.settings)
        result = run_ablation(plan, settings)
    except (ConfigError, AnnotationError, TokenizationError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(markdown_table(result["rows"], args.steps))
    print(f"written: {result['markdown']} {result['json']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
