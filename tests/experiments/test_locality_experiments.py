"""Chapter 3 §3.2: training with the input-gradient-change regularizer, the sweeps' typed settings, and the
Is-Same-Class / Pathfinder sweeps end to end on small fake data (run, cache, plot and its caption, claims)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from rankrepro.cli import figure_context
from rankrepro.cnn.locality import Region, resize_images
from rankrepro.cnn.locality_training import SGDSchedule, train_locality_classifier, train_step
from rankrepro.core.errors import ConfigError, DataError
from rankrepro.core.io import atomic_write_sealed_json, read_json
from rankrepro.data.image_datasets import ImageDataset
from rankrepro.experiments.base import Context, write_results
from rankrepro.experiments.ch3 import is_same_class_cnn, locality_common, pathfinder_cnn
from rankrepro.experiments.ch3.locality_common import sweep_claims
from rankrepro.pipeline.claims import FAILED, NOT_SHOWN, PASSED
from rankrepro.pipeline.config import experiment_section, load_config

CTX = Context(tier="test", device=torch.device("cpu"), threads=1, progress=False)
CONFIG = Path(__file__).resolve().parents[2] / "config"
PAPER = str(CONFIG / "paper.yaml")
NET = {
    "widths": [2, 2, 4, 4],
    "stem": "small",
    "lr": 0.05,
    "momentum": 0.9,
    "batch_size": 8,
    "max_epochs": 2,
    "stop_after_fit": 1,
}
ISC = {
    "seed": 1,
    "preferred_dataset": "cifar-10",
    "datasets": ["fashion-mnist"],
    "distances": [0, 4],
    "strengths": [0.0, 1.0],
    "seeds": 2,
    "image_side": 6,
    "canvas": [8, 20],
    "train_pairs": 16,
    "test_pairs": 8,
    **NET,
}
PATHFINDER = {
    "seed": 1,
    "lengths": [3, 5],
    "strengths": [0.0, 2.0],
    "seeds": 1,
    "canvas": 40,
    "patch": 2,
    "train_images": 12,
    "test_images": 8,
    **NET,
}


def isc_settings(**change) -> is_same_class_cnn.Settings:
    """The test's Is-Same-Class settings, typed as the CLI builds them, with ``change``."""
    return is_same_class_cnn.Settings.from_mapping({**ISC, **change}, "experiments.is_same_class_cnn")


def pathfinder_settings(**change) -> pathfinder_cnn.Settings:
    """The test's Pathfinder settings, typed as the CLI builds them, with ``change``."""
    return pathfinder_cnn.Settings.from_mapping({**PATHFINDER, **change}, "experiments.pathfinder_cnn")


@pytest.mark.parametrize("tier", ["smoke.yaml", "config.yaml", "paper.yaml"])
@pytest.mark.parametrize("module", [is_same_class_cnn, pathfinder_cnn])
def test_settings_are_built_from_every_tier_and_record_their_section(tier, module):
    section = experiment_section(load_config(CONFIG / tier), module.NAME)
    settings = module.Settings.from_mapping(section, f"experiments.{module.NAME}")
    assert settings.record() == section
    assert settings.strengths == tuple(float(s) for s in section["strengths"])
    assert all(isinstance(s, float) for s in settings.strengths) and isinstance(settings.widths, tuple)
    assert settings.schedule().max_epochs == section["max_epochs"]
    assert settings.network(1).widths == tuple(section["widths"]) and settings.network(1).stem == section["stem"]


def test_settings_refuse_values_the_types_do_not_admit():
    with pytest.raises(ConfigError, match="canvas' must have 2 items"):
        isc_settings(canvas=[8, 20, 4])
    with pytest.raises(ConfigError, match="preferred_dataset"):
        isc_settings(preferred_dataset="imagenet")
    assert isc_settings(preferred_dataset=None).preferred_dataset is None
    with pytest.raises(ConfigError, match="no field"):
        pathfinder_settings(distances=[0, 4])


