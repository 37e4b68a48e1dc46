"""Market-1501-attribute and DukeMTMC-attribute (Lin et al., PR 2019): identity-level attributes of re-id crops.

Layout: the re-id dataset folder with the attribute file of the vana77 release copied into it::

    Market-1501-v15.09.15/market_attribute.mat     DukeMTMC-reID/duke_attribute.mat
                          bounding_box_train/0002_c1s1_000451_03.jpg         bounding_box_train/0001_c2_f0046182.jpg
                          bounding_box_test/...  query/...                  bounding_box_test/...  query/...

``loadmat(f)['market_attribute'][0, 0]`` has the structs ``train`` and ``test``; each field of a struct is a (1, N)
row over the split's identities and ``image_index`` holds the 4-digit pid. Codes are 1 = no / first option and
2 = yes / second option, except Market's ``age``: 1 child (``young`` in the release's own code), 2 teenager,
3 adult, 4 old. Every image inherits the attributes of its identity, joined through the pid prefix of the file name;
Market's junk (``-1``) and distractor (``0000``) images have no identity and are left out.

Decisions (the release is silent):
* The order is the field order of the **train** struct; the test struct is reordered by field name to it, because
  ``duke_attribute.mat`` stores its two structs in different orders and one split must not be scored against the
  other's columns.
* ``attribute_names`` name the *second* option of each field ("female", "long_hair", ...), so that the answer lists
  what the person has; Market's ``age`` becomes four one-hot attributes at its position.
* Code 0 (DukeMTMC ``top`` for two train identities) is "not annotated" and is written as ``-1``: neither a
  positive nor a negative, and left out of the answer.
* ``test`` is the gallery (``bounding_box_test``), on which the official ``evaluate_*_attribute.m`` scores;
  ``include_query=True`` adds ``query/``.
"""
from __future__ import annotations

import os
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np

from .errors import AnnotationError
from .pa100k import load_mat, mat_string
from .registry import Converter, register_converter
from .sample import Sample

# What code 2 means for each binary field (vana77 READMEs and the release's ``label2word``).
SECOND_OPTION = {
    "gender": "female", "hair": "long_hair", "up": "short_sleeve", "down": "short_lower_body_clothing",
    "clothes": "pants", "top": "long_upper_body_clothing", "shoes": "light_shoes",
    "hat": "hat", "backpack": "backpack", "bag": "bag", "handbag": "handbag", "boots": "boots",
}
# Fields with more than two codes: one attribute per code, in code order (Market ``age``: 1..4).
MULTI_OPTION = {"age": ("child", "teenager", "adult", "elderly")}
NO_IDENTITY = {-1, 0}  # Market junk (-1) and distractors (0000)


def attribute_name(field: str) -> str:
    if field in SECOND_OPTION:
        return SECOND_OPTION[field]
    for part, body in (("up", "upper"), ("down", "lower")):
        # Colour fields: ``upblack`` -> black_upper_body_clothing, ``downbrown`` -> brown_lower_body_clothing.
        if field.startswith(part) and field[len(part):].isalpha():
            return f"{field[len(part):]}_{body}_body_clothing"
    return field  # a field this table does not know keeps its own name


def _codes(struct, field: str) -> np.ndarray:
    return np.asarray(struct[field]).reshape(-1)


