"""The paper's ablations as short runs on a small config, written as one Markdown + JSON table.

* Table 6: the 16 combinations of the stage-1 objectives ``loss.lic`` / ``loss.vmlm`` and the adapter switches
  ``adapter.multi_grained`` (mg) / ``adapter.instruction_aware`` (ins). The paper numbers them
  No. = mg + 2 ins + 4 lic + 8 vmlm (No.0 none, No.15 all). Without either objective there is no stage 1: as the
  paper's No.0, the adapter enters stage 2 untrained.
* Figure 6: ``adapter.num_query_tokens`` with every switch on (the paper sweeps up to 256 and keeps 128; on the
  tiny config 2, 4, 8, 16).

Each setting runs stage 1 (``train.max_steps = steps``) on the caption records, then stage 2 from its checkpoint
on the HumanIns records, and is evaluated on held-out records: stage-1 image<->text R@1 (``lman_ms.eval.retrieval``),
the stage-2 held-out loss (eq. 8, averaged over answer tokens) and, with ``task_metrics``, the standard metric of
every held-out dataset from greedy answers (``lman_ms.eval.evaluate``). The table is rewritten after every
setting, and a setting already in it with the same steps and overrides is not run again (an interrupted sweep
resumes where it stopped).
"""
from __future__ import annotations

import fnmatch
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import mindspore as ms

from lman_ms.config import load_config
from lman_ms.data.pipeline import RecordSet
from lman_ms.data.tasks import HUMANINS_TASKS
from lman_ms.data.tokenizers import load_clip_tokenizer
from lman_ms.infer.generation_config import GenerationConfig
from lman_ms.train.heldout import heldout_loss
from lman_ms.utils.io import atomic_write_text

logger = logging.getLogger("lman_ms.ablation")

QUERY_TOKEN_SWEEP = (2, 4, 8, 16)


@dataclass
class Setting:
    name: str
    group: str                                  # "table6" or "figure6"
    lic: bool = True
    vmlm: bool = True
    multi_grained: bool = True
    instruction_aware: bool = True
    num_query_tokens: Optional[int] = None      # None: the config's
    number: Optional[int] = None                # Table 6 "No."

    @property
    def has_stage1(self) -> bool:
        return self.lic or self.vmlm

    def overrides(self) -> List[str]:
        out = [f"loss.lic={str(self.lic).lower()}", f"loss.vmlm={str(self.vmlm).lower()}",
               f"adapter.multi_grained={str(self.multi_grained).lower()}",
               f"adapter.instruction_aware={str(self.instruction_aware).lower()}"]
        if self.num_query_tokens is not None:
            out.append(f"adapter.num_query_tokens={self.num_query_tokens}")
        return out


def table6_settings() -> List[Setting]:
    return [Setting(f"T6-{no:02d}", "table6", lic=bool(no & 4), vmlm=bool(no & 8), multi_grained=bool(no & 1),
                    instruction_aware=bool(no & 2), number=no) for no in range(16)]


def figure6_settings(tokens: Sequence[int] = QUERY_TOKEN_SWEEP) -> List[Setting]:
    return [Setting(f"F6-q{n}", "figure6", num_query_tokens=int(n)) for n in tokens]


def all_settings(tokens: Sequence[int] = QUERY_TOKEN_SWEEP) -> List[Setting]:
    return table6_settings() + figure6_settings(tokens)


def select_settings(settings: List[Setting], patterns: Optional[Sequence[str]]) -> List[Setting]:
    """Settings whose name matches one of the shell-style ``patterns`` (``T6-15``, ``T6-*``, ``F6-q2``), in table
    order; a pattern that matches nothing is an error listing the names."""
    if not patterns:
        return list(settings)
    names = [s.name for s in settings]
    for p in patterns:
        if not fnmatch.filter(names, p):
            raise ValueError(f"--settings {p!r} matches no setting; known: {', '.join(names)}")
    return [s for s in settings if any(fnmatch.fnmatch(s.name, p) for p in patterns)]


