"""Pathfinder generator (chapter 3 §3.2): shapes, determinism, balance, geometry and the label read from the pixels.

The connectivity tests are exact, not statistical: thickness ≥ √2 makes every curve one 4-connected set of ink
pixels, and clearance > √2 keeps ink of different curves more than √2 apart (never 8-adjacent), so on every image
the 8-connected components are exactly the curves (see the module docstring of ``rankrepro.cnn.pathfinder``).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import ndimage

from rankrepro.cnn import pathfinder as pf
from rankrepro.core.errors import ConfigError

FOUR = ndimage.generate_binary_structure(2, 1)
EIGHT = ndimage.generate_binary_structure(2, 2)
CASES = [(32, 3), (32, 9), (64, 3), (64, 5), (64, 7), (64, 9), (150, 9)]


@pytest.fixture(scope="module")
def batches() -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray, list[pf.PathfinderRecord]]]:
    """40 images (with records) per (canvas, length) case."""
    return {
        (canvas, length): pf.generate_records(
            40, length, pf.default_settings(canvas, length), np.random.default_rng(canvas * 100 + length)
        )
        for canvas, length in CASES
    }


def dense_points(curve: np.ndarray, per_paddle: int = 40) -> np.ndarray:
    """Points sampled densely along a polyline (for brute-force distances independent of the module's formulas)."""
    t = np.linspace(0.0, 1.0, per_paddle)[:, None]
    return np.concatenate([a + t * (b - a) for a, b in zip(curve[:-1], curve[1:])])


def test_default_settings_scale_with_the_canvas():
    small, large = pf.default_settings(64, 9), pf.default_settings(300, 9)
    assert small.paddle_length / large.paddle_length == pytest.approx(64 / 300)
    assert large.thickness / pf.default_settings(150, 9).thickness == pytest.approx(2.0)
    assert small.thickness >= pf.MIN_THICKNESS and small.clearance >= pf.MIN_CLEARANCE
    assert [pf.distractor_length(n) for n in (3, 5, 7, 9)] == [1, 2, 2, 3]


@pytest.mark.parametrize("canvas, length", CASES)
def test_shapes_dtype_values_and_balance(batches, canvas, length):
    images, labels, records = batches[canvas, length]
    assert images.shape == (40, canvas, canvas) and images.dtype == np.uint8
    assert labels.shape == (40,) and labels.dtype == np.int64
    assert set(np.unique(images)) <= {0, 255}
    assert labels.sum() == 20 and set(labels.tolist()) == {0, 1}
    assert [r.label for r in records] == labels.tolist()


def test_odd_count_is_balanced_up_to_one_and_empty_count_works():
    settings = pf.default_settings(64, 5)
    _, labels = pf.generate(7, 5, settings, np.random.default_rng(1))
    assert labels.sum() == 3
    images, labels = pf.generate(0, 5, settings, np.random.default_rng(1))
    assert images.shape == (0, 64, 64) and labels.shape == (0,)


def test_deterministic_for_a_seed():
    settings = pf.default_settings(64, 7)
    first = pf.generate(12, 7, settings, np.random.default_rng(5))
    second = pf.generate(12, 7, settings, np.random.default_rng(5))
    other = pf.generate(12, 7, settings, np.random.default_rng(6))
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert not np.array_equal(first[0], other[0])


def test_render_matches_the_records(batches):
    images, _, records = batches[64, 9]
    settings = pf.default_settings(64, 9)
    for image, record in zip(images, records):
        assert np.array_equal(image, pf.render(record, settings))


@pytest.mark.parametrize("canvas, length", CASES)
def test_markers_are_drawn_on_curve_ends(batches, canvas, length):
    images, _, records = batches[canvas, length]
    for image, record in zip(images, records):
        for centre, curve in zip(record.markers, record.marker_curves):
            ends = record.curves[curve][[0, -1]]
            assert np.min(np.abs(ends - centre).sum(axis=1)) == 0.0
            row, col = np.rint(centre).astype(int)
            assert image[row, col] == 255
        if record.label == 1:
            assert record.marker_curves == (0, 0) and not np.array_equal(record.markers[0], record.markers[1])
        else:
            assert record.marker_curves == (0, 1)


@pytest.mark.parametrize("canvas, length", CASES)
def test_label_is_connectivity_of_the_markers(batches, canvas, length):
    """Label 1: markers in one 4-connected component; label 0: in different 8-connected components (every image)."""
    images, labels, records = batches[canvas, length]
    for image, label, record in zip(images, labels, records):
        (r0, c0), (r1, c1) = np.rint(record.markers).astype(int)
        four = ndimage.label(image > 0, FOUR)[0]
        eight = ndimage.label(image > 0, EIGHT)[0]
        if label == 1:
            assert four[r0, c0] == four[r1, c1] != 0
        else:
            assert eight[r0, c0] != eight[r1, c1] and eight[r0, c0] != 0 and eight[r1, c1] != 0


@pytest.mark.parametrize("canvas, length", CASES)
def test_components_are_exactly_the_curves_and_distractor_count(batches, canvas, length):
    settings = pf.default_settings(canvas, length)
    images, _, records = batches[canvas, length]
    for image, record in zip(images, records):
        assert len(record.curves) == 2 + settings.num_distractors
        paddles = [len(curve) - 1 for curve in record.curves]
        assert paddles == [length, length] + [pf.distractor_length(length)] * settings.num_distractors
        assert ndimage.label(image > 0, FOUR)[1] == len(record.curves)
        assert ndimage.label(image > 0, EIGHT)[1] == len(record.curves)


@pytest.mark.parametrize("paddle_length, max_turn", [(1.0, math.pi / 2), (3.0, math.pi / 6), (7.3, 0.0)])
def test_components_exact_at_the_thinnest_allowed_settings(paddle_length, max_turn):
    """The exactness argument at its limits: thickness √2, marker radius √2/2, clearance 1.5, odd paddle lengths."""
    settings = dataclasses.replace(
        pf.default_settings(64, 7),
        paddle_length=paddle_length,
        max_turn=max_turn,
        thickness=pf.MIN_THICKNESS,
        marker_radius=pf.MIN_THICKNESS / 2,
        clearance=pf.MIN_CLEARANCE,
    )
    images, labels, records = pf.generate_records(40, 7, settings, np.random.default_rng(11))
    for image, label, record in zip(images, labels, records):
        four, count4 = ndimage.label(image > 0, FOUR)
        eight, count8 = ndimage.label(image > 0, EIGHT)
        assert count4 == count8 == len(record.curves)
        (r0, c0), (r1, c1) = np.rint(record.markers).astype(int)
        assert (four[r0, c0] == four[r1, c1]) == (label == 1) and four[r0, c0] and four[r1, c1]


@pytest.mark.parametrize("canvas, length", [(32, 9), (64, 9), (150, 9)])
def test_curve_geometry(batches, canvas, length):
    """Paddle length, turning angles, inside the canvas with an empty border, and the clearance between curves."""
    settings = pf.default_settings(canvas, length)
    images, _, records = batches[canvas, length]
    half = settings.thickness / 2
    for image, record in zip(images, records):
        assert not image[[0, -1], :].any() and not image[:, [0, -1]].any()
        for curve in record.curves:
            steps = np.diff(curve, axis=0)
            assert np.allclose(np.hypot(steps[:, 0], steps[:, 1]), settings.paddle_length)
            headings = np.arctan2(steps[:, 0], steps[:, 1])
            turns = np.angle(np.exp(1j * np.diff(headings)))
            assert np.all(np.abs(turns) <= settings.max_turn + 1e-9)
            assert curve.min() >= pf.BORDER + half - 1e-9 and curve.max() <= canvas - 1 - pf.BORDER - half + 1e-9
        for centre in record.markers:
            radius = settings.marker_radius
            assert centre.min() >= pf.BORDER + radius - 1e-9 and centre.max() <= canvas - 1 - pf.BORDER - radius + 1e-9
        points = [dense_points(curve) for curve in record.curves]
        for i in range(len(points)):
            for j in range(i + 1, len(points)):
                gap = np.min(np.hypot(*(points[i][:, None, :] - points[j][None, :, :]).transpose(2, 0, 1)))
                assert gap >= 2 * half + settings.clearance - 1e-6
        marker_gap = np.hypot(*(record.markers[0] - record.markers[1]))
        assert marker_gap >= 2 * settings.marker_radius + settings.clearance - 1e-9


def test_segment_distance_against_sampling():
    rng = np.random.default_rng(0)
    for _ in range(200):
        a, b, c, d = rng.uniform(0, 10, size=(4, 2))
        if rng.random() < 0.2:
            d = c  # a point
        exact = pf.segment_distance(tuple(a), tuple(b), tuple(c), tuple(d))
        sampled = np.min(
            np.hypot(
                *(
                    dense_points(np.array([a, b]), 400)[:, None, :] - dense_points(np.array([c, d]), 400)[None, :, :]
                ).transpose(2, 0, 1)
            )
        )
        assert exact <= sampled + 1e-9 and sampled - exact < 0.05


@pytest.mark.parametrize(
    "field, value",
    [
        ("canvas", 4),
        ("canvas", 64.0),
        ("length", 1),
        ("paddle_length", 0.5),
        ("thickness", 1.0),
        ("marker_radius", 0.5),
        ("num_distractors", -1),
        ("max_turn", -0.1),
        ("max_turn", math.pi),
        ("clearance", 1.0),
        ("paddle_length", float("nan")),
    ],
)
def test_bad_settings_raise(field, value):
    with pytest.raises(ConfigError, match=field):
        dataclasses.replace(pf.default_settings(64, 5), **{field: value})


def test_bad_arguments_raise():
    settings = pf.default_settings(64, 5)
    with pytest.raises(ConfigError, match="length"):
        pf.generate(4, 7, settings, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="count"):
        pf.generate(-1, 5, settings, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="label"):
        pf.layout_image(2, settings, np.random.default_rng(0))


def test_overcrowded_settings_raise_instead_of_looping():
    crowded = dataclasses.replace(pf.default_settings(32, 9), num_distractors=60)
    with pytest.raises(ConfigError, match="could not place"):
        pf.generate_records(2, 9, crowded, np.random.default_rng(0), max_attempts=2)
    impossible = dataclasses.replace(pf.default_settings(32, 9), canvas=16, paddle_length=20.0)
    with pytest.raises(ConfigError, match="could not place"):
        pf.layout_image(1, impossible, np.random.default_rng(0), max_attempts=3)
