"""Caltech Pedestrian (Dollár et al., CVPR 2009 / TPAMI 2012): Norpix ``.seq`` videos with ``.vbb`` annotations.

Expected layout (the release as unpacked)::

    caltech/set00 ... set10/V000.seq ...        640x480 30 fps JPEG sequences (Norpix StreamPix format)
    caltech/annotations/set00 ... set10/V000.vbb  Piotr's toolbox ``vbb`` struct 'A' (MATLAB v6)

Split and sampling (``dbInfo.m``): train = set00-set05, test = set06-set10; frames ``f = step-1, 2*step-1, ...``
(0-based) with ``step = frame_step`` = 30, which gives the standard 4,024 test images (``frame_step=3`` gives
"Caltech10x" for training). Frames are named ``setXX_VYYY_IZZZZZ.jpg`` with the 0-based frame index, as in
Pedestron's ``test.json``. The JPEG of each sampled frame is copied byte for byte out of the ``.seq`` (no
re-encoding) in ``load()``, to ``<out_dir>/frames/``; records' ``image`` paths are relative to ``out_dir``, which
is the build's ``image_root``.

Labels (the original evaluation): ``person`` boxes are persons; ``people`` (a group), ``person?`` (ambiguous)
and ``person-fa`` go to ``ignore_boxes``. ``pos`` is 0-based ``[l, t, w, h]``. ``visibility`` is the fraction of
the box covered by the visible box ``posv`` when the object is marked occluded, else 1, as the evaluation needs
for the Reasonable subset (visibility >= 0.65). The evaluation-time resizing of boxes to aspect ratio 0.41 is
left to the evaluation, so the records keep the annotated boxes.
"""
from __future__ import annotations

import glob
import os
import struct
from typing import Iterable, List, Tuple

import numpy as np

from lman_ms.utils.io import atomic_write_bytes

from .coco import PersonDetectionConverter, load_mat, mat_var, xywh_to_xyxy
from .errors import AnnotationError
from .registry import register_converter
from .sample import Sample

SETS = {"train": tuple(f"set{i:02d}" for i in range(0, 6)), "test": tuple(f"set{i:02d}" for i in range(6, 11))}
PERSON = "person"
IGNORE_LABELS = ("people", "person?", "person-fa")
FRAMES_DIR = "frames"

SEQ_MAGIC = 0xFEED
SEQ_JPEG_FORMATS = (102, 201)         # StreamPix "JPEG mono" / "JPEG colour"; Caltech is 102
JPEG_SOI = b"\xff\xd8"


# ---- Norpix .seq -----------------------------------------------------------------------------------------------------
def seq_frame_table(path: str) -> Tuple[int, int, List[Tuple[int, int]]]:
    """(width, height, [(byte offset, byte length) of each frame's JPEG]) of a Norpix ``.seq`` file.

    Header (little-endian): 0xFEED, "Norpix seq" in UTF-16, version at byte 28, header size at 32, then from byte
    548 width, height, bit depth, real bit depth, image size, image format and frame count. Each compressed
    frame is a uint32 byte count (including those 4 bytes) and the JPEG, then a trailer: the 8-byte timestamp,
    followed in some recordings by 8 bytes of padding. The trailer length is found once, on the first frame, by
    looking for the next JPEG's start marker (Piotr's ``seqIo`` does the same)."""
    file_size = os.path.getsize(path)
    with open(path, "rb") as f:
        header = f.read(1024)
        if len(header) < 1024 or struct.unpack_from("<I", header, 0)[0] != SEQ_MAGIC \
                or header[4:24].decode("utf-16-le", "replace").rstrip("\x00") != "Norpix seq":
            raise AnnotationError(path, "not a Norpix .seq file (bad magic or name in the 1024-byte header)")
        version, header_size = struct.unpack_from("<iI", header, 28)
        width, height, _, _, _, fmt, n_frames = struct.unpack_from("<7I", header, 548)
        if fmt not in SEQ_JPEG_FORMATS:
            raise AnnotationError(path, f"image format {fmt} is not JPEG {SEQ_JPEG_FORMATS}; only compressed "
                                  "Caltech-style sequences are supported")
        pos = 8192 if version >= 5 else header_size     # StreamPix 5+ writes a larger header than it reports
        table, trailer = [], None
        for i in range(n_frames):
            f.seek(pos)
            raw = f.read(4)
            size = struct.unpack("<I", raw)[0] if len(raw) == 4 else 0
            if size <= 4 or pos + size > file_size:
                raise AnnotationError(path, f"frame {i} at byte {pos}: bad frame size {size} "
                                      f"(file has {file_size} bytes, header says {n_frames} frames)")
            table.append((pos + 4, size - 4))
            end = pos + size
            if trailer is None and i + 1 < n_frames:
                for candidate in (8, 16):
                    f.seek(end + candidate + 4)
                    if f.read(2) == JPEG_SOI:
                        trailer = candidate
                        break
                else:
                    raise AnnotationError(path, f"frame {i + 1}: no JPEG after an 8- or 16-byte trailer at "
                                          f"byte {end}")
            pos = end + (trailer or 8)
    return width, height, table


