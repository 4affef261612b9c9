"""Full-batch training of the chapter-4 GNNs with early stopping (Razin, Verbin & Cohen 2023, Table 1 and §4.2).

- :func:`train_graph_classifier`: binary graph classification (Is-Same-Class), BCE on one logit per graph, early
  stopping on the training accuracy; reports the last epoch's train and test accuracy (the paper's protocol).
- :func:`train_vertex_classifiers`: vertex classification (edge sparsification) of k independent runs at once (a
  :class:`~rankrepro.gnn.models.StackedGNN`, each run on its own graph), cross-entropy on the training vertices, early
  stopping on the validation accuracy per run; reports each run's test accuracy at its best-validation epoch.

Both run Adam (every run its own moments) for at most ``max_epochs`` epochs and stop a run once its monitored
accuracy has not improved for ``patience`` epochs (:class:`Patience`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from rankrepro.core.errors import ConfigError
from rankrepro.gnn.models import SparseOperator, StackedGNN, stacked_structure


@dataclass
class Patience:
    """Early stopping of ``runs`` runs: each remembers its best monitored value (strictly larger counts as better)
    and that value's epoch; a run should stop once ``patience`` epochs passed without improvement."""

    patience: int
    runs: int = 1
    best: Tensor = field(init=False)
    best_epoch: Tensor = field(init=False)

    def __post_init__(self) -> None:
        if self.patience < 1:
            raise ConfigError(f"patience must be ≥ 1 epoch, got {self.patience}")
        self.best = torch.full((self.runs,), float("-inf"), dtype=torch.float64)
        self.best_epoch = torch.full((self.runs,), -1, dtype=torch.int64)

    def update(self, values: Tensor, epoch: int) -> Tensor:
        """Record each run's ``values`` ``(runs,)`` at ``epoch``; True where it is a new best."""
        improved = values.to(torch.float64) > self.best
        self.best = torch.where(improved, values.to(torch.float64), self.best)
        self.best_epoch = torch.where(improved, epoch, self.best_epoch)
        return improved

    def should_stop(self, epoch: int) -> Tensor:
        """True for the runs whose best epoch lies ``patience`` or more epochs back."""
        return epoch - self.best_epoch >= self.patience

    def select(self, index: Tensor) -> Patience:
        """The early-stopping state of the runs ``index``."""
        kept = Patience(self.patience, len(index))
        kept.best, kept.best_epoch = self.best[index], self.best_epoch[index]
        return kept


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


def class_accuracies(logits: Tensor, labels: Tensor, masks: dict[str, Tensor]) -> dict[str, Tensor]:
    """Per run and split, the fraction of the split's vertices whose arg-max logit is their class: logits
    ``(k, n, classes)`` → ``{split: (k,)}`` (NaN for an empty split)."""
    correct = (logits.argmax(dim=-1) == labels).float()
    return {split: correct[:, mask].mean(dim=1) for split, mask in masks.items()}


def _curve_point(epoch: int, max_epochs: int, points: int = 200) -> bool:
    """Keep about ``points`` evenly spaced epochs of the curve (and the first)."""
    return epoch % max(1, max_epochs // points) == 0


def train_graph_classifier(
    model: nn.Module,
    train: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor],
    structure: Tensor,
    *,
    lr: float,
    max_epochs: int,
    patience: int,
) -> TrainingOutcome:
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
        stopper.update(torch.tensor([accuracy]), epoch)
        if _curve_point(epoch, max_epochs):
            curve.append((epoch, loss.item(), accuracy))
        if stopper.should_stop(epoch).item():
            break
    model.eval()
    with torch.no_grad():
        accuracies = {
            "train": binary_accuracy(model(x_train, structure).squeeze(-1), y_train),
            "test": binary_accuracy(model(x_test, structure).squeeze(-1), y_test),
        }
    return TrainingOutcome(accuracies, epoch, int(stopper.best_epoch.item()), time.time() - started, curve)


