"""GroupRMSprop and gradient descent against hand-computed steps; batching and freezing semantics."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rankrepro.core.optim import Adam, GradientDescent, GroupRMSprop, make_optimizer, squared_gradient_norm

BETA, EPS = 0.99, 1e-6


def _hand_group_rmsprop(params: list[list[float]], grads_seq: list[list[list[float]]], lr: float) -> list[list[float]]:
    """Reference in plain Python floats: one scalar s over all parameters of the run, bias-corrected step."""
    params = [list(p) for p in params]
    s = 0.0
    for t, grads in enumerate(grads_seq, start=1):
        sq = sum(g * g for grad in grads for g in grad)
        s = BETA * s + (1 - BETA) * sq
        eta = lr / (math.sqrt(s / (1 - BETA**t)) + EPS)
        params = [[p - eta * g for p, g in zip(param, grad)] for param, grad in zip(params, grads)]
    return params


def test_group_rmsprop_first_step_is_normalised_gradient_step():
    """After one step s/(1−β) = ‖g‖², so η_1 = lr / (‖g‖ + ε): a step of length ≈ lr."""
    params = [torch.tensor([[1.0, -1.0]]), torch.tensor([[0.5]])]
    grads = [torch.tensor([[1.0, 2.0]]), torch.tensor([[2.0]])]  # ‖g‖ = 3
    opt = GroupRMSprop(torch.tensor([0.3]))
    state = opt.init_state(params)
    opt.step(params, grads, state, torch.tensor([True]))
    eta = 0.3 / (3.0 + 1e-6)
    torch.testing.assert_close(params[0], torch.tensor([[1.0 - eta, -1.0 - 2 * eta]]), rtol=1e-15, atol=0)
    torch.testing.assert_close(params[1], torch.tensor([[0.5 - 2 * eta]]), rtol=1e-15, atol=0)
    assert state["second_moment"].item() == pytest.approx(0.01 * 9.0, rel=1e-15)
    assert state["step_count"].tolist() == [1]


def test_group_rmsprop_three_steps_match_hand_computation():
    lr = 0.05
    start = [[1.0, -1.0], [0.5]]
    grads_seq = [[[1.0, 2.0], [2.0]], [[0.0, 3.0], [4.0]], [[-0.5, 0.25], [1e-3]]]
    # the second step by hand: s_2 = 0.99·0.09 + 0.01·25 = 0.3391, s_2/(1 − 0.99²) = 0.3391/0.0199
    eta2 = lr / (math.sqrt(0.3391 / 0.0199) + EPS)
    assert eta2 == pytest.approx(lr / 4.127978, rel=1e-6)
    expected = _hand_group_rmsprop(start, grads_seq, lr)
    params = [torch.tensor([start[0]]), torch.tensor([start[1]])]
    opt = GroupRMSprop(torch.tensor([lr]))
    state = opt.init_state(params)
    for grads in grads_seq:
        opt.step(params, [torch.tensor([g]) for g in grads], state, torch.tensor([True]))
    torch.testing.assert_close(params[0], torch.tensor([expected[0]]), rtol=1e-14, atol=1e-16)
    torch.testing.assert_close(params[1], torch.tensor([expected[1]]), rtol=1e-14, atol=1e-16)
    assert state["step_count"].tolist() == [3]
    s3 = 0.99 * 0.3391 + 0.01 * (0.25 + 0.0625 + 1e-6)
    assert state["second_moment"].item() == pytest.approx(s3, rel=1e-14)


def test_group_rmsprop_state_is_one_scalar_per_run_not_per_parameter():
    params = [torch.zeros(3, 2, 2), torch.zeros(3, 4)]
    state = GroupRMSprop(torch.full((3,), 0.1)).init_state(params)
    assert state["second_moment"].shape == (3,)
    assert state["step_count"].shape == (3,)
    # per-parameter RMSprop would move every coordinate by ≈ lr; GroupRMSprop keeps the gradient's direction
    grads = [torch.ones(3, 2, 2), torch.zeros(3, 4)]
    grads[1][:, 0] = 10.0
    GroupRMSprop(torch.full((3,), 0.1)).step(params, grads, state, torch.ones(3, dtype=torch.bool))
    ratio = params[1][:, 0] / params[0][:, 0, 0]
    torch.testing.assert_close(ratio, torch.full((3,), 10.0), rtol=1e-14, atol=0)


@given(
    st.lists(st.floats(-5, 5, allow_nan=False, allow_subnormal=False), min_size=18, max_size=18),
    st.lists(st.floats(1e-4, 1.0), min_size=3, max_size=3),
)
def test_batched_runs_are_independent(values, lrs):
    """Three runs stepped together equal each run stepped alone, bit for bit."""
    g = torch.tensor(values).reshape(3, 3, 2)  # 3 steps × 3 runs × 2 coordinates
    lr = torch.tensor(lrs)
    batched = [torch.ones(3, 1, 2), torch.ones(3, 1)]
    opt = GroupRMSprop(lr)
    state = opt.init_state(batched)
    for step in range(3):
        opt.step(batched, [g[step][:, None, :], g[step][:, :1] * 0.5], state, torch.ones(3, dtype=torch.bool))
    for b in range(3):
        single = [torch.ones(1, 1, 2), torch.ones(1, 1)]
        opt1 = GroupRMSprop(lr[b : b + 1])
        state1 = opt1.init_state(single)
        for step in range(3):
            opt1.step(
                single,
                [g[step][b : b + 1, None, :], g[step][b : b + 1, :1] * 0.5],
                state1,
                torch.ones(1, dtype=torch.bool),
            )
        assert torch.equal(single[0][0], batched[0][b])
        assert torch.equal(single[1][0], batched[1][b])
        assert torch.equal(state1["second_moment"][0], state["second_moment"][b])


def test_frozen_runs_do_not_advance_state_or_parameters():
    lr = torch.tensor([0.1, 0.1])
    params = [torch.tensor([[1.0, 2.0], [1.0, 2.0]])]
    opt = GroupRMSprop(lr)
    state = opt.init_state(params)
    grads_seq = [
        torch.tensor([[1.0, 1.0], [1.0, 1.0]]),
        torch.tensor([[3.0, -1.0], [7.0, 7.0]]),
        torch.tensor([[0.5, 2.0], [0.5, 2.0]]),
    ]
    opt.step(params, [grads_seq[0]], state, torch.tensor([True, True]))
    before = params[0][1].clone(), state["second_moment"][1].clone()
    opt.step(params, [grads_seq[1]], state, torch.tensor([True, False]))  # run 1 frozen: its gradient is ignored
    assert torch.equal(params[0][1], before[0])
    assert torch.equal(state["second_moment"][1], before[1])
    assert state["step_count"].tolist() == [2, 1]
    opt.step(params, [grads_seq[2]], state, torch.tensor([True, True]))
    assert state["step_count"].tolist() == [3, 2]
    # run 1 is exactly a run that saw only steps 1 and 3 (bias correction with t = 2, not 3)
    expected1 = _hand_group_rmsprop([[1.0, 2.0]], [[[1.0, 1.0]], [[0.5, 2.0]]], 0.1)
    expected0 = _hand_group_rmsprop([[1.0, 2.0]], [[[1.0, 1.0]], [[3.0, -1.0]], [[0.5, 2.0]]], 0.1)
    torch.testing.assert_close(params[0][1], torch.tensor(expected1[0]), rtol=1e-14, atol=0)
    torch.testing.assert_close(params[0][0], torch.tensor(expected0[0]), rtol=1e-14, atol=0)


def test_group_rmsprop_never_started_run_gets_zero_step():
    params = [torch.ones(2, 3)]
    opt = GroupRMSprop(torch.tensor([0.1, 0.1]))
    state = opt.init_state(params)
    eta = opt.step_sizes([torch.ones(2, 3)], state, torch.tensor([False, True]))
    assert eta[0].item() == 0.0
    assert torch.isfinite(eta).all()
    assert state["step_count"].tolist() == [0, 1]
    assert state["second_moment"][0].item() == 0.0


def test_gradient_descent_step_and_frozen_runs():
    params = [torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]), torch.tensor([[[1.0]], [[1.0]], [[1.0]]])]
    grads = [torch.tensor([[1.0, -1.0], [2.0, 2.0], [9.0, 9.0]]), torch.tensor([[[4.0]], [[4.0]], [[4.0]]])]
    opt = GradientDescent(torch.tensor([0.5, 0.25, 0.5]))
    assert opt.init_state(params) == {}
    opt.step(params, grads, {}, torch.tensor([True, True, False]))
    assert torch.equal(params[0], torch.tensor([[0.5, 2.5], [2.5, 3.5], [5.0, 6.0]]))
    assert torch.equal(params[1].flatten(), torch.tensor([-1.0, 0.0, 1.0]))


def test_squared_gradient_norm_sums_over_all_parameters():
    grads = [torch.tensor([[1.0, 2.0], [0.0, 1.0]]), torch.tensor([[[2.0]], [[3.0]]])]
    assert squared_gradient_norm(grads).tolist() == [9.0, 10.0]


def test_make_optimizer():
    lr = torch.tensor([0.1])
    assert isinstance(make_optimizer("gd", lr), GradientDescent)
    opt = make_optimizer("group_rmsprop", lr)
    assert isinstance(opt, GroupRMSprop) and opt.beta == BETA and opt.eps == EPS
    adam = make_optimizer("adam", lr)
    assert isinstance(adam, Adam) and (adam.beta1, adam.beta2, adam.eps) == (0.9, 0.999, 1e-8)
    with pytest.raises(ValueError, match="adam"):
        make_optimizer("sgd", lr)
