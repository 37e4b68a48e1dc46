"""Pictures of answers for a lone image (``tools/infer.py --visualize``): the task is taken from the caller or
recognised from the answer's wording, and names the record would carry (joint names) fall back to the standard
sets, so an answer can be drawn without a HumanIns record."""
from __future__ import annotations

from typing import Optional

from PIL import Image

from lman_ms.eval.parsers import parse_boxes
from lman_ms.eval.visualize import draw_answer, draw_text, save_png
from lman_ms.infer.structured import best_keypoints, guess_task


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
            persons, names = best_keypoints(answer)     # the joint set whose names the answer uses most
            img = draw_answer(im, task, persons, {"keypoint_names": names})
        else:
            img = draw_text(im.convert("RGB").copy(), answer)
    save_png(img, out_path)
    return task


def _parse(task, answer, target):
    from lman_ms.eval.parsers import parse_answer
    return parse_answer(task, answer, target).value