# ---- one setting ---------------------------------------------------------------------------------------------------
@dataclass
class AblationPlan:
    config: str                                  # YAML of the small model (configs/tiny_cpu.yaml)
    data: str                                    # HumanIns folder with caption + task records (train split)
    out: str
    steps: int = 20                              # train.max_steps of each stage
    overrides: List[str] = field(default_factory=list)   # applied to every run (tokenizer paths, vocab sizes ...)
    eval_data: str = ""                          # held-out records (default: data)
    eval_split: str = "test"
    max_eval_records: Optional[int] = None       # per task
    task_metrics: bool = True
    max_new_tokens: int = GenerationConfig.max_new_tokens
    eval_batch_size: int = 8
    eval_mode: str = "PYNATIVE_MODE"             # evaluation has many shapes and few batches: no graph per shape


def limit_per_task(records: RecordSet, n: Optional[int]) -> RecordSet:
    if not n:
        return records
    keep = [i for ids in records.by_task.values() for i in ids[:n]]
    recs = [records.records[i] for i in sorted(keep)]
    by_task: Dict[str, List[int]] = {}
    for i, r in enumerate(recs):
        by_task.setdefault(r["task"], []).append(i)
    return RecordSet(recs, by_task)


def _run_stage(plan: AblationPlan, setting: Setting, stage: int, extra: List[str]) -> dict:
    from lman_ms.models.loader import latest_checkpoint
    from lman_ms.train.trainer import Trainer
    out_dir = os.path.join(plan.out, setting.name, f"stage{stage}")
    over = [*plan.overrides, *setting.overrides(), f"train.stage={stage}", f"train.max_steps={plan.steps}",
            f"train.output_dir={out_dir}", f"data.train_path={plan.data}",
            # one train.log per run would stack file handlers on the shared logger across runs
            "train.log_file=false", *extra]
    cfg = load_config(plan.config, over)
    t0 = time.perf_counter()
    result = Trainer(cfg).fit()
    return {"cfg": cfg, "result": result, "ckpt": latest_checkpoint(out_dir), "seconds": time.perf_counter() - t0}


def run_setting(plan: AblationPlan, setting: Setting) -> dict:
    """Stage 1 (when the setting has an objective) -> stage 2 -> held-out evaluation; returns one table row."""
    from lman_ms.eval.retrieval import evaluate_retrieval, load_stage1_model
    from lman_ms.infer.predictor import LManPredictor, predict_records
    row: Dict[str, object] = {"setting": setting.name, "group": setting.group, "no": setting.number,
                              "lic": setting.lic, "vmlm": setting.vmlm, "mg": setting.multi_grained,
                              "ins": setting.instruction_aware, "steps": plan.steps,
                              "overrides": setting.overrides() + list(plan.overrides)}
    t0 = time.perf_counter()
    eval_path = plan.eval_data or plan.data
    init: List[str] = []
    if setting.has_stage1:
        s1 = _run_stage(plan, setting, 1, [])
        row["stage1_loss"] = float(s1["result"]["loss"])
        ms.set_context(mode=getattr(ms, plan.eval_mode))
        captions = RecordSet.load(eval_path, plan.eval_split, s1["cfg"].data.image_root, tasks=["caption"])
        clip_tok = load_clip_tokenizer(s1["cfg"].data.clip_tokenizer_path or s1["cfg"].data.tokenizer_path)
        records = captions.records[:plan.max_eval_records] if plan.max_eval_records else captions.records
        ret = evaluate_retrieval(load_stage1_model(s1["cfg"], s1["ckpt"]), s1["cfg"], records, clip_tok,
                                 plan.eval_batch_size, ks=(1,), progress=False)
        row["i2t_R@1"], row["t2i_R@1"] = ret["i2t_R@1"], ret["t2i_R@1"]
        row["chance_R@1"] = ret["chance"]["t2i_R@1"]
        init = [f"train.init_checkpoint={s1['ckpt']}"]
    s2 = _run_stage(plan, setting, 2, init)
    cfg2 = s2["cfg"]
    row["num_query_tokens"] = cfg2.adapter.num_query_tokens
    row["stage2_loss"] = float(s2["result"]["loss"])
    ms.set_context(mode=getattr(ms, plan.eval_mode))
    held = limit_per_task(RecordSet.load(eval_path, plan.eval_split, cfg2.data.image_root, tasks=HUMANINS_TASKS),
                  plan.max_eval_records)
    # the model every consumer gets (lman_ms.models.loader, through the predictor): held-out loss and answers
    predictor = LManPredictor(cfg2, s2["ckpt"])
    row["heldout_loss"] = heldout_loss(predictor.model, cfg2, held, predictor.tok, predictor.clip_tok,
                                       plan.eval_batch_size)
    if plan.task_metrics:
        from lman_ms.eval.evaluate import evaluate
        preds = predict_records(predictor, held.records, plan.eval_batch_size, progress=False,
                                max_new_tokens=plan.max_new_tokens)
        ev = evaluate(held.records, {p["id"]: p["answer"] for p in preds}, progress=False)
        # per dataset: its standard metrics and how many answers could not be parsed (fractions / counts)
        row["metrics"] = {f"{name}/{k}": v for name, m in ev.to_json().items() for k, v in m.items()}
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


