"""Full-batch training of the chapter-4 GNNs with early stopping (Razin, Verbin & Cohen 2023, Table 1 and §4.2).

- :func:`train_graph_classifier`: binary graph classification (Is-Same-Class), BCE on one logit per graph, early
  stopping on the training accuracy; reports the last epoch's train and test accuracy (the paper's protocol).
- :func:`train_vertex_classifier`: vertex classification (edge sparsification), cross-entropy on the training
  vertices, early stopping on the validation accuracy; reports the test accuracy at the best-validation epoch.

Both take an Adam optimiser over all parameters, run at most ``max_epochs`` epochs and stop once the monitored
accuracy has not improved for ``patience`` epochs (:class:`Patience`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from rankrepro.errors import ConfigError


@dataclass
class Patience:
    """Early stopping: remembers the best monitored value (strictly larger counts as better) and its epoch; the
    run should stop once ``patience`` epochs passed without improvement."""

    patience: int
    best: float = float("-inf")
    best_epoch: int = -1

    def __post_init__(self) -> None:
        if self.patience < 1:
            raise ConfigError(f"patience must be ≥ 1 epoch, got {self.patience}")

    def update(self, value: float, epoch: int) -> bool:
        """Record ``value`` at ``epoch``; True when it is a new best."""
        if value > self.best:
            self.best, self.best_epoch = value, epoch
            return True
        return False

    def should_stop(self, epoch: int) -> bool:
        """True once ``patience`` epochs have passed since the best one."""
        return epoch - self.best_epoch >= self.patience


@dataclass
class TrainingOutcome:
    """What a run reports: final accuracies, the epoch count, the epoch that early stopping kept, wall time, and a
    thinned training curve (epoch, loss, monitored accuracy)."""

    accuracies: dict[str, float]
    epochs: int
    best_epoch: int
    time_s: float
    curve: list[tuple[int, float, float]] = field(default_factory=list)


def binary_accuracy(logits: Tensor, labels: Tensor) -> float:
    """Fraction of graphs with sign(logit) = label (label 1 ⇔ logit > 0)."""
    return float(((logits > 0).to(labels.dtype) == labels).float().mean())


def class_accuracy(logits: Tensor, labels: Tensor) -> float:
    """Fraction of vertices whose arg-max logit is their class."""
    return float((logits.argmax(dim=-1) == labels).float().mean()) if len(labels) else float("nan")


def _curve_point(epoch: int, max_epochs: int, points: int = 200) -> bool:
    """Keep about ``points`` evenly spaced epochs of the curve (and the first)."""
    return epoch % max(1, max_epochs // points) == 0


def train_graph_classifier(model: nn.Module, train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor],
                           structure: Tensor, *, lr: float, max_epochs: int, patience: int) -> TrainingOutcome:
    """Adam on the mean BCE of ``model(x, structure)`` (one logit per graph) over the whole training set; stop when
    the training accuracy (of the step's forward pass) has not improved for ``patience`` epochs. Train and test
    accuracy of the last epoch's parameters, in eval mode."""
    started = time.time()
    (x_train, y_train), (x_test, y_test) = train, test
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    stopper, curve, epoch = Patience(patience), [], 0
    for epoch in range(1, max_epochs + 1):
        model.train()
        logits = model(x_train, structure).squeeze(-1)
        loss = F.binary_cross_entropy_with_logits(logits, y_train)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        accuracy = binary_accuracy(logits.detach(), y_train)
        stopper.update(accuracy, epoch)
        if _curve_point(epoch, max_epochs):
            curve.append((epoch, loss.item(), accuracy))
        if stopper.should_stop(epoch):
            break
    model.eval()
    with torch.no_grad():
        accuracies = {"train": binary_accuracy(model(x_train, structure).squeeze(-1), y_train),
                      "test": binary_accuracy(model(x_test, structure).squeeze(-1), y_test)}
    return TrainingOutcome(accuracies, epoch, stopper.best_epoch, time.time() - started, curve)


def train_vertex_classifier(model: nn.Module, features: Tensor, labels: Tensor, edge_index: Tensor,
                            masks: dict[str, Tensor], *, lr: float, weight_decay: float, max_epochs: int,
                            patience: int) -> TrainingOutcome:
    """Adam (with weight decay) on the cross-entropy of the ``masks['train']`` vertices; after every step, accuracy
    on the validation and test vertices in eval mode; stop when the validation accuracy has not improved for
    ``patience`` epochs. Reports train/val/test accuracy at the best-validation epoch."""
    started = time.time()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    stopper, curve, at_best, epoch = Patience(patience), [], {}, 0
    for epoch in range(1, max_epochs + 1):
        model.train()
        logits = model(features, edge_index)
        loss = F.cross_entropy(logits[masks["train"]], labels[masks["train"]])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model.eval()
        with torch.no_grad():
            logits = model(features, edge_index)
        accuracies = {split: class_accuracy(logits[mask], labels[mask]) for split, mask in masks.items()}
        if stopper.update(accuracies["val"], epoch):
            at_best = accuracies
        if _curve_point(epoch, max_epochs):
            curve.append((epoch, loss.item(), accuracies["val"]))
        if stopper.should_stop(epoch):
            break
    return TrainingOutcome(at_best, epoch, stopper.best_epoch, time.time() - started, curve)


def random_split(num_nodes: int, fractions: tuple[float, float, float], seed: int) -> dict[str, Tensor]:
    """Boolean vertex masks train/val/test from one seeded permutation: the first ⌊f_train·n⌋ vertices train, the
    next ⌊f_val·n⌋ validate, the rest test."""
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-9:
        raise ConfigError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    permutation = torch.randperm(num_nodes, generator=torch.Generator().manual_seed(seed))
    n_train, n_val = int(fractions[0] * num_nodes), int(fractions[1] * num_nodes)
    parts = {"train": permutation[:n_train], "val": permutation[n_train:n_train + n_val],
             "test": permutation[n_train + n_val:]}
    masks = {}
    for split, index in parts.items():
        mask = torch.zeros(num_nodes, dtype=torch.bool)
        mask[index] = True
        masks[split] = mask
    return masks
