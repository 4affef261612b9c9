"""Chapter 4's fast forms of the GNNs: the stacked vertex classifiers (k runs, each on its own graph, as one program)
and the head-major dense GAT of Table 1, each against torch_geometric's layers (same parameters, same function,
same gradients)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from rankrepro.core.errors import ConfigError
from rankrepro.core.graphs import directed_edge_index, undirected_edges
from rankrepro.gnn import is_same_class_graphs as isc
from rankrepro.gnn import models as gnn
from rankrepro.gnn.models import GNN, MODELS, SparseOperator, StackedGNN, shared_features, stacked_structure


def random_graph(n: int, p: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return undirected_edges(np.array([(u, v) for u in range(n) for v in range(u + 1, n) if rng.random() < p]))


def runs_of(kind: str, count: int = 3, n: int = 30, features: int = 6):
    """``count`` differently initialised models of ``kind`` and ``count`` different graphs on ``n`` vertices."""
    models = []
    for r in range(count):
        torch.manual_seed(r)
        models.append(GNN(kind, features, 8, 3, 3, graph_level=False, heads=2))
    graphs = [random_graph(n, 0.1 + 0.1 * r, seed=r) for r in range(count)]
    return models, graphs


# ------------------------------------------------------------------------------------------- stacked runs
def test_stacked_structure_of_a_path_and_a_triangle():
    """GCN: block r = D^-1/2 (A_r + I) D^-1/2; GIN: A_r + I; GAT: both directions of each edge and a self-loop
    per vertex, run r's vertices shifted by r·n."""
    path, triangle = np.array([[0, 1], [1, 2]]), np.array([[0, 1], [0, 2], [1, 2]])
    gcn = stacked_structure("gcn", [path, triangle], 3, torch.float64).propagation.matrix.to_dense().numpy()
    s = 1 / np.sqrt(6)
    assert np.allclose(gcn[:3, :3], [[1 / 2, s, 0], [s, 1 / 3, s], [0, s, 1 / 2]])
    assert np.allclose(gcn[3:, 3:], np.full((3, 3), 1 / 3)) and not gcn[:3, 3:].any() and not gcn[3:, :3].any()
    gin = stacked_structure("gin", [path, triangle], 3).propagation.matrix.to_dense().numpy()
    assert np.array_equal(gin[:3, :3], [[1, 1, 0], [1, 1, 1], [0, 1, 1]]) and np.array_equal(
        gin[3:, 3:], np.ones((3, 3))
    )
    gat = stacked_structure("gat", [path, triangle], 3)
    pairs = set(zip(gat.source.tolist(), gat.target.tolist()))
    assert pairs == {
        (0, 1),
        (1, 2),
        (1, 0),
        (2, 1),
        (0, 0),
        (1, 1),
        (2, 2),
        (3, 4),
        (3, 5),
        (4, 5),
        (4, 3),
        (5, 3),
        (5, 4),
        (3, 3),
        (4, 4),
        (5, 5),
    }
    with pytest.raises(ConfigError, match="unknown GNN"):
        stacked_structure("mlp", [path], 3)


def test_sparse_operator_product_and_its_gradient():
    matrix = sp.random(5, 4, density=0.5, random_state=0, format="csr")
    operator = SparseOperator.from_scipy(matrix, torch.float64)
    h = torch.randn(4, 3, requires_grad=True)
    assert torch.allclose(operator @ h, torch.from_numpy(matrix.toarray()) @ h)
    assert torch.autograd.gradcheck(lambda x: operator @ x, (h,))


def test_shared_features_are_sparse_only_when_mostly_zero():
    dense = torch.randn(10, 4)
    assert shared_features(dense) is dense
    sparse = torch.zeros(10, 40)
    sparse[torch.arange(10), torch.arange(10)] = 1.0
    operator = shared_features(sparse)
    assert isinstance(operator, SparseOperator) and torch.equal(operator.matrix.to_dense(), sparse)


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("sparse_features", [True, False])
def test_stacked_gnn_computes_every_runs_torch_geometric_function_and_gradient(kind, training, sparse_features):
    """Run r of the stacked model = torch_geometric's GNN r on graph r: logits, the gradient of every parameter,
    and (GIN, training) the BatchNorm running statistics after the pass."""
    models, graphs = runs_of(kind)
    stacked = StackedGNN.from_models(models)
    x = torch.randn(30, 6) * (torch.rand(30, 6) < 0.3)
    features = SparseOperator.from_scipy(sp.csr_matrix(x.numpy()), x.dtype) if sparse_features else x
    logits = stacked.forward(features, stacked_structure(kind, graphs, 30, torch.float64), training=training)
    weights = torch.randn_like(logits)
    grads = dict(zip(stacked.params, torch.autograd.grad((logits * weights).sum(), list(stacked.params.values()))))
    for r, (model, edges) in enumerate(zip(models, graphs)):
        model.train(training)
        expected = model(x, torch.from_numpy(directed_edge_index(edges)))
        assert torch.allclose(logits[r], expected, atol=1e-10)
        (expected * weights[r]).sum().backward()
        for name, parameter in model.named_parameters():
            assert torch.allclose(grads[name][r], parameter.grad, atol=1e-9), name
        for name, buffer in stacked.buffers.items():
            assert torch.allclose(buffer[r], dict(model.named_buffers())[name], atol=1e-12), name


