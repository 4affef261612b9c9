"""Chapter-4 experiments end to end on small fake data: Table 1 (Is-Same-Class) and edge sparsification."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rankrepro.core.errors import ConfigError, DataError
from rankrepro.core.graphs import undirected_edges
from rankrepro.data.graph_datasets import GraphDataset
from rankrepro.data.image_datasets import ImageDataset
from rankrepro.experiments.base import Context
from rankrepro.experiments.ch4 import edge_sparsification as sparsification
from rankrepro.experiments.ch4 import is_same_class_gnn as table1
from rankrepro.pipeline.claims import DATA_UNAVAILABLE, FAILED, NOT_SHOWN, PASSED
from rankrepro.pipeline.config import experiment_section, load_config, load_schema
from rankrepro.pipeline.settings import FigureContext, bookkeeping_keys

CTX = Context(tier="test", device=torch.device("cpu"), threads=1, progress=False)
CONFIG = Path(__file__).parents[2] / "config"
#: mirror graphs the fake data cannot obtain (as if the mirror lacked them)
UNOBTAINABLE = ("dblp", "squirrel", "ogbn-arxiv", "amazon-computers")


def tier_section(tier: str, module) -> dict:
    """The experiment's settings section of config/<tier>.yaml, as the CLI passes it."""
    return experiment_section(load_config(CONFIG / f"{tier}.yaml"), module.NAME)


def against_paper(module, tier: str = "test") -> FigureContext:
    """The figure context the workflow gives a plot job: the paper tier's section and the schema's bookkeeping keys."""
    return FigureContext(tier, tier_section("paper", module), bookkeeping_keys(load_schema(), module.NAME))


class FakeData:
    """A DataSource stand-in: random 28×28 images (labels 0…9) and a small two-community graph; 'dblp' cannot be
    obtained."""

    def image_classification(self, name: str) -> ImageDataset:
        rng = np.random.default_rng(0)
        return ImageDataset(
            name=name,
            train_images=rng.integers(0, 256, (50, 28, 28), dtype=np.uint8),
            train_labels=np.arange(50) % 10,
            test_images=rng.integers(0, 256, (30, 28, 28), np.uint8),
            test_labels=np.arange(30) % 10,
            class_names=tuple("0123456789"),
        )

    def graph(self, name: str) -> GraphDataset:
        if name in UNOBTAINABLE:
            raise DataError(f"dataset '{name}' is not available: offline test")
        rng = np.random.default_rng(1)
        labels = np.arange(30) % 3
        pairs = [
            (u, v)
            for u in range(30)
            for v in range(u + 1, 30)
            if rng.random() < (0.4 if labels[u] == labels[v] else 0.05)
        ]
        features = (np.eye(3)[labels] + rng.normal(0, 1.0, (30, 3))).astype(np.float32)
        return GraphDataset(
            name=name,
            features=features,
            labels=labels.astype(np.int64),
            edges=undirected_edges(np.array(pairs)),
            class_names=("a", "b", "c"),
        )


TABLE1 = {
    "seed": 1,
    "dataset": "fashion-mnist",
    "datasets": ["fashion-mnist"],
    "models": ["gcn", "gin"],
    "train_pairs": 12,
    "test_pairs": 6,
    "max_epochs": 3,
    "patience": 3,
    "seeds": 2,
    "width": 4,
    "depth": 3,
    "heads": 2,
    "lr": {"gcn": 5e-3, "gin": 1e-2},
    "normalize": {"mean": 0.286, "std": 0.353},
    "per_model": {},
}
TABLE1_SETTINGS = table1.Settings.from_mapping(TABLE1)

SPARSIFY = {
    "seed": 1,
    "datasets": ["cora"],
    "optional_datasets": ["dblp"],
    "models": ["gcn"],
    "methods": ["random", "spectral", "ugs", "one_wis", "two_wis"],
    "two_wis_datasets": ["cora"],
    "two_wis_chunk": 2,
    "removed_percents": [0, 30, 60, 100],
    "seeds": 2,
    "width": 8,
    "heads": 2,
    "depth": {"gcn": 2, "gat": 2, "gin": 2, "resgcn": 3},
    "max_epochs": 3,
    "patience": 3,
    "batch_runs": 4,
    "split": [0.6, 0.2, 0.2],
    "optimizer": {
        "cora": {"lr": 1e-2, "weight_decay": 0.0},
        "squirrel": {"lr": 1e-2, "weight_decay": 0.0},
        "dblp": {"lr": 1e-3, "weight_decay": 0.0},
    },
    "ugs": {"l1": 1e-2, "rounds": 2, "prune_fraction": 0.2, "epochs": 2},
    "spectral": {"resistances": "exact", "projections": 20},
    "per_dataset": {},
    "per_model": {},
}
SPARSIFY_SETTINGS = sparsification.Settings.from_mapping(SPARSIFY)


