"""CUHK-SYSU person search (Xiao et al., CVPR 2017) as pedestrian detection.

Expected layout (the release as unpacked)::

    CUHK-SYSU/Image/SSM/s1.jpg ...                    18,184 scene images
    CUHK-SYSU/annotation/Images.mat                   'Img': struct(imname, nAppear, box),
                                                      box: struct(idlocate = [x, y, w, h], ishard)
    CUHK-SYSU/annotation/pool.mat                     'pool': the 6,978 gallery (test) image names
    CUHK-SYSU/annotation/test/train_test/Train.mat    identities of the training persons (re-ID only; not read)

Split (as SeqNet and the person-search papers): test = the images of ``pool.mat``, train = every other image of
``Images.mat`` (11,206). ``idlocate`` is 0-based ``[x, y, w, h]``; boxes without width or height exist in the
release and are dropped, as every loader does. All boxes are persons, labelled with an identity or not: detection
uses them all, so the identity files are not needed.
"""
from __future__ import annotations

import os
from typing import Iterable

import numpy as np

from .coco import PersonDetectionConverter, load_mat, mat_rows, mat_str, mat_var, xywh_to_xyxy
from .errors import AnnotationError
from .registry import register_converter
from .sample import Sample

IMAGES_MAT = os.path.join("annotation", "Images.mat")
POOL_MAT = os.path.join("annotation", "pool.mat")
IMAGE_DIR = os.path.join("Image", "SSM")


@register_converter
class CuhkSysuConverter(PersonDetectionConverter):
    name = "cuhk_sysu"

    @classmethod
    def detect(cls, root: str) -> bool:
        return os.path.isfile(os.path.join(root, IMAGES_MAT)) and os.path.isfile(os.path.join(root, POOL_MAT))

    def _pool(self) -> set:
        path = self.require(POOL_MAT)
        _, pool = mat_var(load_mat(path), path, "pool")
        names = set()
        for i, v in enumerate(np.atleast_1d(pool)):
            with self.policy.guard(path, key=f"pool({i + 1})") as g:
                name = mat_str(v, "a pool entry")
            if g.ok:
                names.add(name)
        return names

    def index(self, split: str) -> Iterable[Sample]:
        self.check_split(split)
        pool = self._pool()
        path = self.require(IMAGES_MAT)
        _, img = mat_var(load_mat(path), path, "Img")
        img = np.atleast_1d(img)
        if img.dtype.names is None or not {"imname", "box"} <= set(img.dtype.names):
            raise AnnotationError(path, f"'Img' must be a struct array with fields imname, nAppear, box; "
                                  f"got fields {img.dtype.names}", key="Img")
        seen = set()
        for i, rec in enumerate(img):
            key = f"Img({i + 1})"          # MATLAB's 1-based index, as a user would look it up
            name = None
            with self.policy.guard(path, key=key) as g:
                name = mat_str(rec["imname"], "imname")
                boxes = []
                for j, b in enumerate(np.atleast_1d(rec["box"])):
                    (x, y, w, h), = mat_rows(b["idlocate"], 4, f"box({j + 1}).idlocate")
                    if w > 0 and h > 0:
                        boxes.append(xywh_to_xyxy([x, y, w, h]))
            seen.add(name)     # a bad entry was reported already; its gallery image is not missing
            if not g.ok:
                continue
            if (name in pool) != (split == "test"):
                continue
            yield Sample(key=os.path.splitext(name)[0], image=os.path.join(IMAGE_DIR, name).replace(os.sep, "/"),
                         target={"boxes": boxes}, source=path, meta={"split": split, "key": key})
        if split == "test":
            for name in sorted(pool - seen):
                self.policy.report(AnnotationError(self.path(POOL_MAT), f"gallery image {name} has no entry in "
                                                   f"{IMAGES_MAT}", key="pool"))
