"""Draw one person (body, clothes, accessories, face) and the props of their action onto a :class:`Canvas`.

Groups: body and worn items (hair, hat, bags) count towards the person box; held or nearby objects (umbrella,
bike, bow, phone, dog) are ``"prop"``; the shadow of a jump counts towards nothing. Drawing order puts long hair
and a front-view backpack behind the body and arms in front of the torso, as a viewer would see them.
"""
from __future__ import annotations

from typing import Tuple

from .canvas import Canvas
from .face import draw_face
from .person import BOOTS, CLOTHES, SHOES, PersonSpec
from .pose import GROUND, Pose

BAG = (110, 70, 35)
BOX = (195, 145, 80)
DARK = (40, 40, 45)
WHITE = (250, 250, 250)
DOG = (150, 95, 45)
ARM_W, LEG_W = 0.055, 0.07


def _lerp(a: Tuple[float, float], b: Tuple[float, float], t: float) -> Tuple[float, float]:
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)


def draw_person(cv: Canvas, p: PersonSpec, pose: Pose) -> None:
    j, pr = pose.joints, pose.props
    a, b = pose.active, "l" if pose.active == "r" else "r"
    oa = pose.outward[a]
    top, top2, lower = CLOTHES[p.top], CLOTHES[p.top2], CLOTHES[p.lower]
    lift = j["head_top"][1]
    thorax, pelvis = j["thorax"][1], j["pelvis"][1]
    cx, cy = pose.head_center
    r = pose.head_r

    # -- behind the body -------------------------------------------------------------------------------------------
    cv.group = None
    if p.action == "jumping":
        cv.ellipse((0.0, GROUND + 0.01), 0.17, 0.022, fill=(95, 95, 100))
    cv.group = "prop"
    if p.action == "riding_a_bike":
        _bike(cv, j[f"{a}_wrist"], pelvis, top2)
    elif p.action == "walking_the_dog":
        _dog(cv, oa)
    cv.group = "person"
    if p.female and p.view == "front":
        cv.circle((cx, cy), 1.12 * r, fill=p.hair_rgb)
        cv.rect(cx - 1.12 * r, cy, cx + 1.12 * r, cy + 1.6 * r, p.hair_rgb)
    if p.bag == "backpack" and p.view == "front":
        cv.rect(-(pr.shoulder_dx + 0.04), thorax - 0.01, pr.shoulder_dx + 0.04, pelvis - 0.06, BAG)

    # -- legs, torso, arms -----------------------------------------------------------------------------------------
    for s in ("r", "l"):
        hip, knee, ankle = j[f"{s}_hip"], j[f"{s}_knee"], j[f"{s}_ankle"]
        cv.ellipse((ankle[0] + pose.outward[s] * 0.012, ankle[1] + 0.012), 0.045, 0.025, fill=SHOES)
        if p.lower_kind == "trousers":
            cv.capsule([hip, knee, ankle], 0.078, lower)
        else:
            cv.capsule([hip, knee, ankle], LEG_W, p.skin)
            if p.lower_kind == "shorts":
                cv.capsule([hip, _lerp(hip, knee, 0.7)], 0.085, lower)
        if p.boots:
            cv.capsule([_lerp(knee, ankle, 0.4), ankle], 0.085, BOOTS)
        # Patterns are drawn coarse (about 3 px at a 64-pixel crop height) so that they survive downsampling.
        if p.lower_kind == "trousers" and p.lower_pattern == "stripe":
            cv.line([hip, knee, _lerp(knee, ankle, 0.9)], 0.028, WHITE)
        if p.lower_kind == "trousers" and p.lower_pattern == "dots":
            for t in (0.3, 0.75):
                cv.circle(_lerp(hip, knee, t), 0.024, fill=WHITE)
                cv.circle(_lerp(knee, ankle, t), 0.024, fill=WHITE)
    if p.lower_kind != "skirt":
        cv.rect(-(pr.hip_dx + 0.04), pelvis - 0.03, pr.hip_dx + 0.04, pelvis + 0.05, lower)
    else:
        x0, x1, y0, y1 = pr.hip_dx + 0.045, pr.hip_dx + 0.12, pelvis - 0.03, pelvis + 0.20
        cv.polygon([(-x0, y0), (x0, y0), (x1, y1), (-x1, y1)], lower)
        for t in (0.35, 0.7):
            y, x = y0 + (y1 - y0) * t, x0 + (x1 - x0) * t
            if p.lower_pattern == "stripe":
                cv.line([(-x, y), (x, y)], 0.028, WHITE)
            elif p.lower_pattern == "dots":
                for k in (-0.5, 0.0, 0.5):
                    cv.circle((k * x, y), 0.024, fill=WHITE)
    _torso(cv, p, pr, thorax, pelvis, top, top2)
    if p.bag == "backpack" and p.view == "back":
        cv.rect(-0.10, thorax + 0.01, 0.10, thorax + 0.25, BAG)
        cv.line([(-0.10, thorax + 0.08), (0.10, thorax + 0.08)], 0.012, DARK)
    for s in ("r", "l"):
        sh, el, wr = j[f"{s}_shoulder"], j[f"{s}_elbow"], j[f"{s}_wrist"]
        if p.sleeves == "long":
            cv.capsule([sh, el, wr], 0.062, top)
        else:
            cv.capsule([sh, el, wr], ARM_W, p.skin)
            cv.capsule([sh, _lerp(sh, el, 0.55)], 0.07, top)
        cv.circle(wr, 0.033, fill=p.skin)
    if p.bag == "backpack" and p.view == "front":
        for s in (-1, 1):
            cv.line([(s * (pr.shoulder_dx - 0.035), thorax), (s * (pr.shoulder_dx - 0.045), thorax + 0.2)],
                    0.026, BAG)
    elif p.bag == "shoulder":
        end = (-oa * (pr.hip_dx + 0.07), pelvis - 0.02)
        cv.line([(oa * (pr.shoulder_dx - 0.03), thorax), end], 0.03, BAG)
        cv.rect(end[0] - 0.075, end[1] - 0.03, end[0] + 0.075, end[1] + 0.09, BAG)
    elif p.bag == "handbag":
        w = j[f"{b}_wrist"]
        cv.arc((w[0], w[1] + 0.05), 0.035, 0.05, 180, 360, 0.012, BAG)
        cv.rect(w[0] - 0.055, w[1] + 0.045, w[0] + 0.055, w[1] + 0.13, BAG)
    if p.hold_front:
        cv.rect(-0.11, thorax + 0.14, 0.11, thorax + 0.29, BOX)
        for s in ("r", "l"):
            cv.circle(j[f"{s}_wrist"], 0.033, fill=p.skin)

    # -- head ------------------------------------------------------------------------------------------------------
    cv.capsule([(0.0, pr.neck_y - 0.02 + lift), (0.0, thorax)], 0.05, p.skin)
    if p.view == "front":
        cv.circle((cx, cy), r, fill=p.skin)
        cv.chord((cx, cy), 1.06 * r, 1.06 * r, 220, 320, p.hair_rgb)
        draw_face(cv, cx, cy, r, p.expression, p.glasses)
    else:
        cv.circle((cx, cy), 1.04 * r, fill=p.hair_rgb)
        if p.female:
            cv.rect(cx - 1.04 * r, cy, cx + 1.04 * r, cy + 1.6 * r, p.hair_rgb)
    if p.hat is not None:
        hat = CLOTHES[p.hat]
        # The brim sits above the highest eyebrow (0.62 r), so a hat never hides the expression.
        cv.rect(cx - 0.8 * r, cy - 1.5 * r, cx + 0.8 * r, cy - 0.78 * r, hat)
        cv.rect(cx - 1.35 * r, cy - 0.88 * r, cx + 1.35 * r, cy - 0.72 * r, hat)

    # -- held objects ----------------------------------------------------------------------------------------------
    cv.group = "prop"
    wa = j[f"{a}_wrist"]
    if p.action == "holding_an_umbrella":
        top_y = lift - 0.22
        cv.line([wa, (wa[0], top_y)], 0.016, DARK)
        cv.pieslice((wa[0], top_y + 0.02), 0.33, 0.21, 180, 360, top2)
    elif p.action == "phoning":
        cv.rect(wa[0] - 0.022, wa[1] - 0.06, wa[0] + 0.022, wa[1] + 0.015, DARK)
    elif p.action == "shooting_an_arrow":
        _bow(cv, wa, j[f"{b}_wrist"], oa)
    elif p.action == "walking_the_dog":
        cv.group = None             # the leash belongs neither to the person box nor to the dog box
        cv.line([wa, (oa * 0.60, 0.80)], 0.010, DARK)
    cv.group = "person"