# ----------------------------------------------------------------------------------------------------- Table 1
@pytest.fixture(scope="module")
def table1_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("table1")
    table1.run(TABLE1_SETTINGS, out, CTX, FakeData())
    return out


def test_table1_runs_every_model_arrangement_and_seed(table1_results):
    metrics = pd.read_csv(table1_results / "metrics.csv")
    assert len(metrics) == 2 * 2 * 2 and set(metrics["arrangement"]) == {"low", "high"}
    assert metrics["train_acc"].between(0, 1).all() and (metrics["epochs"] <= 3).all()
    summary = json.loads((table1_results / "summary.json").read_text())
    assert summary["walk_index"] == {"low": 548, "high": 8258}


def test_table1_runs_are_cached(table1_results, monkeypatch):
    before = pd.read_csv(table1_results / "metrics.csv")
    monkeypatch.setattr(table1, "run_one", lambda *a, **k: pytest.fail("a cached run was recomputed"))
    table1.run(TABLE1_SETTINGS, table1_results, CTX, FakeData())
    pd.testing.assert_frame_equal(before, pd.read_csv(table1_results / "metrics.csv"))


def test_table1_low_and_high_runs_of_a_seed_start_from_the_same_weights(monkeypatch):
    starts = {}

    def record(model, *args, **kwargs):
        starts.setdefault(len(starts), [p.detach().clone() for p in model.parameters()])
        from rankrepro.gnn.training import TrainingOutcome

        return TrainingOutcome({"train": 0.5, "test": 0.5}, 1, 1, 0.0)

    monkeypatch.setattr(table1.gnn_training, "train_graph_classifier", record)
    x = torch.zeros(2, 32, 49)
    data = ((x, torch.zeros(2)), (x, torch.zeros(2)))
    for kind in ("low", "high"):
        table1.run_one(TABLE1_SETTINGS, "gcn", kind, 0, *data)
    table1.run_one(TABLE1_SETTINGS, "gcn", "low", 1, *data)
    assert all(torch.equal(a, b) for a, b in zip(starts[0], starts[1]))
    assert not all(torch.equal(a, b) for a, b in zip(starts[0], starts[2]))


def test_table1_plot_writes_figure_and_table(table1_results, tmp_path):
    paths = table1.plot(table1_results, tmp_path / "is_same_class_gnn.png", against_paper(table1))
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size for p in paths)
    markdown = (tmp_path / "is_same_class_gnn.md").read_text()
    assert markdown.startswith("| model | train, low WI (548)") and "| GCN |" in markdown and "| GIN |" in markdown
    assert len(pd.read_csv(tmp_path / "is_same_class_gnn.csv")) == 4


@pytest.mark.parametrize("depth,expected", [(2, (34, 514)), (3, (548, 8258)), (4, (8806, 132676))])
def test_table1_arrangements_have_the_walk_indices_of_the_paper(depth, expected):
    """What the former claim `arrangement_walk_indices` checked (a combinatorial constant): now a test."""
    assert table1.arrangement_walk_indices(depth) == dict(zip(("low", "high"), expected))


def table1_metrics(train_gaps, test_gaps, low=(0.8, 0.5)) -> pd.DataFrame:
    """Planted GCN runs: per seed a low run and a high run ``gap`` above it (train, test)."""
    rows = []
    for seed, (train_gap, test_gap) in enumerate(zip(train_gaps, test_gaps)):
        rows.append({"model": "gcn", "arrangement": "low", "seed": seed, "train_acc": low[0], "test_acc": low[1]})
        rows.append(
            {
                "model": "gcn",
                "arrangement": "high",
                "seed": seed,
                "train_acc": low[0] + train_gap,
                "test_acc": low[1] + test_gap,
            }
        )
    return pd.DataFrame(rows).assign(epochs=300, best_epoch=250, time_s=1.0)


def test_table1_claims_are_not_shown_at_a_tiny_scale(table1_results):
    results = {c.claim_id: c for c in table1.claims(table1_results, "test")}
    assert set(results) == {"gcn_high_walk_index_fits_better", "gin_high_walk_index_fits_better"}
    assert all(c.verdict == NOT_SHOWN and "gate:" in c.details for c in results.values())


