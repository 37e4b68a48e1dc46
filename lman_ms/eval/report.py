"""The Markdown report: one table per task in the layout of the paper's Tables 2-5, values in percent.

An overview first puts each dataset's headline metric (the first of its metrics in
``lman_ms.eval.evaluate.DATASET_METRICS``) in one row, with the paper's Table 2 datasets first. Then per task: rows
are datasets, columns that dataset family's metrics (Table 4 for action, Table 5's mA / Accu / Prec / Recall /
F1 for attributes), followed by per-class accuracy tables for expression datasets (Table 3: classes in alphabetical
order, then the Average = mean class accuracy) and the per-joint PCKh table for MPII.
"""
from __future__ import annotations

import math
from typing import Dict, List

from lman_ms.data.humanins.builder import TASK_TITLES

TABLE_OF_PAPER = {"action_recognition": "Table 4", "expression_recognition": "Table 3",
                  "pedestrian_attribute": "Table 5"}
TABLE2_ORDER = ("stanford40", "ucf101", "citypersons", "coco_person", "pa100k", "rafdb", "wider_face", "aic_pose",
                "mpii")
HEADERS = {"MR-2": "MR⁻² ↓", "mean_class_acc": "mean class acc", "top1": "top-1 (video)"}


def _pct(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}"


def _table(header: List[str], rows: List[List[str]]) -> List[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _overview(ev) -> List[str]:
    """Table 2 layout: one column per dataset (the paper's ten first), each with its headline metric."""
    scored = [r for r in ev.results.values() if r.metrics and not r.details.get("unscored")]
    if not scored:
        return []
    rank = {d: i for i, d in enumerate(TABLE2_ORDER)}
    scored.sort(key=lambda r: (rank.get(r.dataset, len(rank)), r.dataset))
    heads = [next(iter(r.metrics)) for r in scored]
    return ["", "## Overview (layout of the paper's Table 2: headline metric per dataset)", ""] + _table(
        [""] + [r.dataset for r in scored],
        [["metric"] + [HEADERS.get(h, h) for h in heads],
         ["value"] + [_pct(r.metrics[h]) for r, h in zip(scored, heads)]])


def markdown_report(ev) -> str:
    """Render an :class:`lman_ms.eval.evaluate.Evaluation`."""
    total = sum(r.records for r in ev.results.values())
    lines = ["# HumanIns evaluation", "",
             f"{total} records in {len(ev.results)} dataset(s). Values in percent; a missing or unreadable answer "
             "is a parse failure and is scored as an empty answer."]
    if ev.unmatched_predictions:
        lines.append(f"{ev.unmatched_predictions} prediction(s) without a matching record were ignored.")
    lines += _overview(ev)
    by_task: Dict[str, list] = {}
    for r in ev.results.values():
        by_task.setdefault(r.task, []).append(r)
    order = [t for t in TASK_TITLES if t in by_task] + [t for t in by_task if t not in TASK_TITLES]
    for task in order:
        results = by_task[task]
        title = TASK_TITLES.get(task, task)
        paper = f" (layout of the paper's {TABLE_OF_PAPER[task]})" if task in TABLE_OF_PAPER else ""
        lines += ["", f"## {title}{paper}", ""]
        cols: List[str] = []
        for r in results:
            cols += [k for k in r.metrics if k not in cols]
        rows = [[r.dataset, str(r.records)] + [_pct(r.metrics.get(c)) if c in r.metrics else "-" for c in cols]
                + [str(r.parse_failures) if not r.details.get("unscored") else "not scored"] for r in results]
        lines += _table(["Dataset", "Records"] + [HEADERS.get(c, c) for c in cols] + ["Parse failures"], rows)
        for r in results:
            if "per_class_acc" in r.details and task == "expression_recognition":
                pc = dict(sorted(r.details["per_class_acc"].items(), key=lambda kv: kv[0].lower()))
                lines += ["", f"{r.dataset}: accuracy per class", ""]
                lines += _table(list(pc) + ["Average"],
                                [[_pct(v) for v in pc.values()] + [_pct(r.metrics.get("mean_class_acc"))]])
            if "per_joint" in r.details:
                pj = r.details["per_joint"]
                lines += ["", f"{r.dataset}: PCKh@0.5 per joint group", ""]
                lines += _table(list(pj) + ["Mean"], [[_pct(v) for v in pj.values()]
                                                      + [_pct(r.metrics.get("PCKh@0.5"))]])
    notes = [f"- {r.dataset}: {n}" for r in ev.results.values() for n in r.notes]
    examples = [f"- {e}" for r in ev.results.values() for e in r.problem_examples]
    if notes:
        lines += ["", "## Notes", ""] + notes
    if examples:
        lines += ["", "## Parse failures (first examples per dataset)", ""] + examples
    return "\n".join(lines) + "\n"