def _torso(cv: Canvas, p: PersonSpec, pr, thorax: float, pelvis: float, top, top2) -> None:
    y0 = thorax - 0.02
    hem = pelvis + (0.24 if p.long_coat else 0.02)
    w0, w1 = pr.shoulder_dx + 0.02, pr.hip_dx + (0.09 if p.long_coat else 0.035)

    def half(y: float) -> float:
        return w0 + (w1 - w0) * (y - y0) / (hem - y0)

    cv.polygon([(-w0, y0), (w0, y0), (w1, hem), (-w1, hem)], top)
    ys = [y0 + (hem - y0) * t for t in (0.25, 0.5, 0.75)]
    if p.top_pattern == "stride":
        for y in ys:
            cv.line([(-half(y), y), (half(y), y)], 0.04, top2)
    elif p.top_pattern == "plaid":
        for y in ys:
            cv.line([(-half(y), y), (half(y), y)], 0.025, top2)
        xm = min(w0, w1) * 0.9
        for x in (-0.5 * xm, 0.0, 0.5 * xm):
            cv.line([(x, y0 + 0.005), (x, hem - 0.005)], 0.025, top2)
    elif p.top_pattern == "splice":
        ym = ys[1]
        cv.polygon([(-half(ym), ym), (half(ym), ym), (w1, hem), (-w1, hem)], top2)
    elif p.top_pattern == "logo":
        c, s = (0.0, thorax + 0.1), 0.075
        cv.polygon([(c[0], c[1] - s), (c[0] + s, c[1]), (c[0], c[1] + s), (c[0] - s, c[1])], top2)


