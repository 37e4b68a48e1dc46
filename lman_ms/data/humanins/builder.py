"""Build HumanIns records from a source dataset: index -> load (in workers) -> instructions + answers -> JSONL.

Output layout under ``out_dir``::

    <dataset>/<split>-00000.jsonl ...   one record per line, sharded every ``shard_size`` records
    <dataset>/<split>.meta.json         image_root (records' ``image`` paths are relative to it), counts, skips
    stats.json, stats.md                the paper's Table 1 over everything in out_dir (see :func:`write_stats`)

Every file is written atomically; the same inputs and seed give byte-identical files.
"""
from __future__ import annotations

import glob
import json
import multiprocessing as mp
import os
import time
from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Optional, Sequence

from tqdm import tqdm

from lman_ms.utils.io import atomic_open, atomic_write_text

from .answers import answer_for
from .duplicates import drop_duplicates
from .errors import AnnotationError, ErrorPolicy
from .registry import Converter, get_converter
from .sample import Sample
from .templates import instructions_for

RECORD_FIELDS = ("id", "task", "dataset", "split", "image", "width", "height", "instruction", "answer", "target")


@dataclass
class BuildSummary:
    dataset: str
    split: str
    records: int = 0
    images: int = 0
    skipped: int = 0
    repeats: int = 0            # identical repeated listings kept once (duplicates.py)
    seconds: float = 0.0
    files: List[str] = field(default_factory=list)
    skip_examples: List[str] = field(default_factory=list)

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else float("nan")

    def line(self) -> str:
        repeats = f", {self.repeats} repeated listing(s) kept once" if self.repeats else ""
        return (f"{self.dataset}/{self.split}: {self.records} records from {self.images} images, "
                f"{self.skipped} skipped{repeats}, {self.seconds:.1f}s ({self.records_per_second:.0f} records/s)")


def records_for(conv: Converter, split: str, sample: Sample, seed: int = 0,
                instructions_per_image: Optional[int] = None, pool: Optional[Dict[str, List[str]]] = None
                ) -> List[dict]:
    """The records of one loaded sample: its QA pairs if the source has them, else templated instructions."""
    base = dict(task=conv.task, dataset=conv.name, split=split, image=sample.image.replace(os.sep, "/"),
                width=int(sample.width), height=int(sample.height))
    if sample.qa:
        pairs = [(qa["question"], qa["answer"]) for qa in sample.qa]
    else:
        answer = answer_for(conv.task, sample.target)
        pairs = [(ins, answer) for ins in instructions_for(conv.task, sample.key, sample.width, sample.height,
                                                           instructions_per_image, seed, pool)]
    out = []
    for i, (instruction, answer) in enumerate(pairs):
        rec = {"id": f"{conv.name}/{split}/{sample.key}/{i}", **base, "instruction": instruction,
               "answer": answer, "target": sample.target}
        out.append({k: rec[k] for k in RECORD_FIELDS})
    return out


# ---- worker side -------------------------------------------------------------------------------------------------
_WORKER_CONV: Optional[Converter] = None


def _init_worker(conv: Converter) -> None:
    global _WORKER_CONV
    _WORKER_CONV = conv


def _load_one(sample: Sample):
    try:
        return "ok", _WORKER_CONV.load(sample)
    except AnnotationError as e:
        return "error", e
    except Exception as e:  # noqa: BLE001 - located below with the sample's own source
        return "error", AnnotationError(sample.source or sample.image, f"{type(e).__name__}: {e}", line=sample.line)


