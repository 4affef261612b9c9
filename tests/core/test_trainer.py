"""The batched trainer loop: exact per-run stopping, patience, divergence, budgets, and bit-identical resume."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rankrepro.core.checkpoint import load_checkpoint
from rankrepro.core.errors import CheckpointError
from rankrepro.core.optim import GradientDescent, GroupRMSprop
from rankrepro.core.trainer import CONVERGED, DIVERGED, MAX_ITERS, StopRule, TrainResult, TrainSettings, train
from rankrepro.factorization.dmf import MatrixCompletionDMF, init_factors, trainable_factor_mask

NAN = float("nan")


class ScriptedObjective:
    """Run b's loss at iteration t is ``script[b][t]``: the parameter is an iteration counter.

    With GD at lr 1 and gradient −1 the single parameter of an active run increases by exactly 1 per step, so the
    loss an active run sees is a fixed sequence, and a frozen run keeps seeing the loss at which it stopped.
    """

    def __init__(self, scripts: list[list[float]]):
        length = max(len(s) for s in scripts)
        self.table = torch.tensor([s + [s[-1]] * (length - len(s)) for s in scripts])

    @staticmethod
    def params(batch: int) -> list[torch.Tensor]:
        return [torch.zeros(batch, 1)]

    def loss_and_grads(self, params):
        idx = params[0][:, 0].long().clamp(max=self.table.shape[1] - 1)
        loss = self.table.gather(1, idx[:, None])[:, 0]
        return loss, [-torch.ones_like(params[0])]

    def metrics(self, params):
        return {"counter": params[0][:, 0].clone(), "pair": torch.cat([params[0], 2 * params[0]], dim=1)}


def _run_scripted(scripts, max_iters=50, threshold=1.0, patience=1, check_every=1, sync_every=1, log_every=1):
    obj = ScriptedObjective(scripts)
    settings = TrainSettings(
        max_iters=max_iters, stop=StopRule(threshold, patience, check_every), log_every=log_every, sync_every=sync_every
    )
    return train(obj, obj.params(len(scripts)), GradientDescent(torch.ones(len(scripts))), settings)


def test_stop_at_first_iteration_below_threshold():
    result = _run_scripted([[5, 4, 3, 0.5, 0.1], [5, 0.9, 0.1], [0.5], [3, 2, 1.0, 1.0, 0.99]], threshold=1.0)
    assert result.stopped_at.tolist() == [3, 1, 0, 4]  # 1.0 is not < 1.0
    assert result.status.tolist() == [CONVERGED] * 4
    assert result.params[0][:, 0].tolist() == [3.0, 1.0, 0.0, 4.0]  # frozen at the stopping iteration
    assert result.final_metrics["loss"].tolist() == [0.5, 0.9, 0.5, 0.99]


def test_patience_counts_consecutive_checks():
    script = [5, 4, 0.5, 3, 0.5, 0.5, 0.5, 0.5, 0.5]
    assert _run_scripted([script], patience=2).stopped_at.tolist() == [5]  # below at 2, reset at 3, below 4, 5
    assert _run_scripted([script], patience=3).stopped_at.tolist() == [6]
    assert _run_scripted([script], patience=1).stopped_at.tolist() == [2]


def test_check_every_only_looks_at_multiples():
    script = [5, 0.5, 0.5, 3, 0.5, 5, 0.5, 0.5, 0.5, 0.5]
    # checks at 0, 2, 4, 6: below at 2 and 4 (3 at iteration 3 is never checked)
    assert _run_scripted([script], check_every=2, patience=2).stopped_at.tolist() == [4]
    # checks at 0, 3, 6, 9: above at 3, below at 6 and 9
    assert _run_scripted([script], check_every=3, patience=2).stopped_at.tolist() == [9]
    assert _run_scripted([script], check_every=3, patience=1).stopped_at.tolist() == [6]


def test_nan_marks_run_diverged_and_others_continue():
    scripts = [[5, 4, 3, NAN, NAN], [5, 4, 3, 2, 1.5, 0.5], [5, 4, 3, 2, 2, 2, 2]]
    result = _run_scripted(scripts, max_iters=20, sync_every=1)
    assert result.status.tolist() == [DIVERGED, CONVERGED, MAX_ITERS]
    assert result.stopped_at.tolist() == [3, 5, 20]
    assert result.status_names() == ["diverged", "converged", "max_iters"]
    assert result.params[0][:, 0].tolist() == [3.0, 5.0, 20.0]
    # the run is frozen at its first non-finite loss whatever the sync cadence (no host synchronisation needed)
    late = _run_scripted(scripts, max_iters=20, sync_every=7)
    assert late.status.tolist() == [DIVERGED, CONVERGED, MAX_ITERS]
    assert late.stopped_at.tolist() == [3, 5, 20]
    assert late.params[0][:, 0].tolist() == [3.0, 5.0, 20.0]
    frame = late.metrics_frame()
    assert frame[(frame["run"] == 0) & ~frame["final"]]["iteration"].max() == 2  # logged up to its last finite
    inf = _run_scripted([[5, float("inf")], [5, 0.5]], max_iters=20)
    assert inf.status.tolist() == [DIVERGED, CONVERGED]


@pytest.mark.parametrize("lr", [50.0, float("inf"), float("nan")])
def test_diverging_dmf_run_is_recorded_and_never_reaches_the_svd(lr):
    """A huge, infinite or NaN step size: the run is marked diverged at its first non-finite loss, its metrics are NaN
    (no SVD of a non-finite matrix: no LinAlgError), and the other runs are untouched."""
    objective, params, lrs = _dmf_batch()
    reference = train(objective, params, GradientDescent(lrs), _settings())
    lrs = lrs.clone()
    lrs[1] = lr
    result = train(objective, params, GradientDescent(lrs), _settings())
    assert result.status_names()[1] == "diverged"
    assert 0 < result.stopped_at[1].item() < N_ITERS
    assert math.isnan(result.final_metrics["effective_rank"][1].item())
    frame = result.metrics_frame()
    rows = frame[(frame["run"] == 1) & ~frame["final"]]
    assert np.isfinite(rows["loss"]).all() and rows["iteration"].max() < result.stopped_at[1].item()
    for b in (0, 2, 3):
        assert result.stopped_at[b].item() == reference.stopped_at[b].item()
        assert result.final_metrics["loss"][b].item() == reference.final_metrics["loss"][b].item()


def test_max_iters_status_and_zero_budget():
    result = _run_scripted([[5, 4, 3, 2]], max_iters=7)
    assert result.status.tolist() == [MAX_ITERS]
    assert result.stopped_at.tolist() == [7]
    assert result.params[0].item() == 7.0
    zero = _run_scripted([[5.0]], max_iters=0)
    assert zero.status.tolist() == [MAX_ITERS] and zero.stopped_at.tolist() == [0]


def test_loop_ends_early_when_all_runs_stopped():
    calls = []
    obj = ScriptedObjective([[5, 0.5], [0.5]])
    original = obj.loss_and_grads

    def counting(params):
        calls.append(1)
        return original(params)

    obj.loss_and_grads = counting
    settings = TrainSettings(max_iters=10_000, stop=StopRule(1.0), log_every=1, sync_every=1)
    result = train(obj, obj.params(2), GradientDescent(torch.ones(2)), settings)
    assert result.stopped_at.tolist() == [1, 0]
    assert len(calls) == 3  # iterations 0 and 1, plus the final evaluation


def _reference_stop(script, threshold, patience, check_every, sync_every, max_iters):
    """The stopping semantics, one run at a time, in plain Python: (stopped_at, status)."""
    below = 0
    for t in range(max_iters):
        loss = script[min(t, len(script) - 1)]
        if not math.isfinite(loss):  # at its first non-finite loss, whatever the sync cadence
            return t, DIVERGED
        if t % check_every == 0:
            below = below + 1 if loss < threshold else 0
            if below >= patience:
                return t, CONVERGED
    return max_iters, MAX_ITERS


@given(
    scripts=st.lists(
        st.lists(st.sampled_from([0.5, 2.0, 0.9, NAN, float("inf")]), min_size=1, max_size=12), min_size=1, max_size=5
    ),
    patience=st.integers(1, 3),
    check_every=st.integers(1, 3),
    sync_every=st.integers(1, 4),
    max_iters=st.integers(0, 15),
)
def test_batched_stopping_equals_per_run_reference(scripts, patience, check_every, sync_every, max_iters):
    """Whatever the mix of runs, each run's outcome is the one it would have alone."""
    result = _run_scripted(
        scripts, max_iters=max_iters, patience=patience, check_every=check_every, sync_every=sync_every, log_every=3
    )
    expected = [_reference_stop(s, 1.0, patience, check_every, sync_every, max_iters) for s in scripts]
    assert result.stopped_at.tolist() == [e[0] for e in expected]
    assert result.status.tolist() == [e[1] for e in expected]
    assert result.params[0][:, 0].tolist() == [float(e[0]) for e in expected]