def test_stacked_gnn_selects_runs_and_gives_back_their_weights():
    models, _ = runs_of("gin", count=4)
    kept = StackedGNN.from_models(models).select(torch.tensor([3, 1]))
    assert kept.runs == 2 and all(p.is_leaf and p.requires_grad for p in kept.params.values())
    for position, r in enumerate([3, 1]):
        state = kept.state_dict(position)
        for name, value in {**dict(models[r].named_parameters()), **dict(models[r].named_buffers())}.items():
            if name in state:
                assert torch.equal(state[name], value.detach())
    assert kept.train_equals_eval is False and StackedGNN.from_models(runs_of("gcn")[0]).train_equals_eval


def test_stacked_gnn_needs_edge_list_vertex_classifiers_of_one_kind():
    with pytest.raises(ConfigError, match="one kind"):
        StackedGNN.from_models([GNN("gcn", 3, 4, 1, 2, graph_level=False), GNN("gin", 3, 4, 1, 2, graph_level=False)])
    with pytest.raises(ConfigError, match="one kind"):
        StackedGNN.from_models([GNN("gcn", 3, 4, 1, 2, graph_level=True)])


# ------------------------------------------------------------------------------------ Table 1's dense GAT
@pytest.mark.parametrize("concat", [True, False])
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("chunk", [1 << 20, 100])
def test_dense_gat_forward_is_torch_geometrics_dense_gat(monkeypatch, concat, shared, chunk):
    """Same output and gradients as DenseGATConv, with one adjacency shared by the batch or one per graph, in one
    chunk or many (chunk of 100 entries: one graph at a time)."""
    from torch_geometric.nn import DenseGATConv

    monkeypatch.setattr(gnn, "GAT_CHUNK_ENTRIES", chunk)
    torch.manual_seed(0)
    conv = DenseGATConv(5, 3, heads=2, concat=concat)
    x = torch.randn(4, 6, 5, requires_grad=True)
    adj = (torch.rand(1 if shared else 4, 6, 6) < 0.4).double()
    adj = ((adj + adj.transpose(1, 2)) > 0).double() * (1 - torch.eye(6))
    expected = conv(x, adj)
    got = gnn.dense_gat_forward(conv, x, adj)
    assert torch.allclose(got, expected, atol=1e-12)
    weights = torch.randn_like(expected)
    reference = torch.autograd.grad((expected * weights).sum(), [x, *conv.parameters()])
    ours = torch.autograd.grad((got * weights).sum(), [x, *conv.parameters()])
    assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(ours, reference))


def test_dense_gat_forward_refuses_attention_dropout():
    from torch_geometric.nn import DenseGATConv

    conv = DenseGATConv(3, 2, heads=2, dropout=0.5)
    with pytest.raises(ConfigError, match="dropout"):
        gnn.dense_gat_forward(conv, torch.randn(2, 4, 3), isc.shared_adjacency()[:, :4, :4])


