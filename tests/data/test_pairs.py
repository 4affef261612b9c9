"""Is-Same-Class pairs (chapter 3's CNN canvases and chapter 4's graphs draw them alike): labels, seeding, balance."""

from __future__ import annotations

import numpy as np

from rankrepro.data.pairs import sample_pairs


def test_pairs_label_whether_both_images_show_the_same_class():
    labels = np.repeat(np.arange(4), 5)
    pairs = sample_pairs(labels, 200, np.random.default_rng(3))
    assert np.array_equal(pairs[:, 2], labels[pairs[:, 0]] == labels[pairs[:, 1]])


def test_pairs_are_seeded_and_balanced():
    labels = np.repeat(np.arange(10), 20)
    pairs = sample_pairs(labels, 2000, np.random.default_rng(0))
    assert np.array_equal(pairs, sample_pairs(labels, 2000, np.random.default_rng(0)))
    same = pairs[:, 2] == 1
    assert abs(same.mean() - 0.5) < 0.05
    assert np.all(labels[pairs[same, 0]] == labels[pairs[same, 1]])
    assert np.all(labels[pairs[~same, 0]] != labels[pairs[~same, 1]])