class FakeData:
    """A DataSource stand-in: CIFAR-10 cannot be obtained; random 28×28 grey images with labels 0…9 otherwise."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def image_classification(self, name: str) -> ImageDataset:
        self.asked.append(name)
        if name == "cifar-10":
            raise DataError("dataset 'cifar-10' is not available: offline test")
        rng = np.random.default_rng(0)
        return ImageDataset(
            name=name,
            train_images=rng.integers(0, 256, (40, 28, 28), dtype=np.uint8),
            train_labels=np.arange(40) % 10,
            test_images=rng.integers(0, 256, (20, 28, 28), np.uint8),
            test_labels=np.arange(20) % 10,
            class_names=tuple("0123456789"),
        )


# ------------------------------------------------------------------------------------------------- training
class LeftPixel(nn.Module):
    """f(x) = w·x[..., 0, 0] + b: depends on one pixel only (separable, trivially learnable)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x[:, :, 0, 0])


def toy_task(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (count, 1, 2, 2) images whose label is whether pixel (0, 0) is bright."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, count)
    images = rng.integers(0, 40, (count, 1, 2, 2)).astype(np.uint8)
    images[:, 0, 0, 0] = np.where(labels == 1, 220, 20)
    return torch.from_numpy(images), torch.from_numpy(labels)


def test_training_fits_a_separable_task_and_stops_after_fitting():
    torch.manual_seed(0)
    schedule = SGDSchedule(lr=0.5, momentum=0.9, batch_size=16, max_epochs=200, stop_after_fit=3)
    outcome = train_locality_classifier(
        LeftPixel().float(), toy_task(64, 0), toy_task(32, 1), schedule, 0.0, None, np.random.default_rng(0)
    )
    assert outcome.fitted_epoch is not None and outcome.epochs == outcome.fitted_epoch + 3
    assert outcome.train_accuracy[-1] == 1.0 and outcome.test_accuracy == 1.0
    assert all(np.isnan(outcome.penalty))  # λ = 0 never computes the penalty


@pytest.mark.parametrize(("stem", "side"), [("small", 32), ("paper", 64)])
def test_regularized_training_runs_where_the_model_is(stem, side, meta_device):
    """§3.2's GPU job: the ResNet-18 on the device (meta standing in for a GPU), uint8 images and labels moved there
    batch by batch, the locality penalty's double backward and the evaluation — no tensor left on the CPU."""
    from rankrepro.cnn.locality import random_patch_pair
    from rankrepro.cnn.resnet import SMALL_WIDTHS, ResNet18, ResNetConfig

    model = ResNet18(ResNetConfig(SMALL_WIDTHS, stem, 1), generator=torch.Generator().manual_seed(0)).float()
    images = torch.randint(0, 256, (6, 1, side, side), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 1, 0, 1, 0])
    schedule = SGDSchedule(lr=0.1, momentum=0.9, batch_size=3, max_epochs=1, stop_after_fit=0)
    outcome = train_locality_classifier(
        model,
        (images, labels),
        (images, labels),
        schedule,
        1.0,
        lambda g: random_patch_pair((side, side), 2, g),
        np.random.default_rng(0),
        device=meta_device,
    )
    assert outcome.epochs == 1 and next(model.parameters()).device == meta_device


def test_training_is_seeded():
    schedule = SGDSchedule(lr=0.05, momentum=0.9, batch_size=8, max_epochs=2, stop_after_fit=0)

    def once() -> list[float]:
        torch.manual_seed(3)
        model = LeftPixel().float()
        sampler = lambda g: (Region(0, 0, 1, 1), Region(1, 1, 1, 1))  # noqa: E731
        train_locality_classifier(
            model, toy_task(24, 0), toy_task(8, 1), schedule, 1.0, sampler, np.random.default_rng(5)
        )
        return [float(p.detach().sum()) for p in model.parameters()]

    assert once() == once()


