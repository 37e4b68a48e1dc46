"""What every SynthHuman writer shares: per-image seeding, splits, sizes and byte-stable file writing."""
from __future__ import annotations

import io
import math
import os
from typing import Tuple

import numpy as np
import scipy.io
from PIL import Image

from lman_ms.utils.io import atomic_write_bytes

# Fixed per source so that adding a source never changes the images of another one.
SOURCE_IDS = {"wider_face": 1, "coco": 2, "pa100k": 3, "rafdb": 4, "stanford40": 5, "mpii": 6}
JPEG_QUALITY = 92
MAT_HEADER = b"MATLAB 5.0 MAT-file, written by lman_ms SynthHuman"


def image_rng(seed: int, source: str, index: int) -> np.random.Generator:
    """One generator per image: image ``i`` is the same whatever ``num`` is and whatever else is generated."""
    return np.random.default_rng([int(seed), SOURCE_IDS[source], int(index)])


def test_count(num: int, test_fraction: float) -> int:
    """Images of the test split: the last ones generated, at least one when there are two or more images."""
    if num < 2:
        return 0
    return min(num - 1, max(1, int(round(num * test_fraction))))


def random_size(rng: np.random.Generator, image_size: Tuple[int, int]) -> Tuple[int, int]:
    lo, hi = image_size
    w, h = (int(v) for v in rng.integers(lo, hi + 1, size=2))
    return w, h


def save_jpeg(img: Image.Image, path: str) -> None:
    """Baseline JPEG without metadata: the same pixels always give the same bytes."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    img.save(path, format="JPEG", quality=JPEG_QUALITY)


def write_mat(path: str, variables: dict) -> None:
    """A MATLAB v5 file (what the real releases ship). scipy writes the creation time into the 116-byte text
    header; it is replaced by a fixed text so that the same data gives the same bytes."""
    buf = io.BytesIO()
    scipy.io.savemat(buf, variables, format="5", do_compression=False, oned_as="column")
    data = bytearray(buf.getvalue())
    data[:116] = MAT_HEADER.ljust(116, b" ")
    atomic_write_bytes(path, bytes(data))


def cell_column(strings) -> np.ndarray:
    """A MATLAB N x 1 cell array of strings (``[i][0][0]`` is the i-th string after ``loadmat``)."""
    out = np.empty((len(strings), 1), dtype=object)
    for i, s in enumerate(strings):
        out[i, 0] = s
    return out


def round_half_up(v: float) -> int:
    return int(math.floor(float(v) + 0.5))


def clip_box(box, width: int, height: int):
    """A float xyxy box kept inside the picture, ``[0, W] x [0, H]``."""
    x1, y1, x2, y2 = box
    return [min(max(x1, 0.0), width), min(max(y1, 0.0), height), min(max(x2, 0.0), width),
            min(max(y2, 0.0), height)]
