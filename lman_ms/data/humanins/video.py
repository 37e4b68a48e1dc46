"""Frame sampling for the video action datasets (UCF101, HMDB51).

The paper (Section "HumanIns") samples frames from each video and labels every sampled frame with the video's
class, because consecutive frames are nearly identical. Its sampling rate is not given, so here it is
``frames_per_video`` frames, evenly spaced: the centres of K equal segments of the video (the TSN test-time
scheme), which is deterministic and never lands on the very first, often black, frame.

Frames are decoded with OpenCV in the builder's worker processes (``Converter.load``) and written as JPEG under
``<out_dir>/frames/<video path without extension>/img_NNNNN.jpg`` (1-based, five digits: the mmaction2
``rawframes`` naming), so records point at real files and a re-run rewrites the same bytes.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from lman_ms.utils.io import atomic_write_bytes

from .errors import AnnotationError
from .registry import Converter
from .sample import Sample

FRAMES_DIR = "frames"


def sample_indices(num_frames: int, k: int) -> List[int]:
    """``k`` evenly spaced frame indices of a ``num_frames``-frame video: ``floor((i + 0.5) * n / k)``.

    With fewer frames than ``k`` every frame is taken once (never a frame twice: duplicates would only
    re-weight that video)."""
    if k < 1:
        raise ValueError(f"frames_per_video must be >= 1, got {k}")
    if num_frames <= 0:
        return []
    if num_frames <= k:
        return list(range(num_frames))
    return [int((i + 0.5) * num_frames / k) for i in range(k)]


def _open(path: str) -> cv2.VideoCapture:
    if not os.path.isfile(path):
        raise AnnotationError(path, "video file not found")
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        cap.release()
        raise AnnotationError(path, "not a readable video (OpenCV cannot open it)")
    return cap


def _read(path: str, wanted: Sequence[int]) -> Tuple[Dict[int, np.ndarray], int]:
    """Decode the frames at ``wanted`` in one sequential pass; also returns how many frames the stream really has.

    ``grab()`` advances without converting to BGR, so skipped frames cost only the demuxing/decoding OpenCV
    must do anyway; seeking is avoided because it is inexact for many codecs and would break determinism."""
    wanted_set = set(wanted)
    last = max(wanted_set) if wanted_set else -1
    frames: Dict[int, np.ndarray] = {}
    cap = _open(path)
    n = 0
    try:
        while cap.grab():
            if n in wanted_set:
                ok, frame = cap.retrieve()
                if not ok or frame is None:
                    raise AnnotationError(path, f"cannot decode frame {n}")
                frames[n] = frame
            n += 1
            if n > last and wanted_set:
                # The remaining frames are only counted when the header's count turned out to be wrong.
                break
    finally:
        cap.release()
    return frames, n


def count_frames(path: str) -> int:
    """Frames in the video, counted by reading it (container headers are often wrong)."""
    cap = _open(path)
    n = 0
    try:
        while cap.grab():
            n += 1
    finally:
        cap.release()
    return n


def sample_frames(path: str, k: int) -> List[Tuple[int, np.ndarray]]:
    """``[(frame_index, BGR image), ...]`` for ``k`` evenly spaced frames of the video at ``path``.

    The header's frame count is tried first (one pass); if the stream is shorter than it claims, the frames are
    counted and the indices recomputed from the real count; without a count in the header they are counted too."""
    cap = _open(path)
    claimed = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    cap.release()
    if claimed > 0:
        indices = sample_indices(claimed, k)
        frames, seen = _read(path, indices)
        if len(frames) == len(indices):
            return [(i, frames[i]) for i in indices]
        claimed = seen
    else:
        claimed = count_frames(path)
    indices = sample_indices(claimed, k)
    if not indices:
        raise AnnotationError(path, "video has no decodable frames")
    frames, _ = _read(path, indices)
    missing = [i for i in indices if i not in frames]
    if missing:
        raise AnnotationError(path, f"frames {missing} could not be decoded")
    return [(i, frames[i]) for i in indices]


def frame_name(frame_index: int) -> str:
    """File name of a 0-based frame index, in mmaction2's 1-based ``img_00001.jpg`` convention."""
    return f"img_{frame_index + 1:05d}.jpg"


def write_jpeg(path: str, image: np.ndarray, quality: int) -> None:
    ok, buf = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise AnnotationError(path, "JPEG encoding failed")
    atomic_write_bytes(path, buf.tobytes())