# ------------------------------------------------------------------------------- learnable edge weights (UGS)
def test_weighted_gcn_operator_is_gcn_norm_with_edge_weights_and_differentiable():
    """The stacked GCN on a WeightedGCNOperator = torch_geometric's GCN with ``edge_weight`` (both directions):
    logits and the gradients of the parameters and of the edge weights."""
    from rankrepro.gnn.models import StackedStructure, WeightedGCNOperator

    edges = random_graph(20, 0.2, seed=3)
    torch.manual_seed(0)
    model = GNN("gcn", 5, 8, 2, 3, graph_level=False)
    x = torch.randn(20, 5)
    weight = torch.rand(len(edges), requires_grad=True)
    reference_weight = weight.detach().clone().requires_grad_()
    stacked = StackedGNN.from_models([model])
    structure = StackedStructure(1, 20, propagation=WeightedGCNOperator.pattern(edges, 20).with_weight(weight))
    logits = stacked.forward(x, structure, training=True)[0]
    expected = model(x, torch.from_numpy(directed_edge_index(edges)), edge_weight=reference_weight.repeat(2))
    assert torch.allclose(logits, expected, atol=1e-12)
    probe = torch.randn_like(logits)
    grads = torch.autograd.grad((logits * probe).sum(), [weight, *stacked.params.values()])
    (expected * probe).sum().backward()
    assert torch.allclose(grads[0], reference_weight.grad, atol=1e-10)
    for g, (name, parameter) in zip(grads[1:], model.named_parameters()):
        assert torch.allclose(g[0], parameter.grad, atol=1e-10), name
    with pytest.raises(ValueError, match="with_weight"):
        WeightedGCNOperator.pattern(edges, 20) @ x


# ------------------------------------------------------------------------------- ResGCN (DeeperGCN's res+)
def test_resgcn_shapes_and_parameters():
    """Encoder in → width, ``depth`` GENConvs width → width (one linear map each), ``depth`` BatchNorms, head."""
    model = GNN("resgcn", 6, 8, 10, 3, graph_level=False)
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    assert shapes["encoder.weight"] == (8, 6) and shapes["head.weight"] == (3, 8)
    assert all(shapes[f"convs.{k}.mlp.0.weight"] == (8, 8) for k in range(10))
    assert sum(name.startswith("norms.") and name.endswith("weight") for name in shapes) == 10
    models, graphs = runs_of("resgcn")
    logits = StackedGNN.from_models(models).forward(
        torch.randn(30, 6), stacked_structure("resgcn", graphs, 30), training=True
    )
    assert logits.shape == (3, 30, 3)


def test_resgcn_blocks_after_the_first_are_the_identity_at_zero_weights():
    """With conv_k = 0 for k ≥ 1 every residual block passes h through: the network is head(ReLU(BN(conv₀(enc x))))."""
    torch.manual_seed(0)
    edges = random_graph(12, 0.3, seed=1)
    edge_index = torch.from_numpy(directed_edge_index(edges))
    model = GNN("resgcn", 5, 8, 6, 2, graph_level=False).eval()
    for norm in model.norms:  # non-trivial running statistics and affine maps
        norm.running_mean.normal_(), norm.running_var.uniform_(0.5, 2.0), norm.weight.data.normal_()
    with torch.no_grad():
        for conv in model.convs[1:]:
            conv.mlp[0].weight.zero_(), conv.mlp[0].bias.zero_()
    x = torch.randn(12, 5)
    h = model.convs[0](model.encoder(x), edge_index)
    expected = model.head(torch.relu(model.norms[-1](h)))
    assert torch.allclose(model(x, edge_index), expected, atol=1e-12)


def test_gen_max_aggregation_values_and_gradient():
    """m_v = max over v's neighbours of ReLU(h_u) + ε (0 for an isolated vertex), and its gradient (gradcheck)."""
    path = np.array([[0, 1], [1, 2]])  # vertex 3 is isolated
    structure = stacked_structure("resgcn", [path], 4)
    h = torch.tensor([[[1.0, -2.0], [3.0, 0.5], [-1.0, 4.0], [9.0, 9.0]]])
    pooled = gnn._max_aggregate(structure, h, 0.0)[0]
    assert torch.equal(pooled, torch.tensor([[3.0, 0.5], [1.0, 4.0], [3.0, 0.5], [0.0, 0.0]]))
    probe = torch.randn(1, 4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: gnn._max_aggregate(structure, x, 1e-7), (probe,))


def test_stacked_resgcn_gradient_check():
    """Finite differences of the stacked ResGCN's loss in every parameter (float64, training-mode BatchNorm)."""
    models, graphs = runs_of("resgcn", count=2, n=10, features=4)
    stacked = StackedGNN.from_models([m.double() for m in models])
    structure = stacked_structure("resgcn", graphs, 10)
    x = torch.randn(10, 4, dtype=torch.float64)
    names = list(stacked.params)

    def loss(*values):
        stacked.params = dict(zip(names, values))
        return stacked.forward(x, structure, training=True).sin().sum()

    buffers = {k: v.clone() for k, v in stacked.buffers.items()}

    def restore_then(*values):
        stacked.buffers = {k: v.clone() for k, v in buffers.items()}
        return loss(*values)

    assert torch.autograd.gradcheck(restore_then, tuple(stacked.params.values()), atol=1e-6)
