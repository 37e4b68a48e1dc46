"""Skeletons in figure units: body proportions, two-bone inverse kinematics and one limb layout per action.

Joints use the 16 MPII names and order. A pose is given by where the wrists and ankles should be; elbows and knees
follow from two-bone IK with a preferred bending direction, so limb lengths never change and every action has a
limb configuration of its own (the class is visible in the skeleton, not only in the props).

Sides: in a front view the person's right side is on the image's left (outward x sign -1); in a back view it is on
the image's right. Targets are written as ``(outward, y)`` per side, so one table serves both views.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np

Point = Tuple[float, float]

MPII_JOINTS = ("r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "thorax", "upper_neck",
               "head_top", "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist")

# A subset of the 40 Stanford 40 Actions classes whose poses (and props) are drawn distinctly, in actions.txt order.
ACTIONS = ("applauding", "holding_an_umbrella", "jumping", "phoning", "riding_a_bike", "running",
           "shooting_an_arrow", "walking_the_dog", "waving_hands")
SCENE_ACTIONS = ("standing",) + ACTIONS
GROUND = 1.0       # feet of a standing adult rest on y = 1.0
JUMP_LIFT = 0.10   # a jumping figure is drawn this far above its ground line


@dataclass(frozen=True)
class Proportions:
    head_r: float
    neck_y: float       # upper_neck: bottom of the head
    thorax_y: float     # shoulder line
    shoulder_dx: float
    pelvis_y: float     # hip line
    hip_dx: float
    upper_arm: float
    forearm: float
    thigh: float
    shin: float


# Heads are drawn larger than anatomy would have them, so faces and expressions stay readable at 64x64.
ADULT = Proportions(0.085, 0.17, 0.215, 0.13, 0.53, 0.08, 0.17, 0.16, 0.225, 0.225)
CHILD = Proportions(0.105, 0.21, 0.25, 0.12, 0.54, 0.075, 0.155, 0.145, 0.22, 0.22)


def proportions(age: str) -> Proportions:
    return CHILD if age == "child" else ADULT


@dataclass
class Pose:
    joints: Dict[str, Point]
    head_center: Point
    head_r: float
    props: Proportions
    outward: Dict[str, int]     # image x sign of the person's "r" and "l" side
    active: str                 # side doing a one-handed action ("r" or "l")


def two_bone(root: Point, target: Point, a: float, b: float, prefer: Point) -> Tuple[Point, Point]:
    """Middle and end joint of a chain of lengths ``a``, ``b`` from ``root`` towards ``target``.

    An unreachable target is clamped onto the reachable ring; of the two elbow/knee solutions the one whose
    upper segment points more along ``prefer`` is taken."""
    dx, dy = target[0] - root[0], target[1] - root[1]
    d = math.hypot(dx, dy)
    ux, uy = (dx / d, dy / d) if d > 1e-9 else (0.0, 1.0)
    dc = min(max(d, abs(a - b) + 1e-3), a + b - 1e-3)
    cos_a = (a * a + dc * dc - b * b) / (2 * a * dc)
    ang = math.acos(max(-1.0, min(1.0, cos_a)))
    best = None
    for sgn in (1.0, -1.0):
        c, s = math.cos(sgn * ang), math.sin(sgn * ang)
        vx, vy = ux * c - uy * s, ux * s + uy * c
        score = vx * prefer[0] + vy * prefer[1]
        if best is None or score > best[0]:
            best = (score, vx, vy)
    _, vx, vy = best
    mid = (root[0] + a * vx, root[1] + a * vy)
    return mid, (root[0] + ux * dc, root[1] + uy * dc)


# Per action: wrist and ankle targets as (outward, y) for the active side "A" and the other side "B", and the
# preferred bend of elbows/knees as (outward, down). Values found by drawing them; jitter keeps samples apart.
_STAND_W, _STAND_A = (0.19, 0.53), (0.09, 0.99)
_OUT_DOWN, _OUT, _OUT_UP = (1.0, 0.6), (1.0, 0.0), (1.0, -0.6)
LAYOUTS = {
    #                   wrist A          wrist B          ankle A         ankle B        elbow bend  knee bend
    "standing":        (_STAND_W,        _STAND_W,        _STAND_A,       _STAND_A,      _OUT_DOWN, _OUT),
    "applauding":      ((0.02, 0.37),    (0.02, 0.37),    _STAND_A,       _STAND_A,      _OUT_DOWN, _OUT),
    "holding_an_umbrella": ((0.16, 0.30), _STAND_W,       _STAND_A,       _STAND_A,      _OUT_DOWN, _OUT),
    "jumping":         ((0.30, -0.07),   (0.30, -0.07),   (0.16, 0.86),   (0.16, 0.86),  _OUT,      _OUT),
    "phoning":         ((0.09, 0.10),    _STAND_W,        _STAND_A,       _STAND_A,      _OUT_DOWN, _OUT),
    "riding_a_bike":   ((0.27, 0.42),    (-0.18, 0.42),   (0.06, 0.80),   (0.10, 0.90),  _OUT_DOWN, _OUT),
    "running":         ((0.28, 0.50),    (-0.04, 0.30),   (0.13, 0.78),   (0.05, 0.99),  _OUT_DOWN, _OUT_UP),
    "shooting_an_arrow": ((0.46, 0.22),  (-0.02, 0.23),   (0.12, 0.99),   (0.12, 0.99),  _OUT_UP,   _OUT),
    "walking_the_dog": ((0.33, 0.40),    _STAND_W,        (0.16, 0.97),   (0.01, 0.99),  _OUT_DOWN, _OUT),
    "waving_hands":    ((0.34, -0.10),   _STAND_W,        _STAND_A,       _STAND_A,      _OUT_DOWN, _OUT),
}
HOLD_FRONT_WRIST = (0.10, 0.43)


def make_pose(action: str, age: str, view: str, rng: np.random.Generator, hold_front: bool = False,
              jitter: float = 0.015) -> Pose:
    """The 16 MPII joints of one person in figure units (see the module docstring for the frame)."""
    if action not in LAYOUTS:
        raise KeyError(f"unknown action {action!r}; known: {sorted(LAYOUTS)}")
    pr = proportions(age)
    wa, wb, aa, ab, elbow_pref, knee_pref = LAYOUTS[action]
    if hold_front and action == "standing":
        wa = wb = HOLD_FRONT_WRIST
    r_out = -1 if view == "front" else 1
    outward = {"r": r_out, "l": -r_out}
    active = "r" if rng.random() < 0.5 else "l"
    lift = -JUMP_LIFT if action == "jumping" else 0.0
    j: Dict[str, Point] = {}
    head_center = (0.0, pr.head_r + lift)
    j["head_top"] = (0.0, lift)
    j["upper_neck"] = (0.0, pr.neck_y + lift)
    j["thorax"] = (0.0, pr.thorax_y + lift)
    j["pelvis"] = (0.0, pr.pelvis_y + lift)
    scale = pr.thigh + pr.shin   # targets are tuned for the adult leg length; children are shorter
    for side in ("r", "l"):
        o = outward[side]
        is_a = side == active
        w, a = (wa, aa) if is_a else (wb, ab)
        shoulder = (o * pr.shoulder_dx, pr.thorax_y + lift)
        hip = (o * pr.hip_dx, pr.pelvis_y + lift)
        wt = (o * (w[0] + rng.uniform(-jitter, jitter)),
              shoulder[1] + (w[1] - ADULT.thorax_y) * (pr.upper_arm + pr.forearm) / (ADULT.upper_arm + ADULT.forearm)
              + rng.uniform(-jitter, jitter))
        at = (o * (a[0] + rng.uniform(-jitter, jitter)),
              hip[1] + (a[1] - ADULT.pelvis_y) * scale / (ADULT.thigh + ADULT.shin) + rng.uniform(-jitter, 0.0))
        elbow, wrist = two_bone(shoulder, wt, pr.upper_arm, pr.forearm, (o * elbow_pref[0], elbow_pref[1]))
        knee, ankle = two_bone(hip, at, pr.thigh, pr.shin, (o * knee_pref[0], knee_pref[1]))
        j[f"{side}_shoulder"], j[f"{side}_elbow"], j[f"{side}_wrist"] = shoulder, elbow, wrist
        j[f"{side}_hip"], j[f"{side}_knee"], j[f"{side}_ankle"] = hip, knee, ankle
    return Pose({k: j[k] for k in MPII_JOINTS}, head_center, pr.head_r, pr, outward, active)
