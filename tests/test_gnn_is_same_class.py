"""Chapter 4: the Is-Same-Class graph construction (arrangements, walk indices, features, batching) and the GNNs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rankrepro import is_same_class_graphs as isc
from rankrepro.errors import ConfigError
from rankrepro.gnn import GNN, MODELS
from rankrepro.walk_index import walk_index


@pytest.mark.parametrize("kind,expected", [("low", {2: 34, 3: 548, 4: 8806}), ("high", {2: 514, 3: 8258, 4: 132676})])
def test_arrangements_have_the_spec_walk_indices(kind, expected):
    edges = isc.two_clique_edges()
    assert len(edges) == 2 * 120 + 1
    side = isc.image_one_side(kind)
    assert side.sum() == 16
    assert {depth: walk_index(edges, 32, side, depth) for depth in expected} == expected


def test_every_chunk_of_both_images_is_placed_exactly_once():
    for kind in isc.ARRANGEMENTS:
        layout = isc.arrangement(kind)
        assert sorted(map(tuple, layout.tolist())) == [(i, c) for i in (0, 1) for c in range(16)]
    high = isc.arrangement("high")
    assert high[0].tolist() == [0, 0] and high[1].tolist() == [1, 0] and high[16].tolist() == [1, 8]
    assert high[17].tolist() == [0, 8]
    with pytest.raises(ConfigError, match="unknown arrangement"):
        isc.arrangement("medium")


def test_pairs_are_seeded_and_balanced():
    labels = np.repeat(np.arange(10), 20)
    pairs = isc.sample_pairs(labels, 2000, np.random.default_rng(0))
    assert np.array_equal(pairs, isc.sample_pairs(labels, 2000, np.random.default_rng(0)))
    same = pairs[:, 2] == 1
    assert abs(same.mean() - 0.5) < 0.05
    assert np.all(labels[pairs[same, 0]] == labels[pairs[same, 1]])
    assert np.all(labels[pairs[~same, 0]] != labels[pairs[~same, 1]])


def test_vertex_features_are_the_normalised_chunks_of_the_right_image():
    images = np.arange(2 * 784, dtype=np.int64).reshape(2, 28, 28) % 256
    pairs = np.array([[0, 1, 0]])
    features = isc.pair_features(images.astype(np.uint8), pairs, "high", mean=0.5, std=2.0)
    assert features.shape == (32, 49) and features.dtype == torch.float32
    flat = images.reshape(2, 16, 49) / 255.0
    assert torch.allclose(features[1], torch.tensor((flat[1, 0] - 0.5) / 2.0, dtype=torch.float32))
    assert torch.allclose(features[17], torch.tensor((flat[0, 8] - 0.5) / 2.0, dtype=torch.float32))


def test_batched_graphs_are_disjoint_copies():
    edge_index, batch = isc.batched_graphs(3)
    assert edge_index.shape == (2, 3 * 2 * 241) and batch.tolist() == sum(([g] * 32 for g in range(3)), [])
    assert torch.all(batch[edge_index[0]] == batch[edge_index[1]])  # no edge joins two graphs


@pytest.mark.parametrize("kind", MODELS)
def test_every_gnn_gives_one_logit_per_graph_and_learns(kind):
    torch.manual_seed(0)
    edge_index, batch = isc.batched_graphs(8)
    x = torch.randn(8 * 32, 49)
    y = torch.tensor([0.0, 1.0] * 4)
    model = GNN(kind, 49, 16, 3, 1, graph_level=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        logits = model(x, edge_index, batch).squeeze(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert logits.shape == (8,) and losses[-1] < losses[0]


def test_bad_gnn_settings_are_config_errors():
    with pytest.raises(ConfigError, match="unknown GNN"):
        GNN("mlp", 4, 8, 2, 1, graph_level=False)
    with pytest.raises(ConfigError, match="multiple of its 4 heads"):
        GNN("gat", 4, 10, 2, 1, graph_level=False)
