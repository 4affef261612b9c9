"""Training a CNN classifier with the input-gradient-change regularizer (chapter 3, §3.2).

One binary task (Is-Same-Class canvases or Pathfinder images): a network ``f`` with one logit is trained by SGD with
momentum on mini-batches of the loss

    L(θ) = BCE(f(x; θ), y) + λ · mean_b |cos(∇_{x_I} f(x)_b, ∇_{x_I} f(x')_b)|,

where the regions (I, J) are drawn afresh for every batch (:func:`rankrepro.cnn.locality.penalty_and_logits`, which also
gives the logits of the loss from its own forward pass; λ = 0 is plain training and skips the double
back-propagation). Training stops ``stop_after_fit`` epochs after the
first epoch with 100 % training accuracy, or at ``max_epochs`` (the paper: 20 epochs after fitting, ≤ 150 epochs).
Test accuracy is measured once, after the last epoch. Images are stored as uint8 and scaled to [0, 1] per batch,
in the dtype of the model's parameters.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from rankrepro.cnn.locality import Region, penalty_and_logits
from rankrepro.core.errors import ConfigError

#: the layout of the networks' weights and inputs: channel-first. Channels-last made the small ResNet's SGD steps
#: 1.16–1.26× faster on the CPU (benchmarks/bench_locality_regularizer.py) but is not the same function in float32:
#: the CPU BatchNorm kernels accumulate channels-last batch statistics far less accurately, and the penalty's input
#: gradient at a small patch (a small difference of large terms) turns that into a 14–66 % error of the regularized
#: loss's parameter gradient on Pathfinder (channel-first: ≤ 0.4 %; tests/cnn/test_locality.py); torch 2.13's oneDNN
#: kernel also crashes (heap corruption) on the weight gradient of a channels-last 1×1 stride-2 convolution with ≤ 8
#: input channels on maps of ≥ 48 × 48 (the ResNet's shortcut on narrow nets at the paper's canvases)
MEMORY_FORMAT = torch.contiguous_format
#: draws the regions (I, J) of one batch from a numpy generator
RegionSampler = Callable[[np.random.Generator], tuple[Region, Region]]


@dataclass(frozen=True)
class SGDSchedule:
    """SGD with momentum: learning rate, momentum, batch size, epoch cap, epochs to go on after fitting the train
    set."""

    lr: float
    momentum: float
    batch_size: int
    max_epochs: int
    stop_after_fit: int

    def __post_init__(self) -> None:
        if not self.lr > 0 or not 0 <= self.momentum < 1:
            raise ConfigError(f"SGD needs lr > 0 and 0 ≤ momentum < 1, got lr {self.lr}, momentum {self.momentum}")
        if self.batch_size < 2 or self.max_epochs < 1 or self.stop_after_fit < 0:
            raise ConfigError(
                f"need batch_size ≥ 2 (the regularizer pairs samples), max_epochs ≥ 1 and "
                f"stop_after_fit ≥ 0, got {self.batch_size}, {self.max_epochs}, {self.stop_after_fit}"
            )


@dataclass
class LocalityOutcome:
    """Per-epoch training curve (accuracy, BCE, penalty), final test accuracy, epochs run, first epoch with 100 %
    training accuracy (None if never), training seconds."""

    train_accuracy: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    penalty: list[float] = field(default_factory=list)
    test_accuracy: float = math.nan
    epochs: int = 0
    fitted_epoch: int | None = None
    seconds: float = 0.0


def as_input(images: Tensor, like: Tensor) -> Tensor:
    """uint8 ``(B, C, H, W)`` → floats in [0, 1] of the dtype and on the device of ``like`` (a model parameter), laid
    out as :data:`MEMORY_FORMAT`."""
    return images.to(device=like.device, dtype=like.dtype).div_(255.0).contiguous(memory_format=MEMORY_FORMAT)


def binary_accuracy(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int) -> float:
    """Fraction of samples with ``(f(x) > 0) == y``, in eval mode (BatchNorm running statistics), in batches."""
    model.eval()
    like, correct = next(model.parameters()), 0
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            logits = model(as_input(images[start : start + batch_size], like)).reshape(-1)
            correct += int(((logits > 0).long() == labels[start : start + batch_size].to(like.device)).sum())
    return correct / max(len(images), 1)


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
    strength: float,
    regions: tuple[Region, Region] | None,
) -> tuple[float, float, int]:
    """One SGD step on BCE + λ·penalty; returns (BCE, penalty (NaN when λ = 0), correct predictions)."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    term = None
    if strength > 0 and regions is not None:
        term, logits = penalty_and_logits(model, x, regions[0], regions[1])
    else:
        logits = model(x).reshape(-1)
    bce = nn.functional.binary_cross_entropy_with_logits(logits, y.to(logits.dtype))
    loss, penalty = bce, math.nan
    if term is not None:
        loss = bce + strength * term
        penalty = float(term.detach())
    loss.backward()
    optimizer.step()
    return float(bce.detach()), penalty, int(((logits.detach() > 0).long() == y).sum())


def train_locality_classifier(
    model: nn.Module,
    train: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor],
    schedule: SGDSchedule,
    strength: float,
    draw_regions: RegionSampler | None,
    generator: np.random.Generator,
    *,
    device: torch.device = torch.device("cpu"),
    on_epoch: Callable[[int, float], None] | None = None,
) -> LocalityOutcome:
    """Train ``model`` (one logit) on uint8 ``train = (images, labels)`` with BCE + ``strength``·penalty, shuffling
    with ``generator`` and drawing (I, J) per batch with ``draw_regions``; evaluate on ``test`` at the end.

    A last batch of one sample is dropped (the penalty pairs each sample with the next one)."""
    if strength < 0:
        raise ConfigError(f"the regularization strength λ must be ≥ 0, got {strength}")
    if strength > 0 and draw_regions is None:
        raise ConfigError("λ > 0 needs a region sampler")
    images, labels = train
    like = next(model.to(device=device, memory_format=MEMORY_FORMAT).parameters())
    optimizer = torch.optim.SGD(model.parameters(), lr=schedule.lr, momentum=schedule.momentum)
    outcome, started = LocalityOutcome(), time.time()
    for epoch in range(1, schedule.max_epochs + 1):
        order = torch.from_numpy(generator.permutation(len(images)))
        losses, penalties, correct, seen = [], [], 0, 0
        for start in range(0, len(order), schedule.batch_size):
            batch = order[start : start + schedule.batch_size]
            if len(batch) < 2:
                continue
            regions = draw_regions(generator) if strength > 0 else None
            bce, penalty, hits = train_step(
                model, optimizer, as_input(images[batch], like), labels[batch].to(device), strength, regions
            )
            losses.append(bce * len(batch))
            penalties.append(penalty * len(batch))
            correct, seen = correct + hits, seen + len(batch)
        outcome.train_accuracy.append(correct / seen)
        outcome.train_loss.append(sum(losses) / seen)
        outcome.penalty.append(sum(penalties) / seen)
        outcome.epochs = epoch
        if on_epoch is not None:
            on_epoch(epoch, correct / seen)
        if outcome.fitted_epoch is None and correct == seen:
            outcome.fitted_epoch = epoch
        if outcome.fitted_epoch is not None and epoch - outcome.fitted_epoch >= schedule.stop_after_fit:
            break
    outcome.seconds = time.time() - started
    outcome.test_accuracy = binary_accuracy(model, test[0], test[1], 4 * schedule.batch_size)
    return outcome
