"""Pathfinder images (Linsley et al., NeurIPS 2018), re-implemented for chapter 3 §3.2 of the thesis.

An image holds several curves, each a chain of short straight line segments ("paddles") of equal length joined end
to end; each paddle turns from the previous one by an angle drawn uniformly in ``±max_turn``. Two curves have the
full path length ``L`` (in paddles); ``num_distractors`` more have length ``round(L / 3)`` (at least 1). Two circular
markers sit on curve ends:

- label 1: both markers on the two ends of full-length curve 0 (curve 1, also full length, carries none);
- label 0: one marker on an end of curve 0 and one on an end of curve 1 (which end: a fair coin each).

So both classes hold the same curves; only the marker placement differs. A curve is grown paddle by paddle from a
uniform random start and heading; a paddle that leaves the canvas (keeping a 1-pixel empty border) or comes closer
than ``clearance`` (ink to ink) to an earlier curve or to a non-neighbouring part of its own curve is redrawn a few
times, then the curve is restarted, then the whole image; after a bounded number of image attempts a ConfigError
says the settings are too crowded. Every random draw comes from the numpy Generator passed in.

Rendering is binary (0 background, 255 ink, no anti-aliasing): a pixel (row ``i``, column ``j``, centre at the
integer point ``(i, j)``) is ink when its centre lies within ``thickness / 2`` of a paddle or within
``marker_radius`` of a marker centre. Two facts make the label readable exactly from the pixels:

- ``thickness ≥ √2`` (validated): every disc of radius ≥ √2/2 holds the lattice point nearest to its centre, and the
  lattice points of a disc are 4-connected, so each curve (with its markers) is one 4-connected set of ink pixels;
- ``clearance > √2`` (validated ≥ 1.5): ink pixels of two different curves are more than √2 apart, so never
  8-adjacent; the 8-connected components of an image are exactly its curves.

Hence for label 1 the markers share a (4-)connected component and for label 0 they lie in different (8-)components,
on every image. Departures from the original generator (which drew dashed, anti-aliased paddles with small gaps
between them and varied their contrast): paddles touch, pixels are binary, and the curve geometry is our own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from rankrepro.core.errors import ConfigError

#: canvas side of the original images (the paper resized them to 150 × 150); defaults scale from it
REFERENCE_CANVAS = 300
#: thinnest paddle whose pixels are 4-connected whatever the geometry (a disc of radius √2/2 holds a lattice point)
MIN_THICKNESS = math.sqrt(2.0)
#: smallest allowed ink-to-ink gap between curves; anything above √2 keeps different curves 8-separated
MIN_CLEARANCE = 1.5
#: empty pixels kept along every side of the canvas
BORDER = 1.0
#: distractor paddles per image in the default settings (split into curves of length round(L / 3))
DISTRACTOR_PADDLES = 12
#: redraws of one paddle's turning angle, restarts of one curve, restarts of one image
TURN_TRIES, CURVE_ATTEMPTS, IMAGE_ATTEMPTS = 4, 50, 20
#: parts of one curve closer along it than this many times their clearance reach are exempt from the self-check
SELF_GAP = 2.0


@dataclass(frozen=True)
class PathfinderSettings:
    """Geometry of the Pathfinder images; lengths in pixels, angles in radians (validated on construction).

    ``canvas``: side of the square image; ``length``: paddles per full-length curve; ``paddle_length``: length of one
    paddle; ``thickness``: width of the drawn paddle (≥ √2); ``marker_radius``: radius of the marker discs (≥
    thickness / 2); ``num_distractors``: curves of length ``round(length / 3)`` besides the two full-length ones;
    ``max_turn``: largest turn between consecutive paddles (≤ π/2); ``clearance``: smallest ink-to-ink gap between
    different curves (≥ 1.5 > √2).
    """

    canvas: int
    length: int
    paddle_length: float
    thickness: float
    marker_radius: float
    num_distractors: int
    max_turn: float
    clearance: float

    def __post_init__(self) -> None:
        check_settings(self)


def check_settings(settings: PathfinderSettings) -> None:
    """Raise ConfigError naming the first invalid field of ``settings``."""
    s = settings
    checks = [
        ("canvas", isinstance(s.canvas, (int, np.integer)) and s.canvas >= 8, "an integer ≥ 8"),
        ("length", isinstance(s.length, (int, np.integer)) and s.length >= 2, "an integer ≥ 2 (paddles)"),
        ("paddle_length", math.isfinite(s.paddle_length) and s.paddle_length >= 1.0, "≥ 1 pixel"),
        (
            "thickness",
            math.isfinite(s.thickness) and s.thickness >= MIN_THICKNESS,
            f"≥ √2 ≈ {MIN_THICKNESS:.3f} pixels (so every curve rasterises 4-connected)",
        ),
        ("marker_radius", math.isfinite(s.marker_radius) and s.marker_radius >= s.thickness / 2, "≥ thickness / 2"),
        (
            "num_distractors",
            isinstance(s.num_distractors, (int, np.integer)) and s.num_distractors >= 0,
            "an integer ≥ 0",
        ),
        ("max_turn", math.isfinite(s.max_turn) and 0.0 <= s.max_turn <= math.pi / 2, "in [0, π/2] radians"),
        (
            "clearance",
            math.isfinite(s.clearance) and s.clearance >= MIN_CLEARANCE,
            f"≥ {MIN_CLEARANCE} pixels (so different curves never touch, even diagonally)",
        ),
    ]
    for name, ok, expected in checks:
        if not ok:
            raise ConfigError(f"pathfinder: {name} = {getattr(s, name)!r} must be {expected}")


def distractor_length(length: int) -> int:
    """Paddles of a distractor curve: ``length / 3`` rounded half up, at least 1 (3 → 1, 5 → 2, 7 → 2, 9 → 3)."""
    return max(1, (int(length) + 1) // 3)


def default_settings(canvas: int, length: int) -> PathfinderSettings:
    """Settings for a ``canvas`` × ``canvas`` image, scaled from the 300 × 300 original.

    Per 300 pixels: paddle 18, thickness 3, marker radius 4.5, clearance 4.5 — with floors (thickness 1.5, marker
    radius 2, clearance 2) that keep small canvases drawable; turns up to 30°; ``round(12 / round(L / 3))``
    distractors (about 12 distractor paddles per image, as the original kept distractor ink roughly constant).
    """
    scale = canvas / REFERENCE_CANVAS
    return PathfinderSettings(
        canvas=canvas,
        length=length,
        paddle_length=18.0 * scale,
        thickness=max(1.5, 3.0 * scale),
        marker_radius=max(2.0, 4.5 * scale),
        num_distractors=max(1, int(DISTRACTOR_PADDLES / distractor_length(length) + 0.5)),
        max_turn=math.pi / 6,
        clearance=max(2.0, 4.5 * scale),
    )


@dataclass(frozen=True)
class PathfinderRecord:
    """Geometry of one image, for tests and inspection (coordinates are ``(row, column)`` in pixels).

    ``curves[k]`` is the ``(paddles + 1, 2)`` array of curve ``k``'s vertices: curves 0 and 1 have the full length,
    the rest are distractors. ``markers`` is ``(2, 2)``: the marker centres, each a curve end; ``marker_curves``
    says which curve each lies on (``(0, 0)`` for label 1, ``(0, 1)`` for label 0).
    """

    label: int
    curves: tuple[np.ndarray, ...]
    markers: np.ndarray
    marker_curves: tuple[int, int]


def point_segment_distances(points: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Euclidean distance from each point to the segment ``[start, end]`` (arrays ``(..., 2)``, broadcast)."""
    direction = ends - starts
    squared = np.sum(direction * direction, axis=-1)
    offset = points - starts
    safe = np.where(squared > 0, squared, 1.0)
    t = np.clip(np.where(squared > 0, np.sum(offset * direction, axis=-1) / safe, 0.0), 0.0, 1.0)
    gap = offset - t[..., None] * direction
    return np.sqrt(np.sum(gap * gap, axis=-1))


