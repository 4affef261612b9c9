"""Linear sensing with any batched factorized model: Gaussian measurements of its full reconstruction.

With measurement tensors A_1, …, A_m (rows of A ∈ R^{m×∏d}, e.g.
:func:`rankrepro.factorization.cp_sensing.gaussian_measurements`) and measurements y_i = ⟨A_i, W*⟩, a model whose
parameters θ give the full tensor W(θ) (a matrix product, an HTF reconstruction, …) has the per-run loss

    L(θ) = (1/m) Σ_i (⟨A_i, W(θ)⟩ − y_i)²,

evaluated as one matmul vec(W(θ))·Aᵀ for all runs; gradients by autograd through ``reconstruct``. (The CP model
has an analytic version, :class:`rankrepro.factorization.cp_losses.CPMeasuredLossObjective`.) Completion is the
special case of one-hot rows A_i.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor

from rankrepro.core.autodiff import autograd_loss_and_grads
from rankrepro.core.errors import ConfigError

Reconstruct = Callable[[Sequence[Tensor]], Tensor]


def sensing_loss(full: Tensor, measurements: Tensor, values: Tensor) -> Tensor:
    """Per-run loss (1/m) Σ_i (⟨A_i, W_b⟩ − y_i)² ``(B,)`` of full tensors ``full`` ``(B, d_1, …, d_N)``.

    ``measurements`` A is ``(m, ∏d)`` (row-major flattening), ``values`` y is ``(m,)`` or ``(B, m)``.
    """
    return (full.reshape(full.shape[0], -1) @ measurements.T - values).pow(2).mean(-1)


class SensingObjective:
    """Sensing with a batched model given by its reconstruction map (the trainer's ``BatchedObjective`` protocol).

    ``reconstruct(params)`` returns the full tensors ``(B, d_1, …, d_N)``; every run sees the same measurements
    A ``(m, ∏d)`` and values y ``(m,)``. Loss: :func:`sensing_loss`; gradients: autograd, all runs at once (the
    runs' losses are independent, so ∇ of their sum is each run's own).
    """

    def __init__(self, reconstruct: Reconstruct, measurements: Tensor, values: Tensor) -> None:
        if measurements.dim() != 2 or values.shape[-1] != measurements.shape[0]:
            raise ConfigError(
                f"sensing needs measurements (m, numel) and m values, got {tuple(measurements.shape)} "
                f"and {tuple(values.shape)}"
            )
        self.reconstruct = reconstruct
        self.measurements = measurements
        self.values = values

    def loss(self, params: Sequence[Tensor]) -> Tensor:
        """Per-run loss ``(B,)`` (differentiable)."""
        return sensing_loss(self.reconstruct(params), self.measurements, self.values)

    def loss_and_grads(self, params: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """Per-run loss ``(B,)`` and ∂L/∂θ for every parameter (autograd through the reconstruction, all runs at
        once)."""
        return autograd_loss_and_grads(self.loss, params)

    def metrics(self, params: list[Tensor]) -> dict[str, Tensor]:
        """No metrics of its own (a wrapper adds the model's)."""
        return {}
