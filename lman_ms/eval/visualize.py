"""Draw parsed answers on the image with PIL: boxes, keypoints with their skeleton, and class / attribute labels.

Used by ``tools/infer.py --visualize``. Skeletons are tables of joint-name pairs (MPII 16, AI Challenger 14, COCO 17,
as in the mmpose dataset configs), matched against the record's ``keypoint_names``, so any joint order works.
"""
from __future__ import annotations

import io
from typing import Dict, List, Optional, Sequence, Tuple

from PIL import Image, ImageDraw, ImageFont

from lman_ms.utils.io import atomic_write_bytes

from .parsers import ParseResult, parse_answer

Colour = Tuple[int, int, int]

SKELETONS: Dict[str, List[Tuple[str, str]]] = {
    "mpii": [("r_ankle", "r_knee"), ("r_knee", "r_hip"), ("r_hip", "pelvis"), ("pelvis", "l_hip"),
             ("l_hip", "l_knee"), ("l_knee", "l_ankle"), ("pelvis", "thorax"), ("thorax", "upper_neck"),
             ("upper_neck", "head_top"), ("r_wrist", "r_elbow"), ("r_elbow", "r_shoulder"), ("r_shoulder", "thorax"),
             ("thorax", "l_shoulder"), ("l_shoulder", "l_elbow"), ("l_elbow", "l_wrist")],
    "aic": [("right_wrist", "right_elbow"), ("right_elbow", "right_shoulder"), ("right_shoulder", "neck"),
            ("neck", "left_shoulder"), ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
            ("right_ankle", "right_knee"), ("right_knee", "right_hip"), ("right_hip", "left_hip"),
            ("left_hip", "left_knee"), ("left_knee", "left_ankle"), ("head_top", "neck"),
            ("right_shoulder", "right_hip"), ("left_shoulder", "left_hip")],
    "coco": [("nose", "left_eye"), ("nose", "right_eye"), ("left_eye", "left_ear"), ("right_eye", "right_ear"),
             ("left_ear", "left_shoulder"), ("right_ear", "right_shoulder"), ("left_shoulder", "right_shoulder"),
             ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"), ("right_shoulder", "right_elbow"),
             ("right_elbow", "right_wrist"), ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"),
             ("left_hip", "right_hip"), ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
             ("right_hip", "right_knee"), ("right_knee", "right_ankle")],
}

BOX_COLOUR: Colour = (255, 0, 0)
JOINT_COLOUR: Colour = (0, 255, 0)
BONE_COLOUR: Colour = (0, 128, 255)
TEXT_BG: Colour = (0, 0, 0)
TEXT_FG: Colour = (255, 255, 255)


def skeleton_for(names: Sequence[str]) -> List[Tuple[int, int]]:
    """Index pairs of the skeleton table that covers the most of ``names`` (empty if none applies)."""
    index = {n.lower(): i for i, n in enumerate(names)}
    best: List[Tuple[int, int]] = []
    for edges in SKELETONS.values():
        pairs = [(index[a], index[b]) for a, b in edges if a in index and b in index]
        if len(pairs) > len(best):
            best = pairs
    return best


def draw_boxes(img: Image.Image, boxes: Sequence[Sequence[float]], colour: Colour = BOX_COLOUR, width: int = 2,
               labels: Optional[Sequence[str]] = None) -> Image.Image:
    d = ImageDraw.Draw(img)
    for i, b in enumerate(boxes):
        d.rectangle([float(v) for v in b[:4]], outline=colour, width=width)
        if labels:
            d.text((float(b[0]) + width, float(b[1]) + width), labels[i], fill=colour, font=ImageFont.load_default())
    return img


def draw_keypoints(img: Image.Image, persons: Sequence, names: Sequence[str], joint_colour: Colour = JOINT_COLOUR,
                   bone_colour: Colour = BONE_COLOUR, radius: int = 3, width: int = 2) -> Image.Image:
    """Bones first, then joints on top; joints with v == 0 (not given) are skipped with their bones."""
    d = ImageDraw.Draw(img)
    edges = skeleton_for(names)
    for person in persons:
        for a, b in edges:
            if person[a][2] > 0 and person[b][2] > 0:
                d.line([tuple(map(float, person[a][:2])), tuple(map(float, person[b][:2]))], fill=bone_colour,
                       width=width)
        for x, y, v in person:
            if v > 0:
                d.ellipse([x - radius, y - radius, x + radius, y + radius], fill=joint_colour)
    return img


def draw_text(img: Image.Image, text: str, fg: Colour = TEXT_FG, bg: Colour = TEXT_BG) -> Image.Image:
    """``text`` on a filled strip in the top-left corner."""
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    x0, y0, x1, y1 = d.textbbox((2, 2), text, font=font)
    d.rectangle([0, 0, x1 + 2, y1 + 2], fill=bg)
    d.text((2, 2), text, fill=fg, font=font)
    return img


def draw_answer(image: Image.Image, task: str, value, target: Optional[dict] = None) -> Image.Image:
    """A copy of ``image`` with a parsed answer (``ParseResult.value``) drawn; names come from ``target``."""
    img = image.convert("RGB").copy()
    target = target or {}
    if value is None:
        return draw_text(img, "(answer not understood)")
    if task in ("face_detection", "pedestrian_detection"):
        return draw_boxes(img, value, labels=[str(i + 1) for i in range(len(value))])
    if task == "pose_estimation":
        return draw_keypoints(img, value, target["keypoint_names"])
    if task in ("action_recognition", "expression_recognition"):
        return draw_text(img, str(target["label_names"][value]))
    if task == "pedestrian_attribute":
        names = [n for n, v in zip(target["attribute_names"], value) if v]
        return draw_text(img, ", ".join(names) if names else "(no attribute)")
    raise KeyError(f"nothing to draw for task {task!r}")


def save_png(img: Image.Image, path: str) -> None:
    """Write ``img`` as PNG atomically (a reader never sees half an image)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def visualize_answer(image_path: str, task: str, answer: str, target: dict, out_path: str) -> ParseResult:
    """Parse ``answer``, draw it on the image at ``image_path`` and save a PNG at ``out_path``; returns the parse."""
    parsed = parse_answer(task, answer, target)
    with Image.open(image_path) as im:
        save_png(draw_answer(im, task, parsed.value, target), out_path)
    return parsed
