"""Stage-1 captions for the labelled SynthHuman pictures: faces, actions and pedestrians described in words.

The paper's stage 1 aligns the adapter to a *pretrained* CLIP ViT, which has seen faces, poses and clothes with
their descriptions. The tiny demo has no CLIP to start from and trains its ViT in stage 1, and the SynthHuman COCO
scenes are too small at 64 pixels to show a facial expression. These captions stand in for CLIP's pretraining
data: one caption record per training image of the face, action and pedestrian sources, written from its labels
(train split only, so the held-out pictures stay unseen). Measured on the demo (README): with the ViT and adapter
of a supervised probe, the stage-2 LLM learns to read the expression within 80 steps; trained from scratch through
the LLM alone, the visual path had not learned it after 400.
"""
from __future__ import annotations

import json
import os
from typing import Dict, List

from lman_ms.utils.io import atomic_open

from .captions import ACTION_PHRASES, EXPRESSION_WORDS, _join

NAME = "label_captions"
INSTRUCTIONS = ["A short description of the picture:", "What does this picture show?", "Describe the person."]


def _expression(r: dict) -> List[str]:
    w = EXPRESSION_WORDS[r["target"]["label_name"]]
    return [f"A close-up of a {w} face.", f"The face of a {w} person.", f"A {w} person looking at the camera."]


def _action(r: dict) -> List[str]:
    p = ACTION_PHRASES.get(r["target"]["label_name"], r["target"]["label_name"].replace("_", " "))
    return [f"A person {p}.", f"Someone {p}.", f"A picture of a person {p}."]


_TOP_PATTERN = (("UpperStride", "striped "), ("UpperLogo", "logo "), ("UpperPlaid", "plaid "),
                ("UpperSplice", "two-colour "))
_LOWER_PATTERN = (("LowerStripe", "striped "), ("LowerPattern", "dotted "))
_EXTRAS = (("Hat", "a hat"), ("Glasses", "glasses"), ("Backpack", "a backpack"), ("HandBag", "a handbag"),
           ("ShoulderBag", "a shoulder bag"), ("boots", "boots"), ("HoldObjectsInFront", "a box held in front"))


def attribute_noun(on: set) -> str:
    """The person's noun from the sex and age attributes (``old woman``, ``boy``, ...)."""
    if "AgeLess18" in on:
        return "girl" if "Female" in on else "boy"
    noun = "woman" if "Female" in on else "man"
    return f"old {noun}" if "AgeOver60" in on else noun


def _attributes(r: dict) -> List[str]:
    """Every PA-100K attribute the renderer draws is named (``Side`` is never drawn), the view first: captions
    longer than the text tower's context are cut at the end."""
    on = {n for n, v in zip(r["target"]["attribute_names"], r["target"]["attributes"]) if v}
    noun = attribute_noun(on)
    view = "from the back" if "Back" in on else "from the side" if "Side" in on else "from the front"
    if "LongCoat" in on:
        top = "a long coat"
    else:
        pattern = next((w for k, w in _TOP_PATTERN if k in on), "")
        top = f"a {'long' if 'LongSleeve' in on else 'short'}-sleeved {pattern}shirt"
    lower = next((w for k, w in _LOWER_PATTERN if k in on), "") + (
        "skirt" if "Skirt&Dress" in on else "shorts" if "Shorts" in on else "trousers")
    extras = [t for k, t in _EXTRAS if k in on]
    with_ = f" with {_join(extras)}" if extras else ""
    a = "An" if noun[0] in "aeiou" else "A"
    return [f"{a} {noun} seen {view} in {top} and {lower}{with_}.", f"A pedestrian {noun} seen {view}{with_}.",
            f"{a} {noun} wearing {top} and {lower}."]


WRITERS = {"expression_recognition": _expression, "action_recognition": _action,
           "pedestrian_attribute": _attributes}


def write_label_captions(humanins_dir: str) -> Dict[str, int]:
    """Write ``humanins_dir/label_captions/train-00000.jsonl`` (task ``caption``) from the first record of every
    training image of the face, action and pedestrian sources; returns the count per source dataset. Records keep
    their source's ``dataset`` name, so their images resolve through that source's image root."""
    from lman_ms.data.humanins.builder import iter_records
    out, counts = [], {}
    for r in iter_records(humanins_dir, "train"):
        write = WRITERS.get(r["task"])
        if write is None or not r["id"].endswith("/0"):
            continue
        caps = write(r)
        k = len(out)
        out.append({"id": f"{NAME}/{r['id'][:-2]}", "task": "caption", "dataset": r["dataset"], "split": "train",
                    "image": r["image"], "width": r["width"], "height": r["height"],
                    "instruction": INSTRUCTIONS[k % len(INSTRUCTIONS)], "answer": caps[0],
                    "target": {"captions": caps}})
        counts[r["dataset"]] = counts.get(r["dataset"], 0) + 1
    if not out:
        raise ValueError(f"{humanins_dir}: no training records of {sorted(WRITERS)} to caption")
    folder = os.path.join(humanins_dir, NAME)
    os.makedirs(folder, exist_ok=True)
    with atomic_open(os.path.join(folder, "train-00000.jsonl")) as f:
        for rec in out:
            f.write(json.dumps(rec) + "\n")
    return counts
