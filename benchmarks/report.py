"""Rendering of a benchmark run: one Markdown table of ratios under the machine description, and JSON."""
from __future__ import annotations

import json
from typing import Any, Dict, List

from .common import BenchmarkResult, fmt_number
from .machine import describe_markdown


def run_to_dict(machine: Dict[str, Any], results: List[BenchmarkResult], options: Dict[str, Any]) -> Dict[str, Any]:
    return {"machine": machine, "options": options, "benchmarks": [r.to_dict() for r in results]}


def _ratio_cell(ratio: float, better: str) -> str:
    if ratio != ratio:
        return "n/a"
    arrow = "↑" if better == "higher" else "↓"
    return f"**{ratio:.2f}×** {arrow}"


def markdown(run: Dict[str, Any]) -> str:
    """The table the README shows: each figure's value, its reference and the ratio (↑: higher is better)."""
    lines = ["### Machine", "", describe_markdown(run["machine"]), "",
             f"Options: {', '.join(f'{k}={v}' for k, v in run['options'].items())}", ""]
    warning = _load_warning(run["machine"])
    if warning:
        lines += [warning, ""]
    lines += ["### Results", "",
             "| section | figure | ours | reference | ratio |", "|---|---|---|---|---|"]
    for bench in run["benchmarks"]:
        for f in bench["figures"]:
            ours = f"{fmt_number(f['value'])} {f['unit']}"
            ref = f"{fmt_number(f['reference_value'])} ({f['reference']})"
            figure = f["metric"] + (f" — {f['note']}" if f.get("note") else "")
            lines.append(f"| {bench['name']} | {figure} | {ours} | {ref} | {_ratio_cell(f['ratio'], f['better'])} |")
    lines += ["", "Ratio = ours / reference; ↑ higher is better, ↓ lower is better.", "", "### Details", ""]
    for bench in run["benchmarks"]:
        lines.append(f"- **{bench['title']}** ({bench['seconds']:.0f} s): "
                     + "; ".join(f"{k}: {_short(v)}" for k, v in bench["details"].items()))
    return "\n".join(lines) + "\n"


def _load_warning(machine: Dict[str, Any]) -> str:
    """A note when other work kept the cores busy: the 1-minute load average reached the core count."""
    cores = machine.get("cores") or 0
    loads = [l[0] for l in (machine.get("load_average_start"), machine.get("load_average_end")) if l]
    if not cores or not loads or max(loads) < cores:
        return ""
    return (f"**Note:** the machine was shared and oversubscribed during this run (1-minute load average up to "
            f"{max(loads):.1f} on {cores} cores from other processes). Multi-threaded runs then lose whole time "
            f"slices whenever one of their threads is descheduled (PyTorch's OpenMP barriers are hit hardest), so "
            f"the figures at more than one thread say more about the load than about the frameworks; the "
            f"1-thread rows are the like-for-like comparison.")


def _short(value: Any) -> str:
    if isinstance(value, float):
        return fmt_number(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return str(value)


def dumps(run: Dict[str, Any]) -> str:
    return json.dumps(run, indent=2, sort_keys=False, default=str) + "\n"