def test_table1_claim_passes_on_a_paired_gain_and_fails_when_the_interval_reaches_zero():
    """Paired by seed: gains 0.05, 0.06, 0.07 give mean 6 points, 95 % CI 6 ± 4.303·1/√3 = [3.52, 8.48] points."""
    passed = table1.model_claim(table1_metrics([0.05, 0.06, 0.07], [0.1, 0.12, 0.11]), "gcn")
    assert passed.verdict == PASSED
    assert passed.measured["train_gap_points"]["ci95"] == pytest.approx([3.52, 8.48], abs=0.01)
    assert passed.measured["train_gap_points"]["pairs"] == 3 and "over 3 pairs" in passed.details
    # the same mean train gain (6 points) with one seed against it: the interval reaches 0
    failed = table1.model_claim(table1_metrics([0.13, 0.13, -0.08], [0.1, 0.12, 0.11]), "gcn")
    assert failed.verdict == FAILED and failed.measured["train_gap_points"]["mean"] == pytest.approx(6.0)
    # a test accuracy below low on average fails even with a clear train gain
    assert table1.model_claim(table1_metrics([0.05, 0.06, 0.07], [-0.02, 0.01, -0.01]), "gcn").verdict == FAILED
    # one seed cannot show it
    assert table1.model_claim(table1_metrics([0.05], [0.1]), "gcn").verdict == NOT_SHOWN


def test_table1_gate_needs_the_scale_and_every_net_to_learn():
    scaled = table1.Settings.from_mapping({**TABLE1, "train_pairs": 1000, "max_epochs": 300, "seeds": 3})
    metrics = table1_metrics([0.05, 0.06, 0.07], [0.1, 0.12, 0.11])
    gate = table1.gate(metrics, scaled)
    assert gate.holds and "lowest train accuracy 80.0 %" in gate.measured and "0 of 6 runs stopped" in gate.measured
    assert not table1.gate(metrics, TABLE1_SETTINGS).holds  # 12 pairs, 3 epochs
    unlearned = metrics.copy()
    unlearned.loc[0, "train_acc"] = 0.55
    assert not table1.gate(unlearned, scaled).holds


def test_table1_per_model_plan_runs_a_models_first_seeds_from_the_shared_cache(table1_results, tmp_path, monkeypatch):
    """GIN restricted to its first seed: GCN runs both, GIN one; every run is the unrestricted run's (the plan is
    not in a run's fingerprint, so the cache serves it), the caption counts seeds per model, and the gate asks
    ≥ 2 seeds of every model."""
    out = tmp_path / "planned"
    shutil.copytree(table1_results, out)
    monkeypatch.setattr(table1, "run_one", lambda *a, **k: pytest.fail("a cached run was recomputed"))
    settings = table1.Settings.from_mapping({**TABLE1, "per_model": {"gin": {"seeds": 1}}})
    assert (settings.seeds_of("gcn"), settings.seeds_of("gin"), settings.fewest_seeds()) == (2, 1, 1)
    table1.run(settings, out, CTX, FakeData())
    planned, full = pd.read_csv(out / "metrics.csv"), pd.read_csv(table1_results / "metrics.csv")
    assert planned.groupby("model")["seed"].nunique().to_dict() == {"gcn": 2, "gin": 1}
    kept = full[(full["model"] == "gcn") | (full["seed"] == 0)]
    pd.testing.assert_frame_equal(planned.reset_index(drop=True), kept.reset_index(drop=True))
    assert "mean ± std over 2 (GCN) / 1 (GIN) seeds" in table1.describe(settings, {"low": 548, "high": 8258})
    assert "mean ± std over 2 seed(s)" in table1.describe(TABLE1_SETTINGS, {"low": 548, "high": 8258})
    scaled = {**TABLE1, "train_pairs": 1000, "max_epochs": 300, "seeds": 3}
    metrics = table1_metrics([0.05, 0.06, 0.07], [0.1, 0.12, 0.11])
    assert table1.gate(metrics, table1.Settings.from_mapping(scaled)).holds
    gate = table1.gate(metrics, table1.Settings.from_mapping({**scaled, "per_model": {"gin": {"seeds": 1}}}))
    assert not gate.holds and "3 (GCN) / 1 (GIN) seeds" in gate.measured


@pytest.mark.parametrize(
    "plan, message",
    [({"gat": {"seeds": 1}}, "per_model.gat: 'gat' is not one of"), ({"gcn": {"seeds": 3}}, "3 seeds, more than")],
)
def test_table1_per_model_plan_outside_the_experiment_is_a_config_error(plan, message):
    with pytest.raises(ConfigError, match=message):
        table1.run(table1.Settings.from_mapping({**TABLE1, "per_model": plan}), "unused", CTX, FakeData())


def test_table1_config_errors():
    with pytest.raises(ConfigError, match="must be listed under 'datasets'"):
        table1.run(table1.Settings.from_mapping({**TABLE1, "dataset": "mnist"}), "unused", CTX, FakeData())
    with pytest.raises(ConfigError, match="no learning rate"):
        table1.run(table1.Settings.from_mapping({**TABLE1, "models": ["gat"]}), "unused", CTX, FakeData())
    with pytest.raises(ConfigError, match="is not one of"):
        table1.Settings.from_mapping({**TABLE1, "dataset": "cifar-10"})


# ----------------------------------------------------------------------------------------------------- sparsification
@pytest.fixture(scope="module")
def sparsification_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("sparsify")
    sparsification.run(SPARSIFY_SETTINGS, out, CTX, FakeData())
    return out


