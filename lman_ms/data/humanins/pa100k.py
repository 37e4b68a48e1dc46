"""PA-100K (Liu et al., ICCV 2017): 100,000 pedestrian crops with 26 binary attributes.

Layout (as released)::

    PA100k/annotation.mat     attributes (26x1 cell), {train,val,test}_images_name (Nx1 cell), {train,val,test}_label (Nx26, 0/1)
    PA100k/data/000001.jpg ... 100000.jpg

The attribute names and their order come from the ``attributes`` cell of ``annotation.mat`` (Female, AgeOver60,
Age18-60, AgeLess18, Front, Side, Back, Hat, ... boots). The official split is fixed by the file: train 80,000 /
val 10,000 / test 10,000. By default ``train`` is train + val (the "trainval" protocol of Rethinking_of_PAR, which
the PA-100K numbers of the paper's Table 5 follow); ``val_in_train=False`` keeps val as its own split.
An image named in both parts is one image: kept once when its label rows agree, an error naming both rows
(``train_images_name[i]``, ``val_images_name[j]``) when they do not (see :mod:`.duplicates`).
"""
from __future__ import annotations

import os
from typing import Iterable, List

import numpy as np

from .errors import AnnotationError
from .registry import Converter, register_converter
from .sample import Sample


def mat_string(cell) -> str:
    """A MATLAB char array as scipy returns it inside a cell (``array(['000001.jpg'])``, possibly nested)."""
    value = cell
    while isinstance(value, np.ndarray):
        if value.size != 1:
            raise ValueError(f"expected one string, got an array of shape {value.shape}")
        value = value.reshape(-1)[0]
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    return value


def load_mat(path: str) -> dict:
    """``scipy.io.loadmat`` with an error naming the file (missing, truncated or MATLAB v7.3/HDF5)."""
    import scipy.io

    if not os.path.isfile(path):
        raise AnnotationError(path, "annotation file not found")
    try:
        return scipy.io.loadmat(path)
    except NotImplementedError as e:  # v7.3 files are HDF5; the public releases are v5
        raise AnnotationError(path, f"MATLAB v7.3 (HDF5) files are not supported; re-save as v5: {e}") from e
    except Exception as e:  # noqa: BLE001
        raise AnnotationError(path, f"not a readable .mat file: {type(e).__name__}: {e}") from e


@register_converter
class PA100K(Converter):
    name = "pa100k"
    task = "pedestrian_attribute"
    splits = ("train", "val", "test")
    annotation = "annotation.mat"
    image_dir = "data"

    @classmethod
    def option_defaults(cls) -> dict:
        return {"val_in_train": True}

    @classmethod
    def detect(cls, root: str) -> bool:
        return os.path.isfile(os.path.join(root, cls.annotation)) and os.path.isdir(os.path.join(root, cls.image_dir))

    def parts(self, split: str) -> List[str]:
        """The parts of ``annotation.mat`` that make up ``split``."""
        if split == "train":
            return ["train", "val"] if self.options["val_in_train"] else ["train"]
        if split == "val" and self.options["val_in_train"]:
            raise ValueError("pa100k: val is part of train (val_in_train=True); pass val_in_train=False to build it alone")
        return [split]

    def attribute_names(self, mat: dict, path: str) -> List[str]:
        if "attributes" not in mat:
            raise AnnotationError(path, "missing variable", key="attributes")
        cells = np.asarray(mat["attributes"]).reshape(-1)
        names = []
        for i, cell in enumerate(cells):
            try:
                names.append(mat_string(cell).strip())
            except ValueError as e:
                raise AnnotationError(path, str(e), key=f"attributes[{i}]") from e
        if len(set(names)) != len(names):
            raise AnnotationError(path, f"duplicate attribute names: {names}", key="attributes")
        return names

    def index(self, split: str) -> Iterable[Sample]:
        self.check_split(split)
        path = self.require(self.annotation)
        mat = load_mat(path)
        names = self.attribute_names(mat, path)
        for part in self.parts(split):
            name_key, label_key = f"{part}_images_name", f"{part}_label"
            for key in (name_key, label_key):
                if key not in mat:
                    raise AnnotationError(path, "missing variable", key=key)
            images = np.asarray(mat[name_key]).reshape(-1)
            labels = np.asarray(mat[label_key])
            # A shape mismatch makes every row ambiguous, so it stops the build whatever the error policy.
            if labels.ndim != 2 or labels.shape != (len(images), len(names)):
                raise AnnotationError(path, f"shape {labels.shape} does not match {len(images)} images x "
                                            f"{len(names)} attributes", key=label_key)
            for row in range(len(images)):
                with self.policy.guard(path, key=f"{name_key}[{row}]") as g:
                    filename = mat_string(images[row])
                if not g.ok:
                    continue
                with self.policy.guard(path, key=f"{label_key}[{row}] ({filename})") as g:
                    values = labels[row]
                    if not np.all((values == 0) | (values == 1)):
                        bad = sorted({float(v) for v in values if v not in (0, 1)})
                        raise ValueError(f"labels must be 0 or 1, found {bad}")
                    vector = [int(v) for v in values]
                if not g.ok:
                    continue
                stem = os.path.splitext(filename)[0]
                yield Sample(key=stem, image=f"{self.image_dir}/{filename}",
                             target={"attributes": vector, "attribute_names": names},
                             source=path, meta={"part": part, "key": f"{name_key}[{row}]"})
