"""COCO 2017: the person class for pedestrian detection (``coco_person``) and the captions for stage 1
(``coco_captions``).

Expected layout (the official zips unpacked side by side)::

    coco/annotations/instances_{train,val}2017.json    person boxes
    coco/annotations/captions_{train,val}2017.json     five captions per image
    coco/{train,val}2017/000000xxxxxx.jpg

COCO has no public test labels, so our ``test`` split is COCO ``val2017`` and ``train`` is ``train2017``.

This module also holds what the pedestrian-detection converters (CUHK-SYSU, PRW, CityPersons, Caltech) share:
:class:`PersonDetectionConverter`, which turns float boxes into the records' integer ``[x1, y1, x2, y2]``
(COCO's 0-based ``[x, y, w, h]`` is the convention the others are read into), and the MATLAB readers.
"""
from __future__ import annotations

import json
import math
import os
from collections import OrderedDict
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import scipy.io

from .errors import AnnotationError
from .imagesize import image_size
from .registry import Converter, register_converter
from .sample import Sample

COCO_SPLITS = {"train": "train2017", "test": "val2017"}
PERSON = "person"
# Lists of a detection target that run parallel to ``boxes`` (one entry per box) and are filtered with it.
PARALLEL_TO_BOXES = ("visibility", "box_labels")


# ---- boxes ---------------------------------------------------------------------------------------------------------
def xywh_to_xyxy(box: Sequence[float]) -> List[float]:
    """0-based ``[x, y, w, h]`` (COCO, CUHK-SYSU, PRW, CityPersons, Caltech) -> ``[x1, y1, x2, y2]`` floats."""
    if len(box) != 4:
        raise ValueError(f"a box needs 4 numbers [x, y, w, h], got {len(box)}: {list(box)}")
    x, y, w, h = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise ValueError(f"box has a non-finite value: {[x, y, w, h]}")
    return [x, y, x + w, y + h]


def clip_box(box: Sequence[float], width: int, height: int) -> Optional[List[int]]:
    """Round a float ``[x1, y1, x2, y2]`` to integer pixels and clip it to ``[0, W-1] x [0, H-1]``.

    Returns None when nothing of the box is left inside the image (zero width or height after clipping):
    such a box cannot be drawn or matched, so it is not a person the model can be asked to find. Rounding is
    half-up (``floor(v + 0.5)``), not Python's half-to-even, so that 10.5 and 11.5 move the same way."""
    x1, y1, x2, y2 = (int(math.floor(float(v) + 0.5)) for v in box)
    x1, x2 = min(max(x1, 0), width - 1), min(max(x2, 0), width - 1)
    y1, y2 = min(max(y1, 0), height - 1), min(max(y2, 0), height - 1)
    if x2 <= x1 or y2 <= y1:
        return None
    return [x1, y1, x2, y2]


# ---- MATLAB files ------------------------------------------------------------------------------------------------
def load_mat(path: str, squeeze: bool = True) -> Dict[str, Any]:
    """The variables of a MATLAB v5/v6 file. ``squeeze``: 1-element dimensions dropped, so a char array is a
    ``str`` and a struct a record (scipy ``squeeze_me``); an unreadable file is an error naming it."""
    if not os.path.isfile(path):
        raise AnnotationError(path, "annotation file is missing")
    try:
        data = scipy.io.loadmat(path, squeeze_me=squeeze, appendmat=False)
    except Exception as e:  # noqa: BLE001 - scipy raises several types for corrupt files
        raise AnnotationError(path, f"not a readable MATLAB file: {type(e).__name__}: {e}") from e
    return {k: v for k, v in data.items() if not k.startswith("__")}


def mat_var(data: Dict[str, Any], path: str, *names: str) -> Tuple[str, Any]:
    """The first of ``names`` that the file has (some releases renamed a variable), or an error listing them."""
    for n in names:
        if n in data:
            return n, data[n]
    raise AnnotationError(path, f"none of the variables {list(names)} is in the file; it has {sorted(data)}",
                          key=names[0])


def mat_rows(value: Any, ncols: int, what: str) -> np.ndarray:
    """A numeric matrix of ``ncols`` columns as float rows; a squeezed single row is taken back to 2-D."""
    arr = np.asarray(value)
    if arr.size == 0:
        return np.zeros((0, ncols))
    if arr.ndim == 1 and arr.size == ncols:
        arr = arr.reshape(1, ncols)
    if arr.ndim != 2 or arr.shape[1] != ncols:
        raise ValueError(f"{what} must have {ncols} columns, got an array of shape {arr.shape}")
    try:
        arr = arr.astype(np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} is not numeric: {e}") from e
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} has a non-finite value")
    return arr


