"""Score model answers against HumanIns records: parse each answer, then apply each dataset's standard metric.

Predictions are JSONL lines ``{"id": <record id>, "answer": <text>}``; references are HumanIns records (a JSONL
file or a folder of them), whose ``target`` holds the structured truth. A record without a prediction, and an
answer the parser cannot read, is a *parse failure*: it is scored as an empty answer (no box, no person, no
attribute, no class) and counted in ``parse_failures``.

Scoring of LLM answers, which carry no confidence: the k-th box of an answer scores 1 / (k + 1) (answer order is
the rank, see :func:`lman_ms.eval.metrics.boxes.rank_scores`); a class answer scores 1 for the class it names
(see :mod:`lman_ms.eval.metrics.classification` for the mAP this gives). All metric values are fractions in
[0, 1] in the JSON and percentages in the Markdown report, where MR^-2 is lower-is-better.
"""
from __future__ import annotations

import glob
import json
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
from tqdm import tqdm

from lman_ms.data.humanins.errors import AnnotationError
from lman_ms.utils.io import atomic_write_text

from .metrics.attributes import attribute_metrics, masked_attribute_metrics
from .metrics.boxes import DetImage, rank_scores
from .metrics.classification import (accuracy, mean_average_precision, mean_class_accuracy, one_hot_scores,
                                     per_class_accuracy, video_top1)
from .metrics.coco_ap import coco_ap
from .metrics.fddb import record_ellipses, tpr_at_fp
from .metrics.miss_rate import log_average_miss_rate
from .metrics.pose import AIC_SIGMAS, oks_map, pckh
from .metrics.wider_face import record_faces, wider_face_aps
from .parsers import parse_answer
from .report import markdown_report

# dataset -> (scoring family, metrics written to the JSON, in report column order)
DATASET_METRICS: Dict[str, Tuple[str, Tuple[str, ...]]] = {
    "stanford40": ("classification", ("mAP", "acc")),
    "voc2012_action": ("classification", ("mAP", "acc")),
    "ucf101": ("video_classification", ("top1", "acc")),
    "hmdb51": ("video_classification", ("top1", "acc")),
    "cuhk_sysu": ("coco_ap", ("AP", "AP50")),
    "prw": ("coco_ap", ("AP", "AP50")),
    "coco_person": ("coco_ap", ("AP", "AP50")),
    "citypersons": ("miss_rate", ("MR-2",)),
    "caltech": ("miss_rate", ("MR-2",)),
    "pa100k": ("attributes", ("mA", "Accu", "Prec", "Recall", "F1")),
    "market1501_attr": ("attributes", ("mA", "Accu", "Prec", "Recall", "F1")),
    "dukemtmc_attr": ("attributes", ("mA", "Accu", "Prec", "Recall", "F1")),
    # Free-text person descriptions (and caption question/answer pairs): the attributes that the reference
    # answer states, read by the same rules that derived the targets from the captions
    # (``caption_qa.caption_attributes``), against those the predicted text states; see _score_description.
    "cuhk_pedes": ("description", ("mA", "Accu", "Prec", "Recall", "F1")),
    "icfg_pedes": ("description", ("mA", "Accu", "Prec", "Recall", "F1")),
    "ufine6926": ("description", ("mA", "Accu", "Prec", "Recall", "F1")),
    "rafdb": ("classification", ("acc", "mean_class_acc")),
    "expw": ("classification", ("acc", "mean_class_acc")),
    "wider_face": ("wider_face", ("AP_easy", "AP_medium", "AP_hard")),
    "fddb": ("fddb", ("TPR@1000FP",)),
    "aic_pose": ("oks", ("OKS-mAP",)),
    "mpii": ("pckh", ("PCKh@0.5",)),
}
# datasets outside the table (new converters) get their task's usual metric
TASK_DEFAULT = {
    "action_recognition": ("classification", ("acc", "mean_class_acc")),
    "expression_recognition": ("classification", ("acc", "mean_class_acc")),
    "pedestrian_detection": ("coco_ap", ("AP", "AP50")),
    "face_detection": ("coco_ap", ("AP", "AP50")),
    "pedestrian_attribute": ("attributes", ("mA", "Accu", "Prec", "Recall", "F1")),
    "pose_estimation": ("oks", ("OKS-mAP",)),
}


@dataclass
class DatasetResult:
    dataset: str
    task: str
    records: int = 0
    parse_failures: int = 0
    metrics: Dict[str, float] = field(default_factory=dict)
    details: Dict[str, Any] = field(default_factory=dict)   # per-class / per-joint tables for the report
    notes: List[str] = field(default_factory=list)
    problem_examples: List[str] = field(default_factory=list)