class VideoConverter(Converter):
    """Base of the video datasets: ``index`` yields one :class:`Sample` per video of the official split, with
    ``meta["video"]`` (path relative to the dataset root); :meth:`load` turns it into one sample per sampled frame.

    ``image_root`` is the build's own folder (``out_dir``), since the frames are files the build creates."""

    task = "action_recognition"

    @classmethod
    def option_defaults(cls) -> dict:
        return {"frames_per_video": 4,   # frames sampled per video (the paper does not give its rate)
                "split_id": 1,           # official split 1..3; split 1 is the usual benchmark
                "jpeg_quality": 95}      # quality of the extracted frames

    def __init__(self, root: str, policy=None, out_dir: Optional[str] = None, **options):
        super().__init__(root, policy=policy, out_dir=out_dir, **options)
        if int(self.options["split_id"]) not in (1, 2, 3):
            raise ValueError(f"{self.name}: split_id must be 1, 2 or 3, got {self.options['split_id']!r}")
        if int(self.options["frames_per_video"]) < 1:
            raise ValueError(f"{self.name}: frames_per_video must be >= 1, got {self.options['frames_per_video']!r}")
        self.image_root = out_dir

    def video_sample(self, video: str, key: str, label: int, names: Sequence[str], source: str,
                     line: int) -> Sample:
        """The per-video sample ``index`` yields: ``video`` relative to the dataset root, ``key`` the video's
        path in its split list without the extension (unique in the dataset; also names its frame folder)."""
        video = video.replace(os.sep, "/")
        if os.path.isabs(video) or ".." in video.split("/") or ".." in key.split("/"):
            # Frames are written under out_dir/frames/<key>: a list line must not point outside the dataset.
            raise AnnotationError(source, f"video path {video!r} leaves the dataset folder", line=line)
        target = {"label": label, "label_name": names[label], "label_names": list(names), "video": video}
        return Sample(key=key, image="", target=target, meta={"video": video}, source=source, line=line)

    def load(self, sample: Sample) -> List[Sample]:
        if not self.out_dir:
            raise ValueError(f"{self.name}: frame extraction needs an output folder (out_dir)")
        found = resolve_case_insensitive(self.root, sample.meta["video"])
        if found is None:
            where = f" (listed in {sample.source}:{sample.line})" if sample.source else ""
            raise AnnotationError(self.path(sample.meta["video"]), "video file not found" + where)
        video_path = self.path(found)
        rel_dir = f"{FRAMES_DIR}/{sample.key}"
        frames = sample_frames(video_path, int(self.options["frames_per_video"]))
        out = []
        for index, image in frames:
            rel = f"{rel_dir}/{frame_name(index)}"
            write_jpeg(os.path.join(self.out_dir, rel), image, self.options["jpeg_quality"])
            h, w = image.shape[:2]
            target = {**sample.target, "frame_index": index}
            out.append(Sample(key=f"{sample.key}/{index}", image=rel, target=target, width=w, height=h,
                              source=sample.source, line=sample.line))
        # Frames of earlier builds are left in place: another split (split_id) may list the same video, and its
        # records still point at them; a frame file's content depends only on the video and its index.
        return out


def read_lines(path: str) -> List[Tuple[int, str]]:
    """(line number, stripped text) of the non-empty lines of a split list; CRLF ends and a BOM are dropped."""
    with open(path, "r", encoding="utf-8-sig") as f:
        return [(i, ln.strip()) for i, ln in enumerate(f, 1) if ln.strip()]


def resolve_case_insensitive(root: str, rel: str) -> Optional[str]:
    """``rel`` under ``root`` as it exists on disk, matching each path part case-insensitively when the exact
    spelling is absent (UCF101's ``HandstandPushups`` folder holds ``v_HandStandPushups_*`` files)."""
    if os.path.exists(os.path.join(root, rel)):
        return rel
    current, parts = root, []
    for part in rel.replace("\\", "/").split("/"):
        if os.path.exists(os.path.join(current, part)):
            match = part
        else:
            try:
                entries = os.listdir(current)
            except OSError:
                return None
            found = [e for e in entries if e.lower() == part.lower()]
            if len(found) != 1:
                return None
            match = found[0]
        parts.append(match)
        current = os.path.join(current, match)
    return "/".join(parts)