def test_the_penalty_adds_its_gradient_and_a_separable_model_has_penalty_one():
    """A model of one pixel of I: ∇_{x_I} f never depends on J, so |cos| = 1 exactly, and the λ step differs from the
    plain one only through the penalty's gradient (here zero: the cosine of a constant direction is flat)."""
    images, labels = toy_task(8, 0)
    x = images.float() / 255
    regions = (Region(0, 0, 1, 1), Region(1, 1, 1, 1))
    model = LeftPixel().float()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    _, penalty, _ = train_step(model, optimizer, x.clone(), labels, 1.0, regions)
    assert penalty == pytest.approx(1.0, abs=1e-6)
    _, plain_penalty, _ = train_step(model, optimizer, x.clone(), labels, 0.0, regions)
    assert np.isnan(plain_penalty)


def test_the_penalty_changes_the_update_of_a_model_with_interaction():
    """f = (a·x_I)(b·x_J) + c·x_I with I, J the two rows: ∇_{x_I} f = a (b·x_J) + c turns with x_J, the penalty
    depends on the weights, and λ > 0 changes the step."""

    class Interacting(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Parameter(torch.tensor([0.7, -0.4])), nn.Parameter(torch.tensor([0.3, 0.5]))
            self.c = nn.Parameter(torch.tensor([0.2, 0.6]))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            xi, xj = x[:, 0, 0, :], x[:, 0, 1, :]
            return ((xi @ self.a) * (xj @ self.b) + xi @ self.c)[:, None]

    images, labels = toy_task(8, 2)
    x = images.double() / 255
    regions = (Region(0, 0, 1, 2), Region(1, 0, 1, 2))
    steps, penalties = [], []
    for strength in (0.0, 1.0):
        model = Interacting()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        penalties.append(train_step(model, optimizer, x.clone(), labels, strength, regions)[1])
        steps.append(torch.cat([p.detach().clone() for p in model.parameters()]))
    assert 0 < penalties[1] < 1
    assert not torch.allclose(steps[0], steps[1])


def test_train_step_uses_the_resnets_explicit_input_gradient(monkeypatch):
    """With a ResNet-18 the regularized step takes the network's explicit input gradient, never autograd's double
    backward, and updates every parameter."""
    from rankrepro.cnn import locality
    from rankrepro.cnn.resnet import ResNet18, ResNetConfig

    def refuse(*args, **kwargs):
        raise AssertionError("the generic autograd input gradient was used")

    monkeypatch.setattr(locality, "autograd_logits_and_input_gradient", refuse)
    model = ResNet18(ResNetConfig((2, 2, 4, 4), "small", 1), generator=torch.Generator().manual_seed(0))
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.rand(4, 1, 6, 14, generator=torch.Generator().manual_seed(1))
    _, penalty, _ = train_step(
        model, optimizer, x, torch.tensor([0, 1, 1, 0]), 1.0, (Region(0, 0, 6, 6), Region(0, 8, 6, 6))
    )
    assert 0 < penalty <= 1
    assert all(not torch.equal(p, q) for p, q in zip(model.parameters(), before))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"lr": 0.0}, "lr > 0"),
        ({"momentum": 1.0}, "momentum"),
        ({"batch_size": 1}, "batch_size ≥ 2"),
        ({"max_epochs": 0}, "max_epochs"),
    ],
)
def test_schedule_errors(kwargs, match):
    base = {"lr": 0.1, "momentum": 0.9, "batch_size": 8, "max_epochs": 2, "stop_after_fit": 0}
    with pytest.raises(ConfigError, match=match):
        SGDSchedule(**{**base, **kwargs})


def test_strength_errors():
    schedule = SGDSchedule(lr=0.1, momentum=0.9, batch_size=8, max_epochs=1, stop_after_fit=0)
    with pytest.raises(ConfigError, match="≥ 0"):
        train_locality_classifier(
            LeftPixel(), toy_task(8, 0), toy_task(8, 1), schedule, -1.0, None, np.random.default_rng(0)
        )
    with pytest.raises(ConfigError, match="region sampler"):
        train_locality_classifier(
            LeftPixel(), toy_task(8, 0), toy_task(8, 1), schedule, 1.0, None, np.random.default_rng(0)
        )


# ------------------------------------------------------------------------------------------------- sweeps
@pytest.fixture(scope="module")
def isc_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("isc")
    data = FakeData()
    is_same_class_cnn.run(isc_settings(), out, CTX, data)
    return out, data