def test_sparsification_runs_every_method_level_and_seed_sharing_the_endpoints(sparsification_results):
    metrics = pd.read_csv(sparsification_results / "metrics.csv")
    inner = metrics[metrics["method"] != "all"]
    assert len(inner) == 5 * 2 * 2 and set(inner["removed_pct"]) == {30, 60}
    shared = metrics[metrics["method"] == "all"]
    assert sorted(shared["removed_pct"]) == [0, 0, 100, 100]
    m = len(FakeData().graph("cora").edges)
    assert set(shared["edges_kept"]) == {m, 0}
    assert set(inner[inner["removed_pct"] == 30]["edges_kept"]) == {int(m * 0.7)}


def test_sparsification_orders_are_cached_per_dataset_method_and_seed(sparsification_results, monkeypatch):
    orders = sorted(p.stem for p in (sparsification_results / "orders").glob("*.json"))
    assert orders == [
        "cora_one_wis",
        "cora_random_seed0",
        "cora_random_seed1",
        "cora_spectral_seed0",
        "cora_spectral_seed1",
        "cora_two_wis",
        "cora_ugs_seed0",
        "cora_ugs_seed1",
    ]
    monkeypatch.setattr(sparsification, "compute_order", lambda *a, **k: pytest.fail("an order was recomputed"))
    monkeypatch.setattr(
        sparsification.gnn_training, "train_vertex_classifiers", lambda *a, **k: pytest.fail("a run was recomputed")
    )
    sparsification.run(SPARSIFY_SETTINGS, sparsification_results, CTX, FakeData())


def test_sparsification_batches_depend_on_the_settings_only():
    """Runs of one model and seed, in order, in chunks of batch_runs: 12 runs per seed → 4 + 4 + 4."""
    kept = np.arange(3)
    specs = [
        sparsification.RunSpec(model, "random", q, seed, kept, f"{model}_{q}_{seed}")
        for seed in (0, 1)
        for q in range(6)
        for model in ("gcn", "gin")
    ]
    chunks = sparsification.batches(specs, ("gcn", "gin"), 2, 4)
    assert [len(c) for c in chunks] == [4, 2, 4, 2, 4, 2, 4, 2]
    assert [s.key for s in chunks[0]] == ["gcn_0_0", "gcn_1_0", "gcn_2_0", "gcn_3_0"]
    assert all(len({(s.model, s.seed_index) for s in c}) == 1 for c in chunks)


def test_sparsification_recomputes_a_lost_run_with_its_whole_batch_bit_for_bit(
    sparsification_results, tmp_path, monkeypatch
):
    """A killed job leaves whole batches: deleting one run's file retrains exactly its batch, whose numbers come
    back identical; every other batch is read from the cache."""
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(sparsification_results, out)
    before = pd.read_csv(out / "metrics.csv")
    (out / "batches" / "cora_gcn_random_r30_seed0.json").unlink()
    trained = []
    original = sparsification.gnn_training.train_vertex_classifiers

    def spy(model, *args, **kwargs):
        trained.append(model.runs)
        return original(model, *args, **kwargs)

    monkeypatch.setattr(sparsification.gnn_training, "train_vertex_classifiers", spy)
    torch.set_default_dtype(torch.float32)  # as when the module's results were made (restored by conftest)
    sparsification.run(SPARSIFY_SETTINGS, out, CTX, FakeData())
    assert trained == [SPARSIFY_SETTINGS.batch_runs]
    after = pd.read_csv(out / "metrics.csv")
    columns = ["test_acc", "val_acc", "train_acc", "epochs", "best_epoch"]
    pd.testing.assert_frame_equal(before[columns], after[columns])


def test_sparsification_caches_the_library_order(sparsification_results):
    """The cached 1-WIS order is the library's order of the dataset's edges."""
    order = json.loads((sparsification_results / "orders" / "cora_one_wis.json").read_text())["order"]
    graph = FakeData().graph("cora")
    from rankrepro.gnn.wis import one_wis_order

    assert order == one_wis_order(graph.edges, graph.num_nodes).tolist()


def test_sparsification_orders_are_permutations_so_the_methods_agree_at_the_endpoints(sparsification_results):
    """What the former claim `cora_methods_agree_at_endpoints` checked (true by construction): every cached order is
    a permutation of the edges, so 0 % and 100 % removed give one graph for every method (one shared run)."""
    summary = json.loads((sparsification_results / "summary.json").read_text())
    orders = summary["graphs"]["cora"]["orders"]
    assert len(orders) == 8 and all(report["permutation"] for report in orders.values())
    assert sparsification.is_permutation(np.array([2, 0, 1]), 3)
    assert not sparsification.is_permutation(np.array([2, 0, 0]), 3)
    assert not sparsification.is_permutation(np.array([0, 1]), 3)


