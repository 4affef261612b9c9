"""Hessian maps of small convolutional networks and upper bounds on their ranks (after Singh, Hofmann & Schölkopf,
"The Hessian perspective into the nature of convolutional neural networks", ICML 2023, arXiv 2305.09088).

Network (bias-free, one input channel, square s × s images, stride 1, no padding): L − 1 hidden convolutions with
m_1, …, m_{L-1} channels and k × k kernels, an elementwise σ (identity or ReLU) after each, then a fully connected
head on the flattened last feature map,
``F(x) = W^L σ(T_{L-1} ⋯ σ(T_1 x))``, with feature-map sides t_0 = s, t_l = t_{l-1} − k + 1.
Parameters θ = (w_1, …, w_{L-1}, W^L) flattened row-major, w_l of shape (m_l, m_{l-1}, k, k) (m_0 = 1) and
W^L of shape (K, m_{L-1} t_{L-1}²): p_l = m_l m_{l-1} k² for a convolution, p_L = K m_{L-1} t_{L-1}².

**Toeplitz representation** (the paper's framework): convolution l is the (m_l t_l²) × (m_{l-1} t_{l-1}²) doubly
block Toeplitz matrix T_l = T(w_l), T[(a, y, x), (b, y + i, x + j)] = w_l[a, b, i, j], linear in w_l. So the CNN is the
fully connected network of widths (s², m_1 t_1², …, K) of :mod:`rankrepro.hessian.maps` at the weights
W = A θ (A the linear Toeplitz embedding), and by the chain rule (A constant, its second derivative zero)
J_CNN = J_MLP A, H_O^CNN = Aᵀ H_O^MLP A, H_F^CNN = Aᵀ H_F^MLP A. The maps here are formed by autodiff of the
convolutional forward pass (p × p, never the MLP's much larger maps); the tests check them against the MLP maps
through A. Ranks follow the one rule of :func:`rankrepro.hessian.maps.hessian_ranks`.

**Bounds** (:func:`conv_rank_bounds`). The search corpus held the paper's abstract and introduction only (its claims:
upper bounds, tight with linear activations, exact for one hidden layer, "of the order of the square root of trivial
bounds"; Hessian rank ∝ √p in CNNs), not its formulas — so the bounds below are **derived here** from first principles
for the architecture above; they are not the paper's expressions. See :func:`conv_rank_bounds` for each step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as nnf
from torch import Tensor
from torch.func import grad, jacrev

from rankrepro.core.errors import ConfigError
from rankrepro.hessian.maps import (
    MLP,
    HessianMaps,
    RankReport,
    effective_outputs,
    gauss_newton_factor,
    hessian_ranks,
    output_gradient,
    output_hessian_root,
    rank_report,
    restricts,
)

CONV_ACTIVATIONS = ("linear", "relu")
#: parameters per chunk of the reverse-over-reverse Hessian (bounds the memory of the vmapped passes)
HESSIAN_CHUNK = 256


@dataclass(frozen=True)
class ConvNet:
    """A bias-free CNN: ``side`` × ``side`` one-channel input, hidden convolutions of ``channels`` = (m_1, …) with
    ``kernel`` × ``kernel`` kernels (stride 1, no padding), σ = ``activation`` after each, a linear head to
    ``outputs`` = K."""

    side: int
    kernel: int
    channels: tuple[int, ...]
    outputs: int
    activation: str = "linear"

    def __post_init__(self) -> None:
        if self.activation not in CONV_ACTIVATIONS:
            raise ConfigError(f"unknown CNN activation '{self.activation}' (expected one of {CONV_ACTIVATIONS})")
        if not self.channels or min(self.channels) < 1 or self.kernel < 1 or self.outputs < 1:
            raise ConfigError(f"a CNN needs ≥ 1 hidden convolution, channels, kernel and outputs ≥ 1 (got {self})")
        if self.sides[-1] < 1:
            raise ConfigError(
                f"{len(self.channels)} convolutions of kernel {self.kernel} do not fit a {self.side}×{self.side} "
                f"image (feature-map sides {self.sides})"
            )

    @property
    def sides(self) -> tuple[int, ...]:
        """t_0 = s, t_l = t_{l-1} − k + 1: the feature-map sides."""
        return tuple(self.side - l * (self.kernel - 1) for l in range(len(self.channels) + 1))

    @property
    def depth(self) -> int:
        """L: hidden convolutions + the head."""
        return len(self.channels) + 1

    @property
    def kernel_shapes(self) -> list[tuple[int, int, int, int]]:
        """(m_l, m_{l-1}, k, k) of every convolution (m_0 = 1)."""
        inputs = (1, *self.channels[:-1])
        return [(m, m_in, self.kernel, self.kernel) for m, m_in in zip(self.channels, inputs)]

    @property
    def head_shape(self) -> tuple[int, int]:
        """(K, m_{L-1} t_{L-1}²) of the fully connected head."""
        return (self.outputs, self.channels[-1] * self.sides[-1] ** 2)

    @property
    def layer_sizes(self) -> list[int]:
        """p_1, …, p_L: m_l m_{l-1} k² per convolution, K m_{L-1} t_{L-1}² for the head."""
        return [math.prod(shape) for shape in self.kernel_shapes] + [math.prod(self.head_shape)]

    @property
    def num_params(self) -> int:
        """p = Σ_l p_l."""
        return sum(self.layer_sizes)

    @property
    def quadratic_params(self) -> int:
        """The parameters of the convolutions between two hidden layers, Σ_{l ≥ 2} m_l m_{l-1} k²: the part of p
        quadratic in the channels (the first convolution and the head are linear in them)."""
        return sum(self.layer_sizes[1:-1])

    def toeplitz_mlp(self) -> MLP:
        """The fully connected network this CNN is a weight-shared instance of: widths (s², m_1 t_1², …, K)."""
        hidden = tuple(m * t * t for m, t in zip(self.channels, self.sides[1:]))
        return MLP((self.side**2, *hidden, self.outputs), activation=self.activation)


def glorot_normal_conv(net: ConvNet, generator: torch.Generator) -> Tensor:
    """Flat θ, float64: kernels ~ N(0, 2 / (fan_in + fan_out)) with fan = channels · k² (PyTorch's convention for
    convolutions), head ~ N(0, 2 / (K + m_{L-1} t²))."""
    parts = []
    for m, m_in, k, _ in net.kernel_shapes:
        std = math.sqrt(2.0 / ((m + m_in) * k * k))
        parts.append(torch.randn(m * m_in * k * k, generator=generator, dtype=torch.float64) * std)
    rows, cols = net.head_shape
    parts.append(torch.randn(rows * cols, generator=generator, dtype=torch.float64) * math.sqrt(2.0 / (rows + cols)))
    return torch.cat(parts)


def unflatten_conv(net: ConvNet, theta: Tensor) -> tuple[list[Tensor], Tensor]:
    """(kernels w_1 … w_{L-1}, head W^L) views of θ."""
    if theta.shape[-1] != net.num_params:
        raise ValueError(f"θ has {theta.shape[-1]} entries, the CNN has {net.num_params}")
    kernels, start = [], 0
    for shape in net.kernel_shapes:
        size = math.prod(shape)
        kernels.append(theta[start : start + size].reshape(shape))
        start += size
    return kernels, theta[start:].reshape(net.head_shape)


def conv_forward(net: ConvNet, theta: Tensor, X: Tensor) -> Tensor:
    """F(X) ``(n, K)`` for flattened images X ``(n, s²)``: cross-correlations (``conv2d``), σ, then the head."""
    kernels, head = unflatten_conv(net, theta)
    hidden = X.reshape(-1, 1, net.side, net.side)
    for kernel in kernels:
        hidden = nnf.conv2d(hidden, kernel)
        if net.activation == "relu":
            hidden = torch.relu(hidden)
    return hidden.flatten(1) @ head.T


def toeplitz_matrix(kernel: Tensor, side: int) -> Tensor:
    """The doubly block Toeplitz matrix of a valid, stride-1 cross-correlation with ``kernel`` (m_out, m_in, k, k) on
    m_in × ``side`` × ``side`` maps: (m_out t²) × (m_in side²), t = side − k + 1, with
    T[(a, y, x), (b, y + i, x + j)] = kernel[a, b, i, j] (row-major (channel, row, column) on both sides)."""
    m_out, m_in, k, _ = kernel.shape
    t = side - k + 1
    matrix = kernel.new_zeros(m_out, t, t, m_in, side, side)
    for y in range(t):
        for x in range(t):
            matrix[:, y, x, :, y : y + k, x : x + k] = kernel
    return matrix.reshape(m_out * t * t, m_in * side * side)


def toeplitz_weights(net: ConvNet, theta: Tensor) -> Tensor:
    """The flat weights A θ of :meth:`ConvNet.toeplitz_mlp` (vec T_1, …, vec T_{L-1}, vec W^L, row-major)."""
    kernels, head = unflatten_conv(net, theta)
    blocks = [toeplitz_matrix(kernel, t).flatten() for kernel, t in zip(kernels, net.sides)]
    return torch.cat([*blocks, head.flatten()])


def toeplitz_embedding(net: ConvNet) -> Tensor:
    """A ``(p_MLP, p)``: the linear map θ ↦ Toeplitz weights (:func:`toeplitz_weights`), as a dense 0/1 matrix (small
    networks only: tests)."""
    eye = torch.eye(net.num_params, dtype=torch.float64)
    return torch.stack([toeplitz_weights(net, e) for e in eye], dim=1)


# ----------------------------------------------------------------------------------------------------- maps
def conv_hessian_maps(net: ConvNet, theta: Tensor, X: Tensor, Y: Tensor, loss: str) -> HessianMaps:
    """G ``(nK, p)`` with H_O = GᵀG (G = [B_i J_i], J by reverse-mode autodiff, B_i the curvature roots of
    :func:`~rankrepro.hessian.maps.output_hessian_root`) and H_F ``(p, p)`` = ∇²_θ Σ_ic g_ic F_c(x_i) at the fixed
    residual g (reverse over reverse, in chunks of :data:`HESSIAN_CHUNK` parameters). ReLU's second derivative is 0
    wherever it is defined, so H_F of a ReLU network has zero diagonal blocks, like a linear network's."""
    outputs = conv_forward(net, theta, X).detach()
    jacobian = jacrev(lambda t: conv_forward(net, t, X))(theta)
    factor = gauss_newton_factor(jacobian, output_hessian_root(loss, outputs, Y))
    residual = output_gradient(loss, outputs, Y)
    scalar = grad(lambda t: (residual * conv_forward(net, t, X)).sum())
    functional = jacrev(scalar, chunk_size=HESSIAN_CHUNK)(theta)
    return HessianMaps(outer_factor=factor, functional=0.5 * (functional + functional.T))


