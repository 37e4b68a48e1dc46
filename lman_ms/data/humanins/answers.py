"""Canonical answer formats, one per task. ``lman_ms.eval.parsers`` reads these back (and paraphrases of them).

Every format is plain English with integer pixel coordinates in the original image, as in the paper's Figure 3:

* face / pedestrian detection: ``There are 2 faces in the picture. They are located in: [292, 184, 319, 234],
  [470, 157, 489, 195].`` (``There is 1 face ... It is located in: [...]``; ``There are no faces in the picture.``)
* pose: ``There are 2 persons in the picture. Person 1: head top [120, 40], neck [121, 60], ...; Person 2: ...``
  Joints that the source marks as not labelled are left out; a joint is written ``name [x, y]``.
* action: ``The action of this person is riding a bike.`` (the dataset's class name as a phrase).
* expression: ``The facial expression of this person is happiness.``
* attributes: ``The attributes of this person are: female, age 18-60, backpack.`` (the dataset's attribute
  names, positives only, in the dataset's order; ``This person has none of the listed attributes.``)
* caption: the caption itself.
"""
from __future__ import annotations

import re
from typing import Iterable, List, Sequence

NOUNS = {"face_detection": ("face", "faces"), "pedestrian_detection": ("person", "persons")}


def fmt_box(box: Sequence[float]) -> str:
    return "[" + ", ".join(str(int(round(v))) for v in box) + "]"


def detection_answer(task: str, boxes: Sequence[Sequence[float]]) -> str:
    one, many = NOUNS[task]
    n = len(boxes)
    if n == 0:
        return f"There are no {many} in the picture."
    located = ", ".join(fmt_box(b) for b in boxes)
    if n == 1:
        return f"There is 1 {one} in the picture. It is located in: {located}."
    return f"There are {n} {many} in the picture. They are located in: {located}."


def pose_answer(keypoints: Sequence[Sequence[Sequence[float]]], names: Sequence[str]) -> str:
    """``keypoints``: per person a list of [x, y, v]; v == 0 means not labelled and is left out."""
    n = len(keypoints)
    if n == 0:
        return "There are no persons in the picture."
    head = "There is 1 person in the picture." if n == 1 else f"There are {n} persons in the picture."
    people = []
    for i, person in enumerate(keypoints, 1):
        joints = [f"{joint_phrase(name)} [{int(round(x))}, {int(round(y))}]"
                  for name, (x, y, v) in zip(names, person) if v > 0]
        people.append(f"Person {i}: " + (", ".join(joints) if joints else "no visible keypoints"))
    return head + " " + "; ".join(people) + "."


def action_answer(label_name: str) -> str:
    return f"The action of this person is {label_phrase(label_name)}."


def expression_answer(label_name: str) -> str:
    return f"The facial expression of this person is {label_name.lower()}."


def attribute_answer(vector: Sequence[int], names: Sequence[str]) -> str:
    positives = [attribute_phrase(n) for n, v in zip(names, vector) if int(v) == 1]
    if not positives:
        return "This person has none of the listed attributes."
    return "The attributes of this person are: " + ", ".join(positives) + "."


# ---- names as phrases (shared with the parsers, so both directions agree) ------------------------------------------
# Class names that the source writes as one word (PASCAL VOC Action) and a phrase must split.
COMPOUND_LABELS = {"playinginstrument": "playing instrument", "ridingbike": "riding bike",
                   "ridinghorse": "riding horse", "takingphoto": "taking photo", "usingcomputer": "using computer"}


def label_phrase(name: str) -> str:
    """``ApplyEyeMakeup`` / ``applying_a_cream`` / ``ridingbike`` -> ``apply eye makeup`` / ``applying a cream`` /
    ``riding bike``."""
    if name.lower() in COMPOUND_LABELS:
        return COMPOUND_LABELS[name.lower()]
    s = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name)
    s = re.sub(r"[_\-]+", " ", s)
    return re.sub(r"\s+", " ", s).strip().lower()


def joint_phrase(name: str) -> str:
    return re.sub(r"[_\-]+", " ", name).strip().lower()


def attribute_phrase(name: str) -> str:
    """``AgeOver60`` / ``Skirt&Dress`` / ``long_hair`` -> ``age over 60`` / ``skirt or dress`` / ``long hair``."""
    s = re.sub(r"(?<=[a-z])(?=[A-Z0-9])|(?<=[0-9])(?=[A-Za-z])", " ", name)
    s = s.replace("&", " or ").replace("_", " ")
    return re.sub(r"\s+", " ", s).strip().lower()


def answer_for(task: str, target: dict) -> str:
    """The canonical answer of a record from its structured target."""
    if task in NOUNS:
        return detection_answer(task, target.get("boxes", []))
    if task == "pose_estimation":
        return pose_answer(target.get("keypoints", []), target["keypoint_names"])
    if task == "action_recognition":
        return action_answer(target["label_name"])
    if task == "expression_recognition":
        return expression_answer(target["label_name"])
    if task == "pedestrian_attribute":
        return attribute_answer(target["attributes"], target["attribute_names"])
    if task == "caption":
        return target["captions"][0]
    raise KeyError(f"no answer format for task {task!r}")


def join_names(names: Iterable[str]) -> List[str]:
    return [label_phrase(n) for n in names]