def test_sparsification_claims_are_not_shown_at_a_tiny_scale_and_unavailable_dataset(sparsification_results):
    results = {c.claim_id: c for c in sparsification.claims(sparsification_results, "test")}
    assert "cora_methods_agree_at_endpoints" not in results
    assert results["cora_gcn_one_wis_beats_random"].verdict == NOT_SHOWN  # 3 epochs: the gate fails
    assert "gate:" in results["cora_gcn_one_wis_beats_random"].details
    assert results["dblp_sparsification_claims"].verdict == DATA_UNAVAILABLE
    assert "offline test" in results["dblp_sparsification_claims"].details
    assert {"cora_gcn_one_wis_vs_spectral", "cora_gcn_one_wis_vs_ugs", "cora_gcn_two_wis_close_to_one_wis"} <= set(
        results
    )


def planted_runs(accuracy: dict[str, list[float]], seeds=(0, 1, 2), offsets=(0.0, 0.01, -0.01)) -> pd.DataFrame:
    """Planted Cora GCN runs: method → test accuracy (%) at 30, 50, 70, 80 % removed, shifted by a per-seed offset
    shared by every method (what pairing removes), plus the shared endpoint runs."""
    rows = []
    for seed, offset in zip(seeds, offsets):
        for method, values in accuracy.items():
            for q, value in zip((30, 50, 70, 80), values):
                rows.append({"method": method, "removed_pct": q, "seed": seed, "test_acc": value / 100 + offset})
        rows += [{"method": "all", "removed_pct": q, "seed": seed, "test_acc": 0.8} for q in (0, 100)]
    return pd.DataFrame(rows).assign(dataset="cora", model="gcn", epochs=300, best_epoch=150)


def test_sparsification_claims_on_planted_runs():
    """Gains 4, 4, 5, 6 points at every seed: each seed's mean gain is 4.75 (pass); spectral equal to 1-WIS but at
    80 %, shifted by 0, +3 and −1 points at the three seeds, gives per-seed gains 1.25, −1.75, 2.25, whose interval
    reaches 0 (fail); 2-WIS within ±2 points passes, 3 points apart fails."""
    one_wis = [84, 82, 80, 76]
    runs = planted_runs(
        {
            "random": [80, 78, 75, 70],
            "spectral": [84, 82, 80, 71],
            "ugs": [86, 84, 82, 78],
            "one_wis": one_wis,
            "two_wis": [84.5, 81.5, 80.5, 75.5],
        }
    )
    spectral = runs["method"] == "spectral"
    runs.loc[spectral, "test_acc"] += runs.loc[spectral, "seed"].map({0: 0.0, 1: 0.03, 2: -0.01})
    claims = {c.claim_id: c for c in sparsification.comparison_claims(runs, "cora", "gcn")}
    random = claims["cora_gcn_one_wis_beats_random"]
    assert random.verdict == PASSED and random.measured["mean_points"] == pytest.approx(4.75)
    assert random.measured["pairs"] == 12 and random.measured["seeds"] == 3
    assert random.measured["points_by_removed_pct"] == {30: 4.0, 50: 4.0, 70: 5.0, 80: 6.0}
    spectral_claim = claims["cora_gcn_one_wis_vs_spectral"]
    assert spectral_claim.measured["points_by_seed"] == {0: 1.25, 1: -1.75, 2: 2.25}
    interval = spectral_claim.measured["ci95_points"]
    assert spectral_claim.verdict == FAILED and interval[0] < 0 < interval[1]
    assert claims["cora_gcn_one_wis_vs_ugs"].verdict == FAILED  # UGS above 1-WIS
    assert claims["cora_gcn_two_wis_close_to_one_wis"].verdict == PASSED
    apart = planted_runs({"one_wis": one_wis, "two_wis": [v - 3 for v in one_wis]})
    (two_wis,) = sparsification.comparison_claims(apart, "cora", "gcn")
    assert two_wis.claim_id == "cora_gcn_two_wis_close_to_one_wis" and two_wis.verdict == FAILED
    single = planted_runs({"random": [80, 78, 75, 70], "one_wis": one_wis}, seeds=(0,), offsets=(0.0,))
    assert sparsification.comparison_claims(single[single["removed_pct"] == 30], "cora", "gcn")[0].verdict == NOT_SHOWN


