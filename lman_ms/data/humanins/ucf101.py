"""UCF101 (Soomro et al., 2012): 101 action classes, 13,320 videos, official three train/test splits.

Layout (as the two official archives extract; mmaction2's ``videos/`` + ``annotations/`` names work too)::

    <root>/UCF-101/<Class>/v_<Class>_gGG_cCC.avi
    <root>/ucfTrainTestlist/classInd.txt          "1 ApplyEyeMakeup" ... "101 YoYo" (1-based ids, class order)
    <root>/ucfTrainTestlist/trainlist0N.txt       "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1"
    <root>/ucfTrainTestlist/testlist0N.txt        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi" (no label)

The split files are the only source of the split (groups g08-g25 train, g01-g07 test in split 1): frames are
never split at random, since clips of one group are near-duplicates. A test video's class is its folder name
looked up in classInd.txt; a train line's id must agree with it. The lists ship with CRLF line ends, and the
HandstandPushups files are spelled ``v_HandStandPushups_*``: paths are matched case-insensitively.
"""
from __future__ import annotations

import os
from typing import Iterable, List, Optional

from .errors import AnnotationError
from .registry import register_converter
from .sample import Sample
from .video import VideoConverter, read_lines

VIDEO_DIRS = ("UCF-101", "videos")
LIST_DIRS = ("ucfTrainTestlist", "annotations")


def _first_dir(root: str, names) -> Optional[str]:
    for n in names:
        if os.path.isdir(os.path.join(root, n)):
            return n
    return None


@register_converter
class UCF101Converter(VideoConverter):
    name = "ucf101"
    splits = ("train", "test")

    @classmethod
    def detect(cls, root: str) -> bool:
        lists = _first_dir(root, LIST_DIRS)
        return lists is not None and os.path.isfile(os.path.join(root, lists, "classInd.txt"))

    def class_names(self, list_dir: str) -> List[str]:
        """Class names in classInd.txt order; the ids must run 1, 2, ... so that ``id - 1`` is the index."""
        path = self.require(list_dir, "classInd.txt")
        names: List[str] = []
        for lineno, text in read_lines(path):
            parts = text.split()
            if len(parts) != 2 or not parts[0].isdigit():
                raise AnnotationError(path, f"expected '<id> <ClassName>', got {text!r}", line=lineno)
            if int(parts[0]) != len(names) + 1:
                raise AnnotationError(path, f"class id {parts[0]} out of sequence (expected {len(names) + 1})",
                                      line=lineno)
            names.append(parts[1])
        if not names:
            raise AnnotationError(path, "no classes listed")
        return names

    def index(self, split: str) -> Iterable[Sample]:
        self.check_split(split)
        list_dir = _first_dir(self.root, LIST_DIRS)
        video_dir = _first_dir(self.root, VIDEO_DIRS)
        if list_dir is None:
            raise AnnotationError(self.path(LIST_DIRS[0]), "split list folder not found (also tried "
                                  f"{', '.join(LIST_DIRS[1:])})")
        if video_dir is None:
            raise AnnotationError(self.path(VIDEO_DIRS[0]), "video folder not found (also tried "
                                  f"{', '.join(VIDEO_DIRS[1:])})")
        names = self.class_names(list_dir)
        by_name = {n.lower(): i for i, n in enumerate(names)}
        sid = int(self.options["split_id"])
        path = self.require(list_dir, f"{split}list{sid:02d}.txt")
        for lineno, text in read_lines(path):
            with self.policy.guard(path, lineno) as g:
                parts = text.split()
                if split == "train" and len(parts) != 2:
                    raise AnnotationError(path, f"expected '<Class>/<video>.avi <id>', got {text!r}", line=lineno)
                if split == "test" and len(parts) != 1:
                    raise AnnotationError(path, f"expected '<Class>/<video>.avi', got {text!r}", line=lineno)
                video = parts[0].replace("\\", "/")
                folder = video.split("/")[0] if "/" in video else ""
                if folder.lower() not in by_name:
                    raise AnnotationError(path, f"class folder {folder!r} is not in classInd.txt", line=lineno)
                label = by_name[folder.lower()]
                if split == "train" and (not parts[1].isdigit() or int(parts[1]) - 1 != label):
                    raise AnnotationError(path, f"class id {parts[1]} disagrees with folder {folder!r} "
                                          f"(id {label + 1} in classInd.txt)", line=lineno)
                key = os.path.splitext(video)[0]
                sample = self.video_sample(f"{video_dir}/{video}", key, label, names, path, lineno)
            if g.ok:
                yield sample