def conv_map_ranks(net: ConvNet, theta: Tensor, X: Tensor, Y: Tensor, loss: str) -> dict[str, RankReport]:
    """Rank reports of H_L, H_O, H_F (:func:`~rankrepro.hessian.maps.hessian_ranks`, tolerance of the p × p maps,
    inert parameters left out where :func:`~rankrepro.hessian.maps.restricts`)."""
    maps = conv_hessian_maps(net, theta, X, Y, loss)
    return hessian_ranks(maps, net.num_params, restrict=restricts(net.num_params))


def image_patches(X: Tensor, side: int, kernel: int) -> Tensor:
    """Every k × k patch of every image: ``(n t², k²)`` for flattened images X ``(n, side²)``."""
    images = X.reshape(-1, 1, side, side)
    return nnf.unfold(images, kernel).transpose(1, 2).reshape(-1, kernel * kernel)


def patch_rank(X: Tensor, side: int, kernel: int) -> int:
    """r_p = rank of the patch matrix (:func:`image_patches`), same tolerance rule as the data rank: the dimension of
    the span of the data's k × k patches (≤ k²)."""
    patches = image_patches(X.to(torch.float64), side, kernel)
    return rank_report(torch.linalg.svdvals(patches) ** 2, patches.shape[-1]).rank