def _loaded(conv: Converter, samples: List[Sample], workers: int) -> Iterator:
    if workers <= 1:
        _init_worker(conv)
        for s in samples:
            yield _load_one(s)
        return
    ctx = mp.get_context("fork") if hasattr(os, "fork") else mp.get_context()
    with ctx.Pool(workers, initializer=_init_worker, initargs=(conv,)) as pool:
        yield from pool.imap(_load_one, samples, chunksize=max(1, min(64, len(samples) // (workers * 8) or 1)))


def build(name: str, root: str, split: str, out_dir: str, workers: int = 1, on_error: str = "raise",
          seed: int = 0, shard_size: int = 100_000, instructions_per_image: Optional[int] = None,
          progress: bool = True, instruction_pool: Optional[str] = None, **options) -> BuildSummary:
    """Convert one split of one source dataset into HumanIns JSONL shards under ``out_dir/<name>/``.

    ``instruction_pool``: a JSON pool from ``tools/paraphrase_instructions.py`` (tasks it lacks use the seeds)."""
    t0 = time.perf_counter()
    pool = None
    if instruction_pool:
        from .paraphrase import load_pool
        pool = load_pool(instruction_pool)
    policy = ErrorPolicy(on_error)
    ds_dir = os.path.join(out_dir, name)
    conv = get_converter(name)(root, policy=policy, out_dir=ds_dir, **options)
    conv.check_split(split)
    unique = drop_duplicates(conv.index(split), policy, conv.provenance_keys)
    samples = unique.samples
    summary = BuildSummary(name, split, repeats=unique.repeats)
    shard: List[str] = []
    shard_id = 0

    def flush():
        nonlocal shard, shard_id
        path = os.path.join(ds_dir, f"{split}-{shard_id:05d}.jsonl")
        with atomic_open(path, "w") as f:
            f.writelines(shard)
        summary.files.append(path)
        shard, shard_id = [], shard_id + 1

    bar = tqdm(total=len(samples), desc=f"{name}/{split}", unit="img", disable=not progress, leave=False)
    for status, payload in _loaded(conv, samples, workers):
        bar.update(1)
        if status == "error":
            policy.report(payload)
            continue
        for s in payload:
            summary.images += 1
            for rec in records_for(conv, split, s, seed, instructions_per_image, pool):
                shard.append(json.dumps(rec, ensure_ascii=False, separators=(", ", ": ")) + "\n")
                summary.records += 1
                if len(shard) >= shard_size:
                    flush()
    bar.close()
    if shard or not summary.files:
        flush()
    # Shards of an earlier, larger run of the same split would otherwise be read as part of this one.
    for stale in sorted(glob.glob(os.path.join(ds_dir, f"{split}-*.jsonl"))):
        if stale not in summary.files:
            os.unlink(stale)
    summary.skipped = policy.skipped
    summary.skip_examples = policy.examples
    summary.seconds = time.perf_counter() - t0
    image_root = getattr(conv, "image_root", None) or conv.root
    meta = {"dataset": name, "task": conv.task, "split": split, "image_root": os.path.abspath(image_root),
            "records": summary.records, "images": summary.images, "skipped": summary.skipped,
            "repeats": summary.repeats,
            "skip_examples": summary.skip_examples, "options": conv.options, "seed": seed,
            "instruction_pool": os.path.abspath(instruction_pool) if instruction_pool else None,
            "shards": [os.path.basename(p) for p in summary.files]}
    atomic_write_text(os.path.join(ds_dir, f"{split}.meta.json"), json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return summary


# ---- reading back and statistics ------------------------------------------------------------------------------------
def iter_records(path: str, split: Optional[str] = None, required: Sequence[str] = ()) -> Iterator[dict]:
    """Records from a JSONL file, or from every ``*.jsonl`` under a folder (optionally one split only).

    A broken line, or a record without one of the ``required`` fields, is an error naming the file and line."""
    files = [path] if os.path.isfile(path) else sorted(glob.glob(os.path.join(path, "**", "*.jsonl"), recursive=True))
    if split is not None:
        files = [f for f in files if os.path.basename(f).startswith(split + "-") or os.path.isfile(path)]
    for fp in files:
        with open(fp, "r", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise AnnotationError(fp, f"invalid JSON: {e.msg}", line=lineno) from e
                if required:
                    if not isinstance(rec, dict):
                        raise AnnotationError(fp, f"expected a JSON object, got {type(rec).__name__}", line=lineno)
                    missing = [k for k in required if k not in rec]
                    if missing:
                        raise AnnotationError(fp, f"record lacks field(s) {missing}", line=lineno)
                yield rec


def image_roots(out_dir: str) -> Dict[str, str]:
    """dataset -> image root, from the ``*.meta.json`` files the builder wrote."""
    roots = {}
    metas = glob.glob(os.path.join(out_dir, "*", "*.meta.json")) + glob.glob(os.path.join(out_dir, "*.meta.json"))
    for mp_ in metas:  # a whole build folder, or one dataset's folder of it
        with open(mp_, encoding="utf-8") as f:
            m = json.load(f)
        roots[m["dataset"]] = m["image_root"]
    return roots


TASK_TITLES = {
    "action_recognition": "Action Recognition", "pedestrian_detection": "Pedestrian Detection",
    "pedestrian_attribute": "Pedestrian Attribute", "expression_recognition": "Expression Recognition",
    "face_detection": "Face Detection", "pose_estimation": "Pose Estimation", "caption": "Captions (stage 1)",
}


def compute_stats(records: Iterable[dict]) -> dict:
    """Table 1: per task the number of datasets, distinct images and instructions, plus a per-dataset breakdown."""
    tasks: Dict[str, dict] = {}
    for r in records:
        t = tasks.setdefault(r["task"], {"datasets": {}, "images": set(), "instructions": 0})
        d = t["datasets"].setdefault(r["dataset"], {"images": set(), "instructions": 0})
        img = (r["dataset"], r["image"])
        t["images"].add(img)
        d["images"].add(img)
        t["instructions"] += 1
        d["instructions"] += 1
    out = {"tasks": {}, "total": {"datasets": 0, "images": 0, "instructions": 0}}
    for task in [t for t in TASK_TITLES if t in tasks]:
        t = tasks[task]
        row = {"datasets": len(t["datasets"]), "images": len(t["images"]), "instructions": t["instructions"],
               "per_dataset": {k: {"images": len(v["images"]), "instructions": v["instructions"]}
                               for k, v in sorted(t["datasets"].items())}}
        out["tasks"][task] = row
        if task != "caption":
            for k in ("datasets", "images", "instructions"):
                out["total"][k] += row[k]
    return out


def stats_markdown(stats: dict) -> str:
    lines = ["| Tasks | datasets | Images | Instructions |", "|---|---:|---:|---:|"]
    for task, row in stats["tasks"].items():
        lines.append(f"| {TASK_TITLES[task]} | {row['datasets']} | {row['images']:,} | {row['instructions']:,} |")
    tot = stats["total"]
    lines.append(f"| Total | {tot['datasets']} | {tot['images']:,} | {tot['instructions']:,} |")
    lines += ["", "| Task | Dataset | Images | Instructions |", "|---|---|---:|---:|"]
    for task, row in stats["tasks"].items():
        for ds, d in row["per_dataset"].items():
            lines.append(f"| {TASK_TITLES[task]} | {ds} | {d['images']:,} | {d['instructions']:,} |")
    return "\n".join(lines) + "\n"


def write_stats(out_dir: str) -> dict:
    stats = compute_stats(iter_records(out_dir))
    atomic_write_text(os.path.join(out_dir, "stats.json"), json.dumps(stats, indent=2) + "\n")
    atomic_write_text(os.path.join(out_dir, "stats.md"), stats_markdown(stats))
    return stats
