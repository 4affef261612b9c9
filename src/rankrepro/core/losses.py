"""Per-entry regression losses of the factorization experiments: ℓ2, ℓ1 and Huber (one place for all chapters).

For a residual r = prediction − target, the loss of one entry is

- ``l2``:    ρ(r) = r²                                      (``torch.nn.MSELoss``),
- ``l1``:    ρ(r) = |r|                                     (``torch.nn.L1Loss``),
- ``huber``: ρ(r) = r² / (2δ) if |r| < δ, else |r| − δ/2     (``torch.nn.SmoothL1Loss(beta=δ)``, the original
  HTF code's "huber" with ``huber_loss_thresh`` δ; it is ``torch.nn.HuberLoss(delta=δ)`` divided by δ),

and the loss of a run is the mean of ρ over its entries (the last dimension). The derivatives dρ/dr — 2r, sign(r)
(0 at r = 0, the subgradient PyTorch uses) and clamp(r/δ, −1, 1) — serve objectives with hand-written gradients.
"""

from __future__ import annotations

from typing import Literal, get_args

from torch import Tensor

from rankrepro.core.errors import ConfigError

LossName = Literal["l2", "l1", "huber"]
LOSS_NAMES: tuple[str, ...] = get_args(LossName)


def check_loss(name: str, huber_threshold: float = 1.0) -> None:
    """ConfigError unless ``name`` is a known loss and the Huber threshold δ is positive."""
    if name not in LOSS_NAMES:
        raise ConfigError(f"unknown loss {name!r} (expected one of {', '.join(LOSS_NAMES)})")
    if not huber_threshold > 0:
        raise ConfigError(f"the Huber threshold must be positive, got {huber_threshold}")


def entry_loss(residual: Tensor, name: LossName, huber_threshold: float = 1.0) -> Tensor:
    """ρ(r) entrywise (same shape as ``residual``), see the module docstring."""
    check_loss(name, huber_threshold)
    if name == "l2":
        return residual.pow(2)
    magnitude = residual.abs()
    if name == "l1":
        return magnitude
    delta = huber_threshold
    return (magnitude < delta) * (0.5 * residual.pow(2) / delta) + (magnitude >= delta) * (magnitude - 0.5 * delta)


def entry_loss_derivative(residual: Tensor, name: LossName, huber_threshold: float = 1.0) -> Tensor:
    """dρ/dr entrywise: 2r (ℓ2), sign(r) (ℓ1), clamp(r/δ, −1, 1) (Huber)."""
    check_loss(name, huber_threshold)
    if name == "l2":
        return 2.0 * residual
    if name == "l1":
        return residual.sign()
    return (residual / huber_threshold).clamp(-1.0, 1.0)


def mean_loss(prediction: Tensor, target: Tensor, name: LossName, huber_threshold: float = 1.0) -> Tensor:
    """(1/M) Σ_m ρ(prediction_m − target_m) over the last dimension: ``(B,)`` for ``(B, M)`` predictions."""
    return entry_loss(prediction - target, name, huber_threshold).mean(-1)
