"""SynthHuman in the MPII layout that HRNet and mmpose distribute (registry ``mpii``).

``images/<NNNNNNNNN>.jpg``, ``annotations/mpii_{train,val}.json`` (one entry per person: ``image``, ``center``
1-based, ``scale`` = person height / 200, ``joints`` 16 x [x, y] 0-based in MPII order, ``joints_vis``) and
``annotations/mpii_gt_val.mat`` for the val persons in file order: ``headboxes_src`` (2 x 2 x N, 1-based head
corners), ``pos_gt_src`` (16 x 2 x N, 1-based joints), ``jnt_missing`` (16 x N) and ``dataset_joints``. Every
drawn joint is annotated (``joints_vis`` 1); the head box is the drawn head.
"""
from __future__ import annotations

import json
import os
from typing import Dict, Tuple

import numpy as np

from lman_ms.utils.io import atomic_write_text

from .common import image_rng, random_size, round_half_up, save_jpeg, test_count, write_mat
from .person import sample_person
from .pose import SCENE_ACTIONS
from .scene import render_scene

# Joint names of mpii_gt_val.mat, in MPII order.
DATASET_JOINTS = ("rank", "rkne", "rhip", "lhip", "lkne", "lank", "pelv", "thor", "neck", "head", "rwri", "relb",
                  "rsho", "lsho", "lelb", "lwri")
# One person per picture, as in MPII's single-person protocol (each annotated person evaluated on its own); it
# also keeps pose answers (16 joints per person) short enough for the tiny demo model's context.
PERSONS_P = (0.0, 1.0, 0.0, 0.0)
FILES = {"train": "mpii_train.json", "test": "mpii_val.json"}


def write(root: str, num: int, seed: int, image_size: Tuple[int, int], test_fraction: float) -> Dict[str, int]:
    n_test = test_count(num, test_fraction)
    entries = {"train": [], "test": []}
    heads, joints = [], []
    for i in range(num):
        split = "train" if i < num - n_test else "test"
        rng = image_rng(seed, "mpii", i)
        w, h = random_size(rng, image_size)
        n = int(rng.choice(4, p=PERSONS_P))
        specs = [sample_person(rng, action=SCENE_ACTIONS[int(rng.integers(len(SCENE_ACTIONS)))]) for _ in range(n)]
        scene = render_scene(rng, w, h, specs)
        image = f"{i + 1:09d}.jpg"
        save_jpeg(scene.image, os.path.join(root, "images", image))
        for q in scene.persons:
            x1, y1, x2, y2 = q.box
            kp = [[float(round_half_up(x)), float(round_half_up(y))] for x, y in q.keypoints]
            entries[split].append({
                "joints_vis": [1] * len(kp), "joints": kp, "image": image,
                "scale": round((y2 - y1) / 200.0, 6),
                "center": [float(round_half_up((x1 + x2) / 2) + 1), float(round_half_up((y1 + y2) / 2) + 1)]})
            if split == "test":
                heads.append([[round_half_up(v) + 1 for v in q.head_box[:2]],
                              [round_half_up(v) + 1 for v in q.head_box[2:]]])
                joints.append([[x + 1, y + 1] for x, y in kp])
    for split, name in FILES.items():
        atomic_write_text(os.path.join(root, "annotations", name), json.dumps(entries[split]))
    n_val = len(heads)
    dataset_joints = np.empty((1, len(DATASET_JOINTS)), dtype=object)
    for k, j in enumerate(DATASET_JOINTS):
        dataset_joints[0, k] = j
    write_mat(os.path.join(root, "annotations", "mpii_gt_val.mat"), {
        # [person, corner, xy] -> the release's [corner, xy, person]
        "headboxes_src": np.asarray(heads, dtype=np.float64).reshape(n_val, 2, 2).transpose(1, 2, 0),
        "pos_gt_src": np.asarray(joints, dtype=np.float64).reshape(n_val, len(DATASET_JOINTS), 2).transpose(1, 2, 0),
        "jnt_missing": np.zeros((len(DATASET_JOINTS), n_val), dtype=np.uint8),
        "dataset_joints": dataset_joints,
    })
    return {"train_persons": len(entries["train"]), "test_persons": len(entries["test"]),
            "train_images": num - n_test, "test_images": n_test}
