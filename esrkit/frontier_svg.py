"""The results page's PSNR-cost plots, as inline SVG.

Inline SVG rather than a matplotlib image: every label is an element of the page (a browser can check
that no two overlap), the text is the page's, and only presentation attributes are used, so the page's
Content-Security-Policy (no inline style) holds. A cost that spreads over a decade or more (a round's
runtimes do) is on a log axis. Points carry short labels (the page's numbers of the teams, which its
key names); each label goes where it covers no other label and no point -- nearest first, the Pareto
front's labels placed first -- with a leader line where it had to move away from its point. A label with
no free place left (never seen with 60 points) is left out; the point's tooltip still names its team.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Iterator, Sequence

from esrkit.ranking import pareto_front

WIDTH, HEIGHT = 660, 440  # CSS pixels
LEFT, RIGHT, TOP, BOTTOM = 58, 14, 40, 46  # margins: tick labels, axis titles, title and legend
FONT_PX = 10  # of the point labels (the page's style sets it)
CHAR_EM = 0.72  # no label character is wider (digits are 0.64 em in DejaVu Sans, Verdana, Arial)
ASCENT_EM, DESCENT_EM = 0.95, 0.27  # the label font's box holds within these
MARKER = 4.5  # a point's radius
GAP = 2.0  # between a label and anything else
RING_STEP = 6.0  # a label tried farther away, step by step ...
RINGS = 14  # ... this many times
LEADER_FROM = 2  # from this ring on, a leader line joins label and point
LOG_SPREAD = 10.0  # a cost axis whose largest value is this many times its smallest is logarithmic


@dataclass(frozen=True)
class Point:
    label: str  # written beside the point
    name: str  # the team, in the point's tooltip
    x: float
    y: float
    baseline: bool = False


@dataclass(frozen=True)
class Box:
    left: float
    top: float
    right: float
    bottom: float

    def overlaps(self, other: "Box", gap: float = 0.0) -> bool:
        return not (self.right + gap <= other.left or other.right + gap <= self.left or
                    self.bottom + gap <= other.top or other.bottom + gap <= self.top)

    def inside(self, other: "Box") -> bool:
        return other.left <= self.left and self.right <= other.right and other.top <= self.top and self.bottom <= other.bottom


@dataclass(frozen=True)
class Axis:
    """A value range mapped onto pixels ``start`` -> ``end``, linear or logarithmic."""

    lo: float
    hi: float
    log: bool
    start: float
    end: float

    def _t(self, value: float) -> float:
        if self.log:
            return math.log10(value / self.lo) / math.log10(self.hi / self.lo)
        return (value - self.lo) / (self.hi - self.lo)

    def __call__(self, value: float) -> float:
        return self.start + self._t(value) * (self.end - self.start)

    def ticks(self) -> list[tuple[float, str | None]]:
        """(value, its label; None: a grid line only)."""
        return _log_ticks(self.lo, self.hi) if self.log else _linear_ticks(self.lo, self.hi)


def _domain(values: Sequence[float], log: bool) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if log:
        if hi == lo:
            return lo / 2, hi * 2
        pad = 10 ** (0.06 * math.log10(hi / lo))
        return lo / pad, hi * pad
    span = (hi - lo) or abs(hi) * 0.1 or 1.0
    return lo - 0.06 * span, hi + 0.06 * span


def _tick_text(value: float) -> str:
    return f"{value:g}" if 1e-3 <= abs(value) < 1e5 or value == 0 else f"{value:.0e}"


def _log_ticks(lo: float, hi: float) -> list[tuple[float, str | None]]:
    """Decades; where fewer than three fit, 1-2-5 labelled and every other digit a grid line; where fewer than
    two of those, a linear axis's ticks."""
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)

    def at(mantissas: tuple[int, ...]) -> list[float]:
        return [float(f"{m}e{k}") for k in decades for m in mantissas if lo <= float(f"{m}e{k}") <= hi]

    if len(at((1,))) >= 3:
        return [(v, _tick_text(v)) for v in at((1,))]
    if len(at((1, 2, 5))) < 2:  # less than a decade: the ticks of a linear axis, placed on the log one
        return _linear_ticks(lo, hi)
    labelled = set(at((1, 2, 5)))
    return [(v, _tick_text(v) if v in labelled else None) for v in at(tuple(range(1, 10)))]


def _linear_ticks(lo: float, hi: float, wanted: int = 6) -> list[tuple[float, str | None]]:
    raw = (hi - lo) / wanted
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    decimals = max(0, -math.floor(math.log10(step))) + (1 if round(step / magnitude, 6) == 2.5 else 0)
    ticks, i = [], math.ceil(lo / step)
    while i * step <= hi:
        ticks.append((i * step, f"{i * step:.{decimals}f}"))
        i += 1
    return ticks


