"""The structure of an answer about a lone image (no HumanIns record to take class names from): boxes, keypoints
and labels read from the canonical answer formats of ``lman_ms.data.humanins.answers``, the task given or
recognised from the wording. What the predictor, the server and ``tools/infer.py --visualize`` attach to the text.
"""
from __future__ import annotations

import re
from typing import Dict, List, Optional

from lman_ms.data.humanins.aic_pose import AIC_KEYPOINT_NAMES
from lman_ms.data.humanins.mpii import MPII_KEYPOINT_NAMES
from lman_ms.eval.parsers import parse_boxes, parse_keypoints

_BOX = re.compile(r"\[\s*-?\d+(?:\.\d+)?\s*,\s*-?\d+(?:\.\d+)?\s*,\s*-?\d+(?:\.\d+)?\s*,\s*-?\d+(?:\.\d+)?\s*\]")
# "The action of this person is riding a bike." / "The facial expression of this person is happiness."
_IS = re.compile(r"\bis\s+(?:an?\s+|the\s+)?([^.;\n]+)", re.I)
# "The attributes of this person are: female, age 18-60, backpack."
_ARE = re.compile(r"\bare\s*:?\s*([^.\n]+)", re.I)


def guess_task(answer: str) -> str:
    """The task an answer's wording belongs to (the canonical formats of ``lman_ms.data.humanins.answers``)."""
    text = answer.lower()
    if re.search(r"person\s*\d+\s*:", text):
        return "pose_estimation"
    if _BOX.search(answer):
        return "face_detection" if "face" in text else "pedestrian_detection"
    if "expression" in text or "emotion" in text:
        return "expression_recognition"
    if "attribute" in text:
        return "pedestrian_attribute"
    return "action_recognition"


def _joint_count(persons) -> int:
    return sum(1 for p in persons or [] for j in p if j is not None and len(j) >= 3 and j[2] > 0)


def best_keypoints(answer: str):
    """(persons, joint names) for the standard joint set whose names the answer uses most (MPII or AI Challenger);
    persons are lists of [x, y, v] per joint in that set's order, v 0 where the answer does not place it."""
    best = max(((parse_keypoints(answer, n), n) for n in (MPII_KEYPOINT_NAMES, AIC_KEYPOINT_NAMES)),
               key=lambda pn: _joint_count(pn[0].value))
    return best[0].value or [], list(best[1])


def _labels(task: str, answer: str) -> List[str]:
    if task == "pedestrian_attribute":
        if re.search(r"\bnone of the\b", answer, re.I):
            return []
        m = _ARE.search(answer)
        return [s.strip() for s in re.split(r",|\band\b", m.group(1)) if s.strip()] if m else []
    m = _IS.search(answer)
    return [m.group(1).strip()] if m else []


def structure(answer: str, task: Optional[str] = None) -> Dict:
    """``{"task", "boxes", "keypoints", "labels"}`` of ``answer``: boxes ``[x1, y1, x2, y2]`` (detection),
    keypoints per person ``{joint name: [x, y]}`` (pose), label phrases (action, expression, attributes); the
    fields of the other tasks are empty."""
    task = task or guess_task(answer)
    out: Dict = {"task": task, "boxes": [], "keypoints": [], "labels": []}
    if task in ("face_detection", "pedestrian_detection"):
        out["boxes"] = [[float(v) for v in b] for b in (parse_boxes(answer).value or [])]
    elif task == "pose_estimation":
        persons, names = best_keypoints(answer)
        out["keypoints"] = [{n: [float(j[0]), float(j[1])] for n, j in zip(names, p) if j is not None and j[2] > 0}
                            for p in persons]
    else:
        out["labels"] = _labels(task, answer)
    return out