def test_is_same_class_falls_back_from_cifar_and_runs_every_cell(isc_results):
    out, data = isc_results
    assert data.asked == ["cifar-10", "fashion-mnist"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"] == "fashion-mnist" and "cifar-10" in summary["unavailable_datasets"]
    metrics = pd.read_csv(out / "metrics.csv")
    assert len(metrics) == 2 * 2 * 2 and set(metrics["range"]) == {0, 4} and set(metrics["strength"]) == {0.0, 1.0}
    assert metrics["test_acc"].between(0, 1).all()
    regularized = metrics[metrics["strength"] > 0]["final_penalty"]
    assert regularized.between(0, 1).all() and metrics[metrics["strength"] == 0]["final_penalty"].isna().all()


def test_is_same_class_runs_are_cached(isc_results, monkeypatch):
    out, _ = isc_results
    monkeypatch.setattr(
        "rankrepro.experiments.ch3.locality_common.train_run",
        lambda *a, **k: pytest.fail("a cached run was recomputed"),
    )
    is_same_class_cnn.run(isc_settings(), out, CTX, FakeData())


def test_dropping_a_range_a_strength_or_seeds_keeps_every_other_runs_cache(isc_results, tmp_path, monkeypatch):
    """The sweep's axes are not part of a run's fingerprint: the runs of a narrower sweep are the wider one's, read
    from its cache, bit for bit; a setting the runs depend on (the learning rate) still invalidates them."""
    out, _ = isc_results
    narrower = tmp_path / "narrower"
    shutil.copytree(out, narrower)
    wide = pd.read_csv(out / "metrics.csv")
    monkeypatch.setattr(
        "rankrepro.experiments.ch3.locality_common.train_run",
        lambda *a, **k: pytest.fail("a cached run was recomputed"),
    )
    is_same_class_cnn.run(isc_settings(distances=[4]), narrower, CTX, FakeData())
    kept = pd.read_csv(narrower / "metrics.csv")
    assert set(kept["range"]) == {4}
    pd.testing.assert_frame_equal(kept.reset_index(drop=True), wide[wide["range"] == 4].reset_index(drop=True))
    covered = locality_common.run_fingerprint_settings
    narrowed = isc_settings(distances=[4], strengths=[0.0, 2.0], seeds=1)
    assert covered(isc_settings(), "distances") == covered(narrowed, "distances")
    assert covered(isc_settings(), "distances") != covered(isc_settings(lr=0.5), "distances")


def caption(monkeypatch, module, results: Path, figure_png: Path, paper: str | None = PAPER) -> str:
    """The caption ``module.plot`` writes for ``results``, its settings compared with those of ``paper``."""
    captions: list[str] = []
    monkeypatch.setattr(locality_common, "add_caption", lambda fig, text: captions.append(text))
    module.plot(results, figure_png, figure_context("test", module.NAME, paper))
    return captions[0].split("Substitutions: ")[1]


def recorded_as(results: Path, copy: Path, **change) -> Path:
    """A copy of the results whose summary records ``change`` (e.g. the paper tier's settings)."""
    shutil.copytree(results, copy)
    atomic_write_sealed_json(copy / "summary.json", {**read_json(results / "summary.json"), **change})
    return copy


def test_is_same_class_plot_and_claims_name_the_substitute(isc_results, tmp_path, monkeypatch):
    out, _ = isc_results
    paths = is_same_class_cnn.plot(out, tmp_path / "isc.png", figure_context("test", is_same_class_cnn.NAME, PAPER))
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 0 for p in paths)
    text = caption(monkeypatch, is_same_class_cnn, out, tmp_path / "isc.png")
    assert text.startswith("fashion-mnist instead of cifar-10 (cifar-10 not obtainable here); settings departing")
    assert "canvas [8, 20] (paper: [224, 224])" in text and "stem small (paper: paper)" in text
    assert "momentum" not in text  # equal to the paper's
    found = is_same_class_cnn.claims(out, "test")
    assert len(found) == 3 and all("fashion-mnist (CIFAR-10 substitute)" in c.details for c in found)