def test_sparsification_intervals_count_seeds_not_seed_level_pairs():
    """The levels of one seed share its init and split: the interval is over the seeds' mean gains. Gains of +6 and
    −2 points at two levels, the same at every seed, are a mean gain of 2 at each seed — a pass however far apart
    the levels (pooling the 12 seed-level pairs would fail it); one seed that loses on average makes the interval
    reach 0."""
    steady = planted_runs({"random": [80, 80, 80, 80], "one_wis": [86, 78, 86, 78]})
    (claim,) = sparsification.comparison_claims(steady, "cora", "gcn")
    assert claim.verdict == PASSED and claim.measured["points_by_seed"] == {0: 2.0, 1: 2.0, 2: 2.0}
    losing = steady.copy()
    seed2 = (losing["method"] == "one_wis") & (losing["seed"] == 2)
    losing.loc[seed2 & (losing["removed_pct"] == 50), "test_acc"] -= 0.12
    (claim,) = sparsification.comparison_claims(losing, "cora", "gcn")
    assert claim.measured["points_by_seed"] == {0: 2.0, 1: 2.0, 2: -1.0}
    assert claim.verdict == FAILED and claim.measured["seeds"] == 3


def test_sparsification_gate_needs_the_scale_and_every_run_stopped_on_its_plateau():
    settings = sparsification.Settings.from_mapping({**SPARSIFY, "max_epochs": 400, "patience": 100})
    runs = planted_runs({"random": [80, 78, 75, 70], "one_wis": [84, 82, 80, 76]})
    assert sparsification.gate(runs, settings).holds
    stopped_at_the_budget = runs.copy()
    stopped_at_the_budget.loc[0, ["epochs", "best_epoch"]] = [400, 350]
    gate = sparsification.gate(stopped_at_the_budget, settings)
    assert not gate.holds and "1 of 30 runs cut by the epoch budget" in gate.measured
    stopped_at_the_budget.loc[0, "best_epoch"] = 300  # plateaued exactly at the last epoch: trained to the criterion
    assert sparsification.gate(stopped_at_the_budget, settings).holds
    assert not sparsification.gate(runs, SPARSIFY_SETTINGS).holds  # 3 epochs


def test_sparsification_per_dataset_plan_restricts_the_models_and_methods_of_a_dataset(tmp_path):
    """citeseer runs GCN with random and 1-WIS only (as the default tier runs Chameleon); cora runs everything."""
    section = {
        **SPARSIFY,
        "datasets": ["cora", "citeseer"],
        "optional_datasets": [],
        "models": ["gcn", "gin"],
        "optimizer": {**SPARSIFY["optimizer"], "citeseer": {"lr": 1e-2, "weight_decay": 0.0}},
        "per_dataset": {"citeseer": {"models": ["gcn"], "methods": ["one_wis", "random"]}},
    }
    settings = sparsification.Settings.from_mapping(section)
    assert settings.methods_on("citeseer") == ["random", "one_wis"] and settings.models_on("citeseer") == ("gcn",)
    assert settings.models_on("cora") == ("gcn", "gin") and len(settings.methods_on("cora")) == 5
    torch.set_default_dtype(torch.float32)  # the experiment's dtype (restored by conftest)
    sparsification.run(settings, tmp_path, CTX, FakeData())
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    citeseer = metrics[metrics["dataset"] == "citeseer"]
    assert set(citeseer["model"]) == {"gcn"} and set(citeseer["method"]) == {"random", "one_wis", "all"}
    assert len(citeseer) == 2 * (2 * 2 + 2) and len(metrics[metrics["dataset"] == "cora"]) == 2 * 2 * (5 * 2 + 2)
    ids = {c.claim_id for c in sparsification.claims(tmp_path, "test")}
    assert {i for i in ids if i.startswith("citeseer")} == {"citeseer_gcn_one_wis_beats_random"}
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert "CiteSeer: GCN with random, 1-WIS only." in sparsification.caption(summary, against_paper(sparsification))


def test_sparsification_per_model_plan_restricts_a_models_methods_levels_and_seeds(tmp_path):
    """ResGCN runs 1-WIS and random at 30 % only, first seed only; GCN runs everything (its runs and their batches
    are those of a run without ResGCN)."""
    section = {
        **SPARSIFY,
        "optional_datasets": [],
        "models": ["gcn", "resgcn"],
        "methods": ["random", "one_wis"],
        "per_model": {"resgcn": {"methods": ["one_wis", "random"], "removed_percents": [30], "seeds": 1}},
    }
    settings = sparsification.Settings.from_mapping(section)
    assert settings.methods_for("cora", "resgcn") == ["random", "one_wis"] and settings.levels_of("resgcn") == [30]
    assert settings.seeds_of("resgcn") == 1 and settings.seeds_of("gcn") == 2 and settings.levels_of("gcn")[-1] == 100
    torch.set_default_dtype(torch.float32)
    sparsification.run(settings, tmp_path, CTX, FakeData())
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    resgcn = metrics[metrics["model"] == "resgcn"]
    assert len(resgcn) == 2 and set(resgcn["removed_pct"]) == {30} and set(resgcn["seed"]) == {0}
    assert len(metrics[metrics["model"] == "gcn"]) == 2 * (2 * 2 + 2)
    alone = tmp_path / "gcn_alone"
    sparsification.run(
        sparsification.Settings.from_mapping({**section, "models": ["gcn"], "per_model": {}}), alone, CTX, FakeData()
    )
    gcn_alone = pd.read_csv(alone / "metrics.csv")
    assert np.array_equal(gcn_alone["test_acc"], metrics[metrics["model"] == "gcn"]["test_acc"])
    ids = {c.claim_id for c in sparsification.claims(tmp_path, "test")}
    assert "cora_resgcn_one_wis_beats_random" in ids  # one pair only: not shown, but stated
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert "ResGCN: random, 1-WIS only, at 30 % removed, 1 seed(s)." in sparsification.caption(
        summary, against_paper(sparsification)
    )


