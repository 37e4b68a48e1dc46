"""Writers of tiny action/expression datasets in their real on-disk formats, shared by the converter tests.

Images are small flat-colour JPEGs written with PIL; videos are MJPG ``.avi`` files whose frame ``i`` is flat
grey ``frame_value(i)``, so a test can tell from an extracted JPEG which frame was sampled.
"""
from __future__ import annotations

import json
import os
from typing import Dict, Iterable, List, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image

from lman_ms.data.humanins.builder import iter_records


def write_image(path: str, width: int, height: int, color=(120, 80, 40)) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", (width, height), color).save(path, format="JPEG", quality=90)


def write_text(path: str, lines: Iterable[str], newline: str = "\n") -> None:
    """Text exactly as given, with the dataset's own line ends (UCF101's lists use CRLF)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("".join(line + newline for line in lines))


def frame_value(i: int) -> int:
    """Grey level of frame ``i`` of every fixture video: far enough apart to survive JPEG twice."""
    return 10 + 20 * i


def write_video(path: str, num_frames: int, width: int = 32, height: int = 24, fps: int = 25) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened(), f"OpenCV cannot write MJPG to {path}"
    for i in range(num_frames):
        writer.write(np.full((height, width, 3), frame_value(i), np.uint8))
    writer.release()


def grey_level(path: str) -> float:
    return float(np.asarray(Image.open(path).convert("L")).mean())


def voc_object_xml(box: Sequence[int], action_tags: str = "", name: str = "person") -> str:
    x1, y1, x2, y2 = box
    return (f"\t<object>\n\t\t<name>{name}</name>\n{action_tags}"
            f"\t\t<bndbox>\n\t\t\t<xmin>{x1}</xmin>\n\t\t\t<ymin>{y1}</ymin>\n"
            f"\t\t\t<xmax>{x2}</xmax>\n\t\t\t<ymax>{y2}</ymax>\n\t\t</bndbox>\n\t</object>\n")


def voc_xml(filename: str, width: int, height: int, objects: Sequence[str], folder: str = "VOC2012") -> str:
    return (f"<annotation>\n\t<folder>{folder}</folder>\n\t<filename>{filename}</filename>\n"
            f"\t<size>\n\t\t<width>{width}</width>\n\t\t<height>{height}</height>\n\t\t<depth>3</depth>\n\t</size>\n"
            f"\t<segmented>0</segmented>\n{''.join(objects)}</annotation>\n")


# ---- Stanford40 --------------------------------------------------------------------------------------------------
STANFORD_ACTIONS = ("applauding", "blowing_bubbles", "watching_TV")  # actions.txt order, a 3-class excerpt


def write_stanford40(root: str, images: Dict[str, Tuple[int, int, List[Sequence[int]]]],
                     train: Sequence[str], test: Sequence[str]) -> None:
    """``images``: file name -> (width, height, [1-based xyxy person boxes]). Real layout of the release."""
    write_text(os.path.join(root, "ImageSplits", "actions.txt"),
               ["action_name\tnumber_of_images"] + [f"{a}\t{sum(n.startswith(a + '_') for n in images)}"
                                                    for a in STANFORD_ACTIONS])
    write_text(os.path.join(root, "ImageSplits", "train.txt"), train)
    write_text(os.path.join(root, "ImageSplits", "test.txt"), test)
    for file_name, (w, h, boxes) in images.items():
        stem = os.path.splitext(file_name)[0]
        action = "_".join(stem.split("_")[:-1])
        write_image(os.path.join(root, "JPEGImages", file_name), w, h)
        objects = [voc_object_xml(b, f"\t\t<action>{action}</action>\n") for b in boxes]
        with open(os.path.join(_mkdir(root, "XMLAnnotations"), stem + ".xml"), "w", encoding="utf-8") as f:
            f.write(voc_xml(file_name, w, h, objects, folder="Stanford40"))


# ---- PASCAL VOC 2012 Action --------------------------------------------------------------------------------------
VOC_XML_ACTION_ORDER = ("jumping", "other", "phoning", "playinginstrument", "reading", "ridingbike", "ridinghorse",
                        "running", "takingphoto", "usingcomputer", "walking")  # the XML's own (alphabetical) order


def voc_actions_xml(positive: Iterable[str]) -> str:
    positive = set(positive)
    body = "".join(f"\t\t\t<{a}>{int(a in positive)}</{a}>\n" for a in VOC_XML_ACTION_ORDER)
    return f"\t\t<actions>\n{body}\t\t</actions>\n"


def write_voc_image(root: str, image_id: str, width: int, height: int,
                    persons: Sequence[Tuple[Sequence[int], Sequence[str]]]) -> None:
    """One image and its annotation: ``persons`` = [(1-based xyxy box, [positive actions]), ...]."""
    write_image(os.path.join(root, "JPEGImages", image_id + ".jpg"), width, height)
    objects = [voc_object_xml(box, voc_actions_xml(acts)) for box, acts in persons]
    with open(os.path.join(_mkdir(root, "Annotations"), image_id + ".xml"), "w", encoding="utf-8") as f:
        f.write(voc_xml(image_id + ".jpg", width, height, objects))


# ---- UCF101 / HMDB51 -----------------------------------------------------------------------------------------------
def write_ucf101(root: str, classes: Sequence[str], videos: Dict[str, int], train: Dict[int, Sequence[str]],
                 test: Dict[int, Sequence[str]], list_names: Dict[str, str] = None) -> None:
    """``videos``: path under UCF-101/ -> frame count; ``train``/``test``: split id -> listed paths.
    Lists are CRLF-terminated like the official ``ucfTrainTestlist``; train lines carry the 1-based class id."""
    lists = os.path.join(root, "ucfTrainTestlist")
    write_text(os.path.join(lists, "classInd.txt"), [f"{i} {c}" for i, c in enumerate(classes, 1)], "\r\n")
    ids = {c: i for i, c in enumerate(classes, 1)}
    for sid, paths in train.items():
        write_text(os.path.join(lists, f"trainlist{sid:02d}.txt"), [f"{p} {ids[p.split('/')[0]]}" for p in paths],
                   "\r\n")
    for sid, paths in test.items():
        write_text(os.path.join(lists, f"testlist{sid:02d}.txt"), list(paths), "\r\n")
    for rel, n in videos.items():
        write_video(os.path.join(root, "UCF-101", rel), n)


def write_hmdb51(root: str, videos: Dict[str, int], splits: Dict[str, Dict[int, Sequence[Tuple[str, int]]]]) -> None:
    """``videos``: "<class>/<name>.avi" -> frame count; ``splits``: class -> split id -> [(video name, flag)].
    Lines end with a space before the newline, as in the official ``testTrainMulti_7030_splits``."""
    for cls, per_split in splits.items():
        for sid, entries in per_split.items():
            write_text(os.path.join(root, "testTrainMulti_7030_splits", f"{cls}_test_split{sid}.txt"),
                       [f"{name} {flag} " for name, flag in entries])
    for rel, n in videos.items():
        write_video(os.path.join(root, "hmdb51_org", rel), n)


# ---- reading the build back ----------------------------------------------------------------------------------------
def records(out_dir: str, name: str, split: str) -> List[dict]:
    return list(iter_records(os.path.join(out_dir, name), split=split))


def by_key(recs: Iterable[dict]) -> Dict[str, List[dict]]:
    """Records grouped by the sample key of their id (``<name>/<split>/<key>/<i>``)."""
    out: Dict[str, List[dict]] = {}
    for r in recs:
        out.setdefault(r["id"].split("/", 2)[2].rsplit("/", 1)[0], []).append(r)
    return out


def meta(out_dir: str, name: str, split: str) -> dict:
    with open(os.path.join(out_dir, name, f"{split}.meta.json"), encoding="utf-8") as f:
        return json.load(f)


def _mkdir(*parts: str) -> str:
    path = os.path.join(*parts)
    os.makedirs(path, exist_ok=True)
    return path