@pytest.mark.parametrize("sync_every", [1, 3, 1000])
def test_outcome_does_not_depend_on_sync_cadence(sync_every):
    result = _run_scripted([[5, 4, 3, 0.5, 0.1], [5, 0.9, 0.1], [0.5], [3, 2, 2]], max_iters=9, sync_every=sync_every)
    assert result.stopped_at.tolist() == [3, 1, 0, 9]
    assert result.status_names() == ["converged", "converged", "converged", "max_iters"]


class IndependentScriptedObjective:
    """The scripted objective with the script row carried by the parameters (column 1: the run's id, gradient 0), so
    each run's numbers depend on its own parameters alone, whatever the batch: ``runs_independent`` may be
    declared. ``batches`` records the batch size of every evaluation."""

    def __init__(self, scripts: list[list[float]], independent: bool):
        self.scripted = ScriptedObjective(scripts)
        self.runs_independent = independent
        self.batches: list[int] = []

    @staticmethod
    def params(batch: int) -> list[torch.Tensor]:
        return [torch.stack([torch.zeros(batch), torch.arange(batch, dtype=torch.float64)], dim=1)]

    def loss_and_grads(self, params):
        self.batches.append(params[0].shape[0])
        counter, run = params[0][:, 0].long(), params[0][:, 1].long()
        loss = self.scripted.table[run, counter.clamp(max=self.scripted.table.shape[1] - 1)]
        return loss, [torch.stack([-torch.ones_like(params[0][:, 0]), torch.zeros_like(params[0][:, 1])], dim=1)]

    def metrics(self, params):
        return {"counter": params[0][:, 0].clone(), "id": params[0][:, 1].long(), "pair": 2 * params[0]}


