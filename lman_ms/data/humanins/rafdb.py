"""RAF-DB basic (Li, Deng and Du, CVPR 2017): 15,339 face images, 7 basic expressions.

Layout (``--root`` is the ``basic`` folder of the release)::

    EmoLabel/list_patition_label.txt      "train_00001.jpg 5" / "test_0001.jpg 1"   (sic: "patition"; label 1..7)
    Image/aligned/train_00001_aligned.jpg 100x100 aligned faces
    Image/original/train_00001.jpg        the original images

Labels are RAF-DB's own 1-based order: 1 Surprise, 2 Fear, 3 Disgust, 4 Happiness, 5 Sadness, 6 Anger,
7 Neutral; ``target["label"]`` is ``id - 1`` (it differs from ExpW's order: compare names across the two). The
split is the file-name prefix (12,271 ``train_`` / 3,068 ``test_``). Option ``images``: ``aligned`` (default, the
faces most RAF-DB results use) or ``original``.
"""
from __future__ import annotations

import os
from typing import Iterable

from .errors import AnnotationError
from .registry import Converter, register_converter
from .sample import Sample

LABEL_NAMES = ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")
LABEL_FILE = ("EmoLabel", "list_patition_label.txt")


@register_converter
class RAFDBConverter(Converter):
    name = "rafdb"
    task = "expression_recognition"
    splits = ("train", "test")

    @classmethod
    def option_defaults(cls) -> dict:
        return {"images": "aligned"}  # "aligned" (100x100 faces) or "original"

    def __init__(self, root: str, policy=None, out_dir=None, **options):
        super().__init__(root, policy=policy, out_dir=out_dir, **options)
        if self.options["images"] not in ("aligned", "original"):
            raise ValueError(f"rafdb: images must be 'aligned' or 'original', got {self.options['images']!r}")

    @classmethod
    def detect(cls, root: str) -> bool:
        return os.path.isfile(os.path.join(root, *LABEL_FILE))

    def image_path(self, file_name: str) -> str:
        if self.options["images"] == "aligned":
            return f"Image/aligned/{os.path.splitext(file_name)[0]}_aligned.jpg"
        return f"Image/original/{file_name}"

    def index(self, split: str) -> Iterable[Sample]:
        self.check_split(split)
        path = self.require(*LABEL_FILE)
        with open(path, "r", encoding="utf-8-sig") as f:
            lines = [(i, ln.split()) for i, ln in enumerate(f, 1) if ln.strip()]
        for lineno, parts in lines:
            with self.policy.guard(path, lineno) as g:
                if len(parts) != 2:
                    raise AnnotationError(path, f"expected '<image> <label 1..7>', got {' '.join(parts)!r}",
                                          line=lineno)
                file_name, raw = parts
                prefix = file_name.split("_", 1)[0]
                if prefix not in self.splits:
                    raise AnnotationError(path, f"{file_name!r} starts with neither 'train_' nor 'test_'",
                                          line=lineno)
                if not raw.isdigit() or not 1 <= int(raw) <= len(LABEL_NAMES):
                    raise AnnotationError(path, f"label {raw!r} is not in 1..{len(LABEL_NAMES)}", line=lineno)
            if g.ok and prefix == split:
                label = int(raw) - 1
                target = {"label": label, "label_name": LABEL_NAMES[label], "label_names": list(LABEL_NAMES)}
                yield Sample(key=os.path.splitext(file_name)[0], image=self.image_path(file_name), target=target,
                             source=path, line=lineno)