def mat_str(value: Any, what: str) -> str:
    """A MATLAB string read with ``squeeze``; anything else is an error naming what was expected."""
    if isinstance(value, np.ndarray) and value.dtype.kind == "U" and value.size == 1:
        value = str(value.item())
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return value


class PersonDetectionConverter(Converter):
    """Base of the pedestrian-detection converters.

    ``index()`` yields targets whose ``boxes`` / ``ignore_boxes`` are float ``[x1, y1, x2, y2]`` in the source's
    pixel frame (already converted from its own convention). ``load()`` reads the image size from the file header
    and only then rounds and clips the boxes to the image, since most sources do not store the size.

    ``boxes`` are every real person; ``ignore_boxes`` are crowds, groups and ignore regions that a detector
    should neither be rewarded nor punished for (they never appear in the answer). Option ``keep_empty``:
    keep images with no person box. Default (None): only on the test split, so that the standard evaluation
    sets keep their negative images (Caltech's 4,024 test frames, all of COCO val2017) while training sees
    only images with someone to find.
    """

    task = "pedestrian_detection"

    @classmethod
    def option_defaults(cls) -> dict:
        return {"keep_empty": None}

    def keep_empty(self, split: str) -> bool:
        value = self.options["keep_empty"]
        return split == "test" if value is None else bool(value)

    def image_file(self, sample: Sample) -> str:
        """Absolute path of the sample's image (extracted frames live elsewhere, see Caltech)."""
        return self.path(sample.image)

    def load(self, sample: Sample) -> List[Sample]:
        path = self.image_file(sample)
        width, height = image_size(path)
        if sample.width is not None and (sample.width, sample.height) != (width, height):
            raise AnnotationError(sample.source or path, f"annotation gives {sample.width}x{sample.height} for "
                                  f"{sample.image} but its header says {width}x{height}", line=sample.line,
                                  key=sample.meta.get("key"))
        sample.width, sample.height = width, height
        target = dict(sample.target)
        kept = []
        for i, box in enumerate(target.get("boxes", [])):
            clipped = clip_box(box, width, height)
            if clipped is not None:
                kept.append((i, clipped))
        target["boxes"] = [b for _, b in kept]
        for name in PARALLEL_TO_BOXES:
            if name in target:
                target[name] = [target[name][i] for i, _ in kept]
        if "ignore_boxes" in target:
            target["ignore_boxes"] = [b for b in (clip_box(x, width, height) for x in target["ignore_boxes"])
                                      if b is not None]
        if not target["boxes"] and not self.keep_empty(sample.meta["split"]):
            return []
        sample.target = target
        return [sample]


