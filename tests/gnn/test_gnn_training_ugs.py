"""Chapter-4 training loops (early stopping, splits, the stacked vertex trainer) and UGS adapted to edges."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.nn import functional as F

from rankrepro.core.errors import ConfigError
from rankrepro.core.graphs import directed_edge_index, undirected_edges
from rankrepro.gnn import training as gnn_training
from rankrepro.gnn import ugs
from rankrepro.gnn.models import GNN, MODELS, StackedGNN, shared_features


def test_patience_keeps_the_first_best_and_stops_after_patience_epochs():
    stopper = gnn_training.Patience(3)
    update = lambda value, epoch: bool(stopper.update(torch.tensor([value]), epoch))  # noqa: E731
    assert update(0.5, 1) and not update(0.5, 2) and update(0.7, 3)
    assert not update(0.6, 4) and (float(stopper.best), int(stopper.best_epoch)) == (0.7, 3)
    assert not stopper.should_stop(5) and stopper.should_stop(6)
    with pytest.raises(ConfigError, match="patience"):
        gnn_training.Patience(0)


def test_patience_of_several_runs_is_per_run_and_selectable():
    stopper = gnn_training.Patience(2, runs=3)
    assert stopper.update(torch.tensor([0.1, 0.2, 0.3]), 1).all()
    assert stopper.update(torch.tensor([0.1, 0.5, 0.2]), 2).tolist() == [False, True, False]
    assert stopper.should_stop(3).tolist() == [True, False, True]
    kept = stopper.select(torch.tensor([1]))
    assert kept.runs == 1 and kept.best.tolist() == [0.5] and kept.best_epoch.tolist() == [2]


@given(st.integers(10, 300), st.integers(0, 2**31 - 1))
def test_random_split_partitions_the_vertices_with_the_requested_sizes(n, seed):
    masks = gnn_training.random_split(n, (0.8, 0.1, 0.1), seed)
    counts = {split: int(mask.sum()) for split, mask in masks.items()}
    assert counts["train"] == int(0.8 * n) and counts["val"] == int(0.1 * n) and sum(counts.values()) == n
    assert not (masks["train"] & masks["val"]).any() and not (masks["val"] & masks["test"]).any()
    assert all(torch.equal(masks[s], gnn_training.random_split(n, (0.8, 0.1, 0.1), seed)[s]) for s in masks)


def test_bad_split_fractions_are_config_errors():
    with pytest.raises(ConfigError, match="split fractions"):
        gnn_training.random_split(10, (0.8, 0.3, 0.1), 0)


def test_accuracies_of_known_predictions():
    logits, labels = torch.tensor([2.0, -1.0, 0.5, -3.0]), torch.tensor([1.0, 0.0, 0.0, 0.0])
    assert gnn_training.binary_accuracy(logits, labels) == 0.75
    logits = torch.tensor([[[0.0, 1.0], [2.0, 0.0], [0.0, 3.0]], [[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]]])
    masks = {"a": torch.tensor([True, True, True]), "b": torch.tensor([False, True, False])}
    accuracies = gnn_training.class_accuracies(logits, torch.tensor([1, 0, 0]), masks)
    assert accuracies["a"].tolist() == pytest.approx([2 / 3, 1 / 3]) and accuracies["b"].tolist() == [1.0, 1.0]


def test_per_run_cross_entropy_is_each_runs_mean():
    logits, labels = torch.randn(3, 5, 4), torch.tensor([0, 3, 1, 1, 2])
    expected = torch.stack([F.cross_entropy(logits[r], labels) for r in range(3)])
    assert torch.allclose(gnn_training.per_run_cross_entropy(logits, labels), expected)


def two_community_graph(n: int = 40, seed: int = 0):
    """Two dense communities (the classes) with features = noisy class indicators; few edges across."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    pairs = [
        (u, v) for u in range(n) for v in range(u + 1, n) if rng.random() < (0.3 if labels[u] == labels[v] else 0.02)
    ]
    features = np.eye(2)[labels] + rng.normal(0, 1.5, (n, 2))
    return (
        torch.tensor(features, dtype=torch.get_default_dtype()),
        torch.tensor(labels),
        undirected_edges(np.array(pairs)),
        labels,
    )