# ----------------------------------------------------------------------------------------------------- bounds
def null_directions(net: ConvNet, data_patch_rank: int, loss: str) -> int:
    """Constant directions e of parameter space along which F (for CE: every logit difference) is unchanged for every
    θ, so that H_L e = H_O e = H_F e = 0: the first-layer kernels w_1[a] ↦ w_1[a] + v with v ⊥ every data patch
    (m_1 (k² − r_p) of them), and for CE the head W ↦ W + 1 vᵀ (m_{L-1} t_{L-1}²), which shifts all logits alike."""
    first = net.channels[0] * (net.kernel**2 - data_patch_rank)
    return first + (net.head_shape[1] if loss == "ce" else 0)


def functional_rank_bound(net: ConvNet, data_patch_rank: int, loss: str) -> int:
    """Upper bound on rank H_F for σ with σ'' = 0 (linear, ReLU) — derived here, not the paper's expression.

    s(θ) = Σ_ic g_ic F_c(x_i) is affine in each layer's parameters, so H_F has zero diagonal blocks and
    H_F = U + Uᵀ with U its strictly lower block triangle: rank H_F ≤ 2 rank U ≤ 2 Σ_{j<L} c_j, c_j the rank of U's
    column block j, c_j ≤ min(p_j, Σ_{l>j} b_lj), b_lj ≤ min(p_l, p_j) the rank of block (l, j). Two refinements:
    (i) every derivative by w_1[a] is a combination of data patches, so the first layer's column space has dimension
    ≤ m_1 r_p (c_1 ≤ m_1 r_p); (ii) the head–last-convolution block is block diagonal over the m_{L-1} channels b
    (∂z_{L-1}[b'] / ∂w_{L-1}[b] = 0 for b' ≠ b), each block with rows (c, u) = (output, position) whose K rows at one u
    are Σ_i g_ic v_i — K' independent at most (Σ_c g_ic = 0 for CE) — and columns the in-kernel w_{L-1}[b]
    (m_{L-2} k², or r_p for the first layer): b_{L,L-1} ≤ m_{L-1} min(K' t_{L-1}², m_{L-2} k² or r_p).
    One hidden layer: rank H_F ≤ 2 m_1 min(K' t_1², r_p). With p ≈ k² Σ m_l m_{l-1} quadratic in the channels and
    this bound linear in them (2 Σ_j p_j for the convolutions below the last, 2 m_{L-1} min(…) for the last), it is
    O(√p) — the order the paper states for its bounds."""
    k_eff = effective_outputs(net.outputs, loss)
    sizes = net.layer_sizes
    depth = net.depth
    kernels = (data_patch_rank, *[m * net.kernel**2 for m in net.channels[:-1]])  # in-kernel dims per out-channel
    total = 0
    for j in range(depth - 1):  # column layer j (0-based: convolution j + 1)
        blocks = 0
        for l in range(j + 1, depth):
            if l == depth - 1 and j == depth - 2:
                blocks += net.channels[-1] * min(k_eff * net.sides[-1] ** 2, kernels[-1])
            else:
                blocks += min(sizes[l], sizes[j])
        column = min(sizes[j], blocks)
        if j == 0:
            column = min(column, net.channels[0] * data_patch_rank)
        total += column
    return 2 * total


