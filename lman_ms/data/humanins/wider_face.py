"""WIDER FACE (Yang et al., CVPR 2016) -> face detection records.

Expected layout under ``root`` (as the dataset ships it)::

    WIDER_train/images/<event>/<image>.jpg        e.g. 0--Parade/0_Parade_marchingband_1_849.jpg
    WIDER_val/images/<event>/<image>.jpg
    wider_face_split/wider_face_train_bbx_gt.txt
    wider_face_split/wider_face_val_bbx_gt.txt
    eval_tools/ground_truth/wider_{easy,medium,hard}_val.mat      optional (from the evaluation code zip)

``wider_face_*_bbx_gt.txt`` is a sequence of records: the image path, the number of faces, then one line per face
``x1 y1 w h blur expression illumination invalid occlusion pose`` (0-based pixels, xywh). An image with no face
still has ONE dummy line ``0 0 0 0 0 0 0 0 0 0`` which is consumed here, never read as a face.

Decisions:

* our ``test`` split is WIDER **val**: the test-set ground truth is not public, and val is what every paper reports;
* ``invalid == 1`` faces go to ``ignore_boxes`` (the evaluation neither rewards nor penalises detections on them);
  boxes with w or h = 0 are dropped (no detection can overlap them); boxes are clipped to ``[0, W-1] x [0, H-1]``;
* ``box_index`` / ``ignore_index`` give each kept box's 0-based position in the image's list in the annotation
  file, which is also the order of ``face_bbx_list`` in ``wider_face_val.mat``;
* for the test split, when ``eval_tools/ground_truth/wider_{easy,medium,hard}_val.mat`` (or ``ground_truth/``)
  are present, ``target["subsets"]`` holds per subset the 0-based positions (same numbering as ``box_index``) of
  the faces its ``gt_list`` keeps; the evaluator ignores the others, as the official evaluation does;
* ``event`` (``0--Parade``) is kept in ``target`` for per-event analysis.
"""
from __future__ import annotations

import math
import os
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .errors import AnnotationError, ErrorPolicy
from .registry import Converter, register_converter
from .sample import Sample

SPLIT_DIRS = {"train": ("WIDER_train", "wider_face_train_bbx_gt.txt"),
              "test": ("WIDER_val", "wider_face_val_bbx_gt.txt")}
FACE_FIELDS = ("x1", "y1", "w", "h", "blur", "expression", "illumination", "invalid", "occlusion", "pose")


# ---- helpers shared with the other face/pose converters (fddb, aic_pose, mpii) ------------------------------------
def round_half_up(v: float) -> int:
    # Python's round() is round-half-even; pixel coordinates should not depend on the parity of the integer part.
    return int(math.floor(float(v) + 0.5))


def clip_box(box: Sequence[float], width: int, height: int, keep_empty: bool = False) -> Optional[List[int]]:
    """``[x1, y1, x2, y2]`` rounded to integer pixels and clipped to ``[0, W-1] x [0, H-1]``.

    An empty result is None unless ``keep_empty`` (pose sources, whose boxes must stay aligned with persons)."""
    x1, y1, x2, y2 = (round_half_up(v) for v in box)
    x1, x2 = (min(max(v, 0), width - 1) for v in (x1, x2))
    y1, y2 = (min(max(v, 0), height - 1) for v in (y1, y2))
    if (x2 <= x1 or y2 <= y1) and not keep_empty:
        return None
    return [x1, y1, x2, y2]


def _is_name(text: str) -> bool:
    # Image names in both datasets are relative paths ("0--Parade/x.jpg", "2002/08/11/big/img_591").
    return "/" in text


