"""Image size from the file header only (PIL opens lazily and does not decode pixels here)."""
from __future__ import annotations

from typing import Tuple

from PIL import Image, UnidentifiedImageError

from .errors import AnnotationError


def image_size(path: str) -> Tuple[int, int]:
    """(width, height) of ``path``; a missing, truncated-header or non-image file is an AnnotationError."""
    try:
        with Image.open(path) as im:
            return int(im.width), int(im.height)
    except FileNotFoundError as e:
        raise AnnotationError(path, "image file not found") from e
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise AnnotationError(path, f"not a readable image: {e}") from e
