"""AI Challenger keypoints (Wu et al., arXiv 2017) -> pose estimation records.

Expected layout under ``root`` (the release folders as unpacked; the dates in the names vary between releases, so
they are globbed)::

    ai_challenger_keypoint_train_20170902/keypoint_train_images_20170902/<image_id>.jpg
    ai_challenger_keypoint_train_20170902/keypoint_train_annotations_20170909.json
    ai_challenger_keypoint_validation_20170911/keypoint_validation_images_20170911/<image_id>.jpg
    ai_challenger_keypoint_validation_20170911/keypoint_validation_annotations_20170911.json

The annotation file is a JSON list of ``{"image_id", "keypoint_annotations": {"human1": [x, y, v] * 14},
"human_annotations": {"human1": [x1, y1, x2, y2]}}`` in 0-based pixels.

Decisions:

* our ``test`` split is AIC **validation** (the test A/B labels are not public);
* AIC visibility 1 (visible) / 2 (labelled, occluded) / 3 (not labelled) becomes our COCO-style v = 2 / 1 / 0, as
  mmpose's conversion does; a v = 0 joint is written ``[0, 0, 0]``;
* persons are ordered human1, human2, ..., human10 numerically (not as strings), and each person's box (already
  xyxy) is clipped to the image but never dropped, so ``boxes[i]`` stays the box of ``keypoints[i]``; the AIC
  metric needs the box area per person;
* a bad person is an error at ``file [<list index> <image_id> <field>.humanN]``: a JSON list has no useful line.
"""
from __future__ import annotations

import glob
import json
import os
import re
from typing import Iterator, List, Tuple

from .errors import AnnotationError
from .registry import Converter, register_converter
from .sample import Sample
from .wider_face import clip_box, round_half_up

AIC_KEYPOINT_NAMES = (
    "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist",
    "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle", "head_top", "neck",
)
AIC_TO_COCO_VISIBILITY = {1: 2, 2: 1, 3: 0}
SPLIT_NAMES = {"train": "train", "test": "validation"}


def _human_order(name: str) -> Tuple[int, str]:
    m = re.fullmatch(r"human(\d+)", name)
    return (int(m.group(1)), name) if m else (1 << 30, name)


def parse_keypoints(values, where: Tuple[str, str]) -> List[List[int]]:
    path, key = where
    if not isinstance(values, list) or len(values) != 3 * len(AIC_KEYPOINT_NAMES):
        n = len(values) if isinstance(values, list) else type(values).__name__
        raise AnnotationError(path, f"expected {3 * len(AIC_KEYPOINT_NAMES)} numbers (14 x [x, y, v]), got {n}",
                              key=key)
    joints = []
    for j in range(len(AIC_KEYPOINT_NAMES)):
        x, y, v = values[3 * j:3 * j + 3]
        if not all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in (x, y, v)):
            raise AnnotationError(path, f"joint {j} ({AIC_KEYPOINT_NAMES[j]}) is not numeric: {[x, y, v]}", key=key)
        if v not in AIC_TO_COCO_VISIBILITY:
            raise AnnotationError(path, f"joint {j} ({AIC_KEYPOINT_NAMES[j]}) has visibility {v}; AIC uses 1, 2, 3",
                                  key=key)
        ours = AIC_TO_COCO_VISIBILITY[int(v)]
        joints.append([round_half_up(x), round_half_up(y), ours] if ours else [0, 0, 0])
    return joints


def parse_box(values, where: Tuple[str, str]) -> List[float]:
    path, key = where
    if (not isinstance(values, list) or len(values) != 4
            or not all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in values)):
        raise AnnotationError(path, f"expected a box [x1, y1, x2, y2], got {values!r}", key=key)
    x1, y1, x2, y2 = values
    if x2 < x1 or y2 < y1:
        raise AnnotationError(path, f"box has x2 < x1 or y2 < y1: {values}", key=key)
    return [float(v) for v in values]