# ---- .vbb ------------------------------------------------------------------------------------------------------------
def _text(value) -> str:
    arr = np.asarray(value)
    if arr.dtype.kind != "U":
        raise ValueError(f"expected a string, got {value!r}")
    return "".join(arr.ravel().tolist())


def read_vbb(path: str):
    """(nFrame, objLbl, objLists) of a ``.vbb`` file; objLists[f] is the (possibly empty) struct array of frame f."""
    _, a = mat_var(load_mat(path, squeeze=False), path, "A")
    if a.size != 1 or a.dtype.names is None or not {"nFrame", "objLists", "objLbl"} <= set(a.dtype.names):
        raise AnnotationError(path, "'A' must be a vbb struct with nFrame, objLists and objLbl", key="A")
    a = a.ravel()[0]
    try:
        n_frames = int(np.asarray(a["nFrame"]).ravel()[0])
        labels = [_text(v) for v in np.asarray(a["objLbl"]).ravel()]
    except (ValueError, IndexError, TypeError) as e:
        raise AnnotationError(path, f"bad nFrame or objLbl: {e}", key="A") from e
    obj_lists = np.asarray(a["objLists"]).ravel()
    if len(obj_lists) != n_frames:
        raise AnnotationError(path, f"objLists has {len(obj_lists)} frames but nFrame is {n_frames}", key="A.objLists")
    return n_frames, labels, obj_lists


def frame_objects(objs, labels: List[str]):
    """(label, [x1, y1, x2, y2], visibility) of each object of one frame."""
    objs = np.asarray(objs)
    if objs.size == 0:
        return []
    if objs.dtype.names is None or not {"id", "pos"} <= set(objs.dtype.names):
        raise ValueError(f"a frame's objects must be a struct array with id and pos, got fields {objs.dtype.names}")
    out = []
    for k, o in enumerate(objs.ravel()):
        oid = int(np.asarray(o["id"]).ravel()[0])
        if not 1 <= oid <= len(labels):
            raise ValueError(f"object {k + 1}: id {oid} is not in objLbl (1..{len(labels)})")
        label = labels[oid - 1]
        if label != PERSON and label not in IGNORE_LABELS:
            raise ValueError(f"object {k + 1}: unknown label {label!r}; known: {(PERSON,) + IGNORE_LABELS}")
        pos = np.asarray(o["pos"], dtype=np.float64).ravel()
        box = xywh_to_xyxy(pos)
        visibility = 1.0
        if "occl" in objs.dtype.names and int(np.asarray(o["occl"]).ravel()[0]) == 1:
            posv = np.asarray(o["posv"], dtype=np.float64).ravel()
            if posv.size == 4 and posv[2] > 0 and posv[3] > 0 and pos[2] > 0 and pos[3] > 0:
                vb = xywh_to_xyxy(posv)
                iw = max(0.0, min(box[2], vb[2]) - max(box[0], vb[0]))
                ih = max(0.0, min(box[3], vb[3]) - max(box[1], vb[1]))
                visibility = round(iw * ih / (pos[2] * pos[3]), 4)
        out.append((label, box, visibility))
    return out


