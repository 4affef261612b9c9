"""CNN Hessian maps (Toeplitz representation) and the rank bounds derived for them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as nnf

from rankrepro.core.errors import ConfigError
from rankrepro.hessian import conv, maps


def _data(net: conv.ConvNet, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    theta = conv.glorot_normal_conv(net, generator)
    X = torch.rand(n, net.side**2, generator=generator, dtype=torch.float64)
    Y = nnf.one_hot(torch.arange(n) % net.outputs, net.outputs).to(torch.float64)
    return theta, X, Y


def test_parameter_count_and_sides():
    net = conv.ConvNet(6, 3, (2, 3), 10)
    assert net.sides == (6, 4, 2)
    assert net.layer_sizes == [2 * 9, 3 * 2 * 9, 10 * 3 * 4]
    assert net.num_params == 18 + 54 + 120 and net.quadratic_params == 54
    with pytest.raises(ConfigError, match="do not fit"):
        conv.ConvNet(4, 3, (2, 2), 10)
    with pytest.raises(ConfigError, match="activation"):
        conv.ConvNet(6, 3, (2,), 10, "tanh")


def test_toeplitz_matrix_is_the_cross_correlation():
    generator = torch.Generator().manual_seed(0)
    kernel = torch.randn(3, 2, 2, 2, generator=generator, dtype=torch.float64)
    images = torch.randn(4, 2, 5, 5, generator=generator, dtype=torch.float64)
    matrix = conv.toeplitz_matrix(kernel, 5)
    assert matrix.shape == (3 * 16, 2 * 25)
    expected = nnf.conv2d(images, kernel).flatten(1)
    assert torch.allclose(images.flatten(1) @ matrix.T, expected)


@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_the_cnn_is_the_mlp_at_its_toeplitz_weights_and_its_maps_are_projections(activation):
    """F_CNN(θ) = F_MLP(Aθ); J_CNN = J_MLP A; H_F^CNN = Aᵀ H_F^MLP A (A linear: no second-order term)."""
    net = conv.ConvNet(5, 2, (2, 2), 3, activation)
    theta, X, Y = _data(net, 4, 1)
    mlp, weights, embedding = net.toeplitz_mlp(), conv.toeplitz_weights(net, theta), conv.toeplitz_embedding(net)
    assert torch.allclose(embedding @ theta, weights)
    assert torch.allclose(conv.conv_forward(net, theta, X), maps.forward(mlp, weights, X))
    cnn = conv.conv_hessian_maps(net, theta, X, Y, "mse")
    jacobian = maps.output_jacobian(mlp, weights, X) @ embedding
    assert torch.allclose(cnn.outer_factor, jacobian.reshape(-1, net.num_params))
    functional = embedding.T @ maps.functional_hessian(mlp, weights, X, Y, "mse") @ embedding
    assert torch.allclose(cnn.functional, functional, atol=1e-12)


def test_patch_rank_counts_the_span_of_the_patches():
    X = torch.zeros(2, 16, dtype=torch.float64)
    X[0, 5] = 1.0  # one pixel: its 2×2 patches are the 4 unit vectors
    assert conv.patch_rank(X, 4, 2) == 4
    X = torch.ones(3, 16, dtype=torch.float64)  # constant images: every patch is the all-ones vector
    assert conv.patch_rank(X, 4, 2) == 1
    assert conv.image_patches(X, 4, 2).shape == (3 * 9, 4)


CASES = [
    (5, 3, (1,)),
    (5, 3, (2,)),
    (6, 3, (3,)),
    (5, 2, (3,)),
    (6, 3, (1, 1)),
    (6, 3, (2, 2)),
    (6, 3, (4, 4)),
    (7, 3, (3, 3)),
    (6, 2, (2, 3, 2)),
]


@pytest.mark.parametrize("side, kernel, channels", CASES)
@pytest.mark.parametrize("loss", ["mse", "ce"])
@pytest.mark.parametrize("activation", ["linear", "relu"])
@pytest.mark.parametrize("n", [3, 12])
def test_every_rank_is_within_its_bound(side, kernel, channels, loss, activation, n):
    net = conv.ConvNet(side, kernel, channels, 4, activation)
    theta, X, Y = _data(net, n, 2)
    ranks = {k: v.rank for k, v in conv.conv_map_ranks(net, theta, X, Y, loss).items()}
    bounds = conv.conv_rank_bounds(net, n, maps.data_rank(X), conv.patch_rank(X, side, kernel), loss, activation)
    assert all(ranks[kind] <= bounds[kind] for kind in bounds), (ranks, bounds)


@pytest.mark.parametrize("side, kernel, channels", [c for c in CASES if len(c[2]) == 1])
@pytest.mark.parametrize("loss", ["mse", "ce"])
@pytest.mark.parametrize("n", [3, 12])
def test_one_hidden_layer_linear_bounds_are_tight(side, kernel, channels, loss, n):
    """Generic data and weights: rank H_O and H_F equal their bounds for one hidden convolution; H_L within 1."""
    net = conv.ConvNet(side, kernel, channels, 4)
    theta, X, Y = _data(net, n, 3)
    ranks = {k: v.rank for k, v in conv.conv_map_ranks(net, theta, X, Y, loss).items()}
    bounds = conv.conv_rank_bounds(net, n, maps.data_rank(X), conv.patch_rank(X, side, kernel), loss)
    assert ranks["outer"] == bounds["outer"] and ranks["functional"] == bounds["functional"]
    assert bounds["loss"] - 1 <= ranks["loss"] <= bounds["loss"]


def test_functional_bound_is_linear_in_the_channels_while_p_is_quadratic():
    bounds = [conv.functional_rank_bound(conv.ConvNet(6, 3, (m, m), 10), 9, "mse") for m in (10, 20, 40)]
    assert bounds == [2 * (9 * m + m * min(10 * 4, 9 * m)) for m in (10, 20, 40)]
    with pytest.raises(ConfigError, match="σ'' = 0"):
        conv.conv_rank_bounds(conv.ConvNet(6, 3, (2,), 10), 5, 5, 9, "mse", "tanh")


@pytest.mark.parametrize("activation", conv.CONV_ACTIVATIONS)
@pytest.mark.parametrize("loss", ["mse", "ce", "logcosh"])
def test_the_cnn_maps_are_built_where_the_parameters_and_data_are(activation, loss, meta_device):
    """§5.5 on a GPU: G and H_F of a CNN are formed on the device of θ and the data (meta standing in for a GPU);
    data left on the CPU raises, as it would on CUDA."""
    net = conv.ConvNet(5, 2, (2, 2), 3, activation)
    theta, X, Y = _data(net, 6, seed=0)
    built = conv.conv_hessian_maps(net, theta.to(meta_device), X.to(meta_device), Y.to(meta_device), loss)
    assert built.outer_factor.device == meta_device and built.functional.device == meta_device
    assert built.functional.shape == (net.num_params, net.num_params)
    with pytest.raises(RuntimeError, match="device"):
        conv.conv_hessian_maps(net, theta.to(meta_device), X, Y, loss)