def test_is_same_class_caption_on_the_paper_tier(isc_results, tmp_path, monkeypatch):
    """The paper tier's settings depart from nothing: only a substitute dataset is named, and none on CIFAR-10."""
    out, _ = isc_results
    paper = experiment_section(load_config(PAPER), is_same_class_cnn.NAME)
    substitute = recorded_as(out, tmp_path / "substitute", settings=paper)
    assert caption(monkeypatch, is_same_class_cnn, substitute, tmp_path / "a.png") == (
        "fashion-mnist instead of cifar-10 (cifar-10 not obtainable here)."
    )
    cifar = recorded_as(out, tmp_path / "cifar", settings=paper, dataset="cifar-10")
    assert caption(monkeypatch, is_same_class_cnn, cifar, tmp_path / "b.png") == "none."
    assert "not compared" in caption(monkeypatch, is_same_class_cnn, cifar, tmp_path / "c.png", paper=None)


def test_is_same_class_config_errors():
    with pytest.raises(ConfigError, match="do not fit"):
        is_same_class_cnn.run(isc_settings(distances=[0, 40]), "unused", CTX, FakeData())
    with pytest.raises(ConfigError, match="receptive field"):
        is_same_class_cnn.run(isc_settings(canvas=[8, 400], distances=[0, 380]), "unused", CTX, FakeData())


def test_pathfinder_sweep_end_to_end(tmp_path, monkeypatch):
    out = tmp_path / "run"
    pathfinder_cnn.run(pathfinder_settings(), out, CTX)
    metrics = pd.read_csv(out / "metrics.csv")
    assert len(metrics) == 2 * 2 and set(metrics["range"]) == {3, 5}
    figure = figure_context("test", pathfinder_cnn.NAME, PAPER)
    assert pathfinder_cnn.plot(out, tmp_path / "pf.png", figure)[0].is_file()
    assert [c.claim_id for c in pathfinder_cnn.claims(out, "test")] == [
        "unregularized_falls_to_chance_with_range",
        "regularizer_recovers_long_range",
        "regularizer_harmless_at_short_range",
    ]
    with pytest.raises(ConfigError, match="must hold 0"):
        pathfinder_cnn.run(pathfinder_settings(strengths=[1.0, 2.0]), tmp_path / "bad", CTX)
    text = caption(monkeypatch, pathfinder_cnn, out, tmp_path / "pf.png")
    assert text.startswith(pathfinder_cnn.GENERATOR_NOTE + "; settings departing from the paper tier: ")
    assert "canvas 40 (paper: 150)" in text and "lengths [3, 5] (paper: [3, 5, 7, 9])" in text
    paper = experiment_section(load_config(PAPER), pathfinder_cnn.NAME)
    on_paper = recorded_as(out, tmp_path / "paper", settings=paper)
    assert caption(monkeypatch, pathfinder_cnn, on_paper, tmp_path / "paper.png") == f"{pathfinder_cnn.GENERATOR_NOTE}."


# ------------------------------------------------------------------------------------------------- claims
def sweep(
    tmp_path,
    accuracies: dict[float, list[float]],
    fitted: bool = True,
    test_samples: int = 1000,
    paper_geometry: bool = True,
    seeds: tuple[float, ...] = (-0.002, 0.002),
    unfit_cell: tuple[float, int] | None = None,
    cell_seeds: dict[tuple[float, int], tuple[int, ...]] | None = None,
):
    """Write a sweep with the given mean test accuracies per λ at ranges 0, 1, 2; seed k adds ``seeds[k]`` to every
    cell (a shift shared by all cells of a seed: paired differences are exact, the one-sample interval of accuracy −
    50 % is ± 12.706 · 0.002 = ± 2.5 points); ``accuracies`` values may also be
    per-seed lists. ``unfit_cell`` (λ, range): only that cell's nets never fit. ``cell_seeds`` (λ, range) → the seed
    ids of that cell's runs (default 0, 1, …)."""
    rows = []
    for s, values in accuracies.items():
        for r, acc in enumerate(values):
            for seed, shift in enumerate(seeds):
                unfit = not fitted or unfit_cell == (s, r)
                rows.append(
                    {
                        "range": r,
                        "strength": s,
                        "seed": (cell_seeds or {}).get((s, r), range(len(seeds)))[seed],
                        "train_acc": 0.8 if unfit else 1.0,
                        "test_acc": (acc[seed] if isinstance(acc, list) else acc + shift),
                        "epochs": 10,
                        "fitted_epoch": None if unfit else 5,
                        "final_penalty": None,
                        "time_s": 1.0,
                    }
                )
    write_results(tmp_path, pd.DataFrame(rows), {}, CTX, 0.0, {})
    return {c.claim_id: c for c in sweep_claims(tmp_path, "x", "3.2", "ref", "distance", test_samples, paper_geometry)}