Point = tuple[float, float]


def point_segment_distance(p: Point, a: Point, b: Point) -> float:
    """Euclidean distance from point ``p`` to segment ``[a, b]`` (a point when ``a == b``)."""
    dr, dc = b[0] - a[0], b[1] - a[1]
    squared = dr * dr + dc * dc
    t = 0.0 if squared == 0 else min(1.0, max(0.0, ((p[0] - a[0]) * dr + (p[1] - a[1]) * dc) / squared))
    return math.hypot(p[0] - a[0] - t * dr, p[1] - a[1] - t * dc)


def _cross(o: Point, u: Point, v: Point) -> float:
    """z-component of ``(u - o) × (v - o)``."""
    return (u[0] - o[0]) * (v[1] - o[1]) - (u[1] - o[1]) * (v[0] - o[0])


def segment_distance(a: Point, b: Point, c: Point, d: Point) -> float:
    """Smallest distance between segments ``[a, b]`` and ``[c, d]``: zero when they cross, else the smallest of the
    four endpoint-to-segment distances."""
    if _cross(a, b, c) * _cross(a, b, d) < 0 and _cross(c, d, a) * _cross(c, d, b) < 0:
        return 0.0
    return min(
        point_segment_distance(a, c, d),
        point_segment_distance(b, c, d),
        point_segment_distance(c, a, b),
        point_segment_distance(d, a, b),
    )