def counted_blocks(path: str, policy: ErrorPolicy, dummy_for_zero: bool
                   ) -> Iterator[Tuple[str, int, List[Tuple[int, str]]]]:
    """Records of the "name / count / count lines" files of WIDER FACE and FDDB.

    Yields ``(name, name_line, [(line_number, text), ...])``. With ``dummy_for_zero`` a record whose count is 0
    still owns one line (WIDER's dummy line), which is consumed and not returned. A bad count is reported at its
    line; under ``skip`` the parser then resynchronises on the next image name (a line holding a path)."""
    with open(path, "r", encoding="utf-8") as f:
        lines = [(i, t.strip()) for i, t in enumerate(f, 1) if t.strip()]
    i, n = 0, len(lines)

    def next_name(j: int) -> int:
        while j < n and not _is_name(lines[j][1]):
            j += 1
        return j

    while i < n:
        name_line, name = lines[i]
        if not _is_name(name):
            policy.report(AnnotationError(path, f"expected an image path, got {name!r}", line=name_line))
            i = next_name(i + 1)
            continue
        if i + 1 >= n:
            policy.report(AnnotationError(path, f"file ends after image name {name!r}: the count line is missing",
                                          line=name_line))
            return
        count_line, count_text = lines[i + 1]
        if not count_text.isdigit():
            policy.report(AnnotationError(path, f"expected the number of faces of {name!r}, got {count_text!r}",
                                          line=count_line))
            i = next_name(i + 1)
            continue
        count = int(count_text)
        owned = count if count > 0 else (1 if dummy_for_zero else 0)
        rows = lines[i + 2:i + 2 + owned]
        if len(rows) < owned:
            policy.report(AnnotationError(path, f"{name!r} announces {count} face line(s) but the file ends after "
                                                f"{len(rows)}", line=count_line))
            return
        i += 2 + owned
        yield name, name_line, rows if count > 0 else []


# ---- the easy / medium / hard subsets of the val set -----------------------------------------------------------------
SUBSETS = ("easy", "medium", "hard")
GT_DIRS = ("eval_tools/ground_truth", "ground_truth", "wider_face_split")


def find_subset_files(root: str) -> Optional[Dict[str, str]]:
    for d in GT_DIRS:
        files = {s: os.path.join(root, d, f"wider_{s}_val.mat") for s in SUBSETS}
        if all(os.path.isfile(p) for p in files.values()):
            return files
    return None


class DifficultySubsets:
    """``gt_list`` of ``wider_{easy,medium,hard}_val.mat``: per event a cell per image of the 1-based indices of
    the faces that count in that subset (the others are ignored, neither TP nor FP). ``file_list`` names the
    images (without extension) in the same nesting."""

    def __init__(self, files: Dict[str, str]):
        from scipy.io import loadmat

        self.files = files
        self.by_image: Dict[str, Dict[str, List[int]]] = {}
        for subset, path in files.items():
            try:
                mat = loadmat(path)
            except Exception as e:  # noqa: BLE001 - scipy raises several types for a broken file
                raise AnnotationError(path, f"not a readable MATLAB file: {e}") from e
            for var in ("file_list", "gt_list"):
                if var not in mat:
                    raise AnnotationError(path, "missing variable", key=var)
            names, gts = mat["file_list"], mat["gt_list"]
            if names.shape != gts.shape:
                raise AnnotationError(path, f"file_list {names.shape} and gt_list {gts.shape} differ", key="gt_list")
            for e in range(names.shape[0]):
                event_names, event_gts = names[e, 0], gts[e, 0]
                if len(event_names) != len(event_gts):
                    raise AnnotationError(path, f"{len(event_names)} images but {len(event_gts)} lists",
                                          key=f"gt_list[{e}]")
                for j in range(len(event_names)):
                    name = str(np.asarray(event_names[j, 0]).ravel()[0])
                    one_based = np.asarray(event_gts[j, 0]).ravel().astype(np.int64)
                    self.by_image.setdefault(name, {})[subset] = sorted(int(i) - 1 for i in one_based)

    def lookup(self, key: str, faces: int) -> Dict[str, List[int]]:
        """0-based face indices (positions in the image's annotation lines) of each subset."""
        out = {}
        for subset in SUBSETS:
            path = self.files[subset]
            indices = self.by_image.get(key, {}).get(subset)
            if indices is None:
                raise AnnotationError(path, "image missing from file_list", key=key)
            if any(not 0 <= i < faces for i in indices):
                raise AnnotationError(path, f"gt_list indices {[i + 1 for i in indices]} (1-based) out of range "
                                            f"for {faces} face(s)", key=key)
            out[subset] = indices
        return out


