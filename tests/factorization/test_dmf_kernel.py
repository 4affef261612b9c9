"""The compiled DMF kernel: gradient (finite differences, the torch engine), trajectories equal to the torch
engine, the stop rule, divergence, threads, bit-identical kill-and-resume, and input validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rankrepro.core.checkpoint import load_checkpoint
from rankrepro.core.errors import ConfigError
from rankrepro.core.optim import GradientDescent
from rankrepro.core.trainer import CONVERGED, DIVERGED, MAX_ITERS, StopRule, TrainResult, TrainSettings, train
from rankrepro.factorization.dmf import MatrixCompletionDMF, init_factors
from rankrepro.factorization.dmf_kernel import FactorLayout, compile_dmf, flatten_factors, train_dmf, unflatten_factors

# (m, n), hidden widths: the factors are d_(j+1) × d_j with d = (n, *hidden, m)
LAYOUTS = [((2, 2), (2,)), ((2, 2), (2, 2)), ((5, 10), (5, 5)), ((10, 5), (5,)), ((3, 4), (6, 2, 7)), ((1, 1), ())]


def _factors(shape, hidden, scale, generator) -> list[torch.Tensor]:
    dims = [shape[1], *hidden, shape[0]]
    return [
        scale * torch.randn(dims[i + 1], dims[i], generator=generator, dtype=torch.float64)
        for i in range(len(dims) - 1)
    ]


def _problem(shape, generator) -> tuple[torch.Tensor, torch.Tensor]:
    target = torch.randn(*shape, generator=generator, dtype=torch.float64)
    mask = (torch.rand(*shape, generator=generator) < 0.7).to(torch.float64)
    return target, mask


def _kernel_loss_and_grad(factors, target, mask) -> tuple[float, list[np.ndarray]]:
    flat, layout = flatten_factors(factors)
    widest = int(layout.dims.max()) * int(layout.dims[0])
    grad = np.empty_like(flat)
    kernels = compile_dmf(tuple(int(d) for d in layout.dims))
    loss = kernels.loss_and_gradient(
        flat,
        target.numpy().ravel().copy(),
        mask.numpy().ravel().copy(),
        np.empty(layout.prefix_offsets[-1]),
        np.empty(widest),
        np.empty(widest),
        grad,
    )
    return loss, unflatten_factors(grad, layout)


@pytest.mark.parametrize("shape, hidden", LAYOUTS)
def test_gradient_matches_central_finite_differences(shape, hidden, generator):
    target, mask = _problem(shape, generator)
    factors = _factors(shape, hidden, 0.8, generator)
    _, grads = _kernel_loss_and_grad(factors, target, mask)
    h = 1e-6
    for j, factor in enumerate(factors):
        numeric = np.zeros(tuple(factor.shape))
        for idx in np.ndindex(*factor.shape):
            saved = factor[idx].item()
            factor[idx] = saved + h
            plus = _kernel_loss_and_grad(factors, target, mask)[0]
            factor[idx] = saved - h
            minus = _kernel_loss_and_grad(factors, target, mask)[0]
            factor[idx] = saved
            numeric[idx] = (plus - minus) / (2 * h)
        np.testing.assert_allclose(grads[j], numeric, rtol=1e-6, atol=1e-8, err_msg=f"factor {j}")


@pytest.mark.parametrize("shape, hidden", LAYOUTS)
def test_loss_and_gradient_equal_the_torch_engine(shape, hidden, generator):
    target, mask = _problem(shape, generator)
    factors = _factors(shape, hidden, 0.8, generator)
    loss, grads = _kernel_loss_and_grad(factors, target, mask)
    engine = MatrixCompletionDMF(target[None], mask[None], torch.ones(1, len(factors)))
    ref_loss, ref_grads = engine.loss_and_grads([f[None] for f in factors])
    assert loss == pytest.approx(ref_loss.item(), rel=1e-14)
    for g, r in zip(grads, ref_grads):
        np.testing.assert_allclose(g, r[0].numpy(), rtol=1e-12, atol=1e-14)


def test_loss_is_half_sum_of_squares_on_observed_entries():
    target = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    w = torch.tensor([[100.0, 3.0], [1.0, 2.0]], dtype=torch.float64)  # residuals 2, 0, 2 on Ω
    loss, grads = _kernel_loss_and_grad([w, torch.eye(2, dtype=torch.float64)], target, mask)
    assert loss == 4.0
    np.testing.assert_array_equal(grads[0], [[0.0, 2.0], [0.0, 2.0]])


def test_layout_rejects_factors_that_do_not_chain():
    with pytest.raises(ValueError, match="do not chain"):
        FactorLayout.of([(3, 2), (2, 4)])
    with pytest.raises(ValueError, match="at least one"):
        FactorLayout.of([])
    layout = FactorLayout.of([(3, 2), (4, 3)])
    assert layout.dims.tolist() == [2, 3, 4] and layout.factor_offsets.tolist() == [0, 6, 18]
    assert layout.prefix_offsets.tolist() == [0, 6, 14] and layout.depth == 2


# --- whole trajectories against the torch engine ------------------------------------------------------------------


def _engine_run(factors, target, mask, lr, settings, tracked) -> TrainResult:
    objective = MatrixCompletionDMF(target[None], mask[None], torch.ones(1, len(factors)), tracked)
    return train(objective, [f[None].clone() for f in factors], GradientDescent(torch.tensor([lr])), settings)


def _relative_gap(a: np.ndarray, b: np.ndarray) -> float:
    """max over rows of ‖a − b‖ / ‖b‖ (rows: logged iterations)."""
    return float((np.linalg.norm(a - b, axis=-1) / np.linalg.norm(b, axis=-1)).max())


@pytest.mark.parametrize(
    "shape, depth, scale, lr",
    [((2, 2), 3, 1e-3, 6e-3), ((2, 2), 4, 0.3, 1e-2), ((5, 10), 3, 1e-2, 3e-3), ((5, 5), 2, 0.5, 1e-2)],
)
def test_trajectory_equals_the_torch_engine_over_10k_iterations(shape, depth, scale, lr, generator):
    target, mask = _problem(shape, generator)
    factors, _ = init_factors(shape, depth, depth, scale, True, 1, torch.Generator().manual_seed(3))
    tracked = tuple(np.ndindex(*shape))
    settings = TrainSettings(max_iters=10_000, stop=StopRule(0.0), log_every=50)  # never stops: all 1e4 iterations
    ours = train_dmf([factors], target[None], mask[None], [lr], settings, tracked)
    ref = _engine_run(factors, target, mask, lr, settings, tracked)
    a, b = ours.metrics_frame(), ref.metrics_frame()
    assert list(a.columns) == list(b.columns) and len(a) == len(b) == 201
    pd.testing.assert_frame_equal(a[["run", "iteration", "final"]], b[["run", "iteration", "final"]])
    entries = [f"w{i}{j}" for i, j in tracked]
    assert _relative_gap(a[entries].to_numpy(), b[entries].to_numpy()) <= 1e-9
    loss_gap = np.abs(a["loss"] - b["loss"]).max() / b["loss"].abs().max()
    assert loss_gap <= 1e-9
    for ours_f, ref_f in zip(ours.params[0:1], [torch.cat([p[0].flatten() for p in ref.params])]):
        assert _relative_gap(ours_f.numpy()[None], ref_f.numpy()[None]) <= 1e-9
    assert ours.status.tolist() == ref.status.tolist() == [MAX_ITERS]


def _mixed_batch():
    target = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    runs = [(3, 0.05, 1.0, True), (4, 0.03, 1.0, False), (2, 0.05, 1.0, True), (3, 0.02, 1.0, False)]
    factors = [
        init_factors((2, 2), d, d, a, bal, 1, torch.Generator().manual_seed(i))[0]
        for i, (d, _, a, bal) in enumerate(runs)
    ]
    return factors, target.expand(4, 2, 2), mask.expand(4, 2, 2), [r[1] for r in runs]


@pytest.mark.parametrize("patience, check_every", [(1, 1), (3, 7)])
def test_stopping_equals_the_torch_engine_run_by_run(patience, check_every):
    factors, targets, masks, lrs = _mixed_batch()
    settings = TrainSettings(max_iters=560, stop=StopRule(1e-2, patience, check_every), log_every=25)
    ours = train_dmf(factors, targets, masks, lrs, settings, ((0, 0),))
    assert set(ours.status.tolist()) == {CONVERGED, MAX_ITERS}  # early stop, late stop and the budget
    for b in range(len(factors)):
        ref = _engine_run(factors[b], targets[b], masks[b], lrs[b], settings, ((0, 0),))
        assert ours.stopped_at[b].item() == ref.stopped_at[0].item(), f"run {b}"
        assert ours.status[b].item() == ref.status[0].item()
        rows = ours.metrics_frame().query("run == @b").reset_index(drop=True)
        ref_rows = ref.metrics_frame()
        assert rows["iteration"].tolist() == ref_rows["iteration"].tolist()
        np.testing.assert_allclose(rows["w00"], ref_rows["w00"], rtol=1e-11)


def test_diverging_run_stops_at_its_first_non_finite_loss_and_others_continue():
    factors, targets, masks, lrs = _mixed_batch()
    lrs = [lrs[0], 40.0, lrs[2], 1e308]  # run 1 grows until its loss overflows; run 3's first step overflows W
    settings = TrainSettings(max_iters=300, stop=StopRule(1e-30), log_every=1)
    result = train_dmf(factors, targets, masks, lrs, settings, ((0, 0),))
    assert result.status.tolist() == [MAX_ITERS, DIVERGED, MAX_ITERS, DIVERGED]
    frame = result.metrics_frame()
    for run in (1, 3):
        rows = frame[(frame["run"] == run) & ~frame["final"]]
        stop = result.stopped_at[run].item()
        assert 0 < stop < 300 and rows["iteration"].max() == stop - 1  # logged up to its last finite iteration
        assert np.isfinite(rows.drop(columns=["final"]).to_numpy(dtype=float)).all()
        assert not np.isfinite(result.final_metrics["loss"][run].item())
    assert result.stopped_at[3].item() == 1
    assert np.isnan(result.final_metrics["effective_rank"][3].item())  # no SVD of a non-finite matrix
    assert np.isfinite(result.final_metrics["effective_rank"][[0, 1, 2]].numpy()).all()


def test_threads_do_not_change_the_result():
    factors, targets, masks, lrs = _mixed_batch()
    settings = TrainSettings(max_iters=560, stop=StopRule(1e-2), log_every=25, checkpoint_every=100)
    _equal(
        train_dmf(factors, targets, masks, lrs, settings, ((0, 0),), threads=1),
        train_dmf(factors, targets, masks, lrs, settings, ((0, 0),), threads=3),
    )


def test_zero_budget_and_log_overflow():
    factors, targets, masks, lrs = _mixed_batch()
    none = train_dmf(factors, targets, masks, lrs, TrainSettings(max_iters=0, stop=StopRule(1.0), log_every=5))
    assert none.stopped_at.tolist() == [0] * 4 and none.status.tolist() == [MAX_ITERS] * 4
    with pytest.raises(ConfigError, match="log_every"):
        train_dmf(factors, targets, masks, lrs, TrainSettings(max_iters=10**12, stop=StopRule(1.0), log_every=1))


def test_inputs_are_validated():
    factors, targets, masks, lrs = _mixed_batch()
    settings = TrainSettings(max_iters=5, stop=StopRule(1.0), log_every=1)
    with pytest.raises(ValueError, match="one entry per run"):
        train_dmf(factors, targets, masks, lrs[:2], settings)
    wrong = torch.zeros(4, 3, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="product is 2×2"):
        train_dmf(factors, wrong, wrong, lrs, settings)


# --- kill and resume ----------------------------------------------------------------------------------------------


class Interrupt(Exception):
    """Simulates the job being killed."""


def _equal(a: TrainResult, b: TrainResult) -> None:
    for x, y in zip(a.params, b.params):
        assert torch.equal(x, y)
    assert torch.equal(a.stopped_at, b.stopped_at) and torch.equal(a.status, b.status)
    pd.testing.assert_frame_equal(a.metrics_frame(), b.metrics_frame(), check_exact=True)
    for name in a.final_metrics:
        assert torch.equal(a.final_metrics[name], b.final_metrics[name])


def test_kill_and_resume_is_bit_identical(tmp_path: Path):
    factors, targets, masks, lrs = _mixed_batch()
    settings = TrainSettings(max_iters=560, stop=StopRule(1e-2), log_every=25, checkpoint_every=200)
    reference = train_dmf(factors, targets, masks, lrs, settings, ((0, 0),))
    # one run converges after the checkpoint the restart resumes from, one runs to the budget
    assert bool(((reference.stopped_at > 400) & (reference.status == CONVERGED)).any())
    assert bool((reference.status == MAX_ITERS).any())
    path = tmp_path / "ckpt" / "batch.pt"

    def kill(t: int) -> None:
        if t == 400:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_dmf(
            factors, targets, masks, lrs, settings, ((0, 0),), checkpoint_path=path, fingerprint="fp", on_chunk=kill
        )
    assert load_checkpoint(path, "fp")["t"] == 400
    # the restart is handed other initial factors: the checkpoint wins
    other = [[f * 0 + 1 for f in run] for run in factors]
    resumed = train_dmf(other, targets, masks, lrs, settings, ((0, 0),), checkpoint_path=path, fingerprint="fp")
    assert resumed.resumed_from == 400
    _equal(resumed, reference)
    assert [p.name for p in path.parent.iterdir()] == ["batch.pt"]  # no temp files left behind
    # a checkpoint of another configuration is discarded: training starts afresh
    fresh = train_dmf(factors, targets, masks, lrs, settings, ((0, 0),), checkpoint_path=path, fingerprint="other")
    assert fresh.resumed_from == 0
    _equal(fresh, reference)


def test_compiled_kernels_are_never_cached_on_disk():
    """numba keeps one on-disk index for every closure of a function; processes compiling different shapes at once
    can leave an entry that points at another shape's machine code. The kernels must therefore compile per process
    (a NullCache), and two shapes compiled in one process must not share code."""
    small, large = compile_dmf((2, 2, 2)), compile_dmf((5, 5, 5, 10))
    for kernel in (small.loss_and_gradient, small.gd_chunk, large.loss_and_gradient, large.gd_chunk):
        assert type(kernel._cache).__name__ == "NullCache"
    assert small.gd_chunk is not large.gd_chunk
