"""SynthHuman in the PA-100K layout (registry ``pa100k``).

``data/<NNNNNN>.jpg`` pedestrian crops and ``annotation.mat`` (MATLAB v5) with the release's variables:
``attributes`` (26 x 1 cell, the PA-100K names in file order), ``{train,val,test}_images_name`` (N x 1 cells) and
``{train,val,test}_label`` (N x 26, 0/1). The split is 80/10/10 like the release. Every attribute is drawn (see
``person.py``) except ``Side``, which stays 0.
"""
from __future__ import annotations

import os
from typing import Dict, Tuple

import numpy as np

from .common import cell_column, image_rng, save_jpeg, test_count, write_mat
from .person import PA100K_ATTRIBUTES, pa100k_vector, sample_person
from .scene import render_crop

PARTS = ("train", "val", "test")


def write(root: str, num: int, seed: int, image_size: Tuple[int, int], test_fraction: float) -> Dict[str, int]:
    """``image_size`` is unused: crops take the size of the figure, as the release's crops do."""
    n_test = test_count(num, test_fraction / 2)
    n_val = test_count(num - n_test, test_fraction / 2) if num - n_test >= 2 else 0
    n_train = num - n_test - n_val
    names = {p: [] for p in PARTS}
    labels = {p: [] for p in PARTS}
    for i in range(num):
        part = "train" if i < n_train else "val" if i < n_train + n_val else "test"
        rng = image_rng(seed, "pa100k", i)
        spec = sample_person(rng)
        scene = render_crop(rng, spec)
        name = f"{i + 1:06d}.jpg"
        save_jpeg(scene.image, os.path.join(root, "data", name))
        names[part].append(name)
        labels[part].append(pa100k_vector(spec))
    variables = {"attributes": cell_column(list(PA100K_ATTRIBUTES))}
    for p in PARTS:
        variables[f"{p}_images_name"] = cell_column(names[p])
        variables[f"{p}_label"] = np.asarray(labels[p], dtype=np.uint8).reshape(len(names[p]), len(PA100K_ATTRIBUTES))
    write_mat(os.path.join(root, "annotation.mat"), variables)
    return {f"{p}_images": len(names[p]) for p in PARTS}