@register_converter
class CaltechConverter(PersonDetectionConverter):
    name = "caltech"

    @classmethod
    def option_defaults(cls) -> dict:
        return {**super().option_defaults(), "frame_step": 30}

    @classmethod
    def detect(cls, root: str) -> bool:
        return bool(glob.glob(os.path.join(root, "annotations", "set*", "V*.vbb")))

    @property
    def image_root(self) -> str:
        """Frames are extracted under the build's output folder, so records' paths are relative to it."""
        if not self.out_dir:
            raise ValueError(f"{self.name}: frames are extracted from the .seq videos; an out_dir is required")
        return self.out_dir

    def image_file(self, sample: Sample) -> str:
        return os.path.join(self.image_root, sample.image)

    def index(self, split: str) -> Iterable[Sample]:
        self.check_split(split)
        step = int(self.options["frame_step"])
        if step < 1:
            raise ValueError(f"{self.name}: frame_step must be >= 1, got {step}")
        keep_empty = self.keep_empty(split)
        _ = self.image_root    # fail before parsing anything if the frames have nowhere to go
        vbbs = [p for s in SETS[split] for p in sorted(glob.glob(self.path("annotations", s, "V*.vbb")))]
        if not vbbs:
            raise AnnotationError(self.path("annotations"), f"no {SETS[split][0]}..{SETS[split][-1]}/VYYY.vbb "
                                  f"annotations for the {split} split")
        for vbb in vbbs:
            set_name = os.path.basename(os.path.dirname(vbb))
            video = os.path.splitext(os.path.basename(vbb))[0]
            seq = self.path(set_name, video + ".seq")
            with self.policy.guard(vbb) as g:
                n_frames, labels, obj_lists = read_vbb(vbb)
                if not os.path.isfile(seq):
                    raise AnnotationError(seq, f"video of {set_name}/{video}.vbb is missing")
                _, _, table = seq_frame_table(seq)
                if len(table) != n_frames:
                    raise AnnotationError(vbb, f"nFrame is {n_frames} but {seq} has {len(table)} frames",
                                          key="A.nFrame")
            if not g.ok:
                continue
            for f in range(step - 1, n_frames, step):
                key = f"objLists{{{f + 1}}}"
                with self.policy.guard(vbb, key=key) as g:
                    objects = frame_objects(obj_lists[f], labels)
                if not g.ok:
                    continue
                persons = [(b, v) for lbl, b, v in objects if lbl == PERSON]
                if not persons and not keep_empty:
                    continue           # saves extracting a frame that load() would drop
                name = f"{set_name}_{video}_I{f:05d}"
                offset, length = table[f]
                yield Sample(key=name, image=f"{FRAMES_DIR}/{name}.jpg",
                             target={"boxes": [b for b, _ in persons], "visibility": [v for _, v in persons],
                                     "ignore_boxes": [b for lbl, b, _ in objects if lbl != PERSON]},
                             source=vbb, meta={"split": split, "key": key, "seq": seq, "frame": f,
                                               "offset": offset, "length": length})

    def load(self, sample: Sample) -> List[Sample]:
        """Copy the frame's JPEG out of the .seq, then read its size and clip the boxes (base class)."""
        with open(sample.meta["seq"], "rb") as f:
            f.seek(sample.meta["offset"])
            data = f.read(sample.meta["length"])
        if len(data) != sample.meta["length"] or not data.startswith(JPEG_SOI):
            raise AnnotationError(sample.meta["seq"], f"frame {sample.meta['frame']} is not a complete JPEG")
        atomic_write_bytes(self.image_file(sample), data)
        return super().load(sample)