def _bike(cv: Canvas, hand, pelvis: float, colour) -> None:
    for x in (-0.30, 0.30):
        cv.circle((x, GROUND - 0.165), 0.155, outline=DARK, width=0.028)
    saddle = (0.0, pelvis + 0.03)
    cv.line([(-0.30, GROUND - 0.165), saddle, (0.30, GROUND - 0.165)], 0.03, colour)
    cv.line([saddle, hand, (0.30 if hand[0] > 0 else -0.30, GROUND - 0.165)], 0.03, colour)
    cv.rect(-0.06, pelvis + 0.01, 0.06, pelvis + 0.045, DARK)


def _dog(cv: Canvas, o: int) -> None:
    x = o * 0.52
    for dx in (-0.09, -0.05, 0.05, 0.09):
        cv.line([(x + dx, 0.86), (x + dx, GROUND)], 0.025, DOG)
    cv.ellipse((x, 0.86), 0.14, 0.055, fill=DOG)
    cv.circle((x + o * 0.14, 0.78), 0.05, fill=DOG)
    cv.ellipse((x + o * 0.19, 0.79), 0.03, 0.02, fill=DOG)
    cv.line([(x - o * 0.13, 0.84), (x - o * 0.19, 0.76)], 0.02, DOG)
    cv.circle((x + o * 0.15, 0.77), 0.009, fill=DARK)


def _bow(cv: Canvas, front, back, o: int) -> None:
    cx = front[0] - o * 0.06
    start, end = (-70, 70) if o > 0 else (110, 250)
    cv.arc((cx, front[1]), 0.10, 0.24, start, end, 0.022, (110, 65, 25))
    tip_top = (cx + o * 0.034, front[1] - 0.225)     # the arc's ends: 0.10*cos(70), 0.24*sin(70)
    tip_bot = (cx + o * 0.034, front[1] + 0.225)
    cv.line([tip_top, back, tip_bot], 0.007, DARK)
    cv.line([back, (front[0] + o * 0.10, front[1])], 0.012, DARK)
    cv.polygon([(front[0] + o * 0.14, front[1]), (front[0] + o * 0.09, front[1] - 0.025),
                (front[0] + o * 0.09, front[1] + 0.025)], DARK)
