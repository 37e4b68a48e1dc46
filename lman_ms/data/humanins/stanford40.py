"""Stanford 40 Actions (Yao et al., ICCV 2011): 9,532 images of 40 actions, each with its person box(es).

Layout (``StanfordActionDataset.zip``)::

    JPEGImages/<action>_<NNN>.jpg               e.g. applauding_001.jpg
    XMLAnnotations/<action>_<NNN>.xml           VOC-like: <object><action>..</action><bndbox>..</bndbox></object>,
                                                1-based pixels
    ImageSplits/actions.txt                     "action_name<TAB>number_of_images", then one action per line
    ImageSplits/train.txt, test.txt             one image file name per line (official 100 per class train split)

The class order is actions.txt's. The label is the action in the file name (``'_'.join(stem.split('_')[:-1])``);
every ``<object>``'s ``<action>`` must agree with it. All person boxes of the image go into ``target["boxes"]``.
"""
from __future__ import annotations

import os
from typing import Iterable, List

from .errors import AnnotationError
from .registry import Converter, register_converter
from .sample import Sample
from .voc2012_action import bndbox, load_clipped, read_xml

SPLIT_DIR = "ImageSplits"


@register_converter
class Stanford40Converter(Converter):
    name = "stanford40"
    task = "action_recognition"
    splits = ("train", "test")

    @classmethod
    def detect(cls, root: str) -> bool:
        return os.path.isfile(os.path.join(root, SPLIT_DIR, "actions.txt"))

    def class_names(self) -> List[str]:
        path = self.require(SPLIT_DIR, "actions.txt")
        names: List[str] = []
        with open(path, "r", encoding="utf-8-sig") as f:
            for lineno, line in enumerate(f, 1):
                parts = line.split()
                if not parts:
                    continue
                if lineno == 1 and parts[0] == "action_name":
                    continue  # the header "action_name  number_of_images"
                if len(parts) != 2 or not parts[1].isdigit():
                    raise AnnotationError(path, f"expected '<action> <number_of_images>', got {line.strip()!r}",
                                          line=lineno)
                if parts[0] in names:
                    raise AnnotationError(path, f"action {parts[0]!r} listed twice", line=lineno)
                names.append(parts[0])
        if not names:
            raise AnnotationError(path, "no actions listed")
        return names

    def boxes(self, stem: str, action: str) -> List[List[int]]:
        path = self.path("XMLAnnotations", stem + ".xml")
        root = read_xml(path)
        objects = root.findall("object")
        if not objects:
            raise AnnotationError(path, "no <object> (person) in the annotation")
        out = []
        for i, obj in enumerate(objects, 1):
            key = f"object {i}"
            act = obj.find("action")
            if act is not None and (act.text or "").strip() != action:
                raise AnnotationError(path, f"<action> {act.text!r} disagrees with the file name ({action})", key=key)
            out.append(bndbox(obj, path, key))
        return out

    def index(self, split: str) -> Iterable[Sample]:
        self.check_split(split)
        names = self.class_names()
        label_of = {n: i for i, n in enumerate(names)}
        path = self.require(SPLIT_DIR, f"{split}.txt")
        with open(path, "r", encoding="utf-8-sig") as f:
            lines = [(i, ln.strip()) for i, ln in enumerate(f, 1) if ln.strip()]
        for lineno, file_name in lines:
            with self.policy.guard(path, lineno) as g:
                stem = os.path.splitext(file_name)[0]
                action = "_".join(stem.split("_")[:-1])
                if action not in label_of:
                    raise AnnotationError(path, f"{file_name!r}: action {action!r} is not in actions.txt",
                                          line=lineno)
                boxes = self.boxes(stem, action)
            if g.ok:
                target = {"boxes": boxes, "label": label_of[action], "label_name": action,
                          "label_names": list(names)}
                yield Sample(key=stem, image=f"JPEGImages/{file_name}", target=target, source=path, line=lineno)

    def load(self, sample: Sample) -> List[Sample]:
        return load_clipped(self, sample)
