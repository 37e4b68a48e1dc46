"""Scenes: a background and 1-3 placed figures, with every box and keypoint measured in image pixels.

Three framings cover the six source formats: :func:`render_scene` (photos with several people: COCO, WIDER FACE,
MPII, and Stanford 40 with one person), :func:`render_crop` (a pedestrian crop: PA-100K) and
:func:`render_portrait` (a head-and-shoulders picture or an aligned face: RAF-DB). Pixel coordinates are 0-based
floats with (0, 0) the top-left corner of the top-left pixel; the writers round them as each format does.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from .canvas import Box, Canvas
from .person import PersonSpec
from .pose import GROUND, MPII_JOINTS, Pose, make_pose
from .render import draw_person

# (name used in captions, sky or wall colour, ground or floor colour): light, so clothes stand out.
BACKGROUNDS = (
    ("on a grassy field", (190, 215, 240), (150, 195, 120)),
    ("on a beach", (200, 225, 245), (220, 200, 155)),
    ("on a street", (205, 210, 225), (165, 165, 170)),
    ("in a room", (230, 220, 200), (185, 155, 125)),
)
# COCO category of each action's prop (the bow has none in COCO).
PROP_CATEGORIES = {"holding_an_umbrella": "umbrella", "riding_a_bike": "bicycle", "walking_the_dog": "dog",
                   "phoning": "cell phone"}
CHILD_SCALE = 0.8


@dataclass
class PersonInstance:
    spec: PersonSpec
    box: Box                                   # person box (body and worn items), xyxy pixels
    head_box: Box                              # the head circle, xyxy pixels
    keypoints: List[Tuple[float, float]]       # 16 MPII joints, pixels
    prop_box: Optional[Box] = None

    @property
    def face_box(self) -> Optional[Box]:
        """The face is visible only in a front view."""
        return self.head_box if self.spec.view == "front" else None


@dataclass
class Scene:
    image: Image.Image
    persons: List[PersonInstance]
    background: str = ""
    objects: List[Tuple[str, Box]] = field(default_factory=list)   # (COCO category name, xyxy)


def _extent(spec: PersonSpec, pose: Pose) -> Box:
    """Bounding box of everything a figure draws, in figure units (a dry run: nothing is rasterised)."""
    cv = Canvas()
    draw_person(cv, spec, pose)
    boxes = [b for b in cv.bounds.values()]
    return [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]


def _place(draw: ImageDraw.ImageDraw, spec: PersonSpec, pose: Pose, scale: float, ox: float,
           oy: float) -> PersonInstance:
    cv = Canvas(draw, scale, ox, oy)
    draw_person(cv, spec, pose)
    (hx, hy), r = cv.pt(pose.head_center), pose.head_r * scale
    kps = [cv.pt(pose.joints[name]) for name in MPII_JOINTS]
    return PersonInstance(spec, cv.box("person"), [hx - r, hy - r, hx + r, hy + r], kps, cv.box("prop"))


def render_scene(rng: np.random.Generator, width: int, height: int, specs: Sequence[PersonSpec],
                 fill: Tuple[float, float] = (0.55, 0.85)) -> Scene:
    """People side by side, each in its own vertical slot so boxes never overlap; a standing adult is
    ``fill`` (a range) of the image height when the slot is wide enough."""
    name, sky, ground = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    img = Image.new("RGB", (width, height), sky)
    draw = ImageDraw.Draw(img)
    horizon = int(height * rng.uniform(0.45, 0.65))
    draw.rectangle([0, horizon, width, height], fill=ground)
    persons, objects = [], []
    n = len(specs)
    slot = width / max(n, 1)
    for i, spec in enumerate(specs):
        pose = make_pose(spec.action, spec.age, spec.view, rng, spec.hold_front)
        x1, y1, x2, y2 = _extent(spec, pose)
        s = height * rng.uniform(*fill) * (CHILD_SCALE if spec.age == "child" else 1.0)
        s = min(s, 0.94 * slot / (x2 - x1), 0.94 * height / (y2 - y1))
        lo_x, hi_x = i * slot + 1 - s * x1, (i + 1) * slot - 1 - s * x2
        lo_y, hi_y = 1 - s * y1, height - 1 - s * y2
        # Feet on the ground band when the figure fits there: people stand on the floor, not on the sky.
        g_lo, g_hi = max(lo_y, horizon + 2 - s * GROUND), min(hi_y, height - 1 - s * GROUND)
        if g_lo <= g_hi:
            lo_y, hi_y = g_lo, g_hi
        ox, oy = rng.uniform(lo_x, max(lo_x, hi_x)), rng.uniform(lo_y, max(lo_y, hi_y))
        inst = _place(draw, spec, pose, s, ox, oy)
        persons.append(inst)
        if inst.prop_box is not None and spec.action in PROP_CATEGORIES:
            objects.append((PROP_CATEGORIES[spec.action], inst.prop_box))
    return Scene(img, persons, name, objects)


def render_crop(rng: np.random.Generator, spec: PersonSpec, height: Tuple[int, int] = (100, 140),
                margin: Tuple[int, int] = (2, 7)) -> Scene:
    """A pedestrian crop: the figure fills the picture up to a few pixels of margin (PA-100K style)."""
    pose = make_pose(spec.action, spec.age, spec.view, rng, spec.hold_front)
    x1, y1, x2, y2 = _extent(spec, pose)
    s = rng.uniform(*height) * (CHILD_SCALE if spec.age == "child" else 1.0)
    ml, mt, mr, mb = (int(v) for v in rng.integers(margin[0], margin[1] + 1, size=4))
    w, h = int(np.ceil(s * (x2 - x1))) + ml + mr, int(np.ceil(s * (y2 - y1))) + mt + mb
    colour = tuple(int(c) for c in rng.integers(175, 236, size=3))
    img = Image.new("RGB", (w, h), colour)
    inst = _place(ImageDraw.Draw(img), spec, pose, s, ml - s * x1, mt - s * y1)
    return Scene(img, [inst], "")


def render_portrait(rng: np.random.Generator, spec: PersonSpec, size: int, head_frac: float,
                    center: Tuple[float, float] = (0.5, 0.46), jitter: float = 0.0) -> Scene:
    """A square picture in which the head's radius is ``head_frac`` of the side (the body continues below)."""
    pose = make_pose(spec.action, spec.age, spec.view, rng, spec.hold_front)
    s = head_frac * size / pose.head_r
    cx = size * (center[0] + rng.uniform(-jitter, jitter))
    cy = size * (center[1] + rng.uniform(-jitter, jitter))
    _, sky, _ = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    img = Image.new("RGB", (size, size), sky)
    inst = _place(ImageDraw.Draw(img), spec, pose, s, cx - s * pose.head_center[0], cy - s * pose.head_center[1])
    return Scene(img, [inst], "")