# --- labels --------------------------------------------------------------------------------------------


def label_size(text: str) -> tuple[float, float]:
    """The box a label's text fits in (width, height) at FONT_PX."""
    return len(text) * CHAR_EM * FONT_PX, (ASCENT_EM + DESCENT_EM) * FONT_PX


def _directions(ring: int) -> Iterator[tuple[float, float]]:
    """Right, left, above, below, then the diagonals; from the third ring on, every 22.5 degrees."""
    yield from ((1, 0), (-1, 0), (0, -1), (0, 1))
    yield from ((1, -1), (-1, -1), (1, 1), (-1, 1))
    if ring >= LEADER_FROM:
        for k in (1, 3, 5, 7, 9, 11, 13, 15):
            angle = k * math.pi / 8
            yield math.cos(angle), math.sin(angle)


def _candidate(px: float, py: float, w: float, h: float, dx: float, dy: float, distance: float) -> Box:
    """The box of size w x h whose nearest side is ``distance`` from (px, py) in direction (dx, dy)."""
    norm = math.hypot(dx, dy)
    ux, uy = dx / norm, dy / norm
    cx = px + ux * distance + math.copysign(w / 2, ux) * (abs(ux) > 1e-9)
    cy = py + uy * distance + math.copysign(h / 2, uy) * (abs(uy) > 1e-9)
    return Box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


@dataclass(frozen=True)
class Placed:
    box: Box
    leader: bool


def place_labels(xy: Sequence[tuple[float, float]], labels: Sequence[str], area: Box,
                 first: Sequence[int] = ()) -> list[Placed | None]:
    """Where each label goes (None: nowhere free): inside ``area``, clear of every point and every label
    placed before it. The points in ``first`` are served first, then the most crowded."""
    markers = [Box(x - MARKER, y - MARKER, x + MARKER, y + MARKER) for x, y in xy]

    def crowd(i: int) -> int:
        return -sum(abs(xy[i][0] - x) < 40 and abs(xy[i][1] - y) < 20 for x, y in xy)

    order = list(dict.fromkeys([*first, *sorted(range(len(xy)), key=crowd)]))
    placed: list[Placed | None] = [None] * len(xy)
    taken: list[Box] = []
    for i in order:
        w, h = label_size(labels[i])
        spot = next((Placed(box, ring >= LEADER_FROM)
                     for ring in range(RINGS)
                     for dx, dy in _directions(ring)
                     if (box := _candidate(*xy[i], w, h, dx, dy, MARKER + GAP + ring * RING_STEP)).inside(area)
                     and not any(box.overlaps(m, GAP) for m in markers)
                     and not any(box.overlaps(t, GAP) for t in taken)), None)
        if spot is not None:
            placed[i] = spot
            taken.append(spot.box)
    return placed


# --- the figure ----------------------------------------------------------------------------------------

FRONT = "#2A9D4B"
POINT = "#4C72B0"
BASE = "#E1812C"


def _f(value: float) -> str:
    return f"{value:.1f}"


