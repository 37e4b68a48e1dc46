"""HumanIns records <-> MindRecord, the format MindSpore training reads fastest.

One MindRecord row per HumanIns record, with the record fields of DESIGN.md section 2: ``id, task, dataset, split,
image, width, height, instruction, answer`` as scalars and ``target`` as a JSON string (its shape differs per task,
and MindRecord columns are fixed). The image is either referenced (``image`` is the path relative to the image
root, as in the JSONL) or also embedded as raw file bytes in the ``image_bytes`` column (``embed_images=True``),
which makes the shards self-contained for copying to a cluster.

Files for ``<base>`` = ``<out>/<dataset>/<split>``::

    <base>-00000.mindrecord ...       the shards, ``shard_size`` records each, each with its .db index file
    <base>.mindrecord.json            image root, embedding, record count, shard names in order

Each shard is a complete MindRecord file holding a contiguous run of records, so reading the shards in order gives
the records back in write order (one FileWriter with ``shard_num > 1`` would deal every batch out across its
shards and lose the order). ``MindDataset`` reads the list of shards; ranks split it with num_shards/shard_id.

Atomicity: the shards are written into a temporary folder beside ``<base>`` and moved in once every ``commit()``
has succeeded; ``<base>.mindrecord.json`` is replaced last and is the commit mark. An interrupted or failed write
leaves the previous files in place.
"""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import tempfile
from typing import Dict, Iterable, Iterator, List, Optional, Sequence

from lman_ms.utils.io import atomic_write_text

from .humanins.builder import RECORD_FIELDS, iter_records
from .humanins.errors import AnnotationError

SCALAR_SCHEMA = {
    "id": {"type": "string"}, "task": {"type": "string"}, "dataset": {"type": "string"},
    "split": {"type": "string"}, "image": {"type": "string"}, "width": {"type": "int32"},
    "height": {"type": "int32"}, "instruction": {"type": "string"}, "answer": {"type": "string"},
    "target": {"type": "string"},
}
IMAGE_BYTES = "image_bytes"
INDEX_FIELDS = ["id", "task", "dataset", "split"]
WRITE_BATCH = 256          # rows per write_raw_data call: bounded memory when images are embedded


def schema(embed_images: bool) -> Dict[str, dict]:
    return {**SCALAR_SCHEMA, IMAGE_BYTES: {"type": "bytes"}} if embed_images else dict(SCALAR_SCHEMA)


def shard_name(base: str, index: int) -> str:
    return f"{os.path.basename(base)}-{index:05d}.mindrecord"


def _row(rec: dict, embed_images: bool, image_root: Optional[str]) -> dict:
    missing = [k for k in RECORD_FIELDS if k not in rec]
    if missing:
        raise KeyError(f"record {rec.get('id', '?')!r} lacks field(s) {missing}")
    row = {k: rec[k] for k in RECORD_FIELDS}
    row["width"], row["height"] = int(row["width"]), int(row["height"])
    row["target"] = json.dumps(rec["target"], ensure_ascii=False)
    if embed_images:
        path = os.path.join(image_root or "", rec["image"])
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise AnnotationError(path, f"cannot embed the image of record {rec['id']!r}: {e.strerror}") from e
        if not data:   # MindRecord cannot store an empty blob, and an empty file is no image anyway
            raise AnnotationError(path, f"image of record {rec['id']!r} is empty")
        row[IMAGE_BYTES] = data
    return row


def _stale_shards(base: str) -> List[str]:
    pattern = re.compile(re.escape(os.path.basename(base)) + r"-\d{5}\.mindrecord(\.db)?")
    return [p for p in glob.glob(base + "-*") if pattern.fullmatch(os.path.basename(p))]


