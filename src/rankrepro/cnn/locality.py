"""Countering the locality bias of CNNs (chapter 3, §3.2; Razin, Maman & Cohen, ICML 2022): the input-gradient
change regularizer and the inputs it is applied to (Is-Same-Class canvases, random patches for Pathfinder).

Regions are axis-aligned rectangles of pixels, :class:`Region` ``(top, left, height, width)``, covering every channel:
``x[..., region.rows, region.cols]`` of a channel-first batch ``(B, C, H, W)``.

The regularizer. For a scalar logit per sample f and disjoint regions I, J: ``g_b = ∇_{x_I} f(x)_b``; ``x'`` = x with
region J of sample b replaced by region J of sample b + 1 (cyclically); ``g'_b = ∇_{x_I} f(x')_b``; the penalty is
``mean_b |cos(g_b, g'_b)|``. If f(x) = φ(x_I)·ψ(x_J) (separation rank 1 w.r.t. (I, J)), or f = φ(x_I) + ψ(x_J),
``∇_{x_I} f`` keeps its direction when x_J changes and every cosine is ±1: the penalty is 1 exactly when the gradient
w.r.t. I does not react to J, and penalising it (loss + λ·penalty, by double back-propagation) promotes interaction
between the two regions.

The input gradients come from :func:`logits_and_input_gradient`: a model that computes its own (the ResNet-18 of
:mod:`rankrepro.cnn.resnet`, by an explicit backward pass about twice as cheap to back-propagate through) or, for any
other model, ``torch.autograd.grad(..., create_graph=True)``. Both give the same quantity and the same gradient
w.r.t. the parameters (tested).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from rankrepro.core.errors import ConfigError

__all__ = [
    "Region",
    "input_gradient_change_penalty",
    "penalty_and_logits",
    "logits_and_input_gradient",
    "gradient_change_penalty",
    "resize_images",
    "canvas_images",
    "choose_pair",
    "random_patch_pair",
]


class Region(NamedTuple):
    """An axis-aligned rectangle of pixels ``[top, top + height) × [left, left + width)`` (all channels)."""

    top: int
    left: int
    height: int
    width: int

    @property
    def rows(self) -> slice:
        """Row slice ``top : top + height``."""
        return slice(self.top, self.top + self.height)

    @property
    def cols(self) -> slice:
        """Column slice ``left : left + width``."""
        return slice(self.left, self.left + self.width)

    def overlaps(self, other: Region) -> bool:
        """Whether the two rectangles share a pixel."""
        return (
            self.top < other.top + other.height
            and other.top < self.top + self.height
            and self.left < other.left + other.width
            and other.left < self.left + self.width
        )

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        """Boolean ``(H, W)`` mask of the region."""
        out = np.zeros(shape, dtype=bool)
        out[self.rows, self.cols] = True
        return out


def _check_region(region: Region, height: int, width: int, name: str) -> None:
    """ConfigError unless ``region`` is a non-empty rectangle inside an ``height × width`` image."""
    top, left, h, w = region
    if h < 1 or w < 1 or top < 0 or left < 0 or top + h > height or left + w > width:
        raise ConfigError(
            f"region {name} {tuple(region)} (top, left, height, width) is empty or outside the {height} × {width} input"
        )


@runtime_checkable
class ExplicitInputGradient(Protocol):
    """A model that returns its logits and ``∇_x Σ_b f_b(x)`` from one forward pass, the gradient differentiable
    w.r.t. the parameters by an ordinary backward pass
    (:meth:`rankrepro.cnn.resnet.ResNet18.logits_and_input_gradient`)."""

    def logits_and_input_gradient(self, x: Tensor) -> tuple[Tensor, Tensor]: ...


def _logits(model: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``(B,)`` scalar logits of ``model`` (output ``(B,)`` or ``(B, 1)``)."""
    out = model(x)
    if out.numel() != len(x):
        raise ConfigError(
            f"the model must give one logit per sample, got output {tuple(out.shape)} for a batch of {len(x)}"
        )
    return out.reshape(len(x))


