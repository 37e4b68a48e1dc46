"""CityPersons (Zhang, Benenson and Schiele, CVPR 2017): person boxes on Cityscapes images.

Expected layout (the CityPersons annotations with the Cityscapes ``leftImg8bit`` folder beside them)::

    citypersons/annotations/anno_train.mat    'anno_train_aligned': 2,975 cells of struct(cityname, im_name, bbs)
    citypersons/annotations/anno_val.mat      'anno_val_aligned': 500 cells
    citypersons/leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png      (2048x1024)

``bbs`` rows: ``[class_label, x1, y1, w, h, instance_id, x1_vis, y1_vis, w_vis, h_vis]``, 0-based, with the
class labels of the release's ``annotations/README.txt`` (:data:`CLASS_NAMES`). The val set stands in for test
(test labels are only on the evaluation server).

Which boxes are persons: pedestrians, riders, sitting persons and persons in other postures are all real people,
so they go to ``boxes`` (the task asks for every person); groups of people and ignore regions (posters,
reflections, mannequins) go to ``ignore_boxes``. ``box_labels`` keeps each person box's class and ``visibility``
its visible fraction (visible box area / full box area, the ``vis_ratio`` of the official ``val_gt.json``), so
that the evaluation can apply the standard protocol exactly (pedestrians positive, the other classes ignored,
Reasonable = height >= 50 and visibility >= 0.65).
"""
from __future__ import annotations

import os
from typing import Iterable

import numpy as np

from .coco import PersonDetectionConverter, load_mat, mat_rows, mat_str, mat_var, xywh_to_xyxy
from .errors import AnnotationError
from .registry import register_converter
from .sample import Sample

CLASS_NAMES = ("ignore region", "pedestrian", "rider", "sitting person", "other person", "person group")
DEFAULT_PERSON_LABELS = (1, 2, 3, 4)
SPLITS = {"train": ("anno_train.mat", "anno_train_aligned", "train"),
          "test": ("anno_val.mat", "anno_val_aligned", "val")}
BBS_COLUMNS = 10


@register_converter
class CityPersonsConverter(PersonDetectionConverter):
    name = "citypersons"

    @classmethod
    def option_defaults(cls) -> dict:
        # person_labels: the class labels that count as persons (the rest become ignore regions); (1,) gives the
        # training set of the CityPersons paper, which treats riders and sitting persons as ignore.
        return {**super().option_defaults(), "person_labels": DEFAULT_PERSON_LABELS}

    @classmethod
    def detect(cls, root: str) -> bool:
        return os.path.isfile(os.path.join(root, "annotations", "anno_train.mat")) or \
            os.path.isfile(os.path.join(root, "annotations", "anno_val.mat"))

    def index(self, split: str) -> Iterable[Sample]:
        self.check_split(split)
        file, var, image_split = SPLITS[split]
        persons = {int(v) for v in self.options["person_labels"]}
        if not persons <= set(range(len(CLASS_NAMES))):
            raise ValueError(f"{self.name}: person_labels must be among 0..{len(CLASS_NAMES) - 1}, "
                             f"got {sorted(persons)}")
        path = self.require("annotations", file)
        _, cells = mat_var(load_mat(path), path, var)
        for i, rec in enumerate(np.atleast_1d(cells)):
            key = f"{var}{{{i + 1}}}"          # MATLAB cell index, 1-based
            with self.policy.guard(path, key=key) as g:
                rec = np.asarray(rec)          # a 1x1 struct inside a cell: a 0-d record once squeezed
                if rec.dtype.names is None or not {"cityname", "im_name", "bbs"} <= set(rec.dtype.names):
                    raise ValueError(f"expected struct(cityname, im_name, bbs), got fields {rec.dtype.names}")
                city = mat_str(rec["cityname"][()], "cityname")
                im_name = mat_str(rec["im_name"][()], "im_name")
                rows = mat_rows(rec["bbs"][()], BBS_COLUMNS, "bbs")
                target = {"boxes": [], "box_labels": [], "visibility": [], "ignore_boxes": []}
                for r in rows:
                    label = int(r[0])
                    if label != r[0] or not 0 <= label < len(CLASS_NAMES):
                        raise ValueError(f"bbs class label must be an integer 0..{len(CLASS_NAMES) - 1}, got {r[0]}")
                    box = xywh_to_xyxy(r[1:5])
                    if label in persons:
                        full, visible = r[3] * r[4], r[8] * r[9]
                        target["boxes"].append(box)
                        target["box_labels"].append(CLASS_NAMES[label])
                        # Template-aligned full boxes can be narrower than the visible box: cap at 1.
                        target["visibility"].append(round(min(1.0, float(visible / full)), 4) if full > 0 else 0.0)
                    else:
                        target["ignore_boxes"].append(box)
            if not g.ok:
                continue
            image = f"leftImg8bit/{image_split}/{city}/{im_name}"
            yield Sample(key=os.path.splitext(im_name)[0], image=image, target=target, source=path,
                         meta={"split": split, "key": key})

    def load(self, sample: Sample):
        if not os.path.isfile(self.path(sample.image)):
            raise AnnotationError(sample.source, f"image {sample.image} not found under {self.root} (link the "
                                  "Cityscapes leftImg8bit folder into the CityPersons root)", key=sample.meta["key"])
        return super().load(sample)