@dataclass(frozen=True)
class Shape:
    """An inked primitive: the capsule of ``radius`` around segment ``[a, b]`` (a disc when ``a == b``), covering
    arc lengths ``[arc_start, arc_end]`` along its curve (paddle ``k``: ``[kℓ, (k+1)ℓ]``; a marker: its end's)."""

    a: Point
    b: Point
    radius: float
    arc_start: float
    arc_end: float
    #: bounding box of the segment ``(low row, high row, low column, high column)``, for a quick rejection test
    box: tuple[float, float, float, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "box",
            (
                min(self.a[0], self.b[0]),
                max(self.a[0], self.b[0]),
                min(self.a[1], self.b[1]),
                max(self.a[1], self.b[1]),
            ),
        )


def is_clear(a: Point, b: Point, radius: float, others: list[Shape], clearance: float) -> bool:
    """Whether the capsule of ``radius`` around ``[a, b]`` keeps an ink gap ≥ ``clearance`` to every shape of
    ``others`` (a bounding-box test first, the exact distance only for nearby shapes)."""
    low_r, high_r = min(a[0], b[0]), max(a[0], b[0])
    low_c, high_c = min(a[1], b[1]), max(a[1], b[1])
    for shape in others:
        reach = radius + shape.radius + clearance
        shape_low_r, shape_high_r, shape_low_c, shape_high_c = shape.box
        if (
            shape_low_r - reach > high_r
            or shape_high_r + reach < low_r
            or shape_low_c - reach > high_c
            or shape_high_c + reach < low_c
        ):
            continue
        if segment_distance(a, b, shape.a, shape.b) < reach:
            return False
    return True


def is_inside(point: Point, radius: float, canvas: int) -> bool:
    """Whether a disc of ``radius`` at ``point`` inks no pixel of the ``BORDER`` (nor outside the canvas)."""
    low, high = BORDER + radius, canvas - 1 - BORDER - radius
    return low <= point[0] <= high and low <= point[1] <= high


def _far_along(shapes: list[Shape], arc: float, radius: float, settings: PathfinderSettings) -> list[Shape]:
    """The shapes of a curve that a new shape of ``radius`` starting at arc length ``arc`` must keep clear of."""
    return [shape for shape in shapes if arc - shape.arc_end >= SELF_GAP * (radius + shape.radius + settings.clearance)]


