"""Chapter 4: the Is-Same-Class graph construction (arrangements, walk indices, features, batching) and the GNNs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rankrepro.core.errors import ConfigError
from rankrepro.gnn import is_same_class_graphs as isc
from rankrepro.gnn.models import GNN, MODELS
from rankrepro.gnn.walk_index import walk_index


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


def test_vertex_features_are_the_normalised_chunks_of_the_right_image():
    images = np.arange(2 * 784, dtype=np.int64).reshape(2, 28, 28) % 256
    pairs = np.array([[0, 1, 0]])
    features = isc.pair_features(images.astype(np.uint8), pairs, "high", mean=0.5, std=2.0)
    assert features.shape == (1, 32, 49) and features.dtype == torch.float32
    features = features[0]
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


def test_shared_adjacency_is_the_two_clique_graph_without_self_loops():
    adj = isc.shared_adjacency()
    assert adj.shape == (1, 32, 32) and torch.equal(adj[0], adj[0].T) and adj.diagonal(dim1=1, dim2=2).sum() == 0
    assert adj.sum() == 2 * 241 and adj[0, 0, 16] == 1 and adj[0, 1, 17] == 0


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("training", [False, True])
def test_dense_and_edge_list_gnns_compute_the_same_function(kind, training):
    """Same parameters, same logits: the dense layers with a shared adjacency ≡ the edge-list layers on the batched
    disjoint copies (GIN's BatchNorm in training mode included: statistics over all vertices in both forms)."""
    torch.manual_seed(3)
    count = 5
    sparse = GNN(kind, 49, 16, 3, 1, graph_level=True).double()
    dense = GNN(kind, 49, 16, 3, 1, graph_level=True, dense=True).double()
    state = sparse.state_dict()
    if kind == "gat":  # GATConv names its shared projection lin; DenseGATConv too, but stores att as (1, 1, H, C)
        state = {k: v.reshape(dense.state_dict()[k].shape) for k, v in state.items()}
    dense.load_state_dict(state)
    sparse.train(training), dense.train(training)
    x = torch.randn(count, 32, 49, dtype=torch.float64)
    edge_index, batch = isc.batched_graphs(count)
    expected = sparse(x.reshape(-1, 49), edge_index, batch)
    got = dense(x, isc.shared_adjacency().double())
    assert got.shape == expected.shape == (count, 1)
    assert torch.allclose(got, expected, atol=1e-10)


def test_gcn_edge_weights_scale_messages_and_need_the_edge_list_gcn():
    """Unit weights = no weights; zero weights on both directions of an edge = the edge removed (the UGS mask)."""
    torch.manual_seed(0)
    x, edge_index = torch.randn(4, 3), torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    model = GNN("gcn", 3, 16, 1, 2, graph_level=False)
    assert torch.allclose(model(x, edge_index, edge_weight=torch.ones(4)), model(x, edge_index))
    removed = model(x, edge_index, edge_weight=torch.tensor([1.0, 1.0, 0.0, 0.0]))
    assert torch.allclose(removed, model(x, edge_index[:, :2]), atol=1e-6)
    assert not torch.allclose(removed, model(x, edge_index), atol=1e-4)
    with pytest.raises(ConfigError, match="edge weights"):
        GNN("gat", 3, 4, 1, 2, graph_level=False).embed(x, edge_index, torch.ones(4))


def test_bad_gnn_settings_are_config_errors():
    with pytest.raises(ConfigError, match="unknown GNN"):
        GNN("mlp", 4, 8, 2, 1, graph_level=False)
    with pytest.raises(ConfigError, match="multiple of its 4 heads"):
        GNN("gat", 4, 10, 2, 1, graph_level=False)