@register_converter
class AICPose(Converter):
    name = "aic_pose"
    task = "pose_estimation"
    splits = ("train", "test")

    @classmethod
    def detect(cls, root: str) -> bool:
        return any(cls._annotation_files(root, s) for s in SPLIT_NAMES.values())

    @staticmethod
    def _annotation_files(root: str, aic_split: str) -> List[str]:
        pattern = f"keypoint_{aic_split}_annotations_*.json"
        return sorted(glob.glob(os.path.join(root, pattern)) + glob.glob(os.path.join(root, "*", pattern)))

    def files(self, split: str) -> Tuple[str, str]:
        """(annotation json, image folder) of a split."""
        aic_split = SPLIT_NAMES[split]
        found = self._annotation_files(self.root, aic_split)
        if not found:
            raise AnnotationError(self.path(f"ai_challenger_keypoint_{aic_split}_*",
                                            f"keypoint_{aic_split}_annotations_*.json"),
                                  f"{self.name}: no {aic_split} annotation file under {self.root}")
        if len(found) > 1:
            raise AnnotationError(found[1], f"{self.name}: several {aic_split} annotation files: {found}")
        ann = found[0]
        images = sorted(glob.glob(os.path.join(os.path.dirname(ann), f"keypoint_{aic_split}_images_*")))
        if not images:
            raise AnnotationError(os.path.join(os.path.dirname(ann), f"keypoint_{aic_split}_images_*"),
                                  f"{self.name}: image folder missing beside {os.path.basename(ann)}")
        return ann, images[0]

    def index(self, split: str) -> Iterator[Sample]:
        self.check_split(split)
        path, image_dir = self.files(split)
        with open(path, "r", encoding="utf-8") as f:
            try:
                entries = json.load(f)
            except json.JSONDecodeError as e:
                raise AnnotationError(path, f"invalid JSON: {e.msg}", line=e.lineno) from e
        if not isinstance(entries, list):
            raise AnnotationError(path, f"expected a JSON list of images, got {type(entries).__name__}")
        image_rel = os.path.relpath(image_dir, self.root).replace(os.sep, "/")
        for i, entry in enumerate(entries):
            with self.policy.guard(path, key=f"[{i}]") as g:
                sample = self._sample(path, i, entry, image_rel)
            if g.ok:
                yield sample

    def _sample(self, path: str, i: int, entry: dict, image_rel: str) -> Sample:
        if not isinstance(entry, dict):
            raise AnnotationError(path, f"expected an object, got {type(entry).__name__}", key=f"[{i}]")
        for field in ("image_id", "keypoint_annotations", "human_annotations"):
            if field not in entry:
                raise AnnotationError(path, f"missing field {field!r}", key=f"[{i}]")
        image_id = str(entry["image_id"])
        kps, boxes = entry["keypoint_annotations"], entry["human_annotations"]
        if not isinstance(kps, dict) or not isinstance(boxes, dict):
            raise AnnotationError(path, "keypoint_annotations and human_annotations must be objects",
                                  key=f"[{i}] {image_id}")
        if set(kps) != set(boxes):
            raise AnnotationError(path, f"persons differ between keypoint_annotations {sorted(kps)} and "
                                        f"human_annotations {sorted(boxes)}", key=f"[{i}] {image_id}")
        humans = sorted(kps, key=_human_order)
        keypoints = [parse_keypoints(kps[h], (path, f"[{i}] {image_id} keypoint_annotations.{h}")) for h in humans]
        person_boxes = [parse_box(boxes[h], (path, f"[{i}] {image_id} human_annotations.{h}")) for h in humans]
        target = {"keypoints": keypoints, "keypoint_names": list(AIC_KEYPOINT_NAMES), "boxes": person_boxes,
                  "human_ids": humans}
        return Sample(key=image_id, image=f"{image_rel}/{image_id}.jpg", target=target, source=path,
                      meta={"key": f"[{i}]"})

    def load(self, sample: Sample) -> List[Sample]:
        sample = super().load(sample)[0]
        sample.target["boxes"] = [clip_box(b, sample.width, sample.height, keep_empty=True)
                                  for b in sample.target["boxes"]]
        return [sample]