@pytest.mark.parametrize(
    "plan, message",
    [
        ({"gat": {"methods": ["random"], "removed_percents": [0], "seeds": 1}}, "not one of the experiment's models"),
        ({"gcn": {"methods": ["random"], "removed_percents": [0], "seeds": 3}}, "3 seeds, more than"),
        ({"gcn": {"methods": ["random"], "removed_percents": [40], "seeds": 1}}, r"\[40\] are not in"),
    ],
)
def test_sparsification_per_model_plan_outside_the_experiment_is_a_config_error(plan, message):
    settings = sparsification.Settings.from_mapping({**SPARSIFY, "per_model": plan})
    with pytest.raises(ConfigError, match=message):
        sparsification.run(settings, "unused", CTX, FakeData())


def test_sparsification_paper_tier_runs_the_originals_variants_only():
    """GCN on every graph; GIN and ResGCN on Cora, DBLP and ogbn-arxiv (not the heterophilous graphs nor Amazon
    Computers); 2-WIS for GCN on Cora only; ResGCN over 5 seeds."""
    settings = sparsification.Settings.from_mapping(tier_section("paper", sparsification))
    graphs = [*settings.datasets, *settings.optional_datasets]
    assert set(graphs) == {"cora", "chameleon", "squirrel", "dblp", "ogbn-arxiv", "amazon-computers"}
    variants = {(model, d) for d in graphs for model in settings.models_on(d)}
    assert variants == {("gcn", d) for d in graphs} | {
        (model, d) for model in ("gin", "resgcn") for d in ("cora", "dblp", "ogbn-arxiv")
    }
    assert settings.methods_for("cora", "gcn") == list(sparsification.METHODS)
    assert all("two_wis" not in settings.methods_for(d, m) for m, d in variants if (m, d) != ("gcn", "cora"))
    assert settings.seeds_of("resgcn") == 5 and settings.depth.of("resgcn") == 10 and settings.levels_of("gin")[1] == 5
    settings.check_plans()


def test_sparsification_datasets_that_cannot_be_downloaded_are_data_unavailable(tmp_path):
    """DBLP, ogbn-arxiv and Amazon Computers, unobtainable, are skipped and each recorded as data-unavailable (the
    paper tier's optional datasets, with its per-dataset and per-model plans, at a tiny scale)."""
    paper = tier_section("paper", sparsification)
    section = {
        **SPARSIFY,
        "models": ["gcn", "gin", "resgcn"],
        "optional_datasets": ["dblp", "ogbn-arxiv", "amazon-computers"],
        "methods": ["random", "one_wis"],
        "removed_percents": [0, 50],
        "optimizer": paper["optimizer"],
        "per_dataset": paper["per_dataset"],
        "per_model": {m: {**plan, "removed_percents": [50], "seeds": 1} for m, plan in paper["per_model"].items()},
    }
    torch.set_default_dtype(torch.float32)
    sparsification.run(sparsification.Settings.from_mapping(section), tmp_path, CTX, FakeData())
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["unavailable"]) == {"dblp", "ogbn-arxiv", "amazon-computers"} and set(summary["graphs"]) == {
        "cora"
    }
    unavailable = [c for c in sparsification.claims(tmp_path, "test") if c.verdict == DATA_UNAVAILABLE]
    assert {c.claim_id for c in unavailable} == {
        "dblp_sparsification_claims",
        "ogbn-arxiv_sparsification_claims",
        "amazon-computers_sparsification_claims",
    }
    assert all("offline test" in c.details for c in unavailable)


def test_sparsification_plot(sparsification_results, tmp_path):
    paths = sparsification.plot(
        sparsification_results, tmp_path / "edge_sparsification.png", against_paper(sparsification)
    )
    assert all(p.stat().st_size for p in paths)


def test_sparsification_config_errors():
    with pytest.raises(ConfigError, match="no optimizer settings"):
        sparsification.run(
            sparsification.Settings.from_mapping({**SPARSIFY, "optimizer": {}}), "unused", CTX, FakeData()
        )
    unobtainable = sparsification.Settings.from_mapping({**SPARSIFY, "datasets": ["squirrel"], "optional_datasets": []})
    with pytest.raises(DataError, match="squirrel"):
        sparsification.run(unobtainable, "unused", CTX, FakeData())
    with pytest.raises(ConfigError, match="is not one of"):
        sparsification.Settings.from_mapping({**SPARSIFY, "datasets": ["dblp"]})  # dblp is optional only


