"""A drawing surface in figure units that also measures what it draws.

Figures are described in *figure units* (a standing adult is 1.0 tall, x = 0 on the body axis, y = 0 at the top of
the head, y grows downwards) and mapped to pixels by ``(ox + s * x, oy + s * y)``. Every primitive grows the
bounding box of the current *group* (``"person"`` for the body and what it wears, ``"prop"`` for held objects and
animals, ``None`` for shadows), so person boxes are exactly the drawn pixels, not an estimate. With ``draw=None``
nothing is rasterised: a dry run gives a figure's extent before it is placed in a scene.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

from PIL import ImageDraw

Point = Tuple[float, float]
Box = List[float]


class Canvas:
    def __init__(self, draw: Optional[ImageDraw.ImageDraw] = None, scale: float = 1.0, ox: float = 0.0,
                 oy: float = 0.0):
        self.draw = draw
        self.s, self.ox, self.oy = float(scale), float(ox), float(oy)
        self.bounds: Dict[str, Box] = {}
        self.group: Optional[str] = "person"

    # -- geometry --------------------------------------------------------------------------------------------------
    def pt(self, p: Point) -> Point:
        return (self.ox + self.s * p[0], self.oy + self.s * p[1])

    def px(self, length: float) -> int:
        """A line width in whole pixels (at least 1: PIL draws nothing for width 0)."""
        return max(1, int(round(length * self.s)))

    def _grow(self, x1: float, y1: float, x2: float, y2: float) -> None:
        if self.group is None:
            return
        b = self.bounds.get(self.group)
        if b is None:
            self.bounds[self.group] = [x1, y1, x2, y2]
        else:
            b[0], b[1], b[2], b[3] = min(b[0], x1), min(b[1], y1), max(b[2], x2), max(b[3], y2)

    def box(self, group: str) -> Optional[Box]:
        return self.bounds.get(group)

    # -- primitives (all coordinates in figure units) --------------------------------------------------------------
    def capsule(self, pts: Sequence[Point], width: float, fill) -> None:
        """A thick polyline with round ends and joints: limbs, sleeves, straps."""
        q = [self.pt(p) for p in pts]
        w = self.px(width)
        r = w / 2.0
        g = width * self.s / 2.0        # unrounded, so a dry run at scale 1 measures the true extent
        for x, y in q:
            self._grow(x - g, y - g, x + g, y + g)
        if self.draw is not None:
            if len(q) > 1:
                self.draw.line(q, fill=fill, width=w, joint="curve")
            if w > 2:
                for x, y in q:
                    self.draw.ellipse([x - r + 0.5, y - r + 0.5, x + r - 0.5, y + r - 0.5], fill=fill)

    def line(self, pts: Sequence[Point], width: float, fill) -> None:
        """A thin polyline (facial features, strings); its width counts towards the box."""
        q = [self.pt(p) for p in pts]
        w = self.px(width)
        g = width * self.s / 2.0
        for x, y in q:
            self._grow(x - g, y - g, x + g, y + g)
        if self.draw is not None:
            self.draw.line(q, fill=fill, width=w)

    def ellipse(self, center: Point, rx: float, ry: float, fill=None, outline=None, width: float = 0.0) -> None:
        cx, cy = self.pt(center)
        ax, ay = rx * self.s, ry * self.s
        self._grow(cx - ax, cy - ay, cx + ax, cy + ay)
        if self.draw is not None:
            self.draw.ellipse([cx - ax, cy - ay, cx + ax, cy + ay], fill=fill, outline=outline,
                              width=self.px(width) if outline is not None else 0)

    def circle(self, center: Point, r: float, fill=None, outline=None, width: float = 0.0) -> None:
        self.ellipse(center, r, r, fill, outline, width)

    def polygon(self, pts: Sequence[Point], fill) -> None:
        q = [self.pt(p) for p in pts]
        xs, ys = [p[0] for p in q], [p[1] for p in q]
        self._grow(min(xs), min(ys), max(xs), max(ys))
        if self.draw is not None:
            self.draw.polygon(q, fill=fill)

    def rect(self, x1: float, y1: float, x2: float, y2: float, fill) -> None:
        self.polygon([(x1, y1), (x2, y1), (x2, y2), (x1, y2)], fill)

    def arc(self, center: Point, rx: float, ry: float, start: float, end: float, width: float, fill) -> None:
        """Part of an ellipse outline; angles in degrees, clockwise from +x (PIL's convention, y down)."""
        pts = [(center[0] + rx * math.cos(math.radians(a)), center[1] + ry * math.sin(math.radians(a)))
               for a in _angles(start, end)]
        self.line(pts, width, fill)

    def pieslice(self, center: Point, rx: float, ry: float, start: float, end: float, fill) -> None:
        pts = [center] + [(center[0] + rx * math.cos(math.radians(a)), center[1] + ry * math.sin(math.radians(a)))
                          for a in _angles(start, end)]
        self.polygon(pts, fill)

    def chord(self, center: Point, rx: float, ry: float, start: float, end: float, fill) -> None:
        pts = [(center[0] + rx * math.cos(math.radians(a)), center[1] + ry * math.sin(math.radians(a)))
               for a in _angles(start, end)]
        self.polygon(pts, fill)


def _angles(start: float, end: float, step: float = 12.0) -> List[float]:
    n = max(2, int(math.ceil(abs(end - start) / step)) + 1)
    return [start + (end - start) * i / (n - 1) for i in range(n)]