FALL, REPAIR, HARMLESS = (
    "unregularized_falls_to_chance_with_range",
    "regularizer_recovers_long_range",
    "regularizer_harmless_at_short_range",
)


def test_claims_pass_on_the_papers_pattern(tmp_path):
    found = sweep(tmp_path, {0.0: [0.90, 0.70, 0.52], 1.0: [0.89, 0.85, 0.80]})
    assert {c.verdict for c in found.values()} == {PASSED}
    # gain 28 points, half the drop 19: the seeds' shifts cancel in every paired difference (a zero-width interval)
    assert found[REPAIR].measured["gain_minus_half_drop_points"] == "mean 9, 95% CI [9, 9] points over 2 seeds"
    assert all("gate: " in c.details and "— met" in c.details for c in found.values())


def test_the_fall_is_an_exact_paired_interval(tmp_path):
    """Drops 0.30 and 0.34: mean 0.32, s = 0.02√2, t_{0.975,1} = 12.706 ⇒ half-width 12.706 · 0.02 = 0.254."""
    found = sweep(tmp_path, {0.0: [[0.90, 0.90], 0.7, [0.60, 0.56]], 1.0: [0.90, 0.85, 0.80]}, paper_geometry=False)
    assert found[FALL].measured["drop_points"] == "mean 32, 95% CI [6.59, 57.41] points over 2 seeds"
    assert found[FALL].verdict == PASSED


def test_claims_fail_when_the_regularizer_does_not_help(tmp_path):
    found = sweep(tmp_path, {0.0: [0.90, 0.70, 0.52], 1.0: [0.80, 0.60, 0.51]})
    assert found[FALL].verdict == PASSED
    assert found[REPAIR].verdict == FAILED
    assert found[HARMLESS].verdict == FAILED


def test_a_difference_within_the_seed_spread_does_not_decide(tmp_path):
    """A mean drop of 20 points whose seeds disagree (40 and 0 points) does not show the fall; a mean loss of 1 point
    at short range with seeds at −12 and +10 does not show harmlessness; the same means with agreeing seeds do."""
    noisy = sweep(tmp_path / "noisy", {0.0: [[0.90, 0.90], 0.7, [0.50, 0.90]], 1.0: [[0.78, 1.0], 0.8, [0.80, 0.80]]})
    assert noisy[FALL].verdict == FAILED and noisy[HARMLESS].verdict == FAILED
    steady = sweep(tmp_path / "steady", {0.0: [0.90, 0.7, 0.50], 1.0: [0.89, 0.8, 0.80]})
    assert steady[FALL].verdict == PASSED and steady[HARMLESS].verdict == PASSED


def test_harmless_is_non_inferiority_and_the_repair_needs_more_than_half_the_drop(tmp_path):
    better = sweep(tmp_path / "better", {0.0: [0.80, 0.70, 0.50], 1.0: [0.90, 0.85, 0.66]})
    assert better[HARMLESS].verdict == PASSED  # 10 points better at short range is no harm
    assert better[REPAIR].verdict == PASSED  # gain 16 > half the drop 15
    short = sweep(tmp_path / "short", {0.0: [0.80, 0.70, 0.50], 1.0: [0.80, 0.70, 0.64]})
    assert short[REPAIR].verdict == FAILED  # gain 14 < 15: recovers less than half
    assert "(acc_λ − acc_0 at the longest) − ½" in short[REPAIR].statement