# ---- COCO json -----------------------------------------------------------------------------------------------------
def load_json(path: str) -> dict:
    """A COCO-style json file; a syntax error names the file and line."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise AnnotationError(path, f"invalid JSON: {e.msg} (column {e.colno})", line=e.lineno) from e


def coco_images(data: dict, path: str, policy) -> Tuple["OrderedDict[int, Tuple[int, dict]]", set]:
    """image id -> (position in ``images``, image entry) in file order, and the ids of the bad entries (reported
    once here, so that their annotations are dropped quietly instead of being reported again)."""
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise AnnotationError(path, "not a COCO annotation file: needs the lists 'images' and 'annotations'")
    images: "OrderedDict[int, Tuple[int, dict]]" = OrderedDict()
    bad = set()
    for i, im in enumerate(data["images"]):
        with policy.guard(path, key=f"images[{i}]") as g:
            image_id, name = im["id"], im["file_name"]
            if not isinstance(image_id, int) or not isinstance(name, str) or not name:
                raise ValueError(f"'id' must be an integer and 'file_name' a string, got {image_id!r}, {name!r}")
            if image_id in images:
                raise ValueError(f"duplicate image id {image_id}")
            for k in ("width", "height"):
                if not isinstance(im[k], int) or im[k] <= 0:
                    raise ValueError(f"'{k}' must be a positive integer, got {im[k]!r}")
        if g.ok:
            images[image_id] = (i, im)
        elif isinstance(im, dict) and isinstance(im.get("id"), int):
            bad.add(im["id"])
    return images, bad


class _CocoBase:
    annotation_prefix = ""

    @classmethod
    def _annotation_file(cls, split: str) -> str:
        return os.path.join("annotations", f"{cls.annotation_prefix}_{COCO_SPLITS[split]}.json")

    @classmethod
    def detect(cls, root: str) -> bool:
        return any(os.path.isfile(os.path.join(root, cls._annotation_file(s))) for s in COCO_SPLITS)


@register_converter
class CocoPersonConverter(_CocoBase, PersonDetectionConverter):
    """Person boxes of ``instances_{train,val}2017.json``.

    The person category id is read from ``categories`` (name ``person``; it is 1 in every release). Boxes are
    0-based float ``[x, y, w, h]``. ``iscrowd == 1`` boxes cover a group of people with one box; they go to
    ``target["ignore_boxes"]`` and not into the answer. An image whose annotation is malformed is dropped as a
    whole (skip mode), since an answer missing one person would teach the model to miss people.
    """

    name = "coco_person"
    annotation_prefix = "instances"

    def index(self, split: str) -> Iterable[Sample]:
        self.check_split(split)
        path = self.require(self._annotation_file(split))
        data = load_json(path)
        images, bad = coco_images(data, path, self.policy)
        person_ids = [c.get("id") for c in data.get("categories", []) if c.get("name") == PERSON]
        if len(person_ids) != 1:
            raise AnnotationError(path, f"expected one category named {PERSON!r}, found {len(person_ids)}",
                                  key="categories")
        person = person_ids[0]
        boxes: Dict[int, List[List[float]]] = {k: [] for k in images}
        crowd: Dict[int, List[List[float]]] = {k: [] for k in images}
        for i, ann in enumerate(data["annotations"]):
            if isinstance(ann, dict) and (ann.get("category_id") != person or ann.get("image_id") in bad):
                continue
            image_id = ann.get("image_id") if isinstance(ann, dict) else None
            with self.policy.guard(path, key=f"annotations[{i}]") as g:
                if not isinstance(ann, dict):
                    raise ValueError(f"an annotation must be an object, got {ann!r}")
                if image_id not in images:
                    raise ValueError(f"image_id {image_id!r} is not in 'images'")
                box = xywh_to_xyxy(ann["bbox"])
                if ann.get("iscrowd", 0) not in (0, 1):
                    raise ValueError(f"'iscrowd' must be 0 or 1, got {ann['iscrowd']!r}")
                if box[2] < box[0] or box[3] < box[1]:
                    raise ValueError(f"negative width or height in bbox {ann['bbox']}")
            if not g.ok:
                bad.add(image_id)
                continue
            (crowd if ann.get("iscrowd", 0) == 1 else boxes)[image_id].append(box)
        for image_id, (pos, im) in images.items():
            if image_id in bad:
                continue
            yield Sample(key=os.path.splitext(im["file_name"])[0],
                         image=f"{COCO_SPLITS[split]}/{im['file_name']}",
                         target={"boxes": boxes[image_id], "ignore_boxes": crowd[image_id]},
                         width=im["width"], height=im["height"], source=path,
                         meta={"split": split, "key": f"images[{pos}] (id {image_id})"})


@register_converter
class CocoCaptionsConverter(_CocoBase, Converter):
    """Captions of ``captions_{train,val}2017.json`` for stage 1 (image-text contrastive and masked-LM losses).

    Every caption of an image goes to ``target["captions"]`` in file order, with runs of whitespace made one space (the
    release has trailing spaces and newlines); the record's answer is the first one. Images without a caption
    are dropped.
    """

    name = "coco_captions"
    task = "caption"
    annotation_prefix = "captions"

    def index(self, split: str) -> Iterable[Sample]:
        self.check_split(split)
        path = self.require(self._annotation_file(split))
        data = load_json(path)
        images, bad = coco_images(data, path, self.policy)
        captions: Dict[int, List[str]] = {k: [] for k in images}
        for i, ann in enumerate(data["annotations"]):
            if isinstance(ann, dict) and ann.get("image_id") in bad:
                continue
            with self.policy.guard(path, key=f"annotations[{i}]") as g:
                image_id, text = ann["image_id"], ann["caption"]
                if image_id not in images:
                    raise ValueError(f"image_id {image_id!r} is not in 'images'")
                if not isinstance(text, str) or not " ".join(text.split()):
                    raise ValueError(f"'caption' must be a non-empty string, got {text!r}")
            if g.ok:
                captions[image_id].append(" ".join(text.split()))
        for image_id, (pos, im) in images.items():
            if not captions[image_id]:
                continue
            yield Sample(key=os.path.splitext(im["file_name"])[0],
                         image=f"{COCO_SPLITS[split]}/{im['file_name']}",
                         target={"captions": captions[image_id]}, width=im["width"], height=im["height"],
                         source=path, meta={"split": split, "key": f"images[{pos}] (id {image_id})"})

    def load(self, sample: Sample) -> List[Sample]:
        """The image must exist and match the size the json gives (read from its header)."""
        path = self.path(sample.image)
        width, height = image_size(path)
        if (sample.width, sample.height) != (width, height):
            raise AnnotationError(sample.source, f"annotation gives {sample.width}x{sample.height} for "
                                  f"{sample.image} but its header says {width}x{height}", key=sample.meta["key"])
        return [sample]