# ---- the sweep and its table ------------------------------------------------------------------------------------
def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "✓" if v else ""
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


BASE_COLUMNS = ["setting", "no", "lic", "vmlm", "mg", "ins", "num_query_tokens", "stage1_loss", "i2t_R@1",
                "t2i_R@1", "chance_R@1", "stage2_loss", "heldout_loss"]


def table_columns(rows: List[dict]) -> List[str]:
    metrics = sorted({k for r in rows for k in r.get("metrics", {})})
    return BASE_COLUMNS + metrics + ["seconds"]


def markdown_table(rows: List[dict], steps: int) -> str:
    cols = table_columns(rows)
    lines = [f"# Ablations ({steps} steps per stage)", "",
             "Table 6 (`T6-NN`, No. = mg + 2 ins + 4 lic + 8 vmlm) and Figure 6 (`F6-qN`, N query tokens). R@1 on "
             "held-out captions (stage 1; `-`: no stage 1), held-out loss per answer token (stage 2, eq. 8).", "",
             "| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        vals = [r.get("metrics", {}).get(c) if "/" in c else r.get(c) for c in cols]
        lines.append("| " + " | ".join(_fmt(v) for v in vals) + " |")
    return "\n".join(lines) + "\n"


def write_tables(out: str, rows: List[dict], plan: AblationPlan) -> Dict[str, str]:
    os.makedirs(out, exist_ok=True)
    paths = {"json": os.path.join(out, "ablation.json"), "markdown": os.path.join(out, "ablation.md")}
    doc = {"config": plan.config, "data": plan.data, "eval_data": plan.eval_data or plan.data,
           "eval_split": plan.eval_split, "steps": plan.steps, "columns": table_columns(rows), "rows": rows}
    atomic_write_text(paths["json"], json.dumps(doc, indent=2) + "\n")
    atomic_write_text(paths["markdown"], markdown_table(rows, plan.steps))
    return paths


def _previous_rows(out: str) -> Dict[str, dict]:
    path = os.path.join(out, "ablation.json")
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        try:
            return {r["setting"]: r for r in json.load(f)["rows"]}
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: not an ablation table ({e}); remove it or choose another --out") from e


def run_ablation(plan: AblationPlan, settings: List[Setting]) -> Dict[str, object]:
    """Run ``settings`` in order and write ``ablation.json`` / ``ablation.md`` under ``plan.out``."""
    if plan.steps < 1:
        raise ValueError(f"steps must be >= 1, got {plan.steps}")
    done = _previous_rows(plan.out)
    rows: List[dict] = []
    for s in settings:
        old = done.get(s.name)
        if old and old.get("steps") == plan.steps and old.get("overrides") == s.overrides() + list(plan.overrides):
            logger.info("ablation %s: already in %s, kept", s.name, plan.out)
            rows.append(old)
            continue
        logger.info("ablation %s: %s", s.name, " ".join(s.overrides()))
        rows.append(run_setting(plan, s))
        write_tables(plan.out, rows, plan)          # after each setting: a crash keeps the finished rows
    paths = write_tables(plan.out, rows, plan)
    return {"rows": rows, **paths}
