"""Hierarchical tensor factorization: forward pass, reconstruction, local components, matricizations, objective."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rankrepro.core.errors import ConfigError
from rankrepro.core.measures import effective_rank
from rankrepro.core.optim import GroupRMSprop
from rankrepro.core.trainer import StopRule, TrainSettings, train
from rankrepro.factorization.cp import cp_reconstruct, multi_indices
from rankrepro.factorization.htf import (
    HTFCompletionObjective,
    auto_gather_level,
    embed_cp,
    gather_level_cost,
    hierarchical_effective_rank,
    hierarchical_rank,
    htf_loss,
    htf_predict,
    htf_reconstruct,
    htf_structure,
    init_htf,
    interior_nodes,
    local_component_norms,
    matricization_singular_values,
    matricize,
    mode_tree,
    node_param_index,
    numerical_rank,
    param_shapes,
    random_htf_tensor,
    tree_nodes,
)


def _hand_model() -> list[torch.Tensor]:
    """Order 4, dims 2, widths [2, 1], one run: small integers so that every value can be checked by hand."""
    a0 = [[1.0, 2.0], [0.0, 1.0]]
    a1 = [[1.0, 0.0], [2.0, 1.0]]
    a2 = [[1.0, 1.0], [1.0, 0.0]]
    a3 = [[0.0, 1.0], [1.0, 3.0]]
    w01 = [[1.0], [2.0]]
    w23 = [[3.0], [1.0]]
    root = [2.0]
    return [torch.tensor([m]) for m in (a0, a1, a2, a3, w01, w23, root)]


def _entry_reference(params, index):
    """W[i] by the definition, one node vector at a time (plain Python recursion over the tree, run 0)."""
    order = len(index)

    def vector(node):
        if len(node) == 1:
            return params[node[0]][0, index[node[0]]]
        half = len(node) // 2
        pooled = vector(node[:half]) * vector(node[half:])
        return pooled @ params[node_param_index(node, order)][0]

    return vector(tuple(range(order)))


def _random_params(dims, widths, batch, seed):
    generators = [torch.Generator().manual_seed(seed + b) for b in range(batch)]
    return init_htf(dims, widths, torch.ones(batch), generators)


def test_mode_tree_and_parameter_layout():
    assert mode_tree(4) == (((0,), (1,), (2,), (3,)), ((0, 1), (2, 3)), ((0, 1, 2, 3),))
    assert tree_nodes(4) == [(0,), (1,), (2,), (3,), (0, 1), (2, 3)]
    assert interior_nodes(8)[-1] == tuple(range(8)) and len(interior_nodes(8)) == 7
    assert param_shapes((8, 7, 6, 5), (3, 2)) == [(8, 3), (7, 3), (6, 3), (5, 3), (3, 2), (3, 2), (2,)]
    assert [node_param_index(n, 4) for n in [(0,), (3,), (0, 1), (2, 3), (0, 1, 2, 3)]] == [0, 3, 4, 5, 6]
    assert len(param_shapes((2,) * 8, (4, 3, 2))) == 15
    assert htf_structure(_hand_model()) == ((2, 2, 2, 2), (2, 1))


def test_hand_computed_tensor():
    # W[i0,i1,i2,i3] = a·M[i0,i1]·N[i2,i3] with M = A0 diag(W01) A1ᵀ = [[1, 6], [0, 2]],
    # N = A2 diag(W23) A3ᵀ = [[1, 6], [0, 3]] and a = 2 (the root width is 1).
    params = _hand_model()
    m = torch.tensor([[1.0, 6.0], [0.0, 2.0]])
    n = torch.tensor([[1.0, 6.0], [0.0, 3.0]])
    expected = 2.0 * torch.einsum("ab,cd->abcd", m, n)
    assert torch.equal(htf_reconstruct(params)[0], expected)
    # entry (1, 1, 0, 1): v0 = (0, 1), v1 = (2, 1) → (0·2, 1·1)·(1, 2) = 2; v2 = (1, 1), v3 = (1, 3) →
    # (1, 3)·(3, 1) = 6; root: ⟨(2)·(6), (2)⟩ = 24.
    # entry (0, 0, 0, 0): (1, 2)⊙(1, 0) = (1, 0) → 1; (1, 1)⊙(0, 1) = (0, 1) → 1; root 2·1·1 = 2.
    indices = torch.tensor([[1, 1, 0, 1], [0, 0, 0, 0], [0, 1, 1, 1]])
    for level in range(3):
        assert htf_predict(params, indices, gather_level=level).tolist() == [[24.0, 2.0, 36.0]]


def test_hand_computed_local_component_norms():
    norms = local_component_norms(_hand_model())
    assert list(norms) == [(0, 1), (2, 3), (0, 1, 2, 3)]
    # node {0,1}: r=0: ‖(1,0)‖·‖(1,2)‖·‖(1)‖ = √5; r=1: ‖(2,1)‖·‖(0,1)‖·‖(2)‖ = 2√5
    assert torch.allclose(norms[(0, 1)], torch.tensor([[5**0.5, 2 * 5**0.5]]))
    # node {2,3}: r=0: ‖(1,1)‖·‖(0,1)‖·3 = 3√2; r=1: ‖(1,0)‖·‖(1,3)‖·1 = √10
    assert torch.allclose(norms[(2, 3)], torch.tensor([[3 * 2**0.5, 10**0.5]]))
    # root: ‖W01[:, 0]‖·‖W23[:, 0]‖·|a_0| = √5·√10·2 = 10√2
    assert torch.allclose(norms[(0, 1, 2, 3)], torch.tensor([[10 * 2**0.5]]))


def test_hand_computed_hierarchical_rank():
    # W = 2·M ⊗ N with M, N invertible 2×2: leaves have rank 2, {0,1} and {2,3} rank 1, {0,2} (not a node) rank 4
    tensor = htf_reconstruct(_hand_model())
    ranks = hierarchical_rank(tensor)
    assert {node: int(r[0]) for node, r in ranks.items()} == {(0,): 2, (1,): 2, (2,): 2, (3,): 2, (0, 1): 1, (2, 3): 1}
    assert int(numerical_rank(matricization_singular_values(tensor, (0, 2)))[0]) == 4


orders = st.sampled_from([2, 4, 8])


@settings(max_examples=25)
@given(order=orders, data=st.data(), batch=st.integers(1, 3), seed=st.integers(0, 10_000))
def test_forward_at_indices_equals_reconstruction_at_every_gather_level(order, data, batch, seed):
    depth = order.bit_length() - 1
    max_dim = {2: 4, 4: 3, 8: 2}[order]
    dims = tuple(data.draw(st.lists(st.integers(1, max_dim), min_size=order, max_size=order)))
    widths = tuple(data.draw(st.lists(st.integers(1, 4), min_size=depth, max_size=depth)))
    params = _random_params(dims, widths, batch, seed)
    full = htf_reconstruct(params)
    assert full.shape == (batch, *dims)
    flat = torch.randperm(math.prod(dims), generator=torch.Generator().manual_seed(seed))
    indices = multi_indices(flat, dims)
    expected = full.reshape(batch, -1)[:, flat]
    for level in [None, *range(depth + 1)]:
        assert torch.allclose(htf_predict(params, indices, level), expected, rtol=1e-12, atol=1e-12)
    for k in range(min(5, len(flat))):
        index = indices[k].tolist()
        assert torch.allclose(full[(0, *index)], _entry_reference(params, index), rtol=1e-12, atol=1e-12)


def test_order_four_matches_explicit_einsum(generator):
    dims, widths = (3, 2, 4, 2), (3, 2)
    params = init_htf(dims, widths, torch.ones(2), [generator, generator])
    expected = torch.einsum("zar,zbr,zcq,zdq,zru,zqu,zu->zabcd", *params)
    assert torch.allclose(htf_reconstruct(params), expected, rtol=1e-12, atol=1e-12)


def test_per_run_indices():
    dims, widths = (3, 3, 2, 2), (2, 3)
    params = _random_params(dims, widths, 3, 7)
    g = torch.Generator().manual_seed(0)
    indices = torch.stack([multi_indices(torch.randperm(36, generator=g)[:10], dims) for _ in range(3)])
    for level in range(3):
        per_run = htf_predict(params, indices, level)
        for b in range(3):
            single = htf_predict([p[b : b + 1] for p in params], indices[b], level)
            assert torch.allclose(per_run[b], single[0], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dims", [(2, 3, 2, 2), (2, 2, 2, 2, 2, 2, 2, 2)])
def test_embedded_cp_tensor_is_reproduced(dims, generator):
    factors = [torch.randn(2, d, 5, generator=generator) for d in dims]
    params = embed_cp(factors)
    assert htf_structure(params) == (dims, (5,) * (len(dims).bit_length() - 1))
    assert torch.allclose(htf_reconstruct(params), cp_reconstruct(factors), rtol=1e-12, atol=1e-12)
    ranks = hierarchical_rank(htf_reconstruct(params))
    assert all(int(r.max()) <= 5 for r in ranks.values())


def _finite_difference_grads(objective, params, step=1e-6):
    grads = []
    for i, p in enumerate(params):
        grad = torch.zeros_like(p)
        for flat in range(p.numel()):
            shifted = []
            for sign in (1.0, -1.0):
                moved = [q.clone() for q in params]
                moved[i].view(-1)[flat] += sign * step
                shifted.append(objective.loss_and_grads(moved)[0].sum())
            grad.view(-1)[flat] = (shifted[0] - shifted[1]) / (2 * step)
        grads.append(grad)
    return grads


@pytest.mark.parametrize("gather_level", [0, 1, 2])
def test_objective_gradient_matches_finite_differences(gather_level):
    dims, widths = (2, 3, 2, 2), (3, 2)
    g = torch.Generator().manual_seed(3)
    target = torch.randn(dims, generator=g)
    indices = multi_indices(torch.randperm(24, generator=g)[:15], dims)
    objective = HTFCompletionObjective(target, indices, gather_level=gather_level)
    params = _random_params(dims, widths, 2, 11)
    loss, grads = objective.loss_and_grads(params)
    assert loss.shape == (2,)
    for analytic, numeric in zip(grads, _finite_difference_grads(objective, params)):
        assert torch.allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


def test_gradcheck_of_the_loss():
    dims, widths = (2, 2, 2, 2), (2, 2)
    params = [p.requires_grad_(True) for p in _random_params(dims, widths, 2, 5)]
    indices = multi_indices(torch.arange(0, 16, 2), dims)
    values = torch.randn(8, generator=torch.Generator().manual_seed(0))
    for level in (0, 2):
        assert torch.autograd.gradcheck(lambda *p: htf_loss(list(p), indices, values, level), params)


def test_batched_runs_are_independent():
    dims, widths = (3, 2, 3, 2), (4, 3)
    g = torch.Generator().manual_seed(1)
    target = torch.randn(dims, generator=g)
    objective = HTFCompletionObjective(target, multi_indices(torch.randperm(36, generator=g)[:20], dims))
    params = _random_params(dims, widths, 3, 21)
    loss, grads = objective.loss_and_grads(params)
    moved = [p.clone() for p in params]
    for p in moved:
        p[1] = 10 * torch.randn(p[1].shape, generator=g)
    moved_loss, moved_grads = objective.loss_and_grads(moved)
    assert moved_loss[1] != loss[1]
    for b in (0, 2):
        assert moved_loss[b] == loss[b]
        assert all(torch.equal(a[b], c[b]) for a, c in zip(grads, moved_grads))
    for b in range(3):
        single_loss, single_grads = objective.loss_and_grads([p[b : b + 1] for p in params])
        assert torch.allclose(single_loss[0], loss[b], rtol=1e-13)
        assert all(torch.allclose(s[0], a[b], rtol=1e-12, atol=1e-15) for s, a in zip(single_grads, grads))


def test_matricization_layout_and_rank_one_tensor(generator):
    tensor = torch.arange(2 * 3 * 4 * 5, dtype=torch.float64).reshape(2, 3, 4, 5)
    mat = matricize(tensor[None], (0, 2))
    assert mat.shape == (1, 8, 15)
    assert mat[0, 1 * 4 + 3, 2 * 5 + 4] == tensor[1, 2, 3, 4]
    assert torch.equal(matricize(tensor, (2, 0), order=4), mat[0])
    vectors = [torch.randn(d, generator=generator) for d in (3, 4, 2, 5)]
    rank_one = torch.einsum("a,b,c,d->abcd", *vectors)[None]
    for modes in [(0,), (1,), (0, 1), (2, 3), (0, 2), (1, 3), (0, 1, 3)]:
        assert int(numerical_rank(matricization_singular_values(rank_one, modes))[0]) == 1
    assert all(int(r[0]) == 1 for r in hierarchical_rank(rank_one).values())
    assert all(torch.allclose(e, torch.ones(1)) for e in hierarchical_effective_rank(rank_one).values())


@settings(max_examples=10)
@given(seed=st.integers(0, 10_000))
def test_low_hierarchical_rank_target(seed):
    g = torch.Generator().manual_seed(seed)
    target = random_htf_tensor((4, 4, 4, 4), (2, 2), g, norm=3.0)
    assert torch.allclose(target.norm(), torch.tensor(3.0))
    ranks = hierarchical_rank(target[None], tol=1e-9)
    assert all(int(r[0]) == 2 for r in ranks.values())  # ≤ 2 at every tree node (= 2 for a random instance)
    # {0, 2} is not a tree node: its matricization has rank up to r_0² = 4 (and generically 4)
    assert int(numerical_rank(matricization_singular_values(target[None], (0, 2)), 1e-9)[0]) == 4
    erank = hierarchical_effective_rank(target[None])
    assert torch.allclose(erank[(0, 1)], effective_rank(matricize(target[None], (0, 1))))
    assert all(1.0 <= float(e[0]) <= 2.0 + 1e-12 for e in erank.values())


def test_init_scales_and_shared_directions():
    dims, widths = (8, 8, 8, 8), (16, 16)
    params = init_htf(
        dims, widths, torch.tensor([1e-2, 2e-2]), [torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)]
    )
    assert [tuple(p.shape) for p in params] == [(2, *s) for s in param_shapes(dims, widths)]
    assert all(torch.allclose(p[1], 2 * p[0]) for p in params)
    leaves = torch.cat([p[0].flatten() for p in params[:4]])
    assert abs(float(leaves.std()) - 1e-2) < 1e-3
    again = init_htf(dims, widths, torch.tensor([1e-2]), [torch.Generator().manual_seed(0)])
    assert all(torch.equal(a[0], p[0]) for a, p in zip(again, params))


def test_auto_gather_level_is_the_cheapest():
    assert auto_gather_level((8,) * 4, (512, 512), 2048) == 2
    for dims, widths, n_obs in [((8,) * 4, (512, 512), 16), ((16,) * 4, (64, 64), 2048), ((2,) * 8, (4, 4, 4), 9)]:
        costs = [gather_level_cost(dims, widths, n_obs, g) for g in range(len(widths) + 1)]
        assert costs[auto_gather_level(dims, widths, n_obs)] == min(costs)


def test_objective_metrics():
    dims, widths = (3, 3, 3, 3), (4, 4)
    truth = _random_params(dims, (2, 2), 1, 99)
    target = htf_reconstruct(truth)[0]
    indices = multi_indices(torch.randperm(81, generator=torch.Generator().manual_seed(0))[:40], dims)
    objective = HTFCompletionObjective(
        target, indices, top_k=3, track_nodes=[(0, 1)], track_matricizations=[(0, 1), (0, 2)]
    )
    params = _random_params(dims, widths, 2, 5)
    metrics = objective.metrics(params)
    assert set(metrics) == {
        "train_loss",
        "reconstruction_error",
        "heldout_error",
        "root_norms",
        "norms_0_1",
        "sv_0_1",
        "sv_0_2",
    }
    assert torch.allclose(metrics["train_loss"], objective.loss_and_grads(params)[0])
    assert metrics["root_norms"].shape == (2, 3) and metrics["sv_0_2"].shape == (2, 3)
    assert bool((metrics["root_norms"].diff(dim=-1) <= 0).all())
    full_norms = local_component_norms(params)[(0, 1, 2, 3)]
    assert torch.allclose(metrics["root_norms"][:, 0], full_norms.amax(-1))
    # a model equal to the target: zero errors everywhere
    exact = objective.metrics(truth)
    assert float(exact["reconstruction_error"][0]) < 1e-12 and float(exact["heldout_error"][0]) < 1e-12
    assert float(exact["train_loss"][0]) < 1e-24
    # without a target: only the loss and the norms
    bare = HTFCompletionObjective(None, indices, objective.values, dims=dims)
    assert set(bare.metrics(params)) == {"train_loss", "root_norms"}
    assert bare.metrics(params)["root_norms"].shape == (2, 4)


def test_training_with_the_batched_trainer_reduces_the_loss():
    dims, widths = (3, 3, 3, 3), (8, 8)
    g = torch.Generator().manual_seed(4)
    target = random_htf_tensor(dims, (2, 2), g, norm=9.0)
    indices = multi_indices(torch.randperm(81, generator=g)[:60], dims)
    objective = HTFCompletionObjective(target, indices)
    params = init_htf(dims, widths, torch.tensor([0.3, 0.3]), [torch.Generator().manual_seed(s) for s in (1, 2)])
    loop = TrainSettings(max_iters=300, stop=StopRule(1e-8), log_every=50)
    result = train(objective, params, GroupRMSprop(torch.full((2,), 1e-2)), loop)
    initial = objective.loss_and_grads(params)[0]
    assert bool((result.final_metrics["loss"] < 0.1 * initial).all())
    frame = result.metrics_frame()
    assert {"root_norms_0", "root_norms_7", "heldout_error"} <= set(frame.columns)


def test_bad_arguments_raise_config_errors():
    with pytest.raises(ConfigError, match="power of 2"):
        mode_tree(3)
    with pytest.raises(ConfigError, match="power of 2"):
        param_shapes((2, 2, 2), (2,))
    with pytest.raises(ConfigError, match="needs 2 widths"):
        param_shapes((2, 2, 2, 2), (2,))
    with pytest.raises(ConfigError, match="positive"):
        param_shapes((2, 0, 2, 2), (2, 2))
    params = _hand_model()
    params[4] = torch.ones(1, 3, 1)  # rows must match the leaves' width 2
    with pytest.raises(ConfigError, match="do not fit"):
        htf_structure(params)
    with pytest.raises(ConfigError, match="2N − 1"):
        htf_reconstruct(_hand_model()[:6])
    with pytest.raises(ConfigError, match="power of 2"):
        embed_cp([torch.ones(1, 2, 3)] * 3)
    with pytest.raises(ConfigError, match="same B and R"):
        embed_cp([torch.ones(1, 2, 3), torch.ones(1, 2, 4)])
    with pytest.raises(ConfigError, match="proper subset"):
        matricize(torch.ones(1, 2, 2, 2, 2), (0, 0))
    with pytest.raises(ConfigError, match="proper subset"):
        matricize(torch.ones(1, 2, 2, 2, 2), (4,))
    with pytest.raises(ConfigError, match="proper subset"):
        matricize(torch.ones(1, 2, 2, 2, 2), (0, 1, 2, 3))
    with pytest.raises(ConfigError, match="gather_level"):
        htf_predict(_hand_model(), torch.zeros(1, 4, dtype=torch.int64), gather_level=3)
    with pytest.raises(ConfigError, match="one scale per generator"):
        init_htf((2,) * 4, (2, 2), torch.ones(2), [torch.Generator()])
    with pytest.raises(ConfigError, match="norm"):
        random_htf_tensor((2,) * 4, (2, 2), torch.Generator(), norm=0.0)
    target = torch.ones(2, 2, 2, 2)
    with pytest.raises(ConfigError, match="outside"):
        HTFCompletionObjective(target, torch.tensor([[0, 0, 2, 0]]))
    with pytest.raises(ConfigError, match="shape"):
        HTFCompletionObjective(target, torch.tensor([[0, 0, 0]]))
    with pytest.raises(ConfigError, match="power of 2"):
        HTFCompletionObjective(torch.ones(2, 2, 2), torch.tensor([[0, 0, 0]]))
    with pytest.raises(ConfigError, match="interior node"):
        HTFCompletionObjective(target, torch.tensor([[0, 0, 0, 0]]), track_nodes=[(1, 2)])
    with pytest.raises(ConfigError, match="needs a target"):
        HTFCompletionObjective(None, torch.tensor([[0, 0, 0, 0]]))


def test_non_node_subsets_list_every_other_matricization_once():
    from rankrepro.factorization.htf import non_node_subsets

    assert non_node_subsets(2) == []
    assert non_node_subsets(4) == [(0, 2), (0, 3)]
    eight = non_node_subsets(8)
    # size 2: (0, j), j = 2 … 7 (6); size 4: the 35 sets (0, ·, ·, ·) but the node (0, 1, 2, 3) (34)
    assert len(eight) == 6 + 34 and (0, 1) not in eight and (0, 1, 2, 3) not in eight
    assert all(s[0] == 0 and s not in tree_nodes(8) for s in eight) and len(set(eight)) == len(eight)


def test_numerical_rank_against_a_reference_scale():
    sigma = torch.tensor([[4.0, 1.0, 0.3, 0.0], [0.5, 0.2, 0.1, 0.0]], dtype=torch.float64)
    assert numerical_rank(sigma, 0.1).tolist() == [2, 3]  # relative to each row's own σ_1
    assert numerical_rank(sigma, 0.1, 4.0).tolist() == [2, 1]  # σ_i > 0.4: a shared reference size
    assert numerical_rank(sigma, 0.1, torch.tensor([1.0, 10.0])).tolist() == [3, 0]
    assert numerical_rank(torch.zeros(1, 3), 0.1, 0.0).tolist() == [0]
