"""ExpW, Expression in-the-Wild (Zhang et al., IJCV 2018): 91,793 faces in web images, 7 expressions.

Layout::

    image/origin/<name>.jpg        whole scene images (several faces each)
    label/label.lst                one face per line, space-separated:
        image_name face_id_in_image face_box_top face_box_left face_box_right face_box_bottom face_box_cofidence
        expression_label           (sic "cofidence"; labels 0..6)

Labels are ExpW's own 0-based order: 0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral (not
RAF-DB's order). The box columns are top, left, right, bottom: ``target["boxes"] = [[left, top, right, bottom]]``
in pixels, clipped to the image (some loaders read them as x1, y1, y2, x2, which is wrong).

One sample per face; the record's image is the whole scene and the face box says which face is meant.
Decisions (ExpW is silent): exact duplicate lines are kept once (as ``drop_duplicates`` in public loaders);
faces below ``min_confidence`` (detector score, default 0 = keep all) are dropped; and since ExpW has no official
split, an image goes to ``test`` when ``sha1("expw" + image_name) mod 100 < test_percent`` (default 10), so the
split is reproducible anywhere and all faces of one image land in the same split.
"""
from __future__ import annotations

import os
from typing import Iterable, List

from .errors import AnnotationError
from .registry import Converter, register_converter
from .sample import Sample
from .templates import stable_index
from .voc2012_action import load_clipped

LABEL_NAMES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
LABEL_FILE = ("label", "label.lst")
COLUMNS = ("image_name", "face_id_in_image", "face_box_top", "face_box_left", "face_box_right",
           "face_box_bottom", "face_box_cofidence", "expression_label")


def split_of(image_name: str, test_percent: int) -> str:
    """``test`` for about ``test_percent``% of the images, chosen by a hash of the name only."""
    return "test" if stable_index("expw", image_name, modulo=100) < test_percent else "train"


@register_converter
class ExpWConverter(Converter):
    name = "expw"
    task = "expression_recognition"
    splits = ("train", "test")

    @classmethod
    def option_defaults(cls) -> dict:
        return {"test_percent": 10,     # share of images (not faces) in the hash-based test split
                "min_confidence": 0.0}  # drop faces whose face_box_cofidence is lower

    def __init__(self, root: str, policy=None, out_dir=None, **options):
        super().__init__(root, policy=policy, out_dir=out_dir, **options)
        if not 0 <= int(self.options["test_percent"]) <= 100:
            raise ValueError(f"expw: test_percent must be in 0..100, got {self.options['test_percent']!r}")

    @classmethod
    def detect(cls, root: str) -> bool:
        return os.path.isfile(os.path.join(root, *LABEL_FILE))

    def parse(self, path: str, lineno: int, parts: List[str]) -> dict:
        if len(parts) != len(COLUMNS):
            raise AnnotationError(path, f"expected {len(COLUMNS)} columns ({' '.join(COLUMNS)}), got {len(parts)}",
                                  line=lineno)
        rec = {"image_name": parts[0], "face_id": parts[1]}
        try:
            top, left, right, bottom = (int(round(float(v))) for v in parts[2:6])
            rec["confidence"] = float(parts[6])
        except ValueError:
            raise AnnotationError(path, f"box or confidence is not a number: {' '.join(parts[2:7])!r}",
                                  line=lineno) from None
        if right <= left or bottom <= top:
            raise AnnotationError(path, f"empty face box (top {top}, left {left}, right {right}, bottom {bottom})",
                                  line=lineno)
        if not parts[7].isdigit() or int(parts[7]) >= len(LABEL_NAMES):
            raise AnnotationError(path, f"expression_label {parts[7]!r} is not in 0..{len(LABEL_NAMES) - 1}",
                                  line=lineno)
        rec["box"] = [left, top, right, bottom]
        rec["label"] = int(parts[7])
        return rec

    def index(self, split: str) -> Iterable[Sample]:
        self.check_split(split)
        path = self.require(*LABEL_FILE)
        test_percent = int(self.options["test_percent"])
        min_conf = float(self.options["min_confidence"])
        with open(path, "r", encoding="utf-8-sig") as f:
            lines = [(i, ln.split()) for i, ln in enumerate(f, 1) if ln.strip()]
        for lineno, parts in lines:
            with self.policy.guard(path, lineno) as g:
                rec = self.parse(path, lineno, parts)
                key = f"{os.path.splitext(rec['image_name'])[0]}/{rec['face_id']}"
            if not g.ok or rec["confidence"] < min_conf or split_of(rec["image_name"], test_percent) != split:
                continue
            target = {"boxes": [rec["box"]], "label": rec["label"], "label_name": LABEL_NAMES[rec["label"]],
                      "label_names": list(LABEL_NAMES)}
            yield Sample(key=key, image=f"image/origin/{rec['image_name']}", target=target, source=path,
                         line=lineno)

    def load(self, sample: Sample) -> List[Sample]:
        return load_clipped(self, sample)
