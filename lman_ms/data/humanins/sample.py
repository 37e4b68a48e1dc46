"""What a converter yields: one image (or video frame) with its structured ground truth."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from lman_ms.data.tasks import HUMANINS_TASKS

# the six HumanIns tasks, plus stage 1's image-caption pairs (COCO captions), which are not a HumanIns task
TASKS = HUMANINS_TASKS + ("caption",)


@dataclass
class Sample:
    """``key`` is unique within (dataset, split) and stable across runs; it becomes part of the record id.

    ``image`` is the path relative to the dataset root (as the dataset ships it, or the extracted frame's path
    relative to the build's output folder when ``image_root`` is "out"). ``target`` uses the record schema:
    ``boxes`` [[x1, y1, x2, y2], ...] (original pixels, integers), ``keypoints`` [[[x, y, v], ...] per person] with
    ``keypoint_names``, ``label``/``label_name``/``label_names`` (the dataset's own class order),
    ``attributes`` (0/1 list) with ``attribute_names``, ``captions``, ``ignore_boxes``.
    ``qa``: extra (question, answer) pairs, used by caption datasets instead of templated instructions."""

    key: str
    image: str
    target: Dict[str, Any]
    width: Optional[int] = None
    height: Optional[int] = None
    qa: List[Dict[str, str]] = field(default_factory=list)
    meta: Dict[str, Any] = field(default_factory=dict)  # converter-private (e.g. video path for frame sampling)
    source: str = ""        # annotation file the sample came from, for errors
    line: Optional[int] = None