def autograd_logits_and_input_gradient(model: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    """``(f(x) (B,), ∇_x Σ_b f_b(x) (B, C, H, W))`` for any model, by ``torch.autograd.grad`` keeping the graph
    (create_graph) for double back-propagation. Samples only interact through batch statistics (BatchNorm in train
    mode), so this is the per-sample gradient ``∇_{x_b} f_b`` up to those terms, as in the paper's implementation."""
    x = x.detach().requires_grad_(True)
    logits = _logits(model, x)
    (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
    return logits, grad


def logits_and_input_gradient(model: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    """``(f(x), ∇_x Σ_b f_b(x))``: the model's own explicit computation when it has one
    (:class:`ExplicitInputGradient`), else :func:`autograd_logits_and_input_gradient`."""
    if not isinstance(model, ExplicitInputGradient):
        return autograd_logits_and_input_gradient(model, x)
    logits, grad = model.logits_and_input_gradient(x)
    if logits.numel() != len(x):
        raise ConfigError(
            f"the model must give one logit per sample, got {tuple(logits.shape)} for a batch of {len(x)}"
        )
    return logits.reshape(len(x)), grad


def gradient_change_penalty(grad: Tensor, grad_shifted: Tensor, region_i: Region, *, eps: float = 1e-12) -> Tensor:
    """``mean_b |⟨g_b, g'_b⟩| / max(‖g_b‖·‖g'_b‖, eps)`` of the two input gradients restricted to region I
    (``g = grad[b, :, I]`` flattened per sample); a zero gradient gives a cosine of 0 (``eps`` guard)."""
    g = grad[..., region_i.rows, region_i.cols].reshape(len(grad), -1)
    g_shifted = grad_shifted[..., region_i.rows, region_i.cols].reshape(len(grad), -1)
    norms = (g.norm(dim=1) * g_shifted.norm(dim=1)).clamp_min(eps)
    return ((g * g_shifted).sum(dim=1).abs() / norms).mean()


def shift_region(x: Tensor, region: Region) -> Tensor:
    """``x'``: a copy of ``x`` with the region of each sample b taken from sample b + 1 (cyclically)."""
    shifted = x.detach().clone()
    shifted[..., region.rows, region.cols] = torch.roll(shifted[..., region.rows, region.cols], -1, dims=0)
    return shifted


def _check_penalty_arguments(x: Tensor, region_i: Region, region_j: Region) -> None:
    """ConfigError unless ``x`` is a channel-first batch of ≥ 2 samples holding the disjoint regions I and J."""
    if x.ndim != 4 or len(x) < 2:
        raise ConfigError(f"the penalty needs a channel-first batch (B ≥ 2, C, H, W), got {tuple(x.shape)}")
    _check_region(region_i, x.shape[-2], x.shape[-1], "I")
    _check_region(region_j, x.shape[-2], x.shape[-1], "J")
    if region_i.overlaps(region_j):
        raise ConfigError(f"regions I {tuple(region_i)} and J {tuple(region_j)} overlap")


def penalty_and_logits(
    model: Callable[[Tensor], Tensor], x: Tensor, region_i: Region, region_j: Region, *, eps: float = 1e-12
) -> tuple[Tensor, Tensor]:
    """The penalty ``mean_b |cos(∇_{x_I} f(x)_b, ∇_{x_I} f(x')_b)|`` (:func:`gradient_change_penalty`), with ``x'``
    = ``x`` with region J of each sample taken from the next sample of the batch (:func:`shift_region`), and the
    logits ``f(x)`` ``(B,)`` of the same forward pass (for the loss): both differentiable w.r.t. the parameters of
    ``model`` (add ``λ·penalty`` to the loss and back-propagate).

    ``x`` is a channel-first batch ``(B, C, H, W)`` with B ≥ 2; I and J must be disjoint regions inside it. The model
    runs on ``x``, then on ``x'``: in train mode both passes update the BatchNorm running statistics, in that order."""
    _check_penalty_arguments(x, region_i, region_j)
    logits, grad = logits_and_input_gradient(model, x)
    _, grad_shifted = logits_and_input_gradient(model, shift_region(x, region_j))
    return gradient_change_penalty(grad, grad_shifted, region_i, eps=eps), logits


def input_gradient_change_penalty(
    model: Callable[[Tensor], Tensor], x: Tensor, region_i: Region, region_j: Region, *, eps: float = 1e-12
) -> Tensor:
    """The penalty of :func:`penalty_and_logits` alone (a scalar, differentiable w.r.t. the parameters)."""
    return penalty_and_logits(model, x, region_i, region_j, eps=eps)[0]


def resize_images(images: np.ndarray, side: int) -> np.ndarray:
    """uint8 ``(n, H, W[, 3])`` → uint8 ``(n, side, side[, 3])`` by area interpolation (mean over source pixels)."""
    channel_first = torch.from_numpy(images).float()
    channel_first = channel_first[:, None] if images.ndim == 3 else channel_first.permute(0, 3, 1, 2)
    resized = torch.nn.functional.interpolate(channel_first, size=(side, side), mode="area")
    resized = resized.round().clamp(0, 255).to(torch.uint8)
    return (resized[:, 0] if images.ndim == 3 else resized.permute(0, 2, 3, 1)).numpy()


def canvas_images(
    images: np.ndarray, pairs: np.ndarray, distance: int, canvas_shape: tuple[int, int]
) -> tuple[np.ndarray, Region, Region]:
    """Is-Same-Class inputs: for each row (i, j, …) of ``pairs``, image i and image j side by side horizontally with
    ``distance`` zero columns between them, the pair centred on a zero canvas of ``canvas_shape`` (H_c, W_c).

    ``images`` are uint8 ``(n, H, W)`` (grey) or ``(n, H, W, 3)`` (RGB). Returns the uint8 channel-first canvases
    ``(count, C, H_c, W_c)`` and the regions of image 1 and image 2: both at row ``(H_c − H) // 2``, image 1 from
    column ``left = (W_c − 2W − distance) // 2``, image 2 from ``left + W + distance`` (the layout of the paper's
    code for even distances)."""
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] != 3) or images.dtype != np.uint8:
        raise ConfigError(f"images must be uint8 (n, H, W) or (n, H, W, 3), got {images.shape} {images.dtype}")
    if pairs.ndim != 2 or pairs.shape[1] < 2:
        raise ConfigError(f"pairs must be (count, ≥ 2) image indices, got shape {pairs.shape}")
    height, width = images.shape[1:3]
    canvas_height, canvas_width = canvas_shape
    if distance < 0 or height > canvas_height or 2 * width + distance > canvas_width:
        raise ConfigError(
            f"two {height} × {width} images {distance} px apart do not fit a {canvas_height} × "
            f"{canvas_width} canvas (need distance ≥ 0 and 2·{width} + distance ≤ {canvas_width})"
        )
    top, left = (canvas_height - height) // 2, (canvas_width - 2 * width - distance) // 2
    first, second = Region(top, left, height, width), Region(top, left + width + distance, height, width)
    channel_first = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
    canvases = np.zeros((len(pairs), channel_first.shape[1], canvas_height, canvas_width), dtype=np.uint8)
    canvases[..., first.rows, first.cols] = channel_first[pairs[:, 0]]
    canvases[..., second.rows, second.cols] = channel_first[pairs[:, 1]]
    return canvases, first, second


def choose_pair(regions: Sequence[Region], generator: np.random.Generator) -> tuple[Region, Region]:
    """(I, J): I uniform among ``regions``, J uniform among the others (the paper draws one such pair per batch;
    for Is-Same-Class the regions are the two images, so I is image 1 or image 2 with probability ½)."""
    if len(regions) < 2:
        raise ConfigError(f"choosing I and J needs at least two regions, got {len(regions)}")
    i = int(generator.integers(len(regions)))
    j = int(generator.integers(len(regions) - 1))
    return regions[i], regions[j + (j >= i)]


def random_patch_pair(
    shape: tuple[int, int], patch: int, generator: np.random.Generator, *, gap: int = 0
) -> tuple[Region, Region]:
    """Two square ``patch × patch`` regions of an ``(H, W)`` image (Pathfinder: patch 2): I uniform over all
    positions, J uniform over the positions whose Chebyshev gap to I is at least ``gap`` pixels (gap 0: disjoint),
    as in the paper's code."""
    height, width = shape
    if patch < 1 or gap < 0 or patch > height or patch > width:
        raise ConfigError(f"patch {patch} (gap {gap}) does not fit a {height} × {width} image")
    top, left = int(generator.integers(height - patch + 1)), int(generator.integers(width - patch + 1))
    tops, lefts = np.meshgrid(np.arange(height - patch + 1), np.arange(width - patch + 1), indexing="ij")
    # J is far enough when it ends gap pixels before I starts, or starts gap pixels after I ends, on some axis.
    far = (
        (tops + patch + gap <= top)
        | (tops >= top + patch + gap)
        | (lefts + patch + gap <= left)
        | (lefts >= left + patch + gap)
    )
    candidates = np.flatnonzero(far)
    if not len(candidates):
        raise ConfigError(
            f"no {patch} × {patch} patch lies {gap} px away from {Region(top, left, patch, patch)} in "
            f"a {height} × {width} image"
        )
    chosen = int(candidates[generator.integers(len(candidates))])
    return Region(top, left, patch, patch), Region(int(tops.flat[chosen]), int(lefts.flat[chosen]), patch, patch)