def frontier_svg(points: Sequence[Point], xlabel: str, ylabel: str, title: str, log_x: bool | None = None) -> str | None:
    """PSNR (``y``) against a cost (``x``, lower is better): the points, their labels, the Pareto front as a
    step line, as SVG markup (everything taken from the points escaped). ``log_x`` None: logarithmic when the
    costs spread over LOG_SPREAD or more. None without points."""
    points = [p for p in points if math.isfinite(p.x) and math.isfinite(p.y)]
    if log_x is not False and any(p.x <= 0 for p in points):
        log_x = False  # a log axis has no place for them
    if not points:
        return None
    xs, ys = [p.x for p in points], [p.y for p in points]
    if log_x is None:
        log_x = max(xs) / min(xs) >= LOG_SPREAD
    area = Box(LEFT, TOP, WIDTH - RIGHT, HEIGHT - BOTTOM)
    xa = Axis(*_domain(xs, log_x), log_x, area.left, area.right)
    ya = Axis(*_domain(ys, False), False, area.bottom, area.top)
    xy = [(xa(p.x), ya(p.y)) for p in points]
    front = pareto_front(xs, ys)
    out = [f'<svg class="plot" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
           f'aria-label="{escape(title)}">',
           f'<rect class="area" x="{area.left}" y="{area.top}" width="{area.right - area.left}" '
           f'height="{area.bottom - area.top}" fill="#fff" stroke="#b8bec6"/>']
    for value, text in xa.ticks():
        x = _f(xa(value))
        out.append(f'<line class="grid" x1="{x}" x2="{x}" y1="{area.top}" y2="{area.bottom}" stroke="#e6e8eb"/>')
        if text is not None:
            out.append(f'<text class="tick" x="{x}" y="{area.bottom + 14}" text-anchor="middle">{text}</text>')
    for value, text in ya.ticks():
        y = _f(ya(value))
        out.append(f'<line class="grid" x1="{area.left}" x2="{area.right}" y1="{y}" y2="{y}" stroke="#e6e8eb"/>')
        out.append(f'<text class="tick" x="{area.left - 5}" y="{y}" dy="0.32em" text-anchor="end">{text}</text>')
    scale = " (log scale)" if log_x else ""
    out.append(f'<text class="axis" x="{_f((area.left + area.right) / 2)}" y="{HEIGHT - 10}" '
               f'text-anchor="middle">{escape(xlabel + scale)}</text>')
    mid = _f((area.top + area.bottom) / 2)
    out.append(f'<text class="axis" x="14" y="{mid}" text-anchor="middle" transform="rotate(-90 14 {mid})">'
               f'{escape(ylabel)}</text>')
    out.append(f'<text class="ptitle" x="{area.left}" y="18">{escape(title)}</text>')
    out.append(_legend(area.right, any(p.baseline for p in points)))
    steps = [xy[i] for i in front]
    path = f"M{_f(steps[0][0])},{_f(steps[0][1])}" + "".join(
        f"H{_f(x)}V{_f(y)}" for x, y in steps[1:]) + f"H{_f(area.right)}"
    out.append(f'<path class="front" d="{path}" fill="none" stroke="{FRONT}" stroke-width="1.5" '
               f'stroke-dasharray="5 3"/>')
    on_front = set(front)
    for i, (p, (x, y)) in enumerate(zip(points, xy)):
        colour = BASE if p.baseline else FRONT if i in on_front else POINT
        tip = f"{p.label}: {p.name} — {ylabel} {p.y:.2f}, {xlabel} {p.x:.4g}"
        mark = (f'<path d="M{_f(x)},{_f(y - MARKER - 1)}l{MARKER + 1},{MARKER + 1}l{-MARKER - 1},{MARKER + 1}'
                f'l{-MARKER - 1},{-MARKER - 1}z" fill="{colour}"/>' if p.baseline else
                f'<circle cx="{_f(x)}" cy="{_f(y)}" r="{MARKER}" fill="{colour}" stroke="#fff" stroke-width="0.8"/>')
        out.append(f'<g class="pt" data-entry="{escape(p.name)}"><title>{escape(tip)}</title>{mark}</g>')
    for i, spot in enumerate(place_labels(xy, [p.label for p in points], area, first=front)):
        if spot is None:
            continue
        b, (x, y) = spot.box, xy[i]
        if spot.leader:
            ex, ey = min(max(x, b.left), b.right), min(max(y, b.top), b.bottom)
            out.append(f'<line class="leader" x1="{_f(x)}" y1="{_f(y)}" x2="{_f(ex)}" y2="{_f(ey)}" '
                       f'stroke="#9aa1aa" stroke-width="0.7"/>')
        baseline_y = b.top + ASCENT_EM * FONT_PX
        out.append(f'<text class="label{" front" if i in on_front else ""}" x="{_f(b.left)}" y="{_f(baseline_y)}" '
                   f'data-entry="{escape(points[i].name)}">{escape(points[i].label)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _legend(right: float, with_baseline: bool) -> str:
    items = [("circle", POINT, "team"), ("circle", FRONT, "on the front")]
    if with_baseline:
        items.append(("diamond", BASE, "baseline"))
    parts, x = [], right
    for shape, colour, text in reversed(items):
        x -= len(text) * 6.2 + 16
        mark = (f'<circle cx="{_f(x + 5)}" cy="14" r="4" fill="{colour}"/>' if shape == "circle" else
                f'<path d="M{_f(x + 5)},9l5,5l-5,5l-5,-5z" fill="{colour}"/>')
        parts.append(f'{mark}<text class="legend" x="{_f(x + 13)}" y="18">{text}</text>')
    line_x = x - 36
    parts.append(f'<line x1="{_f(line_x)}" x2="{_f(line_x + 22)}" y1="14" y2="14" stroke="{FRONT}" '
                 f'stroke-width="1.5" stroke-dasharray="5 3"/><text class="legend" x="{_f(line_x - 4)}" y="18" '
                 f'text-anchor="end">Pareto front</text>')
    return '<g class="legend">' + "".join(parts) + "</g>"
