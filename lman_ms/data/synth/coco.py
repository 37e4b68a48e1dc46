"""SynthHuman in the COCO 2017 layout (registries ``coco_person`` and ``coco_captions``).

``{train,val}2017/<id:012d>.jpg``, ``annotations/instances_{train,val}2017.json`` (person boxes as 0-based float
``[x, y, w, h]`` with category id 1, plus the bicycle, dog, umbrella and cell phone that actions bring, with their
real COCO ids) and ``annotations/captions_{train,val}2017.json`` (1-5 captions per image, see ``captions.py``).
Image ids are unique across both splits, as in COCO. About 5% of the pictures have nobody in them.
"""
from __future__ import annotations

import json
import os
from typing import Dict, Tuple

from lman_ms.utils.io import atomic_write_text

from .captions import captions_for
from .common import clip_box, image_rng, random_size, save_jpeg, test_count
from .person import sample_person
from .pose import SCENE_ACTIONS
from .scene import render_scene

SPLITS = {"train": "train2017", "test": "val2017"}
CATEGORIES = [
    {"supercategory": "person", "id": 1, "name": "person"},
    {"supercategory": "vehicle", "id": 2, "name": "bicycle"},
    {"supercategory": "animal", "id": 18, "name": "dog"},
    {"supercategory": "accessory", "id": 28, "name": "umbrella"},
    {"supercategory": "electronic", "id": 77, "name": "cell phone"},
]
CATEGORY_ID = {c["name"]: c["id"] for c in CATEGORIES}
INFO = {"description": "SynthHuman (lman_ms) in the COCO 2017 format", "version": "1.0", "year": 2017,
        "contributor": "lman_ms", "date_created": "2017/09/01"}
LICENSES = [{"url": "https://www.apache.org/licenses/LICENSE-2.0", "id": 1, "name": "Apache License 2.0"}]
PERSONS_P = (0.05, 0.50, 0.30, 0.15)


def _annotation(ann_id: int, image_id: int, category: str, box, w: int, h: int) -> dict:
    x1, y1, x2, y2 = (round(v, 2) for v in clip_box(box, w, h))
    bw, bh = round(x2 - x1, 2), round(y2 - y1, 2)
    return {"segmentation": [[x1, y1, x2, y1, x2, y2, x1, y2]], "area": round(bw * bh, 4), "iscrowd": 0,
            "image_id": image_id, "bbox": [x1, y1, bw, bh], "category_id": CATEGORY_ID[category], "id": ann_id}


def write(root: str, num: int, seed: int, image_size: Tuple[int, int], test_fraction: float) -> Dict[str, int]:
    n_test = test_count(num, test_fraction)
    inst = {s: {"images": [], "annotations": []} for s in SPLITS}
    caps = {s: [] for s in SPLITS}
    ann_id = cap_id = 0
    for i in range(num):
        split = "train" if i < num - n_test else "test"
        rng = image_rng(seed, "coco", i)
        w, h = random_size(rng, image_size)
        n = int(rng.choice(4, p=PERSONS_P))
        specs = [sample_person(rng, action=SCENE_ACTIONS[int(rng.integers(len(SCENE_ACTIONS)))]) for _ in range(n)]
        scene = render_scene(rng, w, h, specs)
        image_id = i + 1
        file_name = f"{image_id:012d}.jpg"
        save_jpeg(scene.image, os.path.join(root, SPLITS[split], file_name))
        inst[split]["images"].append({"license": 1, "file_name": file_name, "height": h, "width": w,
                                      "date_captured": "2017-01-01 00:00:00", "id": image_id})
        for q in scene.persons:
            ann_id += 1
            inst[split]["annotations"].append(_annotation(ann_id, image_id, "person", q.box, w, h))
        for category, box in scene.objects:
            ann_id += 1
            inst[split]["annotations"].append(_annotation(ann_id, image_id, category, box, w, h))
        for text in captions_for(rng, scene.persons, scene.background):
            cap_id += 1
            caps[split].append({"image_id": image_id, "id": cap_id, "caption": text})
    counts = {}
    for split, folder in SPLITS.items():
        images = inst[split]["images"]
        instances = {"info": INFO, "licenses": LICENSES, "images": images,
                     "annotations": inst[split]["annotations"], "categories": CATEGORIES}
        captions = {"info": INFO, "licenses": LICENSES, "images": images, "annotations": caps[split]}
        atomic_write_text(os.path.join(root, "annotations", f"instances_{folder}.json"), json.dumps(instances))
        atomic_write_text(os.path.join(root, "annotations", f"captions_{folder}.json"), json.dumps(captions))
        counts[f"{split}_images"] = len(images)
        counts[f"{split}_persons"] = sum(a["category_id"] == 1 for a in inst[split]["annotations"])
        counts[f"{split}_captions"] = len(caps[split])
    return counts