@pytest.mark.parametrize("tier", ["smoke", "config", "paper"])
def test_every_tier_config_gives_the_chapter4_defaults(tier):
    """Defaults the experiments read are filled in every tier (a default beside a bare $ref would not be)."""
    from pathlib import Path

    from rankrepro.pipeline.config import load_config

    experiments = load_config(Path(__file__).parents[2] / "config" / f"{tier}.yaml")["experiments"]
    assert experiments["edge_sparsification"]["models"] and experiments["edge_sparsification"]["batch_runs"] >= 1
    assert experiments["is_same_class_gnn"]["models"]
    assert experiments["is_same_class_gnn"]["normalize"] == {"mean": 0.286, "std": 0.353}


# ----------------------------------------------------------------------------------------------------- typed settings
@pytest.mark.parametrize("tier", ["smoke", "config", "paper"])
@pytest.mark.parametrize("module", [table1, sparsification], ids=lambda module: module.NAME)
def test_settings_build_from_every_tier_and_record_the_section_unchanged(tier, module):
    section = tier_section(tier, module)
    settings = module.Settings.from_mapping(section, f"experiments.{module.NAME}")
    assert settings.record() == section
    assert isinstance(settings.models, tuple) and settings.seeds == section["seeds"]


def test_settings_are_typed_once_nested_and_read_only():
    assert TABLE1_SETTINGS.normalize == table1.PixelNormalization(mean=0.286, std=0.353)
    assert SPARSIFY_SETTINGS.depth.of("resgcn") == 3 and SPARSIFY_SETTINGS.split == (0.6, 0.2, 0.2)
    assert SPARSIFY_SETTINGS.adam("cora") == sparsification.AdamSettings(lr=1e-2, weight_decay=0.0)
    assert SPARSIFY_SETTINGS.adam("cora").record() == SPARSIFY["optimizer"]["cora"]  # what run fingerprints record
    integral = sparsification.Settings.from_mapping(
        {**SPARSIFY, "optimizer": {"cora": {"lr": 1e-2, "weight_decay": 0}}}
    )
    assert isinstance(integral.adam("cora").weight_decay, float)
    assert SPARSIFY_SETTINGS.levels() == [0, 30, 60, 100]
    assert SPARSIFY_SETTINGS.methods_on("citeseer") == ["random", "spectral", "ugs", "one_wis"]
    with pytest.raises(TypeError):
        TABLE1_SETTINGS.lr["gcn"] = 1.0
    with pytest.raises(ConfigError, match="no field"):
        table1.Settings.from_mapping({**TABLE1, "epochs": 3})


@pytest.mark.parametrize("module", [table1, sparsification], ids=lambda module: module.NAME)
def test_the_smoke_caption_lists_its_departures_from_the_paper_tier_and_the_paper_caption_none(module):
    summary = {"walk_index": {"low": 548, "high": 8258}, "unavailable": {}}
    figure = against_paper(module, "smoke")
    smoke = module.caption({**summary, "settings": tier_section("smoke", module)}, figure)
    seeds = tier_section("smoke", module)["seeds"]
    assert "max_epochs 5 (paper: 10,000)" in smoke and f"seeds {seeds} (paper:" in smoke
    paper = module.caption({**summary, "settings": tier_section("paper", module)}, against_paper(module, "paper"))
    assert "departing" not in paper and "(paper:" not in paper
    unknown = module.caption({**summary, "settings": tier_section("smoke", module)}, FigureContext("smoke"))
    assert "not compared with the paper tier" in unknown


def test_table1_caption_keeps_its_note_and_ignores_the_bookkeeping_fetch_list():
    paper = tier_section("paper", table1)
    summary = {"walk_index": {"low": 548, "high": 8258}, "settings": {**paper, "datasets": ["fashion-mnist", "mnist"]}}
    text = table1.caption(summary, against_paper(table1, "paper"))
    assert text.endswith(f"Substitutions: {table1.DENSE_LAYERS_NOTE}.")
    summary["settings"]["width"] = 32
    assert "width 32 (paper: 16)" in table1.caption(summary, against_paper(table1, "paper"))


def test_sparsification_caption_names_the_datasets_the_run_could_not_obtain(sparsification_results):
    summary = json.loads((sparsification_results / "summary.json").read_text())
    text = sparsification.caption(summary, against_paper(sparsification))
    assert "DBLP unavailable here" in text and sparsification.UGS_NOTE in text
    assert "removed_percents [0, 30, 60, 100] (paper: [0, 5," in text and "batch_runs" not in text