def per_run_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy of each run: logits ``(k, n, classes)``, labels ``(n,)`` → ``(k,)``."""
    runs, n, classes = logits.shape
    losses = F.cross_entropy(logits.reshape(runs * n, classes), labels.repeat(runs), reduction="none")
    return losses.view(runs, n).mean(dim=1)


def _adam(
    params: list[Tensor],
    lr: float,
    weight_decay: float,
    previous: torch.optim.Adam | None = None,
    keep: Tensor | None = None,
) -> torch.optim.Adam:
    """``torch.optim.Adam`` (fused kernel; coupled weight decay g ← ∇ + λθ) over stacked parameters: its moments are
    per element, hence per run. With ``previous``, the moments of the runs ``keep`` (and the shared step count) carry
    over from that optimiser, whose parameters were the stacked ones before the selection."""
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
    if previous is not None:
        for old, new in zip(previous.param_groups[0]["params"], params):
            state = previous.state[old]
            optimizer.state[new] = {
                "step": state["step"].clone(),
                "exp_avg": state["exp_avg"][keep].clone(),
                "exp_avg_sq": state["exp_avg_sq"][keep].clone(),
            }
    return optimizer


def train_vertex_classifiers(
    model: StackedGNN,
    features: Tensor | SparseOperator,
    labels: Tensor,
    edge_sets: Sequence[np.ndarray],
    masks: dict[str, Tensor],
    *,
    lr: float,
    weight_decay: float,
    max_epochs: int,
    patience: int,
) -> list[TrainingOutcome]:
    """Train the k stacked runs of ``model``, run r on the graph ``edge_sets[r]``, as k independent trainings:
    every epoch, one Adam step (:func:`_adam`) on the run's mean cross-entropy over the ``masks['train']``
    vertices, then the accuracy of the updated parameters in evaluation mode on every split; a run stops once its
    validation accuracy has not improved for ``patience`` epochs, and reports its train/val/test accuracy at the
    best-validation epoch. A stopped run leaves the batch (its parameters, moments and graph are dropped), so the
    others compute exactly what they would alone.

    Without BatchNorm (every kind but GIN) training and evaluation mode compute the same function, and one forward
    pass serves both the evaluation after step t and the gradient of step t + 1. ``time_s`` of a run is its share
    of the batch's wall time (the batch time over the runs)."""
    started = time.time()
    train_index, train_labels = masks["train"].nonzero().squeeze(1), labels[masks["train"]]
    runs = model.runs
    alive = torch.arange(runs)
    params = list(model.params.values())
    optimizer = _adam(params, lr, weight_decay)
    stopper = Patience(patience, runs)
    at_best = {split: torch.full((runs,), float("nan")) for split in masks}
    curves: list[list[tuple[int, float, float]]] = [[] for _ in range(runs)]
    finished: dict[int, tuple[int, dict[str, float], int]] = {}
    structure = stacked_structure(model.kind, edge_sets, len(labels), params[0].dtype)
    logits = None
    for epoch in range(1, max_epochs + 1):
        if logits is None:
            logits = model.forward(features, structure, training=True)
        losses = per_run_cross_entropy(logits[:, train_index], train_labels)
        optimizer.zero_grad()
        losses.sum().backward()  # gradients laid out as their parameters (the fused kernel needs that)
        optimizer.step()
        if model.train_equals_eval:
            logits = model.forward(features, structure, training=True)
            evaluation = logits.detach()
        else:
            logits = None
            with torch.no_grad():
                evaluation = model.forward(features, structure, training=False)
        accuracies = class_accuracies(evaluation, labels, masks)
        improved = stopper.update(accuracies["val"], epoch)
        for split, values in accuracies.items():
            at_best[split] = torch.where(improved, values, at_best[split])
        if _curve_point(epoch, max_epochs):
            for r, loss, accuracy in zip(alive.tolist(), losses.tolist(), accuracies["val"].tolist()):
                curves[r].append((epoch, loss, accuracy))
        stop = stopper.should_stop(epoch) | (epoch == max_epochs)
        if not stop.any():
            continue
        for position in stop.nonzero().squeeze(1).tolist():
            finished[int(alive[position])] = (
                epoch,
                {split: float(v[position]) for split, v in at_best.items()},
                int(stopper.best_epoch[position]),
            )
        if stop.all():
            break
        keep = (~stop).nonzero().squeeze(1)
        alive, stopper = alive[keep], stopper.select(keep)
        at_best = {split: values[keep] for split, values in at_best.items()}
        model = model.select(keep)
        params = list(model.params.values())
        optimizer = _adam(params, lr, weight_decay, optimizer, keep)
        structure = stacked_structure(model.kind, [edge_sets[r] for r in alive.tolist()], len(labels), params[0].dtype)
        logits = None
    share = (time.time() - started) / runs
    return [TrainingOutcome(finished[r][1], finished[r][0], finished[r][2], share, curves[r]) for r in range(runs)]


def random_split(num_nodes: int, fractions: tuple[float, float, float], seed: int) -> dict[str, Tensor]:
    """Boolean vertex masks train/val/test from one seeded permutation: the first ⌊f_train·n⌋ vertices train, the
    next ⌊f_val·n⌋ validate, the rest test."""
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-9:
        raise ConfigError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    permutation = torch.randperm(num_nodes, generator=torch.Generator().manual_seed(seed))
    n_train, n_val = int(fractions[0] * num_nodes), int(fractions[1] * num_nodes)
    parts = {
        "train": permutation[:n_train],
        "val": permutation[n_train : n_train + n_val],
        "test": permutation[n_train + n_val :],
    }
    masks = {}
    for split, index in parts.items():
        mask = torch.zeros(num_nodes, dtype=torch.bool)
        mask[index] = True
        masks[split] = mask
    return masks
