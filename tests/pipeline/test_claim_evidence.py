"""The evidence rules every claim uses (rankrepro.pipeline.claims): one gate per experiment, paired confidence
intervals and the verdicts drawn from them."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rankrepro.pipeline.claims import (
    DATA_UNAVAILABLE,
    FAILED,
    NOT_SHOWN,
    PASSED,
    ClaimResult,
    Gate,
    apply_gate,
    paired_interval,
    verdict_equivalent,
    verdict_greater,
    verdict_not_worse,
)


def claim(verdict: str) -> ClaimResult:
    return ClaimResult("c", "e", "1.1", "a statement", verdict, 1.0, "ref", "some details")


def test_a_gate_that_holds_keeps_every_verdict_and_says_so():
    gate = Gate("every run converged", True, "8/8 runs")
    results = apply_gate(gate, [claim(PASSED), claim(FAILED), claim(DATA_UNAVAILABLE)])
    assert [r.verdict for r in results] == [PASSED, FAILED, DATA_UNAVAILABLE]
    assert all("gate: every run converged — met (8/8 runs)" in r.details for r in results)
    assert results[0].details.startswith("some details")


def test_a_gate_that_fails_withholds_passes_and_failures_alike():
    gate = Gate("every net fits its training set", False, "train accuracy 0.62")
    results = apply_gate(gate, [claim(PASSED), claim(FAILED), claim(DATA_UNAVAILABLE), claim(NOT_SHOWN)])
    assert [r.verdict for r in results] == [NOT_SHOWN, NOT_SHOWN, DATA_UNAVAILABLE, NOT_SHOWN]
    assert "NOT met (train accuracy 0.62)" in results[0].details


def test_paired_interval_known_values():
    # d = (1, 2, 3): mean 2, s = 1, t_{0.975, 2} = 4.302652729911275
    interval = paired_interval([2, 4, 6], [1, 2, 3])
    half = 4.302652729911275 / math.sqrt(3)
    assert interval.mean == pytest.approx(2.0)
    assert (interval.low, interval.high) == pytest.approx((2 - half, 2 + half))
    assert interval.n == 3 and interval.level == 0.95
    assert interval.text() == "mean 2, 95% CI [-0.484, 4.48] over 3 pairs"


def test_pairing_removes_the_shared_seed_variance():
    rng = np.random.default_rng(0)
    seed_effect = rng.normal(0, 10, 20)  # large, shared by both arms
    a, b = seed_effect + 1.0 + rng.normal(0, 0.1, 20), seed_effect + rng.normal(0, 0.1, 20)
    interval = paired_interval(a, b)
    assert verdict_greater(interval) == PASSED and interval.high - interval.low < 0.2
    assert verdict_greater(paired_interval(b, a)) == FAILED


def test_an_interval_reaching_zero_does_not_show_a_difference():
    interval = paired_interval([1.0, 2.0, 0.5], [0.9, 2.2, 0.3])  # means differ by 0.033, noise ±0.2
    assert interval.low < 0 < interval.high
    assert verdict_greater(interval) == FAILED


def test_equivalence_needs_the_whole_interval_inside_the_margin():
    close = paired_interval([1.0, 1.01, 0.99, 1.0], [1.0, 1.0, 1.0, 1.01])
    assert verdict_equivalent(close, 0.05) == PASSED
    noisy = paired_interval([1.0, 2.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0])  # mean 0, but wide
    assert verdict_equivalent(noisy, 0.05) == FAILED


@pytest.mark.parametrize(("a", "b"), [([1.0], [2.0]), ([1.0, 2.0], [1.0])])
def test_paired_interval_refuses_too_few_or_unpaired_values(a, b):
    with pytest.raises(ValueError, match="paired interval needs"):
        paired_interval(a, b)


@given(
    st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=12).flatmap(
        lambda a: st.tuples(st.just(a), st.lists(st.floats(-1e3, 1e3), min_size=len(a), max_size=len(a)))
    )
)
def test_interval_contains_its_mean_and_is_antisymmetric(pair):
    a, b = pair
    forward, backward = paired_interval(a, b), paired_interval(b, a)
    assert forward.low <= forward.mean + 1e-9 and forward.mean <= forward.high + 1e-9
    assert backward.mean == pytest.approx(-forward.mean, abs=1e-6)
    assert backward.low == pytest.approx(-forward.high, abs=1e-6)


def test_non_inferiority_needs_the_interval_above_minus_the_margin():
    slightly_worse = paired_interval([0.99, 0.98, 0.99, 0.985], [1.0, 1.0, 1.0, 1.0])
    assert verdict_not_worse(slightly_worse, 0.05) == PASSED
    assert verdict_not_worse(slightly_worse, 0.001) == FAILED