# ---- the converter -------------------------------------------------------------------------------------------------
def parse_face_line(path: str, line: int, text: str) -> dict:
    vals = text.split()
    if len(vals) != len(FACE_FIELDS):
        raise AnnotationError(path, f"expected {len(FACE_FIELDS)} fields ({' '.join(FACE_FIELDS)}), "
                                    f"got {len(vals)}: {text!r}", line=line)
    try:
        face = dict(zip(FACE_FIELDS, (int(v) for v in vals)))
    except ValueError as e:
        raise AnnotationError(path, f"face fields must be integers: {text!r}", line=line) from e
    if face["w"] < 0 or face["h"] < 0:
        raise AnnotationError(path, f"negative box size w={face['w']} h={face['h']}", line=line)
    if face["invalid"] not in (0, 1):
        raise AnnotationError(path, f"invalid flag must be 0 or 1, got {face['invalid']}", line=line)
    return face


@register_converter
class WiderFace(Converter):
    name = "wider_face"
    task = "face_detection"
    splits = ("train", "test")

    @classmethod
    def detect(cls, root: str) -> bool:
        return os.path.isdir(os.path.join(root, "wider_face_split"))

    @classmethod
    def option_defaults(cls) -> dict:
        # subsets: read the easy/medium/hard gt_list files for the test split: "auto" when they are present,
        # true to require them, false to skip them.
        return {"subsets": "auto"}

    def subsets(self, split: str) -> Optional["DifficultySubsets"]:
        mode = str(self.options["subsets"]).lower()
        if mode not in ("auto", "true", "false"):
            raise ValueError(f"{self.name}: option subsets must be auto, true or false, got {mode!r}")
        if split != "test" or mode == "false":
            return None
        files = find_subset_files(self.root)
        if files is None and mode == "true":
            raise AnnotationError(self.path(GT_DIRS[0], "wider_easy_val.mat"),
                                  f"{self.name}: subsets=true but the easy/medium/hard files are missing "
                                  f"(looked in {', '.join(GT_DIRS)})")
        return DifficultySubsets(files) if files else None

    def index(self, split: str) -> Iterator[Sample]:
        self.check_split(split)
        image_dir, gt_name = SPLIT_DIRS[split]
        path = self.require("wider_face_split", gt_name)
        subsets = self.subsets(split)
        for name, name_line, rows in counted_blocks(path, self.policy, dummy_for_zero=True):
            faces = []
            with self.policy.guard(path, name_line) as g:
                for line, text in rows:
                    faces.append(parse_face_line(path, line, text))
                key = os.path.splitext(os.path.basename(name))[0]
                if subsets is not None:
                    image_subsets = subsets.lookup(key, len(faces))
            if not g.ok:
                continue
            boxes, box_index, ignore, ignore_index = [], [], [], []
            for k, face in enumerate(faces):
                if face["w"] == 0 or face["h"] == 0:
                    continue
                xyxy = [face["x1"], face["y1"], face["x1"] + face["w"], face["y1"] + face["h"]]
                (ignore if face["invalid"] else boxes).append(xyxy)
                (ignore_index if face["invalid"] else box_index).append(k)
            target = {"boxes": boxes, "ignore_boxes": ignore, "box_index": box_index, "ignore_index": ignore_index,
                      "event": name.split("/")[0]}
            if subsets is not None:
                target["subsets"] = image_subsets
            yield Sample(key=key, image=f"{image_dir}/images/{name}", target=target, source=path, line=name_line)

    def load(self, sample: Sample) -> List[Sample]:
        sample = super().load(sample)[0]
        clip_target(sample, "boxes", "box_index")
        clip_target(sample, "ignore_boxes", "ignore_index")
        return [sample]


def clip_target(sample: Sample, boxes_key: str, index_key: Optional[str] = None) -> None:
    """Clip ``target[boxes_key]`` to the image, dropping boxes left empty (and their entries in ``index_key``)."""
    t = sample.target
    kept, kept_index = [], []
    for k, box in enumerate(t[boxes_key]):
        clipped = clip_box(box, sample.width, sample.height)
        if clipped is not None:
            kept.append(clipped)
            if index_key is not None:
                kept_index.append(t[index_key][k])
    t[boxes_key] = kept
    if index_key is not None:
        t[index_key] = kept_index
