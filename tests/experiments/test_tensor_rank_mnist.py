"""§2.2: task preparation (subsample, binarize, one-vs-all, randomized variants), the run on real data, the claims."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from rankrepro.core.errors import ConfigError
from rankrepro.core.io import read_json
from rankrepro.data.image_datasets import ImageDataset
from rankrepro.data.sources import DataSource
from rankrepro.experiments.base import Context, store_results
from rankrepro.experiments.ch2 import tensor_rank_mnist as exp
from rankrepro.pipeline.claims import FAILED, NOT_SHOWN, PASSED
from rankrepro.pipeline.config import experiment_section, load_config, load_schema
from rankrepro.pipeline.settings import FigureContext, bookkeeping_keys

MIRROR = Path(__file__).resolve().parents[3] / "shared" / "datasets"
CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"


def _images(n_train: int = 40, n_test: int = 20, seed: int = 0) -> ImageDataset:
    rng = np.random.default_rng(seed)
    return ImageDataset(
        name="fake",
        train_images=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        train_labels=rng.integers(0, 10, n_train),
        test_images=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        test_labels=rng.integers(0, 10, n_test),
        class_names=tuple("0123456789"),
    )


SETTINGS = {
    "data_seed": 3,
    "seed": 4,
    "datasets": ["mnist"],
    "positive_class": 6,
    "n_train": 30,
    "n_test": 10,
    "ranks": [1, 2],
    "variants": ["natural", "random_labels", "random_images"],
    "num_seeds": 2,
    "epochs": 3,
    "batch_size": 16,
    "lr": 1.0e-2,
    "init_mean": 1.0,
    "init_std": 1.0e-3,
    "eval_every": 1,
    "checkpoint_every": 0,
}
TYPED = exp.Settings.from_mapping(SETTINGS, "experiments.tensor_rank_mnist")


@pytest.mark.parametrize("tier", ["smoke.yaml", "config.yaml", "paper.yaml"])
def test_settings_build_from_every_tier_and_record_the_section(tier):
    section = experiment_section(load_config(CONFIG_DIR / tier), exp.NAME)
    settings = exp.Settings.from_mapping(section, f"experiments.{exp.NAME}")
    assert settings.record() == section
    assert isinstance(settings.ranks, tuple) and isinstance(settings.lr, float)
    assert settings.n_train == section["n_train"] and settings.datasets == tuple(section["datasets"])


def test_fit_settings_and_adam_steps():
    fit = TYPED.fit_settings(rank=2)
    assert (fit.epochs, fit.batch_size, fit.lr, fit.eval_every, fit.checkpoint_every) == (3, 16, 1e-2, 1, 0)
    assert fit.shuffle_seed == SETTINGS["seed"] + 2
    assert TYPED.adam_steps() == 3 * 2  # ⌈30 / 16⌉ = 2 mini-batches per epoch
    paper = exp.Settings.from_mapping(experiment_section(load_config(CONFIG_DIR / "paper.yaml"), exp.NAME))
    assert paper.adam_steps() == 10_000 * 12  # all 60,000 images in mini-batches of 5,000


def test_smoke_caption_names_its_departures_and_the_paper_caption_none():
    paper = experiment_section(load_config(CONFIG_DIR / "paper.yaml"), exp.NAME)
    bookkeeping = bookkeeping_keys(load_schema(), exp.NAME)
    assert bookkeeping == {"checkpoint_every"}
    figure = FigureContext("smoke", paper, bookkeeping)
    text = figure.substitutions(experiment_section(load_config(CONFIG_DIR / "smoke.yaml"), exp.NAME))
    assert "n_train 10,000 (paper: —)" in text and "epochs 50 (paper: 10,000)" in text
    assert "checkpoint_every" not in text
    assert figure.substitutions(paper) == "none"


def test_one_vs_all_targets_are_two_for_the_positive_class():
    assert exp.one_vs_all_targets(np.array([6, 1, 6, 0]), 6).tolist() == [2.0, 0.0, 2.0, 0.0]


def test_subsample_is_seeded_sorted_and_full_when_unrestricted():
    a = exp.subsample(100, 10, torch.Generator().manual_seed(1))
    b = exp.subsample(100, 10, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and torch.equal(a, a.sort().values) and len(set(a.tolist())) == 10
    assert torch.equal(exp.subsample(7, None, torch.Generator()), torch.arange(7))


def test_prepare_task_binarizes_at_128_and_subsamples():
    images = _images()
    task = exp.prepare_task(images, TYPED, 0)
    assert task["X_train"].shape == (30, 784) and task["X_train"].dtype == torch.bool
    assert task["X_test"].shape == (10, 784)
    # every training row is the binarization of one of the original images
    originals = torch.as_tensor(images.train_images.reshape(40, 784) >= 128)
    assert all(any(torch.equal(row, o) for o in originals) for row in task["X_train"])


def test_variants_randomize_what_they_should():
    X = torch.rand(500, 784, generator=torch.Generator().manual_seed(0)) < 0.2
    y = (torch.arange(500) % 10 == 6).double() * 2
    same_X, shuffled = exp.variant_split(X, y, "random_labels", torch.Generator().manual_seed(1))
    assert (
        torch.equal(same_X, X) and not torch.equal(shuffled, y) and torch.equal(shuffled.sort().values, y.sort().values)
    )
    noise, same_y = exp.variant_split(X, y, "random_images", torch.Generator().manual_seed(1))
    assert torch.equal(same_y, y) and abs(float(noise.double().mean()) - 0.5) < 0.01
    assert exp.variant_split(X, y, "natural", torch.Generator())[0] is X
    with pytest.raises(ValueError, match="unknown variant"):
        exp.variant_split(X, y, "shuffled", torch.Generator())


def test_batch_data_is_the_same_for_every_rank_and_differs_across_seeds():
    task = exp.prepare_task(_images(), TYPED, 0)
    (X1, y1), _ = exp.batch_data(task, TYPED, 0)
    (X2, y2), _ = exp.batch_data(task, TYPED, 0)
    assert torch.equal(X1, X2) and torch.equal(y1, y2)
    runs = exp.batch_runs(TYPED)
    assert X1.shape == (len(runs), 30, 784)
    k = runs.index(("random_images", 0))
    assert not torch.equal(X1[k], X1[k + 1])  # seeds 0 and 1 draw different random images


def test_variance_line_is_p_one_minus_p():
    assert exp.variance_line(torch.tensor([2.0, 0.0, 0.0, 0.0])) == pytest.approx(0.1875)


def test_natural_variant_is_required():
    with pytest.raises(ConfigError, match="tensor_rank_mnist.variants"):
        exp._check_settings(exp.Settings.from_mapping({**SETTINGS, "variants": ["random_labels"]}))


class FakeSource(DataSource):
    """A DataSource serving synthetic images (no files)."""

    def image_classification(self, name: str) -> ImageDataset:
        return _images(seed=len(name))


@pytest.fixture(scope="module")
def fake_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("mnist") / "tensor_rank_mnist"
    exp.run(TYPED, out, Context(tier="test", device=torch.device("cpu"), progress=False), FakeSource(Path(".")))
    return out


def test_run_writes_curves_summary_and_cached_batches(fake_results):
    summary = read_json(fake_results / "summary.json")
    assert len(summary["runs"]) == 2 * 3 * 2  # ranks × variants × seeds
    assert set(summary["variance"]) == {"mnist"}
    assert sorted(p.name for p in (fake_results / "batches").iterdir()) == ["mnist_R1.json", "mnist_R2.json"]
    assert not (fake_results / "checkpoints").exists()
    # a rerun reuses the finished batches without touching the data
    exp.run(
        TYPED,
        fake_results,
        Context(tier="test", device=torch.device("cpu"), progress=False),
        DataSource(Path("/nonexistent")),
    )


def test_figure_and_claim_verdicts(fake_results, tmp_path):
    paths = exp.plot(fake_results, tmp_path / "fig.png", FigureContext("test"))
    assert all(p.stat().st_size > 0 for p in paths)
    records = exp.claims(fake_results, "test")
    assert [r.claim_id for r in records] == [
        f"mnist_{c}"
        for c in (
            "natural_fit_better_every_rank",
            "natural_fit_far_better_low_rank",
            "natural_generalizes_low_rank",
            "natural_fit_improves_with_rank",
        )
    ]


def _planted(fake_results, tmp_path, name, train, test, curve=None, runs=None):
    """A copy of the results with final errors ``train(variant, rank, seed)`` / ``test(variant, rank, seed)`` (0/1
    scale), learning curves ``curve(variant, rank, epoch, seed)`` (default: levelled off at the final error; the
    test curve levelled off at the final test error), and only the runs for which ``runs(run)`` holds."""
    import pandas as pd

    summary = read_json(fake_results / "summary.json")
    for run in summary["runs"]:
        run["train_error"] = train(run["variant"], run["rank"], run["seed"])
        run["test_error"] = test(run["variant"], run["rank"], run["seed"])
    if runs is not None:
        summary["runs"] = [r for r in summary["runs"] if runs(r)]
    metrics = pd.read_csv(fake_results / "metrics.csv")
    curve = curve or (lambda v, r, e, s: train(v, r, s))
    metrics["train_error"] = [curve(*row) for row in metrics[["variant", "rank", "epoch", "seed"]].itertuples(False)]
    metrics["test_error"] = [test(*row) for row in metrics[["variant", "rank", "seed"]].itertuples(False)]
    out = tmp_path / name
    shutil.copytree(fake_results, out)
    store_results(out, metrics, summary)
    return {r.claim_id.removeprefix("mnist_"): r for r in exp.claims(out, "test")}


def _clear(variance):
    """A clear natural ≪ random picture: natural fit at 0.010 (R=1) falling to 0.008 (R=2), random at 0.08 (R=1)
    falling to 0.06 (R=2), a little seed noise; natural test well below the variance, random test above it."""
    train = {
        "natural": lambda r, s: (0.010 if r == 1 else 0.008) + 1e-4 * s,
        "random": lambda r, s: (0.08 if r == 1 else 0.06) + 5e-4 * s,
    }
    return (
        lambda v, r, s: train["natural" if v == "natural" else "random"](r, s),
        lambda v, r, s: (0.3 if v == "natural" else 1.2) * variance + 1e-3 * s,
    )


def test_claims_read_the_numbers(fake_results, tmp_path):
    """Planted final errors: a clear natural ≪ random picture passes every claim; its reverse fails every claim."""
    variance = read_json(fake_results / "summary.json")["variance"]["mnist"]
    train, test = _clear(variance)
    good = _planted(fake_results, tmp_path, "good", train, test)
    assert {k: r.verdict for k, r in good.items()} == dict.fromkeys(good, PASSED)
    assert good["natural_fit_better_every_rank"].measured["random_labels R=1"]["n"] == 2  # paired by seed
    assert all("gate:" in r.details and "met" in r.details for r in good.values())

    def reverse(v, r, s):  # random data fit at every rank, natural not, and natural data not fit better with rank
        return train("natural" if v != "natural" else "random", 1, s)

    bad = _planted(fake_results, tmp_path, "bad", reverse, lambda v, r, s: test("random", r, s))
    assert {k: r.verdict for k, r in bad.items()} == dict.fromkeys(bad, FAILED)
    assert "interval not above 0" in bad["natural_fit_improves_with_rank"].details

    natural = _planted(fake_results, tmp_path, "natural", reverse, test, runs=lambda r: r["variant"] == "natural")
    assert natural["natural_fit_better_every_rank"].verdict == NOT_SHOWN
    assert natural["natural_generalizes_low_rank"].verdict == PASSED


def test_a_paired_interval_that_reaches_zero_fails(fake_results, tmp_path):
    """Natural data barely fit better at R=2 than at R=1, with seed noise larger than the gain: the paired interval
    reaches 0 and the claim fails, although the mean difference is positive."""
    variance = read_json(fake_results / "summary.json")["variance"]["mnist"]
    train, test = _clear(variance)

    def noisy(v, r, s):
        return train(v, r, s) if v != "natural" else 0.01 - (1e-5 if r == 2 else 0.0) + (4e-4 if (r + s) % 2 else 0.0)

    claim = _planted(fake_results, tmp_path, "noisy", noisy, test)["natural_fit_improves_with_rank"]
    interval = claim.measured["natural R=1 − R=2"]
    assert interval["mean"] > 0 and interval["low"] < 0 and claim.verdict == FAILED


def test_one_gate_for_every_claim_natural_fit_still_falling(fake_results, tmp_path):
    """One gate for all §2.2 claims: when a natural-data fit was still falling at the end, passes and failures
    alike are not shown; when it levelled off (random fits may still fall), the verdicts stand."""
    variance = read_json(fake_results / "summary.json")["variance"]["mnist"]
    train, test = _clear(variance)

    def falling(v, r, e, s):  # natural data still improving fast at the end
        return 0.2 / e if v == "natural" else train(v, r, s)

    gated = _planted(fake_results, tmp_path, "falling", train, test, curve=falling)
    assert {r.verdict for r in gated.values()} == {NOT_SHOWN}
    assert all("NOT met" in r.details and "Adam steps" in r.details for r in gated.values())

    def random_falling(v, r, e, s):  # random fits still falling at the end (by the same amount at every rank)
        return train(v, r, s) + (0.0 if v == "natural" else 0.3 / e)

    open_ = _planted(fake_results, tmp_path, "random_falling", train, test, curve=random_falling)
    assert {r.verdict for r in open_.values()} == {PASSED}


@pytest.mark.skipif(not MIRROR.is_dir(), reason="the dataset mirror ../shared/datasets is not present")
def test_real_mnist_task_has_the_expected_positive_fraction(tmp_path):
    source = DataSource(tmp_path / "cache", MIRROR)
    task = exp.prepare_task(
        source.image_classification("mnist"),
        exp.Settings.from_mapping({**SETTINGS, "n_train": None, "n_test": None}),
        0,
    )
    assert task["X_train"].shape == (60000, 784)
    assert float((task["y_train"] > 0).double().mean()) == pytest.approx(5918 / 60000)
    assert 0.12 < float(task["X_train"].double().mean()) < 0.14  # binarized MNIST is ≈ 13 % ink
    assert os.listdir(tmp_path / "cache") == ["mnist"]


def test_a_runs_errors_are_the_means_over_its_last_fifth_of_epochs():
    import pandas as pd

    epochs = list(range(10, 110, 10))  # tail: epochs ≥ 80
    curves = pd.DataFrame(
        {
            "dataset": "mnist",
            "rank": 1,
            "variant": "natural",
            "seed": 0,
            "epoch": epochs,
            "train_error": [float(e) for e in epochs],
            "test_error": [2.0 * e for e in epochs],
        }
    )
    runs = pd.DataFrame([{"dataset": "mnist", "rank": 1, "variant": "natural", "seed": 0, "diverged": False}])
    table = exp.tail_errors(curves, runs)
    assert table.to_dict(orient="records") == [
        {
            "dataset": "mnist",
            "rank": 1,
            "variant": "natural",
            "seed": 0,
            "train_error": 90.0,
            "test_error": 180.0,
            "diverged": False,
        }
    ]


def test_still_improving_measures_the_drop_over_the_last_fifth():
    import pandas as pd

    epochs = list(range(10, 110, 10))
    curves = pd.DataFrame(
        {
            "variant": "natural",
            "rank": 1,
            "seed": 0,
            "epoch": epochs,
            "train_error": [0.1 - 0.001 * e / 10 for e in epochs],
        }
    )
    flat = curves.assign(rank=2, train_error=0.05)
    drops = exp.still_improving(pd.concat([curves, flat]), [1, 2])
    assert list(drops) == [1] and drops[1] == pytest.approx((0.092 - 0.09) / 0.092, abs=1e-4)