def test_the_papers_geometry_also_claims_chance(tmp_path):
    """λ = 0 drops 20 points but ends at 70 %: a fall on a reduced geometry, a failure on the paper's."""
    accuracies = {0.0: [0.90, 0.80, 0.70], 1.0: [0.90, 0.85, 0.85]}
    assert sweep(tmp_path / "paper", accuracies)[FALL].verdict == FAILED
    reduced = sweep(tmp_path / "reduced", accuracies, paper_geometry=False)
    assert reduced[FALL].verdict == PASSED and "reduced geometry" in reduced[FALL].statement
    no_fall = sweep(tmp_path / "flat", {0.0: [0.90, 0.88, 0.90], 1.0: [0.90, 0.88, 0.90]}, paper_geometry=False)
    assert no_fall[FALL].verdict == FAILED


def test_one_gate_withholds_every_claim_alike(tmp_path):
    fails = {0.0: [0.90, 0.70, 0.52], 1.0: [0.80, 0.60, 0.51]}  # passes the fall, fails the other two
    unfit = sweep(tmp_path / "unfit", fails, unfit_cell=(1.0, 2))
    assert {c.verdict for c in unfit.values()} == {NOT_SHOWN}
    assert all("NOT met" in c.details and "6/8 compared nets fitted" in c.details for c in unfit.values())
    assert "λ=1 distance 2 seed 0: 80 %" in unfit[REPAIR].details
    middle = sweep(tmp_path / "middle", fails, unfit_cell=(1.0, 1))  # only the shortest and longest are compared
    assert middle[FALL].verdict == PASSED and middle[REPAIR].verdict == FAILED
    never_learns = sweep(tmp_path / "a", {0.0: [0.55, 0.52, 0.50], 1.0: [0.55, 0.53, 0.51]})
    assert {c.verdict for c in never_learns.values()} == {NOT_SHOWN}
    too_few = sweep(tmp_path / "d", {0.0: [0.90, 0.70, 0.52], 1.0: [0.89, 0.85, 0.80]}, test_samples=100)
    assert {c.verdict for c in too_few.values()} == {NOT_SHOWN}
    assert "100 test samples per run" in too_few[REPAIR].details


def test_cells_with_different_seeds_decide_nothing(tmp_path):
    """The intervals pair cells seed by seed: a cell that ran other seeds (here seeds 0 and 5 at λ = 1, range 2)
    cannot be paired, so the gate withholds every claim instead of pairing seed 5 with seed 1."""
    found = sweep(tmp_path, {0.0: [0.90, 0.70, 0.52], 1.0: [0.89, 0.85, 0.80]}, cell_seeds={(1.0, 2): (0, 5)})
    assert {c.verdict for c in found.values()} == {NOT_SHOWN}
    assert all("(2 different seed sets)" in c.details for c in found.values())


def test_one_seed_decides_nothing(tmp_path):
    found = sweep(tmp_path, {0.0: [0.90, 0.70, 0.52], 1.0: [0.89, 0.85, 0.80]}, seeds=(0.0,))
    assert {c.verdict for c in found.values()} == {NOT_SHOWN}
    assert all("decided on 1 seed(s)" in c.details and "1 seed(s) per cell" in c.details for c in found.values())


def test_resize_images_averages_pixel_blocks_grey_and_rgb():
    grey = np.array([[[0, 10, 20, 30], [2, 12, 22, 32], [100, 100, 0, 0], [100, 101, 0, 0]]], dtype=np.uint8)
    assert resize_images(grey, 2).tolist() == [[[6, 26], [100, 0]]]  # block means 6, 26, 100.25, 0
    rgb = np.stack([grey[0], 255 - grey[0], grey[0]], axis=-1)[None]
    out = resize_images(rgb, 2)
    assert out.shape == (1, 2, 2, 3) and out.dtype == np.uint8 and out[0, :, :, 1].tolist() == [[249, 229], [155, 255]]
