"""rankrepro.core.losses: exact values of ℓ2, ℓ1 and Huber, agreement with torch's losses, derivatives against
autograd, and bad names/thresholds."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rankrepro.core import losses
from rankrepro.core.errors import ConfigError

R = torch.tensor([-3.0, -1.0, -0.5, 0.0, 0.25, 2.0], dtype=torch.float64)


def test_exact_entry_values():
    assert losses.entry_loss(R, "l2").tolist() == [9.0, 1.0, 0.25, 0.0, 0.0625, 4.0]
    assert losses.entry_loss(R, "l1").tolist() == [3.0, 1.0, 0.5, 0.0, 0.25, 2.0]
    # δ = 1: r²/2 inside, |r| − 1/2 outside (|r| = δ is on the linear side and both pieces agree there)
    assert losses.entry_loss(R, "huber").tolist() == [2.5, 0.5, 0.125, 0.0, 0.03125, 1.5]
    # δ = 2: r²/4 inside, |r| − 1 outside
    assert losses.entry_loss(R, "huber", 2.0).tolist() == [2.0, 0.25, 0.0625, 0.0, 0.015625, 1.0]


@pytest.mark.parametrize("delta", [0.3, 1.0, 2.5])
def test_mean_loss_matches_torch(delta):
    generator = torch.Generator().manual_seed(0)
    prediction = torch.randn(3, 7, generator=generator, dtype=torch.float64) * 2
    target = torch.randn(7, generator=generator, dtype=torch.float64)
    expanded = target.expand_as(prediction)
    expected = {
        "l2": torch.nn.functional.mse_loss(prediction, expanded, reduction="none").mean(-1),
        "l1": torch.nn.functional.l1_loss(prediction, expanded, reduction="none").mean(-1),
        "huber": torch.nn.functional.smooth_l1_loss(prediction, expanded, reduction="none", beta=delta).mean(-1),
    }
    for name, value in expected.items():
        torch.testing.assert_close(losses.mean_loss(prediction, target, name, delta), value)
    assert losses.mean_loss(prediction, target, "l2").shape == (3,)


@settings(max_examples=50, deadline=None)
@given(
    values=st.lists(st.floats(-5, 5).filter(lambda x: abs(x) > 1e-3), min_size=1, max_size=8),
    delta=st.floats(0.1, 3.0),
)
def test_derivative_matches_autograd(values, delta):
    residual = torch.tensor(values, dtype=torch.float64)
    for name in losses.LOSS_NAMES:
        leaf = residual.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(losses.entry_loss(leaf, name, delta).sum(), leaf)
        torch.testing.assert_close(losses.entry_loss_derivative(residual, name, delta), grad)


def test_l1_derivative_is_zero_at_zero():
    assert losses.entry_loss_derivative(torch.zeros(2), "l1").tolist() == [0.0, 0.0]


@pytest.mark.parametrize(("name", "delta", "match"), [("l3", 1.0, "unknown loss"), ("huber", 0.0, "positive")])
def test_bad_loss_is_a_config_error(name, delta, match):
    with pytest.raises(ConfigError, match=match):
        losses.entry_loss(R, name, delta)