def reference_vertex_training(
    model: GNN, features, labels, edge_index, masks, *, lr, weight_decay, max_epochs, patience
):
    """The single-run trainer the stacked one replaced (torch_geometric layers, torch's Adam), as the reference:
    per epoch an Adam step on the training cross-entropy, then accuracies in eval mode; stop when the validation
    accuracy has not improved for ``patience`` epochs; accuracies at the best-validation epoch."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    best, best_epoch, at_best, epoch = float("-inf"), -1, {}, 0
    for epoch in range(1, max_epochs + 1):
        model.train()
        loss = F.cross_entropy(model(features, edge_index)[masks["train"]], labels[masks["train"]])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model.eval()
        with torch.no_grad():
            logits = model(features, edge_index)
        accuracies = {split: float((logits[m].argmax(-1) == labels[m]).float().mean()) for split, m in masks.items()}
        if accuracies["val"] > best:
            best, best_epoch, at_best = accuracies["val"], epoch, accuracies
        if epoch - best_epoch >= patience:
            break
    return at_best, epoch, best_epoch


def three_class_problem(n: int = 60, runs: int = 5, seed: int = 0):
    """Features, labels, split and ``runs`` different edge subsets (20 %, 40 %, … of a homophilous graph)."""
    rng = np.random.default_rng(seed)
    classes = np.arange(n) % 3
    pairs = [
        (u, v) for u in range(n) for v in range(u + 1, n) if rng.random() < (0.3 if classes[u] == classes[v] else 0.05)
    ]
    edges = undirected_edges(np.array(pairs))
    features = torch.tensor(np.eye(3)[classes] + rng.normal(0, 1.5, (n, 3)))
    masks = gnn_training.random_split(n, (0.5, 0.25, 0.25), 1)
    edge_sets = [edges[rng.random(len(edges)) < 0.2 * (r + 1)] for r in range(runs)]
    return features, torch.tensor(classes), masks, edge_sets


@pytest.mark.parametrize("kind", MODELS)
def test_stacked_trainer_reproduces_each_run_of_the_single_run_trainer(kind):
    """Same initial weights, same data (float64): the stacked trainer gives every run the accuracies, epoch count
    and best epoch of the single-run reference; the runs stop at different epochs (stopped runs leave the batch)."""
    features, labels, masks, edge_sets = three_class_problem()
    options = {"lr": 1e-2, "weight_decay": 1e-3, "max_epochs": 150, "patience": 15}

    def models():
        torch.manual_seed(4)
        return [GNN(kind, 3, 8, 2, 3, graph_level=False, heads=2) for _ in edge_sets]

    outcomes = gnn_training.train_vertex_classifiers(
        StackedGNN.from_models(models()), shared_features(features), labels, edge_sets, masks, **options
    )
    for model, edges, outcome in zip(models(), edge_sets, outcomes):
        edge_index = torch.from_numpy(directed_edge_index(edges))
        accuracies, epochs, best_epoch = reference_vertex_training(
            model, features, labels, edge_index, masks, **options
        )
        assert (outcome.epochs, outcome.best_epoch) == (epochs, best_epoch)
        assert outcome.accuracies == pytest.approx(accuracies, abs=1e-12)
        assert outcome.epochs == min(options["max_epochs"], outcome.best_epoch + options["patience"])
    assert len({outcome.epochs for outcome in outcomes}) > 1


def test_a_run_trains_the_same_alone_or_in_a_batch():
    """Batch companions do not change a run (float64: to rounding, hence the same early-stopping decisions)."""
    features, labels, masks, edge_sets = three_class_problem(runs=4, seed=2)
    options = {"lr": 1e-2, "weight_decay": 0.0, "max_epochs": 80, "patience": 10}

    def stacked(indices):
        models = []
        for r in indices:
            torch.manual_seed(r)
            models.append(GNN("gin", 3, 8, 2, 3, graph_level=False))
        return StackedGNN.from_models(models)

    together = gnn_training.train_vertex_classifiers(stacked(range(4)), features, labels, edge_sets, masks, **options)
    for r in range(4):
        alone = gnn_training.train_vertex_classifiers(stacked([r]), features, labels, [edge_sets[r]], masks, **options)[
            0
        ]
        assert (alone.epochs, alone.best_epoch, alone.accuracies) == (
            together[r].epochs,
            together[r].best_epoch,
            together[r].accuracies,
        )
        assert [point[1] for point in alone.curve] == pytest.approx([p[1] for p in together[r].curve], rel=1e-9)


def test_stacked_vertex_classifier_learns_and_reports_the_best_validation_epoch():
    torch.manual_seed(0)
    features, labels, edges, _ = two_community_graph()
    masks = gnn_training.random_split(len(labels), (0.5, 0.25, 0.25), 1)
    model = StackedGNN.from_models([GNN("gcn", 2, 16, 2, 2, graph_level=False)])
    (outcome,) = gnn_training.train_vertex_classifiers(
        model, features, labels, [edges], masks, lr=1e-2, weight_decay=0.0, max_epochs=300, patience=30
    )
    assert outcome.accuracies["val"] >= 0.8 and outcome.accuracies["test"] >= 0.7
    assert outcome.epochs == min(300, outcome.best_epoch + 30) and outcome.curve


def test_graph_classifier_fits_a_separable_problem_and_stops_early():
    torch.manual_seed(0)
    x = torch.randn(40, 5, 3)
    y = (x[:, :, 0].mean(1) > 0).float()
    adjacency = torch.ones(1, 5, 5) - torch.eye(5)
    model = GNN("gin", 3, 8, 1, 1, graph_level=True, dense=True)
    outcome = gnn_training.train_graph_classifier(
        model, (x, y), (x, y), adjacency, lr=2e-2, max_epochs=2000, patience=50
    )
    assert outcome.accuracies["train"] == 1.0 and outcome.epochs < 2000
    assert outcome.epochs - outcome.best_epoch == 50


# ----------------------------------------------------------------------------------------------------- UGS
def ugs_order(edges, rounds, **overrides):
    features, labels, _, _ = two_community_graph()
    masks = gnn_training.random_split(len(labels), (0.6, 0.2, 0.2), 0)

    def make():
        torch.manual_seed(7)
        return GNN("gcn", 2, 8, 2, 2, graph_level=False)

    options = {"prune_fraction": 0.1, "l1": 1e-2, "epochs": 20, "lr": 1e-2, "weight_decay": 0.0, **overrides}
    return ugs.ugs_removal_order(make, features, labels, masks["train"], edges, len(labels), rounds=rounds, **options)


def test_ugs_order_is_a_deterministic_permutation():
    _, _, edges, _ = two_community_graph()
    order = ugs_order(edges, rounds=3)
    assert sorted(order.tolist()) == list(range(len(edges)))
    assert np.array_equal(order, ugs_order(edges, rounds=3))


def test_ugs_prunes_the_rounds_in_order_then_ranks_the_survivors(monkeypatch):
    """With a mask that scores edge e as e (patched training), round k removes the ⌈f·alive⌉ lowest indices."""
    _, _, edges, _ = two_community_graph()
    m = len(edges)
    calls = []

    def fake_train(model, features, labels, train_mask, kept, **_):
        calls.append(len(kept))
        index = {tuple(e): i for i, e in enumerate(edges.tolist())}
        return torch.tensor([float(index[tuple(e)]) for e in kept.tolist()])

    monkeypatch.setattr(ugs, "train_masked", fake_train)
    order = ugs_order(edges, rounds=2, prune_fraction=0.25)
    first = math.ceil(0.25 * m)
    assert calls == [m, m - first]
    assert order.tolist() == list(range(m))  # smallest "mask" first, round after round, survivors last


@pytest.mark.parametrize("seed", [1, 3, 5])
def test_ugs_mask_learns_lower_weights_for_edges_across_the_classes(seed):
    """The learned mask keeps the homophilous edges and shrinks the ones that mix the two classes (the
    cross-entropy alone, no L1, on three random graphs)."""
    torch.manual_seed(seed)
    features, labels, edges, classes = two_community_graph(seed=seed)
    masks = gnn_training.random_split(len(labels), (0.6, 0.2, 0.2), 0)
    model = GNN("gcn", 2, 8, 2, 2, graph_level=False)
    magnitude = ugs.train_masked(
        model, features, labels, masks["train"], edges, l1=0.0, epochs=100, lr=1e-2, weight_decay=0.0
    ).numpy()
    across = classes[edges[:, 0]] != classes[edges[:, 1]]
    assert across.any() and magnitude[across].mean() < magnitude[~across].mean() - 0.05


def reference_train_masked(model, features, labels, train_mask, edges, *, l1, epochs, lr, weight_decay):
    """UGS's mask training as it was written with torch_geometric's GCN (``edge_weight``), the reference."""
    mask = torch.nn.Parameter(torch.ones(len(edges), dtype=features.dtype))
    edge_index = torch.from_numpy(directed_edge_index(edges))
    optimizer = torch.optim.Adam(
        [{"params": model.parameters(), "weight_decay": weight_decay}, {"params": [mask], "weight_decay": 0.0}], lr=lr
    )
    model.train()
    for _ in range(epochs):
        logits = model(features, edge_index, edge_weight=mask.abs().repeat(2))
        loss = F.cross_entropy(logits[train_mask], labels[train_mask]) + l1 * mask.abs().sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return mask.detach().abs()


def test_ugs_mask_training_matches_the_torch_geometric_reference():
    features, labels, edges, _ = two_community_graph(seed=2)
    masks = gnn_training.random_split(len(labels), (0.6, 0.2, 0.2), 0)
    torch.manual_seed(1)
    model = GNN("gcn", 2, 8, 2, 2, graph_level=False)
    options = {"l1": 1e-2, "epochs": 30, "lr": 1e-2, "weight_decay": 1e-3}
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    ours = ugs.train_masked(model, features, labels, masks["train"], edges, **options)
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())  # the model is not trained
    expected = reference_train_masked(model, features, labels, masks["train"], edges, **options)
    assert torch.allclose(ours, expected, atol=1e-10)


def test_bad_ugs_settings_are_config_errors():
    _, _, edges, _ = two_community_graph()
    with pytest.raises(ConfigError, match="prune_fraction"):
        ugs_order(edges, rounds=2, prune_fraction=1.5)