def write_mindrecord(records: Iterable[dict], base: str, shard_size: int = 100_000, embed_images: bool = False,
                     image_root: Optional[str] = None) -> List[str]:
    """Write ``records`` as ``<base>-NNNNN.mindrecord`` shards (see the module docstring). Returns their paths."""
    from mindspore.mindrecord import FileWriter

    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    if embed_images and image_root is None:
        raise ValueError("embed_images needs the image_root that records' image paths are relative to")
    base = os.path.abspath(base)
    parent = os.path.dirname(base)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(base)}.", suffix=".tmp", dir=parent)
    count, shards, writer, batch = 0, [], None, []

    def flush():
        nonlocal batch
        if batch:
            writer.write_raw_data(batch)
            batch = []

    def open_shard():
        w = FileWriter(os.path.join(tmp, shard_name(base, len(shards))), shard_num=1, overwrite=True)
        w.add_schema(schema(embed_images), "humanins")
        w.add_index(INDEX_FIELDS)
        shards.append(shard_name(base, len(shards)))
        return w

    try:
        writer = open_shard()
        for rec in records:
            if count and count % shard_size == 0:
                flush()
                writer.commit()
                writer = open_shard()
            batch.append(_row(rec, embed_images, image_root))
            count += 1
            if len(batch) >= WRITE_BATCH:
                flush()
        flush()
        writer.commit()
        written = sorted(os.listdir(tmp))
        for f in written:
            os.replace(os.path.join(tmp, f), os.path.join(parent, f))
        # Shards of an earlier, larger run would otherwise sit beside the new set.
        for old in _stale_shards(base):
            if os.path.basename(old) not in written:
                os.unlink(old)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    info = {"format": "humanins-mindrecord", "records": count, "embedded": bool(embed_images),
            "image_root": os.path.abspath(image_root) if image_root else None, "shards": shards}
    atomic_write_text(base + ".mindrecord.json", json.dumps(info, indent=2, sort_keys=True) + "\n")
    return [os.path.join(parent, f) for f in shards]


def write_split(out_dir: str, dataset: str, split: str, embed_images: bool = False,
                shard_size: int = 100_000) -> List[str]:
    """MindRecord of one built split (``<out_dir>/<dataset>/<split>-*.jsonl``), beside its JSONL shards."""
    ds_dir = os.path.join(out_dir, dataset)
    meta_path = os.path.join(ds_dir, f"{split}.meta.json")
    if not os.path.isfile(meta_path):
        raise FileNotFoundError(f"{meta_path}: build {dataset}/{split} first (no build metadata)")
    with open(meta_path, encoding="utf-8") as f:
        meta = json.load(f)
    return write_mindrecord(iter_records(ds_dir, split=split), os.path.join(ds_dir, split), shard_size=shard_size,
                            embed_images=embed_images, image_root=meta["image_root"])


# ---- reading back -------------------------------------------------------------------------------------------------
def mindrecord_info(base: str) -> dict:
    """The ``<base>.mindrecord.json`` written with the shards (image root, embedding, count, shard names)."""
    path = base + ".mindrecord.json"
    with open(path, encoding="utf-8") as f:
        info = json.load(f)
    if info.get("format") != "humanins-mindrecord":
        raise AnnotationError(path, "not a HumanIns MindRecord description", key="format")
    return info


def shard_paths(base: str) -> List[str]:
    parent = os.path.dirname(os.path.abspath(base))
    return [os.path.join(parent, f) for f in mindrecord_info(base)["shards"]]


def to_record(row: dict) -> dict:
    """A MindRecord row (from FileReader or a MindDataset numpy iterator) as a HumanIns record.

    The record fields come back in their JSONL order and types; ``image_bytes`` follows when it was embedded."""
    out = {}
    for k in RECORD_FIELDS:
        v = row[k]
        if hasattr(v, "dtype"):   # numpy scalar/0-d array from MindDataset
            v = v.item()
        out[k] = int(v) if k in ("width", "height") else v
    out["target"] = json.loads(out["target"])
    if IMAGE_BYTES in row:
        v = row[IMAGE_BYTES]
        # .tobytes(), not [0]: numpy's fixed-width bytes would drop trailing NUL bytes of the file.
        out[IMAGE_BYTES] = v.tobytes() if hasattr(v, "tobytes") else bytes(v)
    return out


def read_mindrecord(base: str, columns: Optional[Sequence[str]] = None) -> Iterator[dict]:
    """The records of every shard of ``base``, in write order, via ``mindspore.mindrecord.FileReader``.

    With ``columns`` the raw rows of those columns are yielded instead of records."""
    from mindspore.mindrecord import FileReader

    for path in shard_paths(base):
        reader = FileReader(path, num_consumer=1, columns=list(columns) if columns else None)
        try:
            for row in reader.get_next():
                yield to_record(row) if columns is None else row
        finally:
            reader.close()


def mind_dataset(base: str, columns: Optional[Sequence[str]] = None, shuffle: bool = False,
                 num_shards: Optional[int] = None, shard_id: Optional[int] = None,
                 num_parallel_workers: Optional[int] = None):
    """A ``mindspore.dataset.MindDataset`` over the shards of ``base`` (data-parallel ranks pass num_shards and
    shard_id). Turn its ``create_dict_iterator(output_numpy=True)`` rows into records with :func:`to_record`."""
    import mindspore.dataset as ds

    return ds.MindDataset(shard_paths(base), columns_list=list(columns) if columns else None, shuffle=shuffle,
                          num_shards=num_shards, shard_id=shard_id, num_parallel_workers=num_parallel_workers)
