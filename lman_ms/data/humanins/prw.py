"""PRW, Person Re-identification in the Wild (Zheng et al., CVPR 2017), as pedestrian detection.

Expected layout (``PRW-v16.04.20`` as unpacked)::

    PRW/frames/c1s1_000151.jpg ...            11,816 frames from 6 cameras, 1920x1080
    PRW/annotations/c1s1_000151.jpg.mat       rows [pid, x, y, w, h] under 'box_new'
                                              (older files: 'anno_file', then 'anno_previous')
    PRW/frame_train.mat                       'img_index_train': 5,704 frame names without extension
    PRW/frame_test.mat                        'img_index_test': 6,112 frame names

Every row is a person; pid -2 marks one without an identity, which detection keeps like any other. Boxes are
0-based ``[x, y, w, h]`` and some start at negative coordinates. SeqNet clips ``x, y`` to 0 *before* adding
``w, h``, which stretches such a box by the clipped amount; here the box is converted first and then clipped to
the image, so its right and bottom edges stay where the annotator put them.
"""
from __future__ import annotations

import os
from typing import Iterable

import numpy as np

from .coco import PersonDetectionConverter, load_mat, mat_rows, mat_str, mat_var, xywh_to_xyxy
from .errors import AnnotationError
from .registry import register_converter
from .sample import Sample

SPLIT_FILES = {"train": ("frame_train.mat", "img_index_train"), "test": ("frame_test.mat", "img_index_test")}
BOX_KEYS = ("box_new", "anno_file", "anno_previous")   # the order SeqNet and the PRW toolkit look them up
UNLABELED = -2


@register_converter
class PrwConverter(PersonDetectionConverter):
    name = "prw"

    @classmethod
    def detect(cls, root: str) -> bool:
        return os.path.isfile(os.path.join(root, "frame_train.mat")) and \
            os.path.isdir(os.path.join(root, "annotations"))

    def index(self, split: str) -> Iterable[Sample]:
        self.check_split(split)
        file, var = SPLIT_FILES[split]
        list_path = self.require(file)
        _, names = mat_var(load_mat(list_path), list_path, var)
        for i, v in enumerate(np.atleast_1d(names)):
            with self.policy.guard(list_path, key=f"{var}({i + 1})") as g:
                stem = mat_str(v, "a frame name")
            if not g.ok:
                continue
            image = f"{stem}.jpg"
            anno = self.path("annotations", image + ".mat")
            with self.policy.guard(anno) as g:
                key, rows = mat_var(load_mat(anno), anno, *BOX_KEYS)
                try:
                    rows = mat_rows(rows, 5, f"'{key}' ([pid, x, y, w, h] rows)")
                except ValueError as e:
                    raise AnnotationError(anno, str(e), key=key) from e
                pids = rows[:, 0]
                if np.any(pids != np.round(pids)) or np.any((pids < 1) & (pids != UNLABELED)):
                    raise AnnotationError(anno, f"person ids must be positive integers or {UNLABELED} "
                                          f"(unlabeled), got {sorted(set(pids.tolist()))}", key=key)
                boxes = [xywh_to_xyxy(r[1:]) for r in rows]
            if not g.ok:
                continue
            yield Sample(key=stem, image=f"frames/{image}", target={"boxes": boxes}, source=anno,
                         meta={"split": split, "key": key})
