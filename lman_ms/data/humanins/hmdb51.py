"""HMDB51 (Kuehne et al., 2011): 51 action classes, 6,766 clips, official 70/30 splits.

Layout (``hmdb51_org.rar`` with its per-class archives unpacked, and ``test_train_splits.rar``)::

    <root>/hmdb51_org/<class>/<video>.avi                  (``videos/`` as in mmaction2 works too)
    <root>/testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt
        "April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1 "     1 = train, 2 = test, 0 = not used in this split

HMDB51 ships no class-index file: the class list is the class names of the split files, sorted (the order
mmaction2 and most HMDB51 code use: brush_hair, cartwheel, ..., wave). Frames are sampled per video as for UCF101
and every frame keeps its video's split and class.
"""
from __future__ import annotations

import os
import re
from typing import Iterable, List

from .duplicates import FirstListing
from .errors import AnnotationError
from .registry import register_converter
from .sample import Sample
from .video import VideoConverter, read_lines

SPLIT_DIR = "testTrainMulti_7030_splits"
VIDEO_DIRS = ("hmdb51_org", "videos")
FLAGS = {"train": "1", "test": "2"}
_SPLIT_FILE = re.compile(r"^(?P<cls>.+)_test_split(?P<sid>[123])\.txt$")


@register_converter
class HMDB51Converter(VideoConverter):
    name = "hmdb51"
    splits = ("train", "test")

    @classmethod
    def detect(cls, root: str) -> bool:
        return os.path.isdir(os.path.join(root, SPLIT_DIR))

    def class_names(self) -> List[str]:
        folder = self.require(SPLIT_DIR)
        sid = str(self.options["split_id"])
        names = sorted(m["cls"] for m in map(_SPLIT_FILE.match, os.listdir(folder)) if m and m["sid"] == sid)
        if not names:
            raise AnnotationError(folder, f"no '<class>_test_split{sid}.txt' files")
        return names

    def video_dir(self, first_class: str) -> str:
        for d in VIDEO_DIRS:
            if os.path.isdir(self.path(d, first_class)):
                return d
        raise AnnotationError(self.path(VIDEO_DIRS[0]), f"video folder with class folders not found (also tried "
                              f"{', '.join(VIDEO_DIRS[1:])})")

    def index(self, split: str) -> Iterable[Sample]:
        self.check_split(split)
        names = self.class_names()
        video_dir = self.video_dir(names[0])
        sid = int(self.options["split_id"])
        for label, cls_name in enumerate(names):
            path = self.path(SPLIT_DIR, f"{cls_name}_test_split{sid}.txt")
            # A video repeated in its class file with another flag would land in both train and test.
            flags = FirstListing("video")
            for lineno, text in read_lines(path):
                with self.policy.guard(path, lineno) as g:
                    parts = text.split()
                    if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                        raise AnnotationError(path, f"expected '<video>.avi <0|1|2>', got {text!r}", line=lineno)
                    first = flags.check(parts[0], {"flag": parts[1]}, path, lineno)
                    sample = None
                    if first and parts[1] == FLAGS[split]:
                        key = f"{cls_name}/{os.path.splitext(parts[0])[0]}"
                        sample = self.video_sample(f"{video_dir}/{cls_name}/{parts[0]}", key, label, names, path,
                                                   lineno)
                if g.ok and sample is not None:
                    yield sample
