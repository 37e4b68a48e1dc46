"""Pictures of answers for a lone image (``tools/infer.py --visualize``): the task is taken from the caller or
recognised from the answer's wording, and names the record would carry (joint names) fall back to the standard
sets, so an answer can be drawn without a HumanIns record."""
from __future__ import annotations

import re
from typing import Optional

from PIL import Image

from lman_ms.data.humanins.aic_pose import AIC_KEYPOINT_NAMES
from lman_ms.data.humanins.mpii import MPII_KEYPOINT_NAMES
from lman_ms.eval.parsers import parse_boxes, parse_keypoints
from lman_ms.eval.visualize import draw_answer, draw_text, save_png

_BOX = re.compile(r"\[\s*-?\d+(?:\.\d+)?\s*,\s*-?\d+(?:\.\d+)?\s*,\s*-?\d+(?:\.\d+)?\s*,\s*-?\d+(?:\.\d+)?\s*\]")


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


def show_answer(image_path: str, answer: str, out_path: str, task: Optional[str] = None,
                target: Optional[dict] = None) -> str:
    """Draw ``answer`` on the image and save a PNG; returns the task used."""
    task = task or guess_task(answer)
    with Image.open(image_path) as im:
        if target is not None:
            img = draw_answer(im, task, _parse(task, answer, target), target)
        elif task in ("face_detection", "pedestrian_detection"):
            img = draw_answer(im, task, parse_boxes(answer).value)
        elif task == "pose_estimation":
            # the joint set whose names the answer uses most
            best = max(((parse_keypoints(answer, n), n) for n in (MPII_KEYPOINT_NAMES, AIC_KEYPOINT_NAMES)),
                       key=lambda pn: _joint_count(pn[0].value))
            img = draw_answer(im, task, best[0].value, {"keypoint_names": list(best[1])})
        else:
            img = draw_text(im.convert("RGB").copy(), answer)
    save_png(img, out_path)
    return task


def _joint_count(persons) -> int:
    return sum(1 for p in persons or [] for j in p if j is not None and len(j) >= 3 and j[2] > 0)


def _parse(task, answer, target):
    from lman_ms.eval.parsers import parse_answer
    return parse_answer(task, answer, target).value
