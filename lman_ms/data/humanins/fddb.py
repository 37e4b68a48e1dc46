"""FDDB (Jain & Learned-Miller, UMass TR 2010) -> face detection records.

Expected layout under ``root``::

    originalPics/<yyyy>/<mm>/<dd>/big/img_NNN.jpg
    FDDB-folds/FDDB-fold-01-ellipseList.txt ... FDDB-fold-10-ellipseList.txt

An ellipse list is a sequence of records: the image path without extension, the number of faces, then one line
per face ``major_axis_radius minor_axis_radius angle center_x center_y 1`` (angle in radians).

Decisions (FDDB's own protocol is 10-fold cross-validation, which a fixed instruction set cannot follow):

* the folds are the split: ``test`` is the folds in the option ``test_folds`` (default ``"10"``), ``train`` the
  others; ``test_folds="1,2,3,4,5,6,7,8,9,10"`` gives the "train elsewhere, test on all 2,845 images" protocol;
* each ellipse becomes the tight axis-aligned box of the rotated ellipse (its extreme points), rounded to the
  nearest pixel and clipped to the image: with u = a(cos t, sin t) and v = b(-sin t, cos t) the half extents are
  hw = sqrt(ux^2 + vx^2), hh = sqrt(uy^2 + vy^2);
* the ellipses themselves stay in ``target["ellipses"]`` (``[a, b, angle, cx, cy]``), since the official
  evaluation matches detections against the ellipse regions, and ``target["fold"]`` records the fold;
* ``boxes[i]``, ``ellipses[i]`` and ``face_index[i]`` (the face's 0-based line among its image's ellipse lines)
  describe one face. A face whose box comes out empty once clipped (an ellipse outside the picture or under a
  pixel) cannot be stated in the answer, so it is dropped from all three: the answer and the evaluation count
  the same faces;
* records are keyed by the full image path: file names repeat across the date folders. An image listed again,
  in the same or another fold, is kept once if its ellipses agree and is an error naming both places if they
  do not (:mod:`.duplicates`; ``fold`` is provenance, not a label).
"""
from __future__ import annotations

import math
import os
from typing import Iterator, List, Tuple

from .errors import AnnotationError
from .registry import Converter, register_converter
from .sample import Sample
from .wider_face import clip_target, counted_blocks

NUM_FOLDS = 10
ELLIPSE_FIELDS = ("major_axis_radius", "minor_axis_radius", "angle", "center_x", "center_y", "label")


def ellipse_box(a: float, b: float, angle: float, cx: float, cy: float) -> List[float]:
    """Tight axis-aligned box ``[x1, y1, x2, y2]`` of the ellipse with semi-axes a, b rotated by ``angle``."""
    ux, uy = a * math.cos(angle), a * math.sin(angle)
    vx, vy = b * math.cos(angle + math.pi / 2), b * math.sin(angle + math.pi / 2)
    hw, hh = math.hypot(ux, vx), math.hypot(uy, vy)
    return [cx - hw, cy - hh, cx + hw, cy + hh]


def parse_ellipse_line(path: str, line: int, text: str) -> Tuple[float, float, float, float, float]:
    vals = text.split()
    if len(vals) != len(ELLIPSE_FIELDS):
        raise AnnotationError(path, f"expected {len(ELLIPSE_FIELDS)} fields ({' '.join(ELLIPSE_FIELDS)}), "
                                    f"got {len(vals)}: {text!r}", line=line)
    try:
        a, b, angle, cx, cy = (float(v) for v in vals[:5])
    except ValueError as e:
        raise AnnotationError(path, f"ellipse fields must be numbers: {text!r}", line=line) from e
    if not (a > 0 and b > 0) or not all(math.isfinite(v) for v in (angle, cx, cy)):
        raise AnnotationError(path, f"degenerate ellipse (radii must be > 0): {text!r}", line=line)
    return a, b, angle, cx, cy


def parse_folds(text) -> Tuple[int, ...]:
    parts = [p for p in str(text).replace(" ", "").split(",") if p]
    try:
        folds = tuple(sorted({int(p) for p in parts}))
    except ValueError as e:
        raise ValueError(f"fddb: test_folds must be comma-separated fold numbers 1..10, got {text!r}") from e
    if not folds or any(not 1 <= f <= NUM_FOLDS for f in folds):
        raise ValueError(f"fddb: test_folds must be comma-separated fold numbers 1..10, got {text!r}")
    return folds


@register_converter
class FDDB(Converter):
    name = "fddb"
    task = "face_detection"
    splits = ("train", "test")
    provenance_keys = ("fold",)

    @classmethod
    def option_defaults(cls) -> dict:
        return {"test_folds": "10"}

    @classmethod
    def detect(cls, root: str) -> bool:
        return os.path.isdir(os.path.join(root, "FDDB-folds"))

    def folds(self, split: str) -> Tuple[int, ...]:
        test = parse_folds(self.options["test_folds"])
        if split == "test":
            return test
        return tuple(f for f in range(1, NUM_FOLDS + 1) if f not in test)

    def index(self, split: str) -> Iterator[Sample]:
        self.check_split(split)
        for fold in self.folds(split):
            path = self.require("FDDB-folds", f"FDDB-fold-{fold:02d}-ellipseList.txt")
            for name, name_line, rows in counted_blocks(path, self.policy, dummy_for_zero=False):
                ellipses = []
                with self.policy.guard(path, name_line) as g:
                    for line, text in rows:
                        ellipses.append(parse_ellipse_line(path, line, text))
                if not g.ok:
                    continue
                target = {"boxes": [ellipse_box(*e) for e in ellipses], "ellipses": [list(e) for e in ellipses],
                          "face_index": list(range(len(ellipses))), "fold": fold}
                yield Sample(key=name, image=f"originalPics/{name}.jpg", target=target, source=path, line=name_line)

    def load(self, sample: Sample) -> List[Sample]:
        sample = super().load(sample)[0]
        clip_target(sample, "boxes", "face_index")
        t = sample.target
        t["ellipses"] = [t["ellipses"][k] for k in t["face_index"]]
        return [sample]
