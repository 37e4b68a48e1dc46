"""Faces: the seven RAF-DB basic expressions as large, distinct mouth/eyebrow/eye shapes.

Each expression differs from every other in at least two of: mouth shape (smile, frown, O, open grimace,
clenched teeth, sneer, flat line), eyebrow tilt (flat, raised, inner ends up, inner ends down, asymmetric) and eye
size, so the label is readable from a 64x64 face crop.
"""
from __future__ import annotations

from .canvas import Canvas

INK = (20, 15, 15)
MOUTH = (120, 20, 30)
WHITE = (250, 250, 250)

# Eyebrow heights (inner end, outer end) in head radii above the head centre; larger = higher.
BROWS = {
    "Neutral": (0.40, 0.40), "Happiness": (0.44, 0.44), "Surprise": (0.62, 0.58), "Fear": (0.60, 0.42),
    "Sadness": (0.55, 0.33), "Anger": (0.24, 0.50), "Disgust": (0.28, 0.40),
}
EYE_R = {"Surprise": 0.15, "Fear": 0.14}


def draw_face(cv: Canvas, cx: float, cy: float, r: float, expression: str, glasses: bool = False) -> None:
    """Eyes, eyebrows, nose and mouth on a head of radius ``r`` centred at (cx, cy), in figure units."""
    if expression not in BROWS:
        raise KeyError(f"unknown expression {expression!r}; known: {sorted(BROWS)}")
    ey = cy - 0.08 * r
    er = EYE_R.get(expression, 0.10) * r
    inner, outer = BROWS[expression]
    for side in (-1, 1):
        ex = cx + side * 0.36 * r
        cv.circle((ex, ey), er, fill=WHITE)
        cv.circle((ex, ey), er * 0.6, fill=INK)
        hi, ho = inner, outer
        if expression == "Disgust" and side == 1:
            hi, ho = 0.42, 0.42          # one brow lowered, the other level: the asymmetry of a sneer
        cv.line([(cx + side * 0.14 * r, cy - hi * r), (cx + side * 0.60 * r, cy - ho * r)], 0.10 * r, INK)
    if glasses:
        for side in (-1, 1):
            cv.circle((cx + side * 0.36 * r, ey), 0.27 * r, outline=INK, width=0.12 * r)
        cv.line([(cx - 0.09 * r, ey), (cx + 0.09 * r, ey)], 0.12 * r, INK)
    cv.line([(cx, cy + 0.02 * r), (cx + 0.06 * r, cy + 0.20 * r)], 0.06 * r, INK)
    if expression == "Disgust":
        cv.line([(cx - 0.12 * r, cy + 0.05 * r), (cx - 0.05 * r, cy + 0.12 * r)], 0.05 * r, INK)
    _mouth(cv, cx, cy + 0.47 * r, r, expression)


def _mouth(cv: Canvas, mx: float, my: float, r: float, expression: str) -> None:
    if expression == "Happiness":       # open smile: lower half-disc
        cv.pieslice((mx, my - 0.08 * r), 0.34 * r, 0.26 * r, 0, 180, MOUTH)
        cv.chord((mx, my - 0.08 * r), 0.34 * r, 0.10 * r, 0, 180, WHITE)
    elif expression == "Sadness":       # frown: upper arc
        cv.arc((mx, my + 0.14 * r), 0.30 * r, 0.20 * r, 200, 340, 0.09 * r, INK)
    elif expression == "Surprise":      # round O
        cv.ellipse((mx, my), 0.15 * r, 0.21 * r, fill=MOUTH)
    elif expression == "Fear":          # wide open grimace with teeth
        cv.ellipse((mx, my), 0.32 * r, 0.14 * r, fill=MOUTH)
        cv.rect(mx - 0.24 * r, my - 0.12 * r, mx + 0.24 * r, my - 0.04 * r, WHITE)
    elif expression == "Anger":         # clenched teeth
        cv.rect(mx - 0.28 * r, my - 0.08 * r, mx + 0.28 * r, my + 0.08 * r, INK)
        cv.rect(mx - 0.24 * r, my - 0.05 * r, mx + 0.24 * r, my + 0.05 * r, WHITE)
        cv.line([(mx - 0.24 * r, my), (mx + 0.24 * r, my)], 0.03 * r, INK)
    elif expression == "Disgust":       # sneer: slanted, one corner raised
        cv.line([(mx - 0.28 * r, my + 0.06 * r), (mx - 0.05 * r, my + 0.02 * r), (mx + 0.10 * r, my - 0.06 * r),
                 (mx + 0.28 * r, my - 0.16 * r)], 0.09 * r, INK)
    else:                               # Neutral: flat line
        cv.line([(mx - 0.22 * r, my), (mx + 0.22 * r, my)], 0.08 * r, INK)