def conv_rank_bounds(
    net: ConvNet, num_samples: int, data_rank: int, data_patch_rank: int, loss: str, activation: str = "linear"
) -> dict[str, int]:
    """Upper bounds on rank H_O, H_F, H_L of ``net`` (with σ = ``activation``, linear or ReLU) at any θ — derived here
    (see the module docstring), each capped by p − :func:`null_directions`:

    - H_O = GᵀG, rank = rank G ≤ n K' rows; F is positively homogeneous in each channel's (in-kernel, out-weights)
      pair, so the m_l rescalings θ_l[a] ↦ (1 + ε) θ_l[a], θ_{l+1}[:, a] ↦ (1 − ε) θ_{l+1}[:, a] are further null
      directions of J (not of H_F: the loss is invariant along them, not flat): rank H_O ≤ p − null − Σ_l m_l.
      Linear networks: F(x) = M x with M = W^L T_{L-1} ⋯ T_1 (K × s²), so J θ̇ on the data is Ṁ Xᵀ: rank ≤ K' r.
    - H_F: :func:`functional_rank_bound`.
    - H_L = H_O + H_F: rank ≤ rank H_O + rank H_F."""
    if activation not in CONV_ACTIVATIONS:
        raise ConfigError(f"the CNN rank bounds are for σ'' = 0: {CONV_ACTIVATIONS} (got '{activation}')")
    k_eff = effective_outputs(net.outputs, loss)
    free = net.num_params - null_directions(net, data_patch_rank, loss)
    outer = min(free - sum(net.channels), num_samples * k_eff)
    if activation == "linear":
        outer = min(outer, k_eff * data_rank)
    functional = min(free, functional_rank_bound(net, data_patch_rank, loss))
    return {"loss": min(free, outer + functional), "outer": max(outer, 0), "functional": functional}
