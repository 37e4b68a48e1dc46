"""PASCAL VOC 2012 Action: still images, person boxes labelled with 10 actions plus ``other``.

Layout (``VOCdevkit/VOC2012`` of ``VOCtrainval_11-May-2012.tar``; ``--root`` is the ``VOC2012`` folder)::

    ImageSets/Action/train.txt, val.txt     one image id per line ("2010_006088"); a line "2010_006088 1" (id
                                            and 1-based object index, as in <action>_train.txt) names one person
    Annotations/<id>.xml                    <object><name>person</name><actions><jumping>0</jumping>...
                                            <bndbox><xmin>..</xmin>...</bndbox></object>   (1-based pixels)
    JPEGImages/<id>.jpg

Decisions: one sample per annotated person (every ``<object>`` with ``<actions>``, or the one a
"<id> <index>" line names). The record's image is the whole picture; the person's box is
``target["boxes"] = [[x1, y1, x2, y2]]`` (0-based, clipped), so the pipeline can crop or draw it. ``test`` is the
official ``val`` list, because the test labels are held by the evaluation server. A person with several positive
actions gets ``label`` = the first named action in class order (``other`` only when nothing else is positive) and
``labels`` = all of them. Class order: the devkit's ``VOCopts.actions``: ``other``, then the 10 actions.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from typing import Iterable, List, Sequence

from .errors import AnnotationError
from .imagesize import image_size
from .registry import Converter, register_converter
from .sample import Sample

# The devkit's order (VOCinit.m, ``VOCopts.actions``): "other" first, then the 10 evaluated actions.
ACTIONS = ("other", "jumping", "phoning", "playinginstrument", "reading", "ridingbike", "ridinghorse", "running",
           "takingphoto", "usingcomputer", "walking")
SPLIT_FILES = {"train": "train.txt", "test": "val.txt"}


# ---- VOC-style XML helpers (shared with Stanford40, whose annotations use the same schema) ----------------------
def read_xml(path: str) -> ET.Element:
    if not os.path.isfile(path):
        raise AnnotationError(path, "annotation file not found")
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as e:
        raise AnnotationError(path, f"malformed XML: {e}", line=e.position[0]) from e


def bndbox(obj: ET.Element, path: str, key: str) -> List[int]:
    """The object's ``<bndbox>`` in 0-based integer pixels: VOC and Stanford40 count pixels from 1."""
    box = obj.find("bndbox")
    if box is None:
        raise AnnotationError(path, "object has no <bndbox>", key=key)
    vals = []
    for tag in ("xmin", "ymin", "xmax", "ymax"):
        node = box.find(tag)
        if node is None or not (node.text or "").strip():
            raise AnnotationError(path, f"<bndbox> has no <{tag}>", key=key)
        try:
            vals.append(int(round(float(node.text)) - 1))
        except ValueError:
            raise AnnotationError(path, f"<{tag}> is not a number: {node.text!r}", key=key) from None
    if vals[2] < vals[0] or vals[3] < vals[1]:
        raise AnnotationError(path, f"box {vals} has x2 < x1 or y2 < y1", key=key)
    return vals


def clip_box(box: Sequence[int], width: int, height: int) -> List[int]:
    """Clip to the image, ``[0, W-1] x [0, H-1]`` (HumanIns boxes name pixels that exist)."""
    x1, y1, x2, y2 = box
    return [min(max(x1, 0), width - 1), min(max(y1, 0), height - 1),
            min(max(x2, 0), width - 1), min(max(y2, 0), height - 1)]


def load_clipped(conv: Converter, sample: Sample) -> List[Sample]:
    """Image size from the header, then the target's boxes clipped to it (the annotation's ``<size>`` is not
    trusted: the header is what the model will see)."""
    path = conv.path(sample.image)
    sample.width, sample.height = image_size(path)
    sample.target = {**sample.target,
                     "boxes": [clip_box(b, sample.width, sample.height) for b in sample.target["boxes"]]}
    return [sample]


@register_converter
class VOC2012ActionConverter(Converter):
    name = "voc2012_action"
    task = "action_recognition"
    splits = ("train", "test")

    @classmethod
    def detect(cls, root: str) -> bool:
        return os.path.isfile(os.path.join(root, "ImageSets", "Action", "train.txt"))

    def person(self, image_id: str, index: int) -> dict:
        """Box and action labels of the ``index``-th (1-based) object of ``Annotations/<image_id>.xml``."""
        path = self.path("Annotations", image_id + ".xml")
        root = read_xml(path)
        objects = root.findall("object")
        key = f"object {index}"
        if not 1 <= index <= len(objects):
            raise AnnotationError(path, f"object index {index} but the file has {len(objects)} objects", key=key)
        obj = objects[index - 1]
        actions = obj.find("actions")
        if actions is None:
            raise AnnotationError(path, "person has no <actions>", key=key)
        positive = []
        for node in actions:
            if node.tag not in ACTIONS:
                raise AnnotationError(path, f"unknown action <{node.tag}>", key=key)
            flag = (node.text or "").strip()
            if flag not in ("0", "1"):
                raise AnnotationError(path, f"<{node.tag}> must be 0 or 1, got {flag!r}", key=key)
            if flag == "1":
                positive.append(ACTIONS.index(node.tag))
        if not positive:
            raise AnnotationError(path, "person has no positive action", key=key)
        return {"box": bndbox(obj, path, key), "labels": sorted(positive)}

    def index(self, split: str) -> Iterable[Sample]:
        self.check_split(split)
        path = self.require("ImageSets", "Action", SPLIT_FILES[split])
        with open(path, "r", encoding="utf-8") as f:
            lines = [(i, ln.split()) for i, ln in enumerate(f, 1) if ln.strip()]
        for lineno, parts in lines:
            with self.policy.guard(path, lineno) as g:
                if len(parts) not in (1, 2) or (len(parts) == 2 and not parts[1].lstrip("-").isdigit()):
                    raise AnnotationError(path, f"expected '<image id> <object index>', got {' '.join(parts)!r}",
                                          line=lineno)
                image_id = parts[0]
                if len(parts) == 2:
                    indices = [int(parts[1])]
                else:  # an image-level list: every person that carries actions
                    xml = self.path("Annotations", image_id + ".xml")
                    indices = [i for i, o in enumerate(read_xml(xml).findall("object"), 1)
                               if o.find("actions") is not None]
                    if not indices:
                        raise AnnotationError(xml, "no person with <actions> in this action image")
                people = [(i, self.person(image_id, i)) for i in indices]
            if not g.ok:
                continue
            for i, p in people:
                labels = p["labels"]
                # A named action is the label; "other" (index 0) only when nothing else is positive.
                label = next((c for c in labels if c != 0), 0)
                target = {"boxes": [p["box"]], "label": label, "label_name": ACTIONS[label],
                          "label_names": list(ACTIONS), "labels": labels}
                yield Sample(key=f"{image_id}/{i}", image=f"JPEGImages/{image_id}.jpg", target=target,
                             source=path, line=lineno)

    def load(self, sample: Sample) -> List[Sample]:
        return load_clipped(self, sample)
