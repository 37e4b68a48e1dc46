"""SynthHuman in the RAF-DB basic layout (registry ``rafdb``; its root is the ``basic`` folder).

``basic/EmoLabel/list_patition_label.txt`` (sic) with ``train_00001.jpg 4`` lines (labels 1..7 in RAF order:
Surprise, Fear, Disgust, Happiness, Sadness, Anger, Neutral), ``basic/Image/original/<name>.jpg`` (a head and
shoulders picture, face at a random place) and ``basic/Image/aligned/<stem>_aligned.jpg`` (100 x 100, the face
filling the picture, as the release's aligned faces). Classes are balanced: image ``i`` shows expression
``i mod 7``.
"""
from __future__ import annotations

import os
from typing import Dict, Tuple

from lman_ms.utils.io import atomic_write_text

from .common import image_rng, save_jpeg, test_count
from .person import EXPRESSIONS, sample_person
from .scene import render_portrait

ALIGNED_SIZE = 100
ALIGNED_HEAD = 0.30      # head radius / side in the aligned faces


def write(root: str, num: int, seed: int, image_size: Tuple[int, int], test_fraction: float) -> Dict[str, int]:
    n_test = test_count(num, test_fraction)
    basic = os.path.join(root, "basic")
    lines = []
    for i in range(num):
        train = i < num - n_test
        name = f"train_{i + 1:05d}.jpg" if train else f"test_{i - (num - n_test) + 1:04d}.jpg"
        rng = image_rng(seed, "rafdb", i)
        label = i % len(EXPRESSIONS)
        spec = sample_person(rng, expression=EXPRESSIONS[label], view="front")
        side = int(rng.integers(image_size[0], image_size[1] + 1))
        original = render_portrait(rng, spec, side, head_frac=rng.uniform(0.18, 0.26), jitter=0.08)
        aligned = render_portrait(rng, spec, ALIGNED_SIZE, head_frac=ALIGNED_HEAD, center=(0.5, 0.45), jitter=0.02)
        save_jpeg(original.image, os.path.join(basic, "Image", "original", name))
        save_jpeg(aligned.image, os.path.join(basic, "Image", "aligned", name[:-4] + "_aligned.jpg"))
        lines.append(f"{name} {label + 1}\n")
    atomic_write_text(os.path.join(basic, "EmoLabel", "list_patition_label.txt"), "".join(lines))
    return {"train_images": num - n_test, "test_images": n_test}
