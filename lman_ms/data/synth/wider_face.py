"""SynthHuman in the WIDER FACE layout (registry ``wider_face``).

``WIDER_{train,val}/images/<event>/<name>.jpg`` and ``wider_face_split/wider_face_{train,val}_bbx_gt.txt``:
per image its path, the face count and one ``x1 y1 w h blur expression illumination invalid occlusion pose`` line
per face (0-based pixels, a trailing space as in the release). An image without a visible face (nobody, or
everyone seen from behind) still gets the release's dummy line ``0 0 0 0 0 0 0 0 0 0``. The face box is the head.
"""
from __future__ import annotations

import os
from typing import Dict, Tuple

from lman_ms.utils.io import atomic_write_text

from .common import image_rng, random_size, round_half_up, save_jpeg, test_count
from .person import sample_person
from .pose import SCENE_ACTIONS
from .scene import render_scene

EVENTS = (("0--Parade", "Parade"), ("12--Group", "Group"), ("20--Family_Group", "Family_Group"),
          ("49--Greeting", "Greeting"))
SPLITS = {"train": ("WIDER_train", "wider_face_train_bbx_gt.txt"), "test": ("WIDER_val", "wider_face_val_bbx_gt.txt")}
EXAGGERATED = {"Surprise", "Fear", "Disgust", "Anger"}   # WIDER's "expression" flag: 1 = exaggerated
PERSONS_P = (0.08, 0.42, 0.30, 0.20)                     # 0..3 people per picture


def face_line(box, expression: str) -> str:
    x1, y1 = round_half_up(box[0]), round_half_up(box[1])
    w, h = round_half_up(box[2]) - x1, round_half_up(box[3]) - y1
    return f"{x1} {y1} {w} {h} 0 {int(expression in EXAGGERATED)} 0 0 0 0 "


def write(root: str, num: int, seed: int, image_size: Tuple[int, int], test_fraction: float) -> Dict[str, int]:
    n_test = test_count(num, test_fraction)
    blocks = {"train": [], "test": []}
    faces = {"train": 0, "test": 0}
    for i in range(num):
        split = "train" if i < num - n_test else "test"
        rng = image_rng(seed, "wider_face", i)
        event, short = EVENTS[int(rng.integers(len(EVENTS)))]
        w, h = random_size(rng, image_size)
        n = int(rng.choice(4, p=PERSONS_P))
        specs = [sample_person(rng, action=SCENE_ACTIONS[int(rng.integers(len(SCENE_ACTIONS)))],
                               view="front" if rng.random() < 0.85 else "back") for _ in range(n)]
        scene = render_scene(rng, w, h, specs)
        name = f"{event}/{event.split('--')[0]}_{short}_{short.lower()}_{i}.jpg"
        save_jpeg(scene.image, os.path.join(root, SPLITS[split][0], "images", name))
        lines = [face_line(q.face_box, q.spec.expression) for q in scene.persons if q.face_box is not None]
        faces[split] += len(lines)
        blocks[split].append("\n".join([name, str(len(lines))] + (lines or ["0 0 0 0 0 0 0 0 0 0 "])))
    for split, (_, gt_name) in SPLITS.items():
        text = "".join(b + "\n" for b in blocks[split])
        atomic_write_text(os.path.join(root, "wider_face_split", gt_name), text)
    return {"train_images": num - n_test, "test_images": n_test, "train_faces": faces["train"],
            "test_faces": faces["test"]}