def _run_independent(scripts, independent, max_iters, sync_every, patience=1, check_every=1, log_every=1):
    obj = IndependentScriptedObjective(scripts, independent)
    settings = TrainSettings(
        max_iters=max_iters, stop=StopRule(1.0, patience, check_every), log_every=log_every, sync_every=sync_every
    )
    return obj, train(obj, obj.params(len(scripts)), GradientDescent(torch.ones(len(scripts))), settings)


@given(
    scripts=st.lists(st.lists(st.sampled_from([0.5, 2.0, 0.9, NAN]), min_size=1, max_size=12), min_size=1, max_size=5),
    patience=st.integers(1, 3),
    sync_every=st.integers(1, 4),
    log_every=st.integers(1, 3),
    max_iters=st.integers(0, 15),
)
def test_computing_only_the_running_runs_changes_no_number(scripts, patience, sync_every, log_every, max_iters):
    """An objective whose runs are independent is evaluated on the runs still active at the last sync; every
    logged row, final metric, stop time, status and parameter is the one the whole-batch loop gives."""
    whole = _run_independent(scripts, False, max_iters, sync_every, patience, log_every=log_every)[1]
    compact = _run_independent(scripts, True, max_iters, sync_every, patience, log_every=log_every)[1]
    pd.testing.assert_frame_equal(compact.metrics_frame(), whole.metrics_frame())
    assert compact.stopped_at.tolist() == whole.stopped_at.tolist()
    assert compact.status.tolist() == whole.status.tolist()
    assert torch.equal(compact.params[0], whole.params[0])


def test_only_the_runs_active_at_a_sync_are_computed_after_it():
    scripts = [[0.5], [5, 0.5], [5] * 7 + [0.5]]
    whole, _ = _run_independent(scripts, False, max_iters=20, sync_every=2)
    compact, result = _run_independent(scripts, True, max_iters=20, sync_every=2)
    assert result.stopped_at.tolist() == [0, 1, 7]
    assert set(whole.batches) == {3}
    # run 0 stops at 0 (a sync): two runs from iteration 1; run 1 stops at 1, seen at the sync at 2: one run from 3
    # until the sync at 8 ends the loop; the last evaluation is the final loss of every run
    assert compact.batches == [3, 2, 2, 1, 1, 1, 1, 1, 1, 3]


def test_metrics_frame_is_tidy():
    result = _run_scripted([[5, 4, 3, 0.5], [5, 4, 3, 2, 2, 2]], max_iters=5, log_every=2)
    frame = result.metrics_frame()
    run0 = frame[frame["run"] == 0]
    assert run0["iteration"].tolist() == [0, 2, 3]
    assert run0["final"].tolist() == [False, False, True]
    assert run0["loss"].tolist() == [5.0, 3.0, 0.5]
    run1 = frame[frame["run"] == 1]
    assert run1["iteration"].tolist() == [0, 2, 4, 5]
    assert run1["counter"].tolist() == [0.0, 2.0, 4.0, 5.0]
    assert run1["pair_1"].tolist() == [0.0, 4.0, 8.0, 10.0]
    assert {"run", "iteration", "final", "loss", "counter", "pair_0", "pair_1"} == set(frame.columns)


