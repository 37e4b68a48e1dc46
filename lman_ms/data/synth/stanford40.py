"""SynthHuman in the Stanford 40 Actions layout (registry ``stanford40``).

``JPEGImages/<action>_<NNN>.jpg``, ``XMLAnnotations/<action>_<NNN>.xml`` (VOC-like, 1-based pixel box of the one
person, ``<action>`` = the class), ``ImageSplits/actions.txt`` (header, then ``<action>\\t<count>``),
``ImageSplits/{train,test}.txt`` and ``ImageSplits/<action>_{train,test}.txt``. The classes are the subset of the
40 real names in ``pose.ACTIONS`` (each drawn with its own limb layout and prop); image ``i`` shows class
``i mod 9``. The class is in the file name because the dataset's format puts it there; instructions never say it.
"""
from __future__ import annotations

import os
from typing import Dict, List, Tuple
from xml.sax.saxutils import escape

from lman_ms.utils.io import atomic_write_text

from .common import image_rng, random_size, round_half_up, save_jpeg, test_count
from .person import sample_person
from .pose import ACTIONS
from .scene import render_scene


def annotation_xml(file_name: str, width: int, height: int, action: str, box) -> str:
    # Stanford 40 counts pixels from 1 (the converter subtracts 1).
    x1, y1, x2, y2 = (round_half_up(v) + 1 for v in box)
    x2, y2 = min(x2, width), min(y2, height)
    return (f"<annotation>\n  <filename>{escape(file_name)}</filename>\n  <folder>Stanford40</folder>\n"
            f"  <size>\n    <width>{width}</width>\n    <height>{height}</height>\n    <depth>3</depth>\n  </size>\n"
            f"  <object>\n    <name>person</name>\n    <action>{escape(action)}</action>\n    <bndbox>\n"
            f"      <xmin>{x1}</xmin>\n      <ymin>{y1}</ymin>\n      <xmax>{x2}</xmax>\n      <ymax>{y2}</ymax>\n"
            f"    </bndbox>\n  </object>\n</annotation>\n")


def write(root: str, num: int, seed: int, image_size: Tuple[int, int], test_fraction: float) -> Dict[str, int]:
    n_test = test_count(num, test_fraction)
    per_action = {a: 0 for a in ACTIONS}
    split_files: Dict[str, List[str]] = {"train": [], "test": []}
    per_split_action: Dict[Tuple[str, str], List[str]] = {(s, a): [] for s in ("train", "test") for a in ACTIONS}
    for i in range(num):
        split = "train" if i < num - n_test else "test"
        action = ACTIONS[i % len(ACTIONS)]
        per_action[action] += 1
        stem = f"{action}_{per_action[action]:03d}"
        rng = image_rng(seed, "stanford40", i)
        w, h = random_size(rng, image_size)
        spec = sample_person(rng, action=action, view="front" if rng.random() < 0.85 else "back")
        scene = render_scene(rng, w, h, [spec], fill=(0.6, 0.85))
        save_jpeg(scene.image, os.path.join(root, "JPEGImages", stem + ".jpg"))
        atomic_write_text(os.path.join(root, "XMLAnnotations", stem + ".xml"),
                          annotation_xml(stem + ".jpg", w, h, action, scene.persons[0].box))
        split_files[split].append(stem + ".jpg")
        per_split_action[(split, action)].append(stem + ".jpg")
    splits_dir = os.path.join(root, "ImageSplits")
    atomic_write_text(os.path.join(splits_dir, "actions.txt"),
                      "action_name\tnumber_of_images\n" + "".join(f"{a}\t{per_action[a]}\n" for a in ACTIONS))
    for split, files in split_files.items():
        atomic_write_text(os.path.join(splits_dir, f"{split}.txt"), "".join(f + "\n" for f in files))
        for a in ACTIONS:
            atomic_write_text(os.path.join(splits_dir, f"{a}_{split}.txt"),
                              "".join(f + "\n" for f in per_split_action[(split, a)]))
    return {"train_images": len(split_files["train"]), "test_images": len(split_files["test"])}