def grow_curve(
    paddles: int,
    marked: tuple[bool, bool],
    obstacles: list[Shape],
    settings: PathfinderSettings,
    generator: np.random.Generator,
) -> tuple[list[Point], list[Shape]] | None:
    """One attempt at a curve of ``paddles`` paddles clear of ``obstacles``; None when the attempt fails.

    ``marked`` says whether the start / the end carries a marker (its disc must be clear too). Returns the
    ``paddles + 1`` vertices and the curve's shapes. Two shapes of one curve closer along it than ``SELF_GAP``
    times their reach (radii plus clearance) are neighbours, exempt from the clearance check against each other.
    """
    half, radius, clearance = settings.thickness / 2, settings.marker_radius, settings.clearance
    step = settings.paddle_length
    start_radius = radius if marked[0] else half
    low, high = BORDER + start_radius, settings.canvas - 1 - BORDER - start_radius
    if high < low:
        return None
    start = (float(generator.uniform(low, high)), float(generator.uniform(low, high)))
    if not is_clear(start, start, start_radius, obstacles, clearance):
        return None
    shapes = [Shape(start, start, radius, 0.0, 0.0)] if marked[0] else []
    vertices, heading = [start], float(generator.uniform(0.0, 2 * math.pi))
    for k in range(paddles):
        tail = vertices[-1]
        own = _far_along(shapes, k * step, half, settings)
        for _ in range(TURN_TRIES):
            turned = heading + float(generator.uniform(-settings.max_turn, settings.max_turn))
            end = (tail[0] + step * math.sin(turned), tail[1] + step * math.cos(turned))
            if (
                is_inside(end, half, settings.canvas)
                and is_clear(tail, end, half, obstacles, clearance)
                and is_clear(tail, end, half, own, clearance)
            ):
                break
        else:
            return None
        shapes.append(Shape(tail, end, half, k * step, (k + 1) * step))
        vertices.append(end)
        heading = turned
    if marked[1]:
        tip = vertices[-1]
        own = _far_along(shapes, paddles * step, radius, settings)
        if not (
            is_inside(tip, radius, settings.canvas)
            and is_clear(tip, tip, radius, obstacles, clearance)
            and is_clear(tip, tip, radius, own, clearance)
        ):
            return None
        shapes.append(Shape(tip, tip, radius, paddles * step, paddles * step))
    return vertices, shapes


def layout_image(
    label: int, settings: PathfinderSettings, generator: np.random.Generator, max_attempts: int = IMAGE_ATTEMPTS
) -> PathfinderRecord:
    """Place the curves and markers of one image of ``label`` (1: markers on one curve, 0: on two curves).

    Raises ConfigError when ``max_attempts`` image attempts (each with ``CURVE_ATTEMPTS`` tries per curve) fail.
    """
    if label not in (0, 1):
        raise ConfigError(f"pathfinder: label must be 0 or 1, got {label!r}")
    if label == 1:
        marks = [(True, True), (False, False)]
    else:
        at_start = generator.random(2) < 0.5
        marks = [(bool(at_start[0]), not at_start[0]), (bool(at_start[1]), not at_start[1])]
    specs = [(settings.length, marks[0]), (settings.length, marks[1])]
    specs += [(distractor_length(settings.length), (False, False))] * settings.num_distractors
    for _ in range(max_attempts):
        obstacles: list[Shape] = []
        curves: list[np.ndarray] = []
        for paddles, marked in specs:
            for _ in range(CURVE_ATTEMPTS):
                grown = grow_curve(paddles, marked, obstacles, settings, generator)
                if grown is not None:
                    break
            else:
                break
            curves.append(np.array(grown[0]))
            obstacles.extend(grown[1])
        else:
            if label == 1:
                markers, on = np.array([curves[0][0], curves[0][-1]]), (0, 0)
            else:
                markers = np.array([curves[k][0] if marks[k][0] else curves[k][-1] for k in (0, 1)])
                on = (0, 1)
            return PathfinderRecord(label=label, curves=tuple(curves), markers=markers, marker_curves=on)
    raise ConfigError(
        f"pathfinder: could not place 2 curves of {settings.length} paddles and {settings.num_distractors} "
        f"distractors on a {settings.canvas}×{settings.canvas} canvas (clearance {settings.clearance:g} px) in "
        f"{max_attempts} attempts; use a larger canvas, shorter paddles, fewer distractors or a smaller clearance"
    )