def test_train_settings_validation():
    with pytest.raises(ValueError):
        StopRule(1.0, patience=0)
    with pytest.raises(ValueError):
        StopRule(1.0, check_every=0)
    with pytest.raises(ValueError):
        TrainSettings(max_iters=10, stop=StopRule(1.0), log_every=0)
    with pytest.raises(ValueError):
        TrainSettings(max_iters=-1, stop=StopRule(1.0), log_every=1)


# --- DMF runs: exact stopping against an unbatched loop, and bit-identical resume --------------------------------

# explicit float64: module-level constants and module-scoped fixtures do not see conftest's default dtype
TARGET = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
MASK = torch.tensor([[0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
RUNS = [(3, 0.05, 1.0, True), (4, 0.03, 1.0, False), (2, 0.05, 1.0, True), (3, 0.02, 1.0, False)]
THRESHOLD = 1e-2
N_ITERS = 560
CKPT = 200


def _dmf_batch(runs=RUNS):
    factors = [
        init_factors((2, 2), d, 4, a, bal, 1, torch.Generator().manual_seed(i))[0]
        for i, (d, _, a, bal) in enumerate(runs)
    ]
    params = [torch.stack([f[j] for f in factors]) for j in range(4)]
    trainable = torch.stack([trainable_factor_mask(d, 4) for d, *_ in runs])
    b = len(runs)
    objective = MatrixCompletionDMF(TARGET.expand(b, 2, 2), MASK.expand(b, 2, 2), trainable, ((0, 0), (1, 1)))
    lr = torch.tensor([r[1] for r in runs], dtype=torch.float64)
    return objective, params, lr


def _settings(checkpoint_every=0, sync_every=100):
    return TrainSettings(
        max_iters=N_ITERS,
        stop=StopRule(THRESHOLD),
        log_every=50,
        sync_every=sync_every,
        checkpoint_every=checkpoint_every,
    )


def test_dmf_stopping_matches_unbatched_reference_loop():
    objective, params, lr = _dmf_batch()
    result = train(objective, params, GradientDescent(lr), _settings())
    # the runs end in different ways: the test covers early stop, late stop and the budget
    assert set(result.status.tolist()) == {CONVERGED, MAX_ITERS}
    for b, (depth, run_lr, _, _) in enumerate(RUNS):
        factors = [p[b : b + 1].clone() for p in params]
        single = MatrixCompletionDMF(TARGET[None], MASK[None], trainable_factor_mask(depth, 4)[None])
        stopped_at, status = N_ITERS, MAX_ITERS
        for t in range(N_ITERS):
            loss, grads = single.loss_and_grads(factors)
            if loss.item() < THRESHOLD:
                stopped_at, status = t, CONVERGED
                break
            for f, g in zip(factors, grads):
                f.sub_(run_lr * g)
        assert result.stopped_at[b].item() == stopped_at, f"run {b}"
        assert result.status[b].item() == status
        for f, p in zip(factors, result.params):
            torch.testing.assert_close(p[b], f[0], rtol=1e-12, atol=1e-13)


class Interrupt(Exception):
    """Simulates the job being killed."""


def _frames_equal(a: TrainResult, b: TrainResult) -> None:
    for x, y in zip(a.params, b.params):
        assert torch.equal(x, y)
    assert torch.equal(a.stopped_at, b.stopped_at)
    assert torch.equal(a.status, b.status)
    pd.testing.assert_frame_equal(a.metrics_frame(), b.metrics_frame(), check_exact=True)
    for name in a.final_metrics:
        assert torch.equal(a.final_metrics[name], b.final_metrics[name])


def _interrupted(path: Path, optimizer, fingerprint="fp", at=500):
    """Run with checkpoints every 200 iterations and kill the job at iteration ``at`` (after the 400 checkpoint).

    Run 1 converges at iteration 511 and run 0 runs to the budget: both happen after the restart.
    """

    def kill(state):
        if state["t"] == at:
            raise Interrupt

    objective, params, _ = _dmf_batch()
    with pytest.raises(Interrupt):
        train(
            objective,
            params,
            optimizer,
            _settings(checkpoint_every=CKPT),
            checkpoint_path=path,
            fingerprint=fingerprint,
            on_sync=kill,
        )
    assert path.exists()
    assert load_checkpoint(path, fingerprint)["t"] == 400


@pytest.fixture(scope="module")
def uninterrupted_gd() -> TrainResult:
    objective, params, lr = _dmf_batch()
    return train(objective, params, GradientDescent(lr), _settings())


@pytest.mark.parametrize("opt_name", ["gd", "group_rmsprop"])
def test_resume_equals_uninterrupted(tmp_path, opt_name, uninterrupted_gd):
    objective, params, lr = _dmf_batch()
    make = (lambda: GradientDescent(lr)) if opt_name == "gd" else (lambda: GroupRMSprop(lr * 0.4))
    reference = uninterrupted_gd if opt_name == "gd" else train(objective, params, make(), _settings())
    # some run converges after the checkpoint the restart resumes from, one runs to the budget
    assert bool(((reference.stopped_at > 400) & (reference.status == CONVERGED)).any())
    assert bool((reference.status == MAX_ITERS).any())
    path = tmp_path / "ckpt" / "batch.pt"
    _interrupted(path, make())
    objective, params, _ = _dmf_batch()
    # the restart is handed a different initial point: it must be ignored in favour of the checkpoint
    resumed = train(
        objective,
        [p * 0 + 1 for p in params],
        make(),
        _settings(checkpoint_every=CKPT),
        checkpoint_path=path,
        fingerprint="fp",
    )
    assert resumed.resumed_from == 400
    _frames_equal(resumed, reference)
    assert [p.name for p in path.parent.iterdir()] == ["batch.pt"]  # no temp files left behind
    # a finished job restarted again returns the same result from its final checkpoint
    again = train(objective, params, make(), _settings(checkpoint_every=CKPT), checkpoint_path=path, fingerprint="fp")
    _frames_equal(again, reference)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupted_checkpoint_is_detected_and_training_restarts(tmp_path, damage, uninterrupted_gd):
    objective, params, lr = _dmf_batch()
    path = tmp_path / "batch.pt"
    _interrupted(path, GradientDescent(lr))
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(data[:100] + bytes(range(256)) * 4 + data[1124:])
    else:
        path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(path, "fp")
    result = train(
        objective, params, GradientDescent(lr), _settings(checkpoint_every=CKPT), checkpoint_path=path, fingerprint="fp"
    )
    assert result.resumed_from == 0
    _frames_equal(result, uninterrupted_gd)


def test_checkpoint_of_another_configuration_is_not_used(tmp_path, uninterrupted_gd):
    objective, params, lr = _dmf_batch()
    path = tmp_path / "batch.pt"
    _interrupted(path, GradientDescent(lr), fingerprint="other-config")
    with pytest.raises(CheckpointError, match="another configuration"):
        load_checkpoint(path, "fp")
    result = train(
        objective, params, GradientDescent(lr), _settings(checkpoint_every=CKPT), checkpoint_path=path, fingerprint="fp"
    )
    assert result.resumed_from == 0
    _frames_equal(result, uninterrupted_gd)
    assert load_checkpoint(path, "fp")["t"] == N_ITERS  # the final checkpoint now belongs to this config


class _Marker:
    """Unpickling this would run code (create a file): weights_only loading must refuse it."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_checkpoint_with_arbitrary_object_is_rejected(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "fingerprint": "fp", "payload": {"t": 3, "obj": _Marker(marker)}}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError):
        load_checkpoint(path, "fp")
    assert not marker.exists()
    # a plain pickle file is rejected too
    path.write_bytes(pickle.dumps({"format": 1, "fingerprint": "fp", "payload": _Marker(marker)}))
    with pytest.raises(CheckpointError):
        load_checkpoint(path, "fp")
    assert not marker.exists()
    objective, params, lr = _dmf_batch()
    result = train(
        objective,
        params,
        GradientDescent(lr),
        TrainSettings(max_iters=3, stop=StopRule(1e-9), log_every=1),
        checkpoint_path=path,
        fingerprint="fp",
    )
    assert result.resumed_from == 0 and not marker.exists()


def test_checkpoint_of_finished_run_reloads_with_weights_only(tmp_path):
    objective, params, lr = _dmf_batch()
    path = tmp_path / "batch.pt"
    result = train(
        objective,
        params,
        GroupRMSprop(lr),
        TrainSettings(max_iters=20, stop=StopRule(1e-9), log_every=5),
        checkpoint_path=path,
        fingerprint="fp",
    )
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == 1 and raw["fingerprint"] == "fp"
    state = raw["payload"]
    assert state["t"] == 20 and state["log_iterations"] == [0, 5, 10, 15]
    assert torch.equal(state["opt_state"]["step_count"], torch.full((4,), 20))
    for saved, final in zip(state["params"], result.params):
        assert torch.equal(saved, final)
    assert math.isfinite(result.final_metrics["loss"].sum().item())