@dataclass
class Evaluation:
    results: "OrderedDict[str, DatasetResult]"
    unmatched_predictions: int = 0

    def to_json(self) -> Dict[str, Dict[str, float]]:
        """``{dataset: {metric: value, ..., "parse_failures": n}}``; NaN (undefined) becomes null."""
        out = {}
        for name, r in self.results.items():
            if not r.metrics and r.details.get("unscored"):
                continue
            m = {k: (None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v))
                 for k, v in r.metrics.items()}
            m["parse_failures"] = r.parse_failures
            out[name] = m
        return out


# ---- reading --------------------------------------------------------------------------------------------------------
def _jsonl_files(path: str) -> List[str]:
    if os.path.isfile(path):
        return [path]
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "**", "*.jsonl"), recursive=True))
        if files:
            return files
        raise FileNotFoundError(f"no *.jsonl file under {path}")
    raise FileNotFoundError(f"not found: {path}")


def read_jsonl(path: str, required: Tuple[str, ...]) -> Iterator[Tuple[str, int, dict]]:
    """(file, line, object) for every non-empty line; a broken line or a missing key names file and line."""
    for fp in _jsonl_files(path):
        with open(fp, "r", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise AnnotationError(fp, f"invalid JSON: {e.msg}", line=lineno) from e
                if not isinstance(obj, dict):
                    raise AnnotationError(fp, f"expected a JSON object, got {type(obj).__name__}", line=lineno)
                missing = [k for k in required if k not in obj]
                if missing:
                    raise AnnotationError(fp, f"missing key(s) {missing}", line=lineno)
                yield fp, lineno, obj


def load_predictions(path: str) -> Dict[str, str]:
    preds: Dict[str, str] = {}
    where: Dict[str, str] = {}
    for fp, line, obj in read_jsonl(path, ("id", "answer")):
        rid = str(obj["id"])
        if rid in preds:
            raise AnnotationError(fp, f"duplicate prediction for id {rid!r} (first at {where[rid]})", line=line)
        preds[rid], where[rid] = obj["answer"], f"{fp}:{line}"
    return preds


def load_references(path: str, split: Optional[str] = None) -> List[dict]:
    """HumanIns records (optionally of one ``split`` only), each remembering its ``file:line`` for errors."""
    records, seen = [], {}
    for fp, line, obj in read_jsonl(path, ("id", "task", "dataset", "target")):
        if split is not None and obj.get("split") != split:
            continue
        rid = str(obj["id"])
        if rid in seen:
            raise AnnotationError(fp, f"duplicate record id {rid!r} (first at {seen[rid]})", line=line)
        seen[rid] = f"{fp}:{line}"
        obj["_where"] = seen[rid]
        records.append(obj)
    return records


# ---- scoring, one function per family --------------------------------------------------------------------------------
def _where(r: dict) -> str:
    return r.get("_where", "<references>")


def _det_images(recs: List[dict], values: List[Any]) -> List[DetImage]:
    out = []
    for r, v in zip(recs, values):
        t = r["target"]
        boxes = v or []
        try:
            out.append(DetImage.make(t.get("boxes", []), boxes, rank_scores(len(boxes)), t.get("ignore_boxes", []),
                                     t.get("visibility")))
        except ValueError as e:
            raise AnnotationError(_where(r), f"bad detection target: {e}", key=r["id"]) from e
    return out


def _check_pose_targets(recs: List[dict], need_head_boxes: bool) -> None:
    names = recs[0]["target"]["keypoint_names"]
    for r in recs:
        t = r["target"]
        if t["keypoint_names"] != names:
            raise AnnotationError(_where(r), "keypoint_names differ between records of one dataset", key=r["id"])
        persons = t.get("keypoints", [])
        if any(len(p) != len(names) for p in persons):
            raise AnnotationError(_where(r), f"a person does not have {len(names)} keypoints", key=r["id"])
        if need_head_boxes and len(t.get("head_boxes", [])) != len(persons):
            raise AnnotationError(_where(r), f"PCKh needs one head box per person: {len(persons)} persons, "
                                  f"{len(t.get('head_boxes', []))} head_boxes", key=r["id"])


def _label_index(r: dict) -> int:
    t = r["target"]
    names = t["label_names"]
    if "label_name" in t and t["label_name"] in names:
        return names.index(t["label_name"])
    label = int(t["label"])
    if not 0 <= label < len(names):
        raise AnnotationError(_where(r), f"label {label} outside the {len(names)} label_names", key=r["id"])
    return label


def _score_classification(res: DatasetResult, recs, values, video: bool) -> None:
    names = recs[0]["target"]["label_names"]
    for r in recs:
        if r["target"]["label_names"] != names:
            raise AnnotationError(_where(r), "label_names differ between records of one dataset", key=r["id"])
    gt = [_label_index(r) for r in recs]
    pred = [-1 if v is None else int(v) for v in values]
    pc = per_class_accuracy(gt, pred, len(names))
    res.metrics.update(acc=accuracy(gt, pred), mean_class_acc=mean_class_accuracy(gt, pred, len(names)))
    m = mean_average_precision(gt, one_hot_scores(pred, len(names)))
    res.metrics["mAP"] = m["mAP"]
    res.details["per_class_acc"] = {n: float(a) for n, a in zip(names, pc) if not np.isnan(a)}
    if video:
        missing = [r["id"] for r in recs if "video" not in r["target"]]
        if missing:
            res.notes.append(f"{len(missing)} frame(s) without target.video: each counted as its own video")
        vids = [r["target"].get("video", r["id"]) for r in recs]
        frames = [r["target"].get("frame_index", i) for i, r in enumerate(recs)]
        vt = video_top1(vids, gt, pred, frames)
        res.metrics["top1"] = vt["top1"]
        res.details["videos"] = vt["videos"]


def _score_attributes(res: DatasetResult, recs, values) -> None:
    names = recs[0]["target"]["attribute_names"]
    gt, pred = [], []
    for r, v in zip(recs, values):
        a = [int(x) for x in r["target"]["attributes"]]
        if len(a) != len(names) or r["target"]["attribute_names"] != names:
            raise AnnotationError(_where(r), "attributes / attribute_names differ from the dataset's first record",
                                  key=r["id"])
        gt.append([1 if x == 1 else 0 for x in a])
        pred.append(v if v is not None else [0] * len(names))
    res.metrics.update(attribute_metrics(gt, pred))


def _score_description(res: DatasetResult, recs, texts) -> None:
    """Attribute agreement of free-text answers (the paper scores descriptions by hand, Table 2).

    Both the reference answer and the predicted text go through ``caption_attributes``, the rules that derived the
    records' attribute targets from the captions: 1 / 0 / -1 (not stated). Only attributes the reference answer
    states count (:func:`~lman_ms.eval.metrics.attributes.masked_attribute_metrics`); an attribute the prediction
    leaves unstated is a miss. A missing prediction states nothing."""
    from lman_ms.data.humanins.caption_qa import caption_attributes  # only this family needs the caption rules

    gt, pred = [], []
    for r, text in zip(recs, texts):
        if not isinstance(r.get("answer"), str):
            raise AnnotationError(_where(r), "a description record needs its reference 'answer' text", key=r["id"])
        ref, names = caption_attributes([r["answer"]])
        gt.append(ref)
        pred.append(caption_attributes([text])[0] if isinstance(text, str) else [-1] * len(names))
    res.metrics.update(masked_attribute_metrics(gt, pred))
    res.notes.append("free text: attributes stated by the reference answer vs. by the prediction "
                     "(caption_attributes rules), not the PA-100K protocol")


def _score(res: DatasetResult, family: str, recs: List[dict], values: List[Any]) -> None:
    if family in ("classification", "video_classification"):
        _score_classification(res, recs, values, video=family == "video_classification")
    elif family == "attributes":
        _score_attributes(res, recs, values)
    elif family == "description":
        _score_description(res, recs, values)
    elif family == "coco_ap":
        m = coco_ap(_det_images(recs, values))
        res.metrics.update(AP=m["AP"], AP50=m["AP50"])
    elif family == "miss_rate":
        res.metrics["MR-2"] = log_average_miss_rate(_det_images(recs, values), "Reasonable")
        if any("visibility" not in r["target"] for r in recs):
            res.notes.append("records without target.visibility: those persons were taken as fully visible")
    elif family == "wider_face":
        images, masks, unmatchable = [], [], {}
        for r, v in zip(recs, values):
            try:
                faces, m, lost, _ = record_faces(r["target"])
            except ValueError as e:
                raise AnnotationError(_where(r), str(e), key=r["id"]) from e
            images.append(DetImage.make(faces, v or [], rank_scores(len(v or []))))
            masks.append(m)
            for lv, n in lost.items():
                unmatchable[lv] = unmatchable.get(lv, 0) + n
        res.metrics.update(wider_face_aps(images, masks, unmatchable))
        fallback = sum("subsets" not in r["target"] for r in recs)
        if fallback:
            res.notes.append(f"{fallback} record(s) without the official easy/medium/hard lists: face-height "
                             "fallback (>= 50 / 30 / 10 px), not comparable with published WIDER FACE numbers")
    elif family == "fddb":
        ellipses = []
        for r in recs:
            try:
                ellipses.append(record_ellipses(r["target"]))
            except ValueError as e:
                raise AnnotationError(_where(r), str(e), key=r["id"]) from e
        res.metrics.update(tpr_at_fp(_det_images(recs, values), 1000, ellipses=ellipses))
        boxes_only = sum(e is None for e in ellipses)
        if boxes_only:
            res.notes.append(f"{boxes_only} record(s) without target.ellipses: box IoU against the ellipses' "
                             "bounding boxes instead of the official ellipse overlap")
    elif family == "oks":
        _check_pose_targets(recs, need_head_boxes=False)
        names = recs[0]["target"]["keypoint_names"]
        sigmas = AIC_SIGMAS if len(names) == len(AIC_SIGMAS) else None
        if sigmas is None:
            raise AnnotationError(_where(recs[0]), f"OKS needs one sigma per joint: {len(names)} joints, "
                                  f"{len(AIC_SIGMAS)} AIC sigmas", key=recs[0]["id"])
        # AI Challenger's keypoint_eval.py scores visible joints only (its v = 1, HumanIns v = 2)
        res.metrics.update(oks_map([r["target"].get("keypoints", []) for r in recs],
                                   [v or [] for v in values], sigmas,
                                   [r["target"].get("boxes") for r in recs], min_visibility=2))
    elif family == "pckh":
        _check_pose_targets(recs, need_head_boxes=True)
        names = recs[0]["target"]["keypoint_names"]
        out = pckh([r["target"].get("keypoints", []) for r in recs], [r["target"].get("head_boxes", []) for r in recs],
                   [v or [] for v in values], names)
        res.metrics["PCKh@0.5"] = out.pop("PCKh@0.5")
        res.details["per_joint"] = out
    else:
        raise KeyError(f"unknown scoring family {family!r}")


def evaluate(records: List[dict], predictions: Dict[str, str], progress: bool = True,
             max_examples: int = 5) -> Evaluation:
    """Parse every record's prediction and score each dataset; see the module docstring for the rules."""
    by_dataset: "OrderedDict[str, List[dict]]" = OrderedDict()
    for r in records:
        by_dataset.setdefault(r["dataset"], []).append(r)
    results: "OrderedDict[str, DatasetResult]" = OrderedDict()
    ref_ids = {str(r["id"]) for r in records}
    bar = tqdm(total=len(records), desc="parse", unit="answer", disable=not progress, leave=False)
    for name, recs in by_dataset.items():
        task = recs[0]["task"]
        res = results[name] = DatasetResult(name, task, records=len(recs))
        family, keys = DATASET_METRICS.get(name, TASK_DEFAULT.get(task, (None, ())))
        if family is None:
            res.details["unscored"] = True
            res.notes.append(f"no metric for task {task!r}")
            bar.update(len(recs))
            continue
        values, partial = [], 0
        for r in recs:
            bar.update(1)
            rid = str(r["id"])
            if rid not in predictions:
                res.parse_failures += 1
                values.append(None)
                if len(res.problem_examples) < max_examples:
                    res.problem_examples.append(f"{rid}: no prediction")
                continue
            if family == "description":  # free text: read by the caption rules in _score_description
                values.append(predictions[rid])
                continue
            try:
                parsed = parse_answer(task, predictions[rid], r["target"])
            except KeyError as e:
                raise AnnotationError(_where(r), f"target has no {e} (needed to read a {task} answer)",
                                      key=rid) from e
            if not parsed.ok:
                res.parse_failures += 1
                if len(res.problem_examples) < max_examples:
                    res.problem_examples.append(f"{rid}: {'; '.join(parsed.problems)}")
            elif parsed.problems:
                partial += 1
            values.append(parsed.value)
        if partial:
            res.notes.append(f"{partial} answer(s) read in part (some boxes, joints or attributes skipped)")
        try:
            _score(res, family, recs, values)
        except KeyError as e:
            raise AnnotationError(_where(recs[0]), f"{name}: a record's target has no {e}, needed by the "
                                  f"{family} metric") from e
        res.metrics = {k: res.metrics.get(k, float("nan")) for k in keys}
    bar.close()
    return Evaluation(results, unmatched_predictions=len(set(predictions) - ref_ids))


def evaluate_files(predictions: str, references: str, json_path: Optional[str] = None,
                   report_path: Optional[str] = None, progress: bool = True, split: Optional[str] = None) -> Evaluation:
    """Read both files, evaluate, and write the metrics JSON and the Markdown report atomically if asked."""
    records = load_references(references, split)
    if not records:
        raise FileNotFoundError(f"no record{'' if split is None else ' of split ' + repr(split)} in {references}")
    ev = evaluate(records, load_predictions(predictions), progress=progress)
    if json_path:
        atomic_write_text(json_path, json.dumps(ev.to_json(), indent=2, allow_nan=False) + "\n")
    if report_path:
        atomic_write_text(report_path, markdown_report(ev))
    return ev