def parse_identity_attributes(mat: dict, var: str, split: str, path: str, policy
                              ) -> Tuple[List[str], Dict[int, Optional[List[int]]]]:
    """(attribute names, pid -> 0/1/-1 vector) of one split of a ``*_attribute.mat``.

    Bad values of one identity are reported through ``policy`` once; that identity maps to None so that its images
    are left out without being reported again. A missing variable, struct or field is fatal."""
    if var not in mat:
        raise AnnotationError(path, "missing variable", key=var)
    top = np.asarray(mat[var]).reshape(-1)[0]
    for s in ("train", split):
        if top.dtype.names is None or s not in top.dtype.names:
            raise AnnotationError(path, "missing struct", key=f"{var}.{s}")
    order = [f for f in np.asarray(top["train"]).reshape(-1)[0].dtype.names if f != "image_index"]
    struct = np.asarray(top[split]).reshape(-1)[0]
    fields = struct.dtype.names
    if "image_index" not in fields:
        raise AnnotationError(path, "missing field", key=f"{var}.{split}.image_index")
    if set(fields) - {"image_index"} != set(order):
        raise AnnotationError(path, f"fields {sorted(set(fields) - {'image_index'})} differ from train's {sorted(order)}",
                              key=f"{var}.{split}")
    pids = _codes(struct, "image_index")
    columns = {f: _codes(struct, f) for f in order}
    for f, col in columns.items():
        if len(col) != len(pids):
            raise AnnotationError(path, f"{len(col)} values for {len(pids)} identities", key=f"{var}.{split}.{f}")
    names: List[str] = []
    for f in order:
        names.extend(MULTI_OPTION.get(f) or [attribute_name(f)])
    table: Dict[int, Optional[List[int]]] = {}
    for j in range(len(pids)):
        with policy.guard(path, key=f"{var}.{split}.image_index[{j}]") as g:
            pid = int(mat_string(pids[j]) if isinstance(pids[j], np.ndarray) else pids[j])
            if pid in table:
                raise ValueError(f"identity {pid} is listed twice")
        if not g.ok:
            continue
        vector: List[int] = []
        for f in order:
            with policy.guard(path, key=f"{var}.{split}.{f}[{j}] (pid {pid:04d})") as g:
                code = int(columns[f][j])
                options = MULTI_OPTION.get(f)
                if code == 0:
                    vector.extend([-1] * (len(options) if options else 1))
                elif options:
                    if not 1 <= code <= len(options):
                        raise ValueError(f"code {code} outside 1..{len(options)}")
                    vector.extend(int(code == k + 1) for k in range(len(options)))
                else:
                    if code not in (1, 2):
                        raise ValueError(f"code {code} is neither 1 (no) nor 2 (yes)")
                    vector.append(code - 1)
            if not g.ok:
                break
        table[pid] = vector if g.ok else None
    return names, table


class _IdentityAttributes(Converter):
    task = "pedestrian_attribute"
    splits = ("train", "test")
    mat_file = ""
    folders = {"train": ("bounding_box_train",), "test": ("bounding_box_test",)}

    @classmethod
    def option_defaults(cls) -> dict:
        return {"include_query": False}

    @classmethod
    def detect(cls, root: str) -> bool:
        return (os.path.isfile(os.path.join(root, cls.mat_file))
                and os.path.isdir(os.path.join(root, "bounding_box_train")))

    @property
    def mat_var(self) -> str:
        return os.path.splitext(self.mat_file)[0]

    def index(self, split: str) -> Iterable[Sample]:
        self.check_split(split)
        path = self.require(self.mat_file)
        names, table = parse_identity_attributes(load_mat(path), self.mat_var, split, path, self.policy)
        folders = self.folders[split] + (("query",) if split == "test" and self.options["include_query"] else ())
        for folder in folders:
            directory = self.require(folder)
            # Sorted for byte-identical re-runs; Market ships a Windows ``Thumbs.db`` among the crops.
            for filename in sorted(f for f in os.listdir(directory) if f.lower().endswith(".jpg")):
                image = f"{folder}/{filename}"
                with self.policy.guard(os.path.join(directory, filename), key="pid") as g:
                    prefix = filename.split("_", 1)[0]
                    try:
                        pid = int(prefix)
                    except ValueError:
                        raise ValueError(f"file name does not start with a person id: {prefix!r}") from None
                    if pid not in NO_IDENTITY and pid not in table:
                        raise ValueError(f"identity {pid:04d} has no entry in {self.mat_file} ({split})")
                if not g.ok or pid in NO_IDENTITY or table[pid] is None:
                    continue
                yield Sample(key=os.path.splitext(image)[0], image=image,
                             target={"attributes": table[pid], "attribute_names": names},
                             source=path, meta={"pid": pid})


@register_converter
class Market1501Attribute(_IdentityAttributes):
    name = "market1501_attr"
    mat_file = "market_attribute.mat"


@register_converter
class DukeMTMCAttribute(_IdentityAttributes):
    name = "dukemtmc_attr"
    mat_file = "duke_attribute.mat"
