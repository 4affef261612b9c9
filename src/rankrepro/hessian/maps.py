"""Exact Hessian maps of fully connected networks and their numerical ranks (Singh, Bachmann & Hofmann, 2021).

Network: ``F(x) = W^L σ(W^{L-1} ⋯ σ(W^1 x + b^1) ⋯ + b^{L-1}) + b^L`` with widths ``M_0 = d, M_1, …, M_L = K``,
parameters θ = (vec W^1, [b^1], …, vec W^L, [b^L]) flattened row-major, p = len(θ). Losses are summed over the n
samples: ``mse`` ½‖F − y‖², ``ce`` −log softmax(F)_y (one-hot y), ``logcosh`` Σ_c log cosh(F_c − y_c).

The loss Hessian splits as ``H_L = H_O + H_F``:

- outer-product part ``H_O = Σ_i J_iᵀ A_i J_i`` with J_i = ∂F(x_i)/∂θ (K × p) and A_i = ∇²_F ℓ_i (K × K, PSD).
  Written as ``H_O = GᵀG`` with ``G = [B_1 J_1; …; B_n J_n]`` (nK × p) and ``B_iᵀB_i = A_i``, its spectrum is the
  squared singular values of G, so its rank never needs the p × p matrix;
- functional part ``H_F = Σ_i Σ_c g_ic ∇²_θ F_c(x_i)`` with g_i = ∂ℓ_i/∂F: the Hessian of the scalar
  s(θ) = Σ_ic g_ic F_c(x_i; θ) with g held fixed (never H_L − H_O, which would turn an exactly zero H_F — a network
  without hidden layer — into rounding noise).

Both are assembled from the network's layer structure (:func:`network_derivatives`, :func:`structural_jacobian`,
:func:`structural_functional_hessian`): closed-form blocks built from per-sample activations and layer-to-layer
Jacobians, a few GEMMs instead of p forward-over-reverse passes. The autodiff versions (:func:`output_jacobian`,
:func:`functional_hessian`, :func:`loss_hessian`) stay as the references they are tested against.

Everything is float64. Numerical ranks follow the rule of :func:`rank_report`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import hessian, jacrev

from rankrepro.core.errors import ConfigError

ACTIVATIONS = ("linear", "relu", "tanh")
LOSSES = ("mse", "ce", "logcosh")
#: multiples of the default tolerance at which the robustness report recounts the rank
TOLERANCE_FACTORS = (1.0e-2, 1.0, 1.0e2)
#: |λ| / (eps·|λ|max) up to which rounding in ``eigvalsh`` lifts the exactly zero eigenvalues of these maps (measured on
#: the default tier's one-hidden-layer maps: 1–6.7, whole or without inert parameters; 0.3–1.3 with more layers). Where
#: the smallest tolerance τ/100 = p·eps·|λ|max/100 is not above it, the count at τ/100 depends on the exact rounding of
#: the decomposition, so such maps are decomposed whole (see :func:`restricts`).
ROUNDING_FLOOR = 8.0


# ----------------------------------------------------------------------------------------------------- network
@dataclass(frozen=True)
class MLP:
    """A fully connected network: ``widths = (d, M_1, …, M_{L-1}, K)``, one activation for every hidden layer."""

    widths: tuple[int, ...]
    activation: str = "linear"
    bias: bool = False

    def __post_init__(self) -> None:
        if len(self.widths) < 2 or any(int(w) < 1 for w in self.widths):
            raise ConfigError(f"an MLP needs an input and an output width, all ≥ 1 (got widths {self.widths})")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation '{self.activation}' (expected one of {ACTIVATIONS})")

    @property
    def depth(self) -> int:
        """L, the number of weight matrices (hidden layers + 1)."""
        return len(self.widths) - 1

    @property
    def hidden(self) -> tuple[int, ...]:
        """Hidden widths M_1 … M_{L-1}."""
        return tuple(self.widths[1:-1])

    @property
    def layer_shapes(self) -> list[tuple[int, int]]:
        """(M_l, M_{l-1}) of every weight matrix W^l."""
        return [(self.widths[l + 1], self.widths[l]) for l in range(self.depth)]

    @property
    def num_params(self) -> int:
        """p = Σ_l M_l M_{l-1} (+ Σ_l M_l with biases)."""
        return sum(rows * cols + (rows if self.bias else 0) for rows, cols in self.layer_shapes)


def activation_fn(name: str):
    """σ of an activation name: identity, ReLU or tanh."""
    return {"linear": lambda z: z, "relu": torch.relu, "tanh": torch.tanh}[name]


def glorot_normal_init(mlp: MLP, generator: torch.Generator) -> Tensor:
    """Flat θ with W^l_ij ~ N(0, 2 / (M_{l-1} + M_l)) (Glorot normal) and zero biases, float64."""
    parts = []
    for rows, cols in mlp.layer_shapes:
        std = math.sqrt(2.0 / (rows + cols))
        parts.append(torch.randn(rows * cols, generator=generator, dtype=torch.float64) * std)
        if mlp.bias:
            parts.append(torch.zeros(rows, dtype=torch.float64))
    return torch.cat(parts)


def unflatten(mlp: MLP, theta: Tensor) -> list[tuple[Tensor, Tensor | None]]:
    """(W^l, b^l or None) views of the flat parameter vector, in layer order."""
    if theta.shape[-1] != mlp.num_params:
        raise ValueError(f"θ has {theta.shape[-1]} entries, the network {mlp.widths} has {mlp.num_params}")
    layers, start = [], 0
    for rows, cols in mlp.layer_shapes:
        weight = theta[start : start + rows * cols].reshape(rows, cols)
        start += rows * cols
        bias = None
        if mlp.bias:
            bias = theta[start : start + rows]
            start += rows
        layers.append((weight, bias))
    return layers


def forward(mlp: MLP, theta: Tensor, X: Tensor) -> Tensor:
    """Outputs F(X) ``(n, K)``: X ``(n, d)`` through x ↦ W x + b and σ between layers (none after the last)."""
    sigma = activation_fn(mlp.activation)
    hidden = X
    layers = unflatten(mlp, theta)
    for index, (weight, bias) in enumerate(layers):
        hidden = hidden @ weight.T
        if bias is not None:
            hidden = hidden + bias
        if index < len(layers) - 1:
            hidden = sigma(hidden)
    return hidden


# ----------------------------------------------------------------------------------------------------- losses
def _check_loss(loss: str) -> None:
    if loss not in LOSSES:
        raise ConfigError(f"unknown loss '{loss}' (expected one of {LOSSES})")


def log_cosh(z: Tensor) -> Tensor:
    """log cosh z = |z| + log1p(e^{−2|z|}) − log 2, stable for large |z|."""
    a = z.abs()
    return a + torch.log1p(torch.exp(-2.0 * a)) - math.log(2.0)


def loss_value(loss: str, outputs: Tensor, targets: Tensor) -> Tensor:
    """Σ_i ℓ(F_i, y_i): ½‖F − y‖², −Σ_c y_c log softmax(F)_c, or Σ_c log cosh(F_c − y_c)."""
    _check_loss(loss)
    if loss == "mse":
        return 0.5 * ((outputs - targets) ** 2).sum()
    if loss == "ce":
        return -(targets * torch.log_softmax(outputs, dim=-1)).sum()
    return log_cosh(outputs - targets).sum()


def output_gradient(loss: str, outputs: Tensor, targets: Tensor) -> Tensor:
    """g_i = ∂ℓ_i/∂F ``(n, K)``: F − y, softmax(F) − y, tanh(F − y)."""
    _check_loss(loss)
    if loss == "mse":
        return outputs - targets
    if loss == "ce":
        return torch.softmax(outputs, dim=-1) - targets
    return torch.tanh(outputs - targets)


def output_hessian(loss: str, outputs: Tensor, targets: Tensor) -> Tensor:
    """A_i = ∇²_F ℓ_i ``(n, K, K)``: I; diag(s) − s sᵀ with s = softmax(F); diag(1 − tanh²(F − y))."""
    _check_loss(loss)
    n, k = outputs.shape
    if loss == "mse":
        return torch.eye(k, dtype=outputs.dtype, device=outputs.device).expand(n, k, k)
    if loss == "ce":
        s = torch.softmax(outputs, dim=-1)
        return torch.diag_embed(s) - s[:, :, None] * s[:, None, :]
    return torch.diag_embed(1.0 - torch.tanh(outputs - targets) ** 2)


def output_hessian_root(loss: str, outputs: Tensor, targets: Tensor) -> Tensor:
    """B_i ``(n, K, K)`` with B_iᵀ B_i = A_i: the symmetric square root (eigenvalues clamped at 0 for CE, whose
    A_i has the null vector 1), exact diagonal roots otherwise."""
    _check_loss(loss)
    if loss == "ce":
        values, vectors = torch.linalg.eigh(output_hessian(loss, outputs, targets))
        return (vectors * values.clamp(min=0.0).sqrt()[:, None, :]) @ vectors.transpose(-1, -2)
    if loss == "mse":
        return output_hessian(loss, outputs, targets)
    return torch.diag_embed(1.0 / torch.cosh(outputs - targets))


# ----------------------------------------------------------------------------------------------------- Hessians
def total_loss(mlp: MLP, theta: Tensor, X: Tensor, Y: Tensor, loss: str) -> Tensor:
    """The training loss Σ_i ℓ(F(x_i; θ), y_i)."""
    return loss_value(loss, forward(mlp, theta, X), Y)


def loss_hessian(mlp: MLP, theta: Tensor, X: Tensor, Y: Tensor, loss: str) -> Tensor:
    """H_L = ∇²_θ Σ_i ℓ_i by forward-over-reverse autodiff (the reference the decomposition is tested against)."""
    return hessian(lambda t: total_loss(mlp, t, X, Y, loss))(theta)


def output_jacobian(mlp: MLP, theta: Tensor, X: Tensor) -> Tensor:
    """J ``(n, K, p)``: J[i, c] = ∂F_c(x_i)/∂θ."""
    return jacrev(lambda t: forward(mlp, t, X))(theta)


def outer_product_factor(mlp: MLP, theta: Tensor, X: Tensor, Y: Tensor, loss: str) -> Tensor:
    """G ``(nK, p)`` with H_O = GᵀG: the rows B_i J_i of every sample stacked (J from :func:`structural_jacobian`)."""
    derivatives = network_derivatives(mlp, theta, X)
    root = output_hessian_root(loss, derivatives.outputs, Y)
    return gauss_newton_factor(structural_jacobian(derivatives), root)


def gauss_newton_factor(jacobian: Tensor, root: Tensor) -> Tensor:
    """G = [B_1 J_1; …; B_n J_n] ``(nK, p)`` from J ``(n, K, p)`` and the curvature roots B_i ``(n, K, K)`` of ℓ at
    F(x_i) (:func:`output_hessian_root`)."""
    return (root @ jacobian).reshape(-1, jacobian.shape[-1])


def outer_product_hessian(mlp: MLP, theta: Tensor, X: Tensor, Y: Tensor, loss: str) -> Tensor:
    """H_O = Σ_i J_iᵀ A_i J_i ``(p, p)``."""
    jac = output_jacobian(mlp, theta, X)
    curvature = output_hessian(loss, forward(mlp, theta, X).detach(), Y)
    return torch.einsum("ica,icd,idb->ab", jac, curvature, jac)


def functional_hessian(mlp: MLP, theta: Tensor, X: Tensor, Y: Tensor, loss: str) -> Tensor:
    """H_F = Σ_i Σ_c g_ic ∇²_θ F_c(x_i) ``(p, p)`` by forward-over-reverse autodiff: the Hessian of
    θ ↦ Σ_ic g_ic F_c(x_i; θ) at fixed g (the reference :func:`structural_functional_hessian` is tested against)."""
    residual = output_gradient(loss, forward(mlp, theta, X).detach(), Y)
    return hessian(lambda t: (residual * forward(mlp, t, X)).sum())(theta)


# ----------------------------------------------------------------------------------------------------- structure
def activation_slope(name: str, z: Tensor) -> Tensor:
    """σ'(z): 1; 1[z > 0] (autograd's convention at 0); 1 − tanh² z."""
    if name == "linear":
        return torch.ones_like(z)
    if name == "relu":
        return (z > 0).to(z.dtype)
    return 1.0 - torch.tanh(z) ** 2


def activation_bend(name: str, z: Tensor) -> Tensor | None:
    """σ''(z), or None where it vanishes identically (linear; ReLU away from its kink): −2 tanh z (1 − tanh² z)."""
    if name in ("linear", "relu"):
        return None
    t = torch.tanh(z)
    return -2.0 * t * (1.0 - t * t)


@dataclass(frozen=True)
class NetworkDerivatives:
    """Everything about an MLP at θ on X that the Hessian maps need and no loss changes, batched over the n samples.

    With ã = [a; 1] when the network has biases (ã = a otherwise), a_0 = x, z_l = [W^l | b^l] ã_{l-1},
    a_l = σ(z_l) (l < L) and F = z_L:

    - ``inputs[l-1]`` = ã_{l-1} ``(n, M_{l-1} [+1])``, the input of layer l, for l = 1 … L;
    - ``slopes[l-1]`` = σ'(z_l) and ``bends[l-1]`` = σ''(z_l) ``(n, M_l)`` for l < L (``bends`` None when σ'' ≡ 0);
    - ``chain[m-1][l-1]`` = C_{m,l} = ∂z_m/∂z_l ``(n, M_m, M_l)`` for l ≤ m: C_{l,l} = I and
      C_{m,l} = W^m diag(σ'(z_{m-1})) C_{m-1,l};
    - ``weights[l-1]`` = W^l (without bias), ``outputs`` = F ``(n, K)``.

    Then ∂z_m/∂W^l_ab = C_{m,l}[:, a] ã_{l-1}[b] (l ≤ m) and ∂z_m/∂b^l_a = C_{m,l}[:, a]: every first and second
    derivative of F is a product of these factors (:func:`structural_jacobian`,
    :func:`structural_functional_hessian`)."""

    mlp: MLP
    weights: list[Tensor]
    inputs: list[Tensor]
    slopes: list[Tensor]
    bends: list[Tensor] | None
    chain: list[list[Tensor]]
    outputs: Tensor


def network_derivatives(mlp: MLP, theta: Tensor, X: Tensor) -> NetworkDerivatives:
    """One forward pass of ``mlp`` at θ on X ``(n, d)`` keeping the factors of :class:`NetworkDerivatives`."""
    layers = unflatten(mlp, theta.detach())
    n = X.shape[0]
    inputs, slopes, bends, chain = [], [], [], []
    hidden = X
    for index, (weight, bias) in enumerate(layers):
        augmented = with_constant_feature(hidden) if bias is not None else hidden
        inputs.append(augmented)
        z = hidden @ weight.T
        if bias is not None:
            z = z + bias
        eye = torch.eye(weight.shape[0], dtype=z.dtype, device=z.device).expand(n, -1, -1)
        if index == 0:
            chain.append([eye])
        else:  # C_{m,l} = W^m diag(σ'(z_{m-1})) C_{m-1,l}
            step = weight * slopes[-1][:, None, :]
            chain.append([step @ previous for previous in chain[-1]] + [eye])
        if index < len(layers) - 1:
            slopes.append(activation_slope(mlp.activation, z))
            bend = activation_bend(mlp.activation, z)
            if bend is not None:
                bends.append(bend)
            hidden = activation_fn(mlp.activation)(z)
        else:
            hidden = z
    return NetworkDerivatives(
        mlp=mlp,
        weights=[weight for weight, _ in layers],
        inputs=inputs,
        slopes=slopes,
        bends=bends if bends else None,
        chain=chain,
        outputs=hidden,
    )


def flatten_layer(block: Tensor, bias: bool) -> Tensor:
    """``(…, M_l, M_{l-1} [+1])`` → ``(…, M_l·M_{l-1} [+ M_l])`` in θ's layout (vec W^l row-major, then b^l): the
    last column of the augmented block is the bias."""
    if not bias:
        return block.flatten(-2)
    return torch.cat([block[..., :-1].flatten(-2), block[..., -1]], dim=-1)


def flatten_block(block: Tensor, bias: bool) -> Tensor:
    """A block indexed ``(M_l, M_{l-1} [+1], M_k, M_{k-1} [+1])`` (layer l's parameters × layer k's) → ``(p_l, p_k)``
    in θ's layout on both sides (:func:`flatten_layer`)."""
    columns = flatten_layer(block, bias)  # (M_l, M_{l-1}[+1], p_k)
    return flatten_layer(columns.permute(2, 0, 1), bias).T


def layer_offsets(mlp: MLP) -> list[int]:
    """Where each layer's parameters start in θ (and p at the end)."""
    sizes = [rows * cols + (rows if mlp.bias else 0) for rows, cols in mlp.layer_shapes]
    return [sum(sizes[:l]) for l in range(mlp.depth + 1)]


def _place_symmetric(matrix: Tensor, offsets: list[int], l: int, k: int, block: Tensor) -> None:
    """Write block (l, k) of a symmetric parameter-space matrix and its transpose at (k, l); a diagonal block (l = k)
    is written as (B + Bᵀ)/2, exactly symmetric — a batched product such as EᵀE need not come out exactly symmetric
    (it does not with some CPUs' BLAS kernels), and (B + Bᵀ)/2 = B bit for bit where it does."""
    if k == l:
        matrix[offsets[l] : offsets[l + 1], offsets[l] : offsets[l + 1]] = (block + block.T) / 2
        return
    matrix[offsets[l] : offsets[l + 1], offsets[k] : offsets[k + 1]] = block
    matrix[offsets[k] : offsets[k + 1], offsets[l] : offsets[l + 1]] = block.T


def layer_gradients(derivatives: NetworkDerivatives, top: int) -> Tensor:
    """∂z_top/∂θ_{≤ top} ``(n, M_top, p_top)`` (the parameters of layers 1 … top): layer l's part is
    C_{top,l}[i, j, a] ã_{l-1}[i, b]. With top = L it is the output Jacobian J."""
    bias = derivatives.mlp.bias
    parts = [
        flatten_layer(derivatives.chain[top - 1][l][:, :, :, None] * derivatives.inputs[l][:, None, None, :], bias)
        for l in range(top)
    ]
    return torch.cat(parts, dim=-1)


def structural_jacobian(derivatives: NetworkDerivatives) -> Tensor:
    """J ``(n, K, p)``, J[i, c, (l, a, b)] = ∂F_c(x_i)/∂W^l_ab = C_{L,l}[i, c, a] ã_{l-1}[i, b]."""
    return layer_gradients(derivatives, derivatives.mlp.depth)


def _cross_layer_block(delta: Tensor, propagate: Tensor, below: Tensor, bias: bool) -> Tensor:
    """Block (l, k), k < l, of Σ_i ∇²_θ (g_iᵀ F(x_i)) from its bilinear part: T[(a, b), (c, e)] =
    Σ_i δ_l[i, a] P[i, b, c] ã_{k-1}[i, e] with P = ∂a_{l-1}/∂z_k; the bias row b of ã_{l-1} (a constant) is zero.
    ``delta`` (n, M_l), ``propagate`` P (n, M_{l-1}, M_k), ``below`` ã_{k-1} (n, B_k) → (p_l, p_k)."""
    n, rows, inner = propagate.shape
    left = (delta[:, :, None, None] * propagate[:, None, :, :]).reshape(n, -1)
    block = (left.T @ below).reshape(delta.shape[1], rows, inner, below.shape[1])
    if bias:
        block = torch.cat([block, block.new_zeros(block.shape[0], 1, inner, below.shape[1])], dim=1)
    return flatten_block(block, bias)


def structural_functional_hessian(derivatives: NetworkDerivatives, residual: Tensor) -> Tensor:
    """H_F ``(p, p)`` = ∇²_θ s, s = Σ_ic g_ic F_c(x_i), g = ``residual`` ``(n, K)`` held fixed.

    The second differential of s along dθ, from z_l = W^l ã_{l-1} (bilinear) and a_m = σ(z_m), is
    d²s = 2 Σ_{k<l} Σ_i δ_lᵀ dW^l P_{l-1,k} dW^k ã_{k-1} + Σ_{m<L} Σ_i Σ_j β_m[j] σ''(z_m[j]) (dz_m[j])²,
    with δ_l = ∂s/∂z_l = C_{L,l}ᵀ g, β_m = ∂s/∂a_m = W^{m+1}ᵀ δ_{m+1}, P_{l-1,k} = ∂a_{l-1}/∂z_k =
    diag(σ'(z_{l-1})) C_{l-1,k} and dz_m = Σ_{l≤m} ∂z_m/∂θ_l dθ_l. So H_F has (i) off-diagonal blocks
    (l, k) = Σ_i δ_l ⊗ P_{l-1,k} ⊗ ã_{k-1} (:func:`_cross_layer_block`; F is affine in each layer's parameters, so the
    diagonal blocks get nothing from this part) and (ii) for σ'' ≢ 0 (tanh) the weighted Gram matrices
    Σ_m U_mᵀ diag(β_m ⊙ σ''(z_m)) U_m of U_m = ∂z_m/∂θ (:func:`layer_gradients`). A bias-free network without hidden
    layer gets exactly zero."""
    mlp = derivatives.mlp
    depth, offsets = mlp.depth, layer_offsets(mlp)
    hess = residual.new_zeros(mlp.num_params, mlp.num_params)
    deltas = [torch.einsum("ic,ica->ia", residual, derivatives.chain[depth - 1][l]) for l in range(depth)]
    for l in range(1, depth):  # 0-based layer index l has layers 0 … l−1 below it
        for k in range(l):
            propagate = derivatives.slopes[l - 1][:, :, None] * derivatives.chain[l - 1][k]
            block = _cross_layer_block(deltas[l], propagate, derivatives.inputs[k], mlp.bias)
            _place_symmetric(hess, offsets, l, k, block)
    if derivatives.bends is not None:
        for m in range(depth - 1):
            weight = derivatives.bends[m] * (deltas[m + 1] @ derivatives.weights[m + 1])
            grads = layer_gradients(derivatives, m + 1).reshape(-1, offsets[m + 1])
            hess[: offsets[m + 1], : offsets[m + 1]] += (grads * weight.reshape(-1, 1)).T @ grads
    return hess


def structural_gram(derivatives: NetworkDerivatives, root: Tensor) -> Tensor:
    """H_O = GᵀG ``(p, p)`` from the layer structure of G, with ``root`` the curvature roots B_i ``(n, K, K)``.

    Row (i, j) of G in layer l's coordinates (a, b) is (B_i C_{L,l})[j, a] ã_{l-1}[i, b], so block (l, k) of GᵀG is
    Σ_i (E_{il}ᵀ E_{ik})[a, c] ã_{l-1}[i, b] ã_{k-1}[i, e] with E_{il} = B_i C_{L,l} (K × M_l): the sum over the K
    output rows is taken per sample first, a GEMM over the n samples then — 2n·p² flops instead of the 2nK·p² of
    GᵀG as one product."""
    mlp = derivatives.mlp
    depth, offsets, n = mlp.depth, layer_offsets(mlp), root.shape[0]
    rows = [root @ derivatives.chain[depth - 1][l] for l in range(depth)]  # E_l = B C_{L,l} (n, K, M_l)
    gram = root.new_zeros(mlp.num_params, mlp.num_params)
    for l in range(depth):
        for k in range(l + 1):
            left = (rows[l].transpose(1, 2) @ rows[k]).reshape(n, -1)  # (n, M_l·M_k)
            mine, other = derivatives.inputs[l], derivatives.inputs[k]
            right = (mine[:, :, None] * other[:, None, :]).reshape(n, -1)  # (n, B_l·B_k)
            block = (left.T @ right).reshape(rows[l].shape[2], rows[k].shape[2], mine.shape[1], other.shape[1])
            _place_symmetric(gram, offsets, l, k, flatten_block(block.permute(0, 2, 1, 3), mlp.bias))
    return gram


@dataclass(frozen=True)
class HessianMaps:
    """H_O (as its factor G, H_O = GᵀG), H_F and H_L = GᵀG + H_F of one network on one data set; ``gram`` is H_O
    when it was formed with the maps (:func:`structural_gram`), else None (formed from G when needed)."""

    outer_factor: Tensor
    functional: Tensor
    gram: Tensor | None = None

    @property
    def outer(self) -> Tensor:
        """H_O = GᵀG ``(p, p)``."""
        return self.outer_factor.T @ self.outer_factor if self.gram is None else self.gram

    @property
    def loss(self) -> Tensor:
        """H_L = H_F + GᵀG ``(p, p)`` (without ``gram``: one GEMM accumulating into a copy of H_F, no p × p
        temporary for H_O)."""
        if self.gram is None:
            return torch.addmm(self.functional, self.outer_factor.T, self.outer_factor)
        return self.functional + self.gram

    def restricted(self, keep: Tensor) -> HessianMaps:
        """The maps on the parameters of the boolean mask ``keep``: G's columns, the principal submatrices (one
        gather each)."""
        index = torch.nonzero(keep).flatten()
        rows, columns = index[:, None], index[None, :]
        return HessianMaps(
            outer_factor=self.outer_factor.index_select(1, index),
            functional=self.functional[rows, columns],
            gram=None if self.gram is None else self.gram[rows, columns],
        )


def hessian_maps(mlp: MLP, theta: Tensor, X: Tensor, Y: Tensor, loss: str) -> HessianMaps:
    """The outer-product factor and the functional Hessian of ``mlp`` at θ on (X, Y), from the layer structure
    (:func:`network_derivatives`: one forward pass, no autodiff)."""
    return maps_from_derivatives(network_derivatives(mlp, theta, X), Y, loss)


def maps_from_derivatives(derivatives: NetworkDerivatives, Y: Tensor, loss: str, gram: bool = False) -> HessianMaps:
    """:class:`HessianMaps` of one loss from the loss-independent :class:`NetworkDerivatives`: G = [B_i J_i], H_F at
    the residual g_i = ∂ℓ_i/∂F, and with ``gram`` also H_O = GᵀG (:func:`structural_gram`)."""
    outputs = derivatives.outputs
    root = output_hessian_root(loss, outputs, Y)
    return HessianMaps(
        outer_factor=gauss_newton_factor(structural_jacobian(derivatives), root),
        functional=structural_functional_hessian(derivatives, output_gradient(loss, outputs, Y)),
        gram=structural_gram(derivatives, root) if gram else None,
    )


# ----------------------------------------------------------------------------------------------------- linear range
@dataclass(frozen=True)
class LayerBasis:
    """Orthonormal bases of the two sides of one weight matrix W^l (M_l × M_{l-1}) and the coordinates of
    Vᵀ W^l U that span the layer's part of the maps' range (see :func:`linear_range_bases`)."""

    outputs: Tensor
    inputs: Tensor
    keep: Tensor


def leading_basis(generators: Tensor) -> Tensor:
    """Orthogonal Q ``(m, m)`` from the complete QR of ``generators`` ``(m, c)``: for every j ≤ min(m, c) its first j
    columns span a space containing the first j generators (A[:, :j] = Q[:, :j] R[:j, :j], R upper triangular) —
    dependent generators included, so no rank has to be decided."""
    if generators.shape[1] == 0:
        return torch.eye(generators.shape[0], dtype=generators.dtype, device=generators.device)
    return torch.linalg.qr(generators, mode="complete").Q


def linear_range_bases(derivatives: NetworkDerivatives, residual: Tensor) -> list[LayerBasis]:
    """Per layer, coordinates that contain the range of H_O, H_F and H_L of a bias-free linear network.

    For σ = identity the layer Jacobians C_l = ∂F/∂z_l = W^L ⋯ W^{l+1} (K × M_l) and P_{l-1,k} = W^{l-1} ⋯ W^{k+1}
    are the same for every sample, and the layer inputs are a^i_{l-1} = W^{l-1} ⋯ W^1 x_i. Let
    𝓓_l = range(C_lᵀ) (dim ≤ K), 𝓗_0 = the inputs that are nonzero in some sample (nz of them) and
    𝓔_{l-1} = range(Σ_i a^i_{l-1} g_iᵀ) = W^{l-1} ⋯ W^1 range(Σ_i x_i g_iᵀ) (dim ≤ min(K, nz)), g_i the residual.
    Then, as vectors in layer l's coordinates,
    (J)   ∂F_c(x_i)/∂W^l = C_l[c, :]ᵀ ⊗ a^i_{l-1} ∈ 𝓓_l ⊗ R^{M_{l-1}}, and ∈ 𝓓_l ⊗ 𝓗_0 for l = 1;
    (H_F) block (l, k), k < l, is T[(a, b), (c, e)] = N[a, e] P_{l-1,k}[b, c] with N = C_lᵀ Σ_i g_i a^{iᵀ}_{k-1}: its
          columns lie in 𝓓_l ⊗ R^{M_{l-1}} (layer l as the row layer) and its rows in R^{M_k} ⊗ 𝓔_{k-1} (layer k as
          the column layer).
    So range(H_O), range(H_F) and range(H_L = H_O + H_F) lie in ⊕_l S_l with S_1 = 𝓓_1 ⊗ 𝓗_0 + [L > 1] R^{M_1} ⊗ 𝓔_0
    and S_l = 𝓓_l ⊗ R^{M_{l-1}} + [l < L] R^{M_l} ⊗ 𝓔_{l-1} for l > 1. With orthonormal V (first t columns
    ⊇ 𝓓_l) and U (first e columns ⊇ 𝓔_{l-1}; for l = 1 the nz active inputs first, 𝓔_0 inside them), S_l is spanned
    by the coordinates (a, b) of Vᵀ W^l U with a < t, or b < e (l < L) — a < t ∧ b < nz for the first layer.

    The bases come from QR factorisations of all the generators (C_lᵀ: K; W^{l-1} ⋯ W^1 E Σ_i x_i g_iᵀ: K, or the nz
    columns of W^{l-1} ⋯ W^1 E if fewer), a superset when they are dependent, never a rank decision. A side whose
    subspace is the whole space keeps the identity (the unit vectors for the active inputs): no rotation, and so no
    rounding, where nothing is gained."""
    mlp = derivatives.mlp
    if mlp.activation != "linear" or mlp.bias:
        raise ValueError("the range bases are for bias-free linear networks")
    depth, outputs = mlp.depth, mlp.widths[-1]
    X = derivatives.inputs[0]
    options = {"dtype": X.dtype, "device": X.device}
    active = (X != 0).any(dim=0)
    nz = int(active.sum())
    order = torch.cat([torch.nonzero(active).flatten(), torch.nonzero(~active).flatten()])
    correlation = X[:, active].T @ residual  # Σ_i x_i g_iᵀ on the active inputs (nz × K)
    span = torch.eye(X.shape[1], **options)[:, active]  # W^{l-1} ⋯ W^1 E, from E (d × nz)
    bases = []
    for l in range(depth):
        rows, cols = mlp.widths[l + 1], mlp.widths[l]
        t = min(outputs, rows)
        generators = span @ correlation if outputs <= nz else span  # of 𝓔_{l-1} (cols × min(K, nz))
        e = min(generators.shape[1], cols)
        a = torch.arange(rows, device=X.device)[:, None]
        b = torch.arange(cols, device=X.device)[None, :]
        keep = (a < t) & (b < (nz if l == 0 else cols))
        if l < depth - 1:
            keep = keep | (b < e)
        out_basis = leading_basis(derivatives.chain[depth - 1][l][0].T) if t < rows else torch.eye(rows, **options)
        uses_e = l < depth - 1 and t < rows and e < (nz if l == 0 else cols)
        if l == 0:  # the active inputs first (a permutation), 𝓔_0 inside them where it matters
            inner = (
                leading_basis(correlation if outputs <= nz else torch.eye(nz, **options))
                if uses_e
                else torch.eye(nz, **options)
            )
            in_basis = torch.eye(cols, **options)[:, order]
            in_basis = torch.cat([in_basis[:, :nz] @ inner, in_basis[:, nz:]], dim=1)
        else:
            in_basis = leading_basis(generators) if uses_e else torch.eye(cols, **options)
        bases.append(LayerBasis(outputs=out_basis, inputs=in_basis, keep=keep))
        span = derivatives.weights[l] @ span
    return bases


def rotate_derivatives(derivatives: NetworkDerivatives, bases: list[LayerBasis]) -> NetworkDerivatives:
    """The factors of a linear network in the rotated coordinates W̃^l = V_lᵀ W^l U_l: inputs ã_{l-1} U_l, chains
    U_{m+1}ᵀ C_{m,l} V_l (C_{L,l} V_l for the output). :func:`structural_jacobian` and
    :func:`structural_functional_hessian` of the result are TᵀJ and TᵀH_F T for the orthogonal T = ⊕_l V_l ⊗ U_l
    (vec(Vᵀ W U) = (Vᵀ ⊗ Uᵀ) vec W, row-major), which has the same spectrum."""
    depth = derivatives.mlp.depth
    chain = []
    for m in range(depth):
        left = bases[m + 1].inputs.T if m < depth - 1 else None
        row = []
        for l in range(m + 1):
            block = derivatives.chain[m][l] @ bases[l].outputs
            row.append(block if left is None else left @ block)
        chain.append(row)
    return NetworkDerivatives(
        mlp=derivatives.mlp,
        weights=derivatives.weights,
        inputs=[x @ basis.inputs for x, basis in zip(derivatives.inputs, bases)],
        slopes=[torch.ones_like(slope) for slope in derivatives.slopes],
        bends=None,
        chain=chain,
        outputs=derivatives.outputs,
    )


def reduced_maps(mlp: MLP, theta: Tensor, X: Tensor, Y: Tensor, loss: str) -> HessianMaps:
    """The maps restricted to a subspace that contains all their ranges, as Q-coordinates (G Q, Qᵀ H_F Q, Qᵀ H_O Q)
    with Q orthonormal and H_O from :func:`structural_gram`: for bias-free linear networks the rotated coordinates of
    :func:`linear_range_bases` that span ⊕_l S_l (e.g. 3,555 of 5,650 parameters for nine hidden layers of 25 on the
    MNIST 4 × 4 inputs); the full maps otherwise. Since H = Q (QᵀHQ) Qᵀ, eig(H) = eig(QᵀHQ) ∪ zeros — rank it with
    the network's p (:func:`map_ranks`)."""
    derivatives = network_derivatives(mlp, theta, X)
    if mlp.activation != "linear" or mlp.bias:
        return maps_from_derivatives(derivatives, Y, loss, gram=True)
    bases = linear_range_bases(derivatives, output_gradient(loss, derivatives.outputs, Y))
    keep = torch.cat([basis.keep.flatten() for basis in bases])
    return maps_from_derivatives(rotate_derivatives(derivatives, bases), Y, loss, gram=True).restricted(keep)


# ----------------------------------------------------------------------------------------------------- ranks
@dataclass(frozen=True)
class RankReport:
    """Numerical rank of a symmetric p × p matrix from the magnitudes of its eigenvalues.

    ``rank`` counts |λ| > τ with τ = |λ|_max · p · eps(float64) (numpy's and torch's ``matrix_rank`` default);
    ``ranks_at`` recounts at τ × each of :data:`TOLERANCE_FACTORS`; ``gap_log10`` is log10 of the smallest kept
    |λ| over the largest dropped one (None when nothing or everything is dropped, or when every dropped
    eigenvalue is exactly zero: an unbounded gap)."""

    rank: int
    tolerance: float
    largest: float
    ranks_at: dict[str, int]
    gap_log10: float | None

    def as_dict(self) -> dict:
        """JSON-ready record."""
        return {
            "rank": self.rank,
            "tolerance": self.tolerance,
            "largest": self.largest,
            "ranks_at": dict(self.ranks_at),
            "gap_log10": self.gap_log10,
        }


def rank_report(magnitudes: Tensor, size: int) -> RankReport:
    """Rank report from the eigenvalue magnitudes of a ``size`` × ``size`` symmetric matrix (any order; missing
    trailing eigenvalues count as zeros)."""
    values = torch.sort(magnitudes.detach().abs().to(torch.float64).cpu(), descending=True).values
    largest = float(values[0]) if len(values) else 0.0
    tolerance = largest * size * torch.finfo(torch.float64).eps

    def count(tol: float) -> int:
        return int((values > tol).sum()) if largest > 0 else 0

    rank = count(tolerance)
    below = float(values[rank]) if rank < len(values) else 0.0
    gap = round(math.log10(float(values[rank - 1]) / below), 3) if 0 < rank < size and below > 0 else None
    return RankReport(
        rank=rank,
        tolerance=tolerance,
        largest=largest,
        ranks_at={f"{factor:g}": count(tolerance * factor) for factor in TOLERANCE_FACTORS},
        gap_log10=gap,
    )


def symmetric_rank(matrix: Tensor, size: int | None = None) -> RankReport:
    """Rank report of a symmetric matrix from ``eigvalsh`` (values only: cheaper than an SVD, same magnitudes);
    ``size`` is the dimension the tolerance counts (default the matrix's; see :func:`hessian_ranks`)."""
    return rank_report(torch.linalg.eigvalsh(matrix), matrix.shape[-1] if size is None else size)


def gram_rank(factor: Tensor, size: int | None = None) -> RankReport:
    """Rank report of GᵀG ``(p, p)`` from the singular values of G ``(m, p)``: eig(GᵀG) = σ(G)², without GᵀG;
    ``size`` as in :func:`symmetric_rank`. A wide G (m < p) is passed transposed: σ(Gᵀ) = σ(G), and LAPACK's
    ``gesdd`` (through torch) reduces a tall matrix to its triangular QR factor first but bidiagonalises a wide one
    whole — 4–8× slower at m × p = 500 × 5,650 or 1,000 × 3,924."""
    values = torch.linalg.svdvals(factor.T if factor.shape[-2] < factor.shape[-1] else factor)
    return rank_report(values**2, factor.shape[-1] if size is None else size)


def inert_parameters(maps: HessianMaps) -> Tensor:
    """Boolean mask ``(p,)`` of the parameters j whose column of G and whose row and column of H_F (and of H_O when
    the maps carry it) are exactly zero.

    Then row and column j of H_O = GᵀG (G[:, j]ᵀ G = 0) and of H_L = H_O + H_F are exactly zero too. Such
    parameters arise exactly, never by rounding: W^1[:, e] of an input e that is zero in every sample (every
    derivative carries the factor x_e), and both weights of a ReLU unit that is inactive on every sample (its slope 0
    and its output 0 multiply every derivative through it)."""
    functional = maps.functional != 0
    live = (maps.outer_factor != 0).any(dim=0) | functional.any(dim=0) | functional.any(dim=1)
    if maps.gram is not None:
        live = live | (maps.gram != 0).any(dim=0)
    return ~live


def hessian_ranks(maps: HessianMaps, size: int | None = None, restrict: bool = True) -> dict[str, RankReport]:
    """Rank reports of H_L, H_O and H_F (keys ``loss``, ``outer``, ``functional``), each from one decomposition
    (values only) that serves the three tolerances τ/100, τ and 100τ. H_O from the singular values of G restricted to
    the parameters that are not inert (:func:`inert_parameters`); H_L and H_F likewise when ``restrict``, else whole.
    ``size`` is the p of the tolerance (default: the maps' own; the network's p for maps already reduced by
    :func:`reduced_maps`).

    Exact: if the rows and columns of a symmetric p × p matrix H at the index set Z are zero, then, with P the
    permutation putting Z last, PᵀHP = diag(H', 0) where H' is the principal submatrix off Z; so eig(H) = eig(H') ∪
    {0}^|Z| and |λ| > t counts the same eigenvalues for every t ≥ 0 — at τ/100, τ and 100τ alike. Likewise
    σ(G) = σ(G') ∪ {0}^|Z| for the columns. The tolerance τ = |λ|max · p · eps keeps the full p (the rule is that
    of the p × p matrix, not of the submatrix), and :func:`rank_report` counts the |Z| zeros as exact zeros."""
    size = maps.functional.shape[-1] if size is None else size
    live = ~inert_parameters(maps)
    outer = gram_rank(maps.outer_factor[:, live], size)
    if restrict and not live.all():
        maps = maps.restricted(live)
    return {
        "loss": symmetric_rank(maps.loss, size),
        "outer": outer,
        "functional": symmetric_rank(maps.functional, size),
    }


def restricts(num_params: int) -> bool:
    """Whether H_L and H_F of p = ``num_params`` parameters are decomposed restricted to a subspace holding their
    range: when the smallest tolerance τ/100 = p·eps·|λ|max/100 is above the :data:`ROUNDING_FLOOR` (p ≥ 800).

    Restricting is exact in exact arithmetic, but it changes how the decomposition rounds, and so the rounding
    noise (a few eps·|λ|max) that stands in for the exactly zero eigenvalues. That noise is what a count at τ/100
    meets when p·eps/100 is at its level: decomposing such maps whole keeps their previous rounding (and costs
    little at that size). H_O needs no such care: its zero eigenvalues come out as σ(G)² ≈ (eps·σmax)², far below."""
    return num_params * min(TOLERANCE_FACTORS) >= ROUNDING_FLOOR


def map_ranks(mlp: MLP, theta: Tensor, X: Tensor, Y: Tensor, loss: str) -> dict[str, RankReport]:
    """Rank reports of H_L, H_O, H_F of ``mlp`` at θ on (X, Y), with the tolerance of the p × p maps: from
    :func:`reduced_maps` where :func:`restricts`, else from the whole maps (H_O always without inert parameters)."""
    if restricts(mlp.num_params):
        return hessian_ranks(reduced_maps(mlp, theta, X, Y, loss), mlp.num_params)
    return hessian_ranks(hessian_maps(mlp, theta, X, Y, loss), mlp.num_params, restrict=False)


# ----------------------------------------------------------------------------------------------------- formulas
def effective_outputs(num_outputs: int, loss: str) -> int:
    """K' = K, or K − 1 for cross-entropy (the softmax curvature diag(s) − ssᵀ has rank K − 1)."""
    _check_loss(loss)
    return num_outputs - 1 if loss == "ce" else num_outputs


def formula_ranks(data_rank: int, hidden: Sequence[int], num_outputs: int, loss: str) -> tuple[int, int, int]:
    """(K', s, q) of the closed forms: K' (:func:`effective_outputs`), s = min(r, K') and the bottleneck
    q = min(r, K', M_1, …, M_{L-1}), at data rank r (r̂ = rank [X 1] for the forms with biases)."""
    k = effective_outputs(num_outputs, loss)
    return k, min(data_rank, k), min([data_rank, k, *hidden])


def predicted_ranks(data_rank: int, hidden: Sequence[int], num_outputs: int, loss: str) -> dict[str, int]:
    """Closed-form ranks of a deep linear network at a generic point (Singh et al. 2021, with K' for CE).

    With r = rank(Σ x_i x_iᵀ), s = min(r, K'), q = min(r, K', M_1, …, M_{L-1}) and L = len(hidden) + 1:
    rank H_O = q (r + K' − q); rank H_F = 2q Σ_{l<L} M_l + 2qs − L q² (0 without hidden layer);
    rank H_L = rank H_O + rank H_F − q (2s − q) (= rank H_O without hidden layer)."""
    k, s, q = formula_ranks(data_rank, hidden, num_outputs, loss)
    outer = q * (data_rank + k - q)
    if not hidden:
        return {"loss": outer, "outer": outer, "functional": 0}
    depth = len(hidden) + 1
    functional = 2 * q * sum(hidden) + 2 * q * s - depth * q * q
    return {"loss": outer + functional - q * (2 * s - q), "outer": outer, "functional": functional}


def predicted_outer_rank_with_biases(
    data_rank: int, augmented_rank: int, hidden: Sequence[int], num_outputs: int, loss: str
) -> int:
    """Closed-form rank of H_O of a deep linear network with biases in every layer, at a generic point.

    F(x) = A x + c with A = W^L ⋯ W^1 and c = Σ_l W^L ⋯ W^{l+1} b^l, so dF(x_i) = dA x_i + dc. The differential of
    θ ↦ (A, c) reaches T_A × R^K: dA spans the tangent space T_A of the bias-free product at the same weights, and
    db^L alone makes dc free. H_O = Σ_i J_iᵀ A_i J_i (A_i of rank K', null vector 1 for CE) so its rank is the
    dimension of {P(dA Xᵀ + dc 1ᵀ)}, P the projection onto the range of A_i. The bias-free part {P dA Xᵀ} has
    dimension q (r + K' − q) (:func:`predicted_ranks`); the question is what {P dc 1ᵀ} adds. With
    r̂ = rank [X 1] (``augmented_rank``):

    - r̂ = r + 1 (the all-ones vector is not in the column space of X): no dc 1ᵀ ≠ 0 has its rows in the row space
      of Xᵀ, so the sum is direct and the rank is q (r + K' − q) + K';
    - r̂ = r (1 = X w for some w): dc 1ᵀ = (dc wᵀ) Xᵀ, and dc wᵀ lies in T_A (modulo the data's null space) exactly
      when dc is in the q-dimensional column space of A (w generic w.r.t. the row space of A, which holds for
      q < r; for q = r, T_A Xᵀ is already every K' × r map): the rank is q (r + K' − q) + (K' − q) if q < r, else
      q (r + K' − q).

    With q = min(r, K', M_1, …, M_{L-1}) and K' as in :func:`effective_outputs`."""
    if augmented_rank not in (data_rank, data_rank + 1):
        raise ValueError(f"rank [X 1] = {augmented_rank} must be rank X = {data_rank} or one more")
    k, _, q = formula_ranks(data_rank, hidden, num_outputs, loss)
    bias_free = q * (data_rank + k - q)
    if augmented_rank == data_rank + 1:
        return bias_free + k
    return bias_free + (k - q if q < data_rank else 0)


def hidden_bias_excess(augmented_rank: int, hidden: Sequence[int], num_outputs: int, loss: str) -> int:
    """What the biases of hidden layers 2 … L−1 add to rank H_F of a linear network with biases, at a generic point:
    Σ_{l=2}^{L-1} e_l with, at r̂ = rank [X 1], s = min(r̂, K') and q = min(r̂, K', M_1, …, M_{L-1}),

        e_l = 2 M_l − q  when the narrowest layer is a hidden layer below l and none above it
                         (min(M_1, …, M_{l-1}) = q < s and min(M_{l+1}, …, M_{L-1}) > q),
        e_l = q          otherwise.

    Why a sum over hidden biases: the first layer's bias is the weight of a constant input (data [X 1]); b^l for
    l ≥ 2 enters the residual pairing only as Σ_l uᵀ W^L ⋯ W^{l+1} b^l (u = Σ_i ∂ℓ/∂F(x_i)), so it couples
    with the weights above it alone. Ordering the parameters as (weights, hidden biases ≥ 2), H_F = [[H_0, Cᵀ],
    [C, 0]] with H_0 the bias-free functional Hessian on [X 1] and C onto R^{Σ M_l}; by block elimination
    rank H_F = 2 Σ_{l≥2} M_l + rank(H_0 restricted to ker C) (proved, docs/chapters/ch5.md). With two hidden layers
    e_2 is **proved** at a generic point (a kernel count of the core tr(VWU) + εVβ, case by case, in
    docs/chapters/ch5.md); with more, e_l is **conjectured** from exact ranks over Q of random networks (no
    counterexample; the evidence is listed in docs/chapters/ch5.md, the branches tested in
    ``tests/hessian/test_bias_formulas.py``), not taken from the paper."""
    _, s, q = formula_ranks(augmented_rank, hidden, num_outputs, loss)
    excess = 0
    for l in range(1, len(hidden)):  # hidden[l] is M_{l+1}: the hidden layers with a bias of their own past layer 1
        below_only = min(hidden[:l]) == q < s and min(hidden[l + 1 :], default=q + 1) > q
        excess += 2 * hidden[l] - q if below_only else q
    return excess


def predicted_ranks_with_biases(
    data_rank: int, augmented_rank: int, hidden: Sequence[int], num_outputs: int, loss: str
) -> dict[str, int]:
    """Closed-form ranks of a deep linear network with biases in every layer, at a generic point
    (r = rank X, r̂ = rank [X 1]; q, s as in :func:`predicted_ranks` but at r̂):

    - rank H_O: :func:`predicted_outer_rank_with_biases` (derived);
    - rank H_F = the bias-free formula at r̂ + :func:`hidden_bias_excess` (one hidden layer: the bias-free formula at
      r̂; one or two hidden layers proved, more conjectured, see there);
    - rank H_L = rank H_O + rank H_F − (q (2s − q) − q) (proved for one hidden layer under MSE when r̂ > K, where it
      reads K + min(K, M) + the bias-free rank H_L at data rank r̂ − 1; conjectured otherwise from the same exact
      ranks; without a hidden layer H_F = 0 and H_L = H_O)."""
    outer = predicted_outer_rank_with_biases(data_rank, augmented_rank, hidden, num_outputs, loss)
    if not hidden:
        return {"loss": outer, "outer": outer, "functional": 0}
    _, s, q = formula_ranks(augmented_rank, hidden, num_outputs, loss)
    functional = predicted_ranks(augmented_rank, hidden, num_outputs, loss)["functional"]
    functional += hidden_bias_excess(augmented_rank, hidden, num_outputs, loss)
    return {"loss": outer + functional - (q * (2 * s - q) - q), "outer": outer, "functional": functional}


def rank_upper_bounds(mlp: MLP, num_samples: int, data_rank: int, loss: str) -> dict[str, int]:
    """Upper bounds that hold for any activation (bias-free network, generic or not).

    Directions W^1 ↦ W^1 + u vᵀ with v ⊥ the data leave F unchanged: (d − r) M_1 null directions. For CE,
    W^L ↦ W^L + 1 wᵀ shifts every logit equally: M_{L-1} more (r more without hidden layer, where w must lie in the
    data's row space not to repeat the first kind). So every Hessian has rank ≤ p − null; H_O also ≤ n K'.
    One ReLU hidden layer: rank H_F ≤ 2 M_1 min(r, K')."""
    if mlp.bias:
        raise ConfigError("the rank bounds are for bias-free networks")
    d, k = mlp.widths[0], effective_outputs(mlp.widths[-1], loss)
    null = (d - data_rank) * mlp.widths[1]
    if loss == "ce":
        null += mlp.widths[-2] if mlp.hidden else data_rank
    bound = mlp.num_params - null
    bounds = {"loss": bound, "outer": min(bound, num_samples * k), "functional": bound}
    if mlp.activation == "relu" and len(mlp.hidden) == 1:
        bounds["functional"] = min(bound, 2 * mlp.hidden[0] * min(data_rank, k))
    if not mlp.hidden:
        bounds["functional"] = 0
    return bounds


def data_rank(X: Tensor) -> int:
    """r = rank(Σ_i x_i x_iᵀ) = rank(X), at the same tolerance rule (float64 SVD)."""
    return rank_report(torch.linalg.svdvals(X.to(torch.float64)) ** 2, X.shape[-1]).rank


def with_constant_feature(X: Tensor) -> Tensor:
    """[X 1]: the rows of X (samples) with a constant feature 1 appended — what a layer with a bias sees."""
    return torch.cat([X, X.new_ones(X.shape[0], 1)], dim=1)


def augmented_data_rank(X: Tensor) -> int:
    """r̂ = rank [X 1] (the data with a constant feature, as the first layer's bias sees them), by :func:`data_rank`."""
    return data_rank(with_constant_feature(X.to(torch.float64)))