def primitives(record: PathfinderRecord, settings: PathfinderSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The inked shapes of ``record``: segment starts ``(S, 2)``, ends ``(S, 2)`` and radii ``(S,)`` (the paddles
    with half the thickness, then the markers as zero-length segments with the marker radius)."""
    starts = [curve[:-1] for curve in record.curves] + [record.markers]
    ends = [curve[1:] for curve in record.curves] + [record.markers]
    radii = np.full(sum(len(curve) - 1 for curve in record.curves) + len(record.markers), settings.thickness / 2)
    radii[len(radii) - len(record.markers) :] = settings.marker_radius
    return np.concatenate(starts), np.concatenate(ends), radii


def rasterise(starts: np.ndarray, ends: np.ndarray, radii: np.ndarray, canvas: int) -> np.ndarray:
    """``(canvas, canvas)`` bool: True where the pixel centre ``(row, column)`` lies within ``radii[i]`` of segment
    ``[starts[i], ends[i]]`` for some ``i``; every segment is evaluated on its own square window (vectorised)."""
    ink = np.zeros((canvas, canvas), dtype=bool)
    if len(radii) == 0:
        return ink
    extent = np.abs(ends - starts).max() + 2 * radii.max()
    offsets = np.arange(math.ceil(extent) + 2)
    corner = np.floor(np.minimum(starts, ends) - radii[:, None]).astype(np.int64)
    rows = np.broadcast_to(corner[:, 0, None, None] + offsets[None, :, None], (len(radii), len(offsets), len(offsets)))
    cols = np.broadcast_to(corner[:, 1, None, None] + offsets[None, None, :], rows.shape)
    distance = point_segment_distances(
        np.stack([rows, cols], axis=-1).astype(float), starts[:, None, None, :], ends[:, None, None, :]
    )
    hit = (distance <= radii[:, None, None] + 1e-9) & (rows >= 0) & (rows < canvas) & (cols >= 0) & (cols < canvas)
    ink[rows[hit], cols[hit]] = True
    return ink


def render(record: PathfinderRecord, settings: PathfinderSettings) -> np.ndarray:
    """``(canvas, canvas)`` uint8 image of ``record``: 255 on the paddles and markers, 0 elsewhere."""
    return rasterise(*primitives(record, settings), settings.canvas).astype(np.uint8) * 255


def balanced_labels(count: int, generator: np.random.Generator) -> np.ndarray:
    """``(count,)`` int64 labels, ``count // 2`` ones (exactly half for even counts), in random order."""
    return generator.permutation(np.arange(count) % 2).astype(np.int64)


def generate_records(
    count: int,
    length: int,
    settings: PathfinderSettings,
    generator: np.random.Generator,
    max_attempts: int = IMAGE_ATTEMPTS,
) -> tuple[np.ndarray, np.ndarray, list[PathfinderRecord]]:
    """Like :func:`generate`, also returning each image's :class:`PathfinderRecord` (curves and markers)."""
    if not isinstance(count, (int, np.integer)) or count < 0:
        raise ConfigError(f"pathfinder: count must be an integer ≥ 0, got {count!r}")
    if length != settings.length:
        raise ConfigError(
            f"pathfinder: length {length!r} differs from settings.length {settings.length} "
            f"(build the settings with default_settings(canvas, {length!r}))"
        )
    labels = balanced_labels(count, generator)
    records = [layout_image(int(label), settings, generator, max_attempts) for label in labels]
    images = np.zeros((count, settings.canvas, settings.canvas), dtype=np.uint8)
    for index, record in enumerate(records):
        images[index] = render(record, settings)
    return images, labels, records


def generate(
    count: int, length: int, settings: PathfinderSettings, generator: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` Pathfinder images of path ``length`` (paddles): uint8 ``(count, canvas, canvas)`` and int64 labels.

    Labels are balanced by construction (``count // 2`` ones, shuffled); the output depends only on the arguments
    and the generator's state. ``length`` must equal ``settings.length``.
    """
    images, labels, _ = generate_records(count, length, settings, generator)
    return images, labels
