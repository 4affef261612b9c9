"""ResNet-18 layout for the locality experiments of chapter 3 (§3.2): random init, one output logit.

Stem, then four stages of two BasicBlocks (3×3 conv → BN → ReLU → 3×3 conv → BN, plus the identity or a 1×1
conv → BN shortcut, then ReLU) of widths ``widths``, the first block of stages 2–4 with stride 2; global average
pooling and a linear head to one logit. Stems:

- ``paper``: 7×7 conv stride 2 (padding 3) → BN → ReLU → 3×3 max-pool stride 2 (padding 1), as torchvision's
  ResNet-18 used by the paper (widths 64, 128, 256, 512);
- ``small``: 3×3 conv stride 1 (padding 1) → BN → ReLU, no downsampling, for the small CPU tier
  (e.g. widths 8, 16, 32, 64 on 16 × 96 canvases).

Initialisation as torchvision's: conv weights N(0, 2 / fan_out) (Kaiming, fan-out), BN weight 1 and bias 0, linear
weight and bias U(±1/√fan_in); every draw from the passed generator (torch's global one when None).

The theoretical receptive field of one output unit follows the recursion r ← r + (k − 1)·j, j ← j·s over the
(kernel k, stride s) layers of the longest path (the 1×1 shortcuts never widen it): 435 px for the paper stem,
109 px for the small one (widths do not matter).

Input gradient for double back-propagation (:meth:`ResNet18.logits_and_input_gradient`): the forward pass keeps what
each layer's backward needs, then ``∇_x Σ_b f_b`` is computed layer by layer, top to bottom, from ordinary
differentiable operations — a convolution's input gradient is the transposed convolution with the same weight, a
ReLU's is the incoming gradient masked by its output, a train-mode BatchNorm's is :class:`BatchNormInputGradient`
(whose own backward is written out, see there) — so that back-propagating a function of that gradient w.r.t. the
parameters is an ordinary first-order backward pass. It is the same quantity as
``torch.autograd.grad(f(x).sum(), x, create_graph=True)``, with BatchNorm in train mode coupling the samples through
the batch statistics, and back-propagates the same gradient, at about half the CPU time: PyTorch's generic double
backward of a convolution computes the weight gradient as a convolution with a feature-map-sized kernel, and that of
BatchNorm spends ≈ 30 passes over each feature map (``benchmarks/bench_locality_regularizer.py``).

CPU kernels. Stride-1 convolutions run through :class:`SameConvolution`, whose input gradient is a forward
convolution with the flipped weight: for the 8-channel full-resolution layers of the small tier, PyTorch's (oneDNN's)
channel-first input-gradient kernel is 3–4× slower than a forward convolution of the same size. Tensors stay
channel-first: in channels-last layout the CPU BatchNorm kernels accumulate their batch statistics far less accurately
(relative errors ≈ 1e-5 instead of ≈ 1e-7 in float32), which the input gradient at a small patch, a small difference of
large terms, turns into a 14–66 % error of the penalty's parameter gradient on Pathfinder patches (three draws;
channel-first 2e-5 … 4e-3; tested through the training layout, ``locality_training.MEMORY_FORMAT``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from rankrepro.core.errors import ConfigError

STEMS = ("paper", "small")
PAPER_WIDTHS = (64, 128, 256, 512)
SMALL_WIDTHS = (8, 16, 32, 64)
BLOCKS_PER_STAGE = 2


@dataclass(frozen=True)
class ResNetConfig:
    """Widths of the four stages, the stem (``paper`` or ``small``) and the input channels (1 grey, 3 RGB)."""

    widths: tuple[int, ...] = PAPER_WIDTHS
    stem: str = "paper"
    in_channels: int = 3

    def __post_init__(self) -> None:
        if self.stem not in STEMS:
            raise ConfigError(f"unknown ResNet stem '{self.stem}' (expected one of {STEMS})")
        if len(self.widths) != 4 or any(int(w) != w or w < 1 for w in self.widths):
            raise ConfigError(f"ResNet-18 needs four positive stage widths, got {self.widths}")
        if self.in_channels not in (1, 3):
            raise ConfigError(f"ResNet input channels must be 1 or 3, got {self.in_channels}")
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))


def conv_layout(config: ResNetConfig) -> list[tuple[int, int]]:
    """(kernel, stride) of the spatial layers on the longest input-to-output path, in order: stem conv (and
    max-pool), then two 3×3 convs per block, the first of stages 2–4 with stride 2."""
    stem = [(7, 2), (3, 2)] if config.stem == "paper" else [(3, 1)]
    blocks = [
        layer
        for stage in range(4)
        for block in range(BLOCKS_PER_STAGE)
        for layer in ((3, 2 if stage > 0 and block == 0 else 1), (3, 1))
    ]
    return stem + blocks


def receptive_field(config: ResNetConfig) -> int:
    """Side in pixels of the theoretical receptive field of one output unit: r = 1 + Σ_l (k_l − 1)·Π_{m<l} s_m."""
    size, jump = 1, 1
    for kernel, stride in conv_layout(config):
        size += (kernel - 1) * jump
        jump *= stride
    return size


class BatchNormStats(NamedTuple):
    """Per-channel batch mean and ``invstd = 1 / √(biased variance + eps)`` a train-mode BatchNorm normalized with."""

    mean: Tensor
    invstd: Tensor


def batch_norm(bn: nn.BatchNorm2d, x: Tensor) -> tuple[Tensor, BatchNormStats | None]:
    """``bn(x)``, and in train mode the batch statistics it normalized with (None in eval mode, which uses the running
    statistics). Train mode runs the very kernel ``nn.BatchNorm2d`` runs on CPU (``native_batch_norm``: the same
    output, the same running-statistics update, ``num_batches_tracked`` counted the same way)."""
    if not bn.training:
        return bn(x), None
    if bn.weight is None:
        raise ConfigError("the explicit input gradient needs affine BatchNorm layers")
    factor = 0.0 if bn.momentum is None else bn.momentum
    running_mean = running_var = None
    if bn.track_running_stats:
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
        running_mean, running_var = bn.running_mean, bn.running_var
    y, mean, invstd = torch.native_batch_norm(x, bn.weight, bn.bias, running_mean, running_var, True, factor, bn.eps)
    return y, BatchNormStats(mean, invstd)


def _channel(v: Tensor) -> Tensor:
    """A per-channel ``(C,)`` vector shaped ``(1, C, 1, 1)`` to broadcast over a ``(B, C, H, W)`` map."""
    return v.reshape(1, -1, 1, 1)


class BatchNormInputGradient(torch.autograd.Function):
    """Input gradient of a train-mode BatchNorm, differentiable once more by hand-written formulas.

    Per channel, with ⟨·⟩ the mean over the ``M = B·H·W`` entries, ``r = invstd``, ``x̂ = (x − mean)·r`` and the
    output ``γ x̂ + β``, the gradient w.r.t. the input given the gradient ``dy`` w.r.t. the output is

        gx = γ r (dy − ⟨dy⟩ − x̂ ⟨dy x̂⟩)                                     (native_batch_norm_backward).

    Back-propagating a cotangent ``v`` of gx, with ``a = ⟨dy x̂⟩``, ``b = ⟨v x̂⟩``, ``c = ⟨v dy⟩ − ⟨v⟩⟨dy⟩ − a b``
    (derivatives through x̂ and through the batch statistics, ∂x̂_j/∂x_i = r (δ_ij − 1/M − x̂_i x̂_j / M),
    ∂r/∂x_i = −r² x̂_i / M):

        ∂/∂dy = γ r (v − ⟨v⟩ − x̂ b)                                          (the same map applied to v)
        ∂/∂x  = −r a ∂/∂dy − γ r² b (dy − ⟨dy⟩) − γ r² (c − a b) x̂
        ∂/∂γ  = r M c

    — a handful of passes over the feature map where PyTorch's generic BatchNorm double backward spends about thirty.
    ``mean`` and ``invstd`` must be the batch statistics of ``x`` (:func:`batch_norm`); their dependence on ``x`` is
    part of ∂/∂x above, so they get no gradient of their own.
    """

    @staticmethod
    def forward(ctx: Any, dy: Tensor, x: Tensor, weight: Tensor, mean: Tensor, invstd: Tensor, eps: float) -> Tensor:
        gx, sum_dy_xhat, sum_dy = torch.ops.aten.native_batch_norm_backward(
            dy, x, weight, None, None, mean, invstd, True, eps, [True, True, True]
        )
        ctx.save_for_backward(dy, x, weight, mean, invstd, sum_dy_xhat, sum_dy)
        ctx.eps = eps
        return gx

    @staticmethod
    def backward(ctx: Any, v: Tensor) -> tuple[Tensor | None, ...]:
        dy, x, weight, mean, r, sum_dy_xhat, sum_dy = ctx.saved_tensors
        count = x.numel() // x.shape[1]
        # native_batch_norm_backward applied to v: γ r (v − ⟨v⟩ − x̂⟨v x̂⟩), Σ v x̂ and Σ v in one pass
        g_dy, sum_v_xhat, sum_v = torch.ops.aten.native_batch_norm_backward(
            v, x, weight, None, None, mean, r, True, ctx.eps, [True, True, True]
        )
        a, b, mean_dy, mean_v = sum_dy_xhat / count, sum_v_xhat / count, sum_dy / count, sum_v / count
        c = (v * dy).sum(dim=(0, 2, 3)) / count - mean_v * mean_dy - a * b
        g_x = None
        if ctx.needs_input_grad[1]:
            k_dy = -weight * r * r * b  # coefficient of dy
            k_x = -weight * r * r * r * (c - a * b)  # coefficient of x (x̂ = (x − mean) r)
            g_x = torch.addcmul(_channel(-k_dy * mean_dy - k_x * mean), g_dy, _channel(-r * a))
            g_x.addcmul_(dy, _channel(k_dy)).addcmul_(x, _channel(k_x))
        g_weight = r * count * c if ctx.needs_input_grad[2] else None
        return g_dy if ctx.needs_input_grad[0] else None, g_x, g_weight, None, None, None


def batch_norm_input_gradient(bn: nn.BatchNorm2d, dy: Tensor, x: Tensor, stats: BatchNormStats | None) -> Tensor:
    """∂⟨dy, bn(x)⟩/∂x: train mode (``stats`` from :func:`batch_norm`) through the batch statistics
    (:class:`BatchNormInputGradient`); eval mode (``stats`` None) ``dy · γ / √(running variance + eps)``."""
    if stats is None:
        return dy * _channel(bn.weight * torch.rsqrt(bn.running_var + bn.eps))
    return BatchNormInputGradient.apply(dy, x, bn.weight, stats.mean, stats.invstd, bn.eps)


def _flipped(weight: Tensor) -> Tensor:
    """The weight of the adjoint of a stride-1 convolution: in and out channels swapped, the kernel rotated by 180°."""
    return weight.transpose(0, 1).flip(2, 3)


def _is_same(conv: nn.Conv2d) -> bool:
    """Whether ``conv`` is a stride-1, dilation-1, ungrouped convolution padded to keep the size (odd kernel)."""
    return (
        conv.stride == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and isinstance(conv.padding, tuple)
        and all(2 * p == k - 1 for p, k in zip(conv.padding, conv.kernel_size))
    )


class SameConvolution(torch.autograd.Function):
    """``conv2d(x, W)`` (stride 1, no bias, padding ``p = (k − 1) / 2`` keeping the size) with a fast backward: the
    input gradient ``conv2d(dy, W̃)``, ``W̃`` the flipped weight (:func:`_flipped`), is itself a forward convolution
    (and again a :class:`SameConvolution`, so the trick holds at every order); the weight gradient is PyTorch's.
    The same values as ``nn.Conv2d``; differentiable as often as needed."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, padding: tuple[int, int]) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        return F.conv2d(x, weight, padding=padding)

    @staticmethod
    def backward(ctx: Any, dy: Tensor) -> tuple[Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        g_x = g_weight = None
        if ctx.needs_input_grad[0]:
            g_x = SameConvolution.apply(dy, _flipped(weight), ctx.padding)
        if ctx.needs_input_grad[1]:
            g_weight = torch.ops.aten.convolution_backward(
                dy, x, weight, None, [1, 1], list(ctx.padding), [1, 1], False, [0, 0], 1, [False, True, False]
            )[1]
        return g_x, g_weight, None


def convolve(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """``conv(x)`` for a bias-free ``conv``, through :class:`SameConvolution` when it is a stride-1 'same' one."""
    if conv.bias is None and _is_same(conv):
        return SameConvolution.apply(x, conv.weight, conv.padding)
    return conv(x)


def conv_input_gradient(conv: nn.Conv2d, dy: Tensor, input_shape: torch.Size) -> Tensor:
    """∂⟨dy, conv(x)⟩/∂x for a bias-free ``conv``: the transposed convolution of ``dy`` with the same weight — for a
    stride-1 'same' convolution the forward convolution with the flipped weight (:class:`SameConvolution`), else
    ``conv_transpose2d`` with the ``output_padding`` that restores the input's size (a stride-2 layer maps sizes 2n and
    2n − 1 to the same n)."""
    if _is_same(conv):
        return SameConvolution.apply(dy, _flipped(conv.weight), conv.padding)
    (stride_h, stride_w), (pad_h, pad_w) = conv.stride, conv.padding
    (kernel_h, kernel_w), (dilation_h, dilation_w) = conv.kernel_size, conv.dilation
    padding = [
        input_shape[2] - ((dy.shape[2] - 1) * stride_h - 2 * pad_h + dilation_h * (kernel_h - 1) + 1),
        input_shape[3] - ((dy.shape[3] - 1) * stride_w - 2 * pad_w + dilation_w * (kernel_w - 1) + 1),
    ]
    return F.conv_transpose2d(
        dy,
        conv.weight,
        stride=conv.stride,
        padding=conv.padding,
        output_padding=padding,
        groups=conv.groups,
        dilation=conv.dilation,
    )


def relu_input_gradient(dy: Tensor, out: Tensor) -> Tensor:
    """∂⟨dy, relu(z)⟩/∂z given ``out = relu(z)``: ``dy`` where ``out > 0``, else 0 (ReLU's own backward kernel; the
    mask is piecewise constant, so no gradient flows into ``out``)."""
    return torch.ops.aten.threshold_backward(dy, out.detach(), 0)


class StemTape(NamedTuple):
    """What the stem's input gradient needs: the pre-BatchNorm map and batch statistics, the ReLU's output and the
    max-pool's argmax indices (None without a max-pool)."""

    conv: Tensor
    stats: BatchNormStats | None
    out: Tensor
    pool_indices: Tensor | None


class BlockTape(NamedTuple):
    """What :meth:`BasicBlock.input_gradient` needs of a forward pass: the input's shape, the pre-BatchNorm maps and
    batch statistics of the three BatchNorms (shortcut: None for the identity), the inner ReLU's and the output."""

    input_shape: torch.Size
    conv1: Tensor
    stats1: BatchNormStats | None
    hidden: Tensor
    conv2: Tensor
    stats2: BatchNormStats | None
    shortcut: Tensor | None
    shortcut_stats: BatchNormStats | None
    out: Tensor


class BasicBlock(nn.Module):
    """relu(bn(conv3×3(relu(bn(conv3×3_s(x))))) + shortcut(x)); the shortcut is a 1×1 conv → BN when the stride or
    the width changes, else the identity."""

    def __init__(self, in_width: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_width, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.shortcut = nn.Identity()
        if stride != 1 or in_width != width:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_width, width, 1, stride=stride, bias=False), nn.BatchNorm2d(width)
            )

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_and_tape(x)[0]

    def forward_and_tape(self, x: Tensor) -> tuple[Tensor, BlockTape]:
        """The block's output and what its input gradient needs (:class:`BlockTape`)."""
        conv1 = convolve(self.conv1, x)
        normalized1, stats1 = batch_norm(self.bn1, conv1)
        hidden = torch.relu(normalized1)
        conv2 = convolve(self.conv2, hidden)
        normalized2, stats2 = batch_norm(self.bn2, conv2)
        shortcut, shortcut_stats, skip = None, None, x
        if isinstance(self.shortcut, nn.Sequential):
            shortcut = convolve(self.shortcut[0], x)
            skip, shortcut_stats = batch_norm(self.shortcut[1], shortcut)
        out = torch.relu(normalized2 + skip)
        return out, BlockTape(x.shape, conv1, stats1, hidden, conv2, stats2, shortcut, shortcut_stats, out)

    def input_gradient(self, d_out: Tensor, tape: BlockTape) -> Tensor:
        """∂⟨d_out, block(x)⟩/∂x by the chain rule through the layers, in reverse (differentiable once more)."""
        d_sum = relu_input_gradient(d_out, tape.out)
        d_hidden = conv_input_gradient(
            self.conv2, batch_norm_input_gradient(self.bn2, d_sum, tape.conv2, tape.stats2), tape.hidden.shape
        )
        d_conv1 = batch_norm_input_gradient(
            self.bn1, relu_input_gradient(d_hidden, tape.hidden), tape.conv1, tape.stats1
        )
        d_x = conv_input_gradient(self.conv1, d_conv1, tape.input_shape)
        if tape.shortcut is None:
            return d_x + d_sum
        d_shortcut = batch_norm_input_gradient(self.shortcut[1], d_sum, tape.shortcut, tape.shortcut_stats)
        return d_x + conv_input_gradient(self.shortcut[0], d_shortcut, tape.input_shape)


class ResNet18(nn.Module):
    """ResNet-18 layout (BasicBlock, [2, 2, 2, 2]) with one output logit: ``(B, C, H, W)`` → ``(B, 1)``."""

    def __init__(self, config: ResNetConfig = ResNetConfig(), *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        first = config.widths[0]
        if config.stem == "paper":
            self.stem = nn.Sequential(
                nn.Conv2d(config.in_channels, first, 7, stride=2, padding=3, bias=False),
                nn.BatchNorm2d(first),
                nn.ReLU(),
                nn.MaxPool2d(3, stride=2, padding=1),
            )
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(config.in_channels, first, 3, stride=1, padding=1, bias=False),
                nn.BatchNorm2d(first),
                nn.ReLU(),
            )
        blocks, in_width = [], first
        for stage, width in enumerate(config.widths):
            for block in range(BLOCKS_PER_STAGE):
                blocks.append(BasicBlock(in_width, width, 2 if stage > 0 and block == 0 else 1))
                in_width = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(in_width, 1)
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """torchvision's initialisation (see the module docstring), drawn from ``generator``."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu", generator=generator)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                bound = 1 / math.sqrt(module.in_features)
                nn.init.uniform_(module.weight, -bound, bound, generator=generator)
                nn.init.uniform_(module.bias, -bound, bound, generator=generator)

    def stem_forward_and_tape(self, x: Tensor) -> tuple[Tensor, StemTape]:
        """The stem's output and what its input gradient needs (:class:`StemTape`)."""
        conv = convolve(self.stem[0], x)
        normalized, stats = batch_norm(self.stem[1], conv)
        out = hidden = torch.relu(normalized)
        indices = None
        if self.config.stem == "paper":
            pool = self.stem[3]
            hidden, indices = F.max_pool2d(
                out,
                pool.kernel_size,
                pool.stride,
                pool.padding,
                pool.dilation,
                ceil_mode=pool.ceil_mode,
                return_indices=True,
            )
        return hidden, StemTape(conv, stats, out, indices)

    def stem_input_gradient(self, d_out: Tensor, tape: StemTape, input_shape: torch.Size) -> Tensor:
        """∂⟨d_out, stem(x)⟩/∂x (differentiable once more)."""
        if tape.pool_indices is not None:
            pool = self.stem[3]
            d_out = torch.ops.aten.max_pool2d_with_indices_backward(
                d_out,
                tape.out.detach(),
                pool.kernel_size,
                pool.stride,
                pool.padding,
                pool.dilation,
                pool.ceil_mode,
                tape.pool_indices,
            )
        d_conv = batch_norm_input_gradient(self.stem[1], relu_input_gradient(d_out, tape.out), tape.conv, tape.stats)
        return conv_input_gradient(self.stem[0], d_conv, input_shape)

    def features(self, x: Tensor) -> Tensor:
        """The last stage's feature map ``(B, widths[-1], H', W')`` before pooling."""
        return self.blocks(self.stem_forward_and_tape(x)[0])

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).mean(dim=(-2, -1)))

    def logits_and_input_gradient(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The logits ``f(x)`` ``(B,)`` and ``∇_x Σ_b f_b(x)`` ``(B, C, H, W)``, the latter built from differentiable
        operations, so that a loss on it back-propagates to the parameters by an ordinary ``backward()`` (see the
        module docstring). One forward pass: the same logits and, in train mode, the same BatchNorm running-statistics
        update as ``self(x)``; equal to ``torch.autograd.grad(self(x).sum(), x, create_graph=True)``."""
        hidden, stem_tape = self.stem_forward_and_tape(x)
        tapes = []
        for block in self.blocks:
            hidden, tape = block.forward_and_tape(hidden)
            tapes.append(tape)
        logits = self.head(hidden.mean(dim=(-2, -1))).reshape(len(x))
        # ∂Σ_b f_b / ∂hidden: the head's weight spread evenly over the H'·W' positions of the average pooling
        grad = (self.head.weight.reshape(1, -1, 1, 1) / (hidden.shape[-2] * hidden.shape[-1])).expand(hidden.shape)
        for block, tape in zip(reversed(self.blocks), reversed(tapes)):
            grad = block.input_gradient(grad, tape)
        return logits, self.stem_input_gradient(grad, stem_tape, x.shape)
