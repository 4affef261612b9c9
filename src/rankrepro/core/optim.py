"""Batched optimizers: plain gradient descent, GroupRMSprop and Adam, one independent run per leading index.

Parameters are a list of tensors whose first dimension indexes runs ``b = 0 … B−1``. ``active`` is a boolean
``(B,)`` mask: inactive (stopped) runs are frozen, and their optimizer state does not advance.
The optimizer state is a dict of tensors so that it checkpoints with ``torch.save`` / ``weights_only`` loading.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def _per_run(values: Tensor, like: Tensor) -> Tensor:
    """Reshape a ``(B,)`` tensor to broadcast against a parameter of shape ``(B, …)``."""
    return values.reshape(values.shape + (1,) * (like.dim() - 1))


def apply_step(params: list[Tensor], grads: list[Tensor], eta: Tensor) -> None:
    """p ← p − η_b ∇p in place, for per-run step sizes η ``(B,)`` (one fused op per parameter)."""
    views: dict[int, Tensor] = {}
    for p, g in zip(params, grads):
        view = views.setdefault(p.dim(), _per_run(eta, p))
        p.addcmul_(view, g, value=-1.0)


def squared_gradient_norm(grads: list[Tensor]) -> Tensor:
    """Σ_p ‖∇p‖² per run: a ``(B,)`` tensor."""
    return sum(g.pow(2).flatten(1).sum(1) for g in grads)


@dataclass(frozen=True)
class GradientDescent:
    """Plain gradient descent p ← p − η_b ∇p with a per-run learning rate η_b."""

    lr: Tensor  # (B,)

    def init_state(self, params: list[Tensor]) -> dict[str, Tensor]:
        """GD keeps no state."""
        return {}

    def step_sizes(self, grads: list[Tensor], state: dict[str, Tensor], active: Tensor) -> Tensor:
        """η_b for active runs, 0 for frozen runs."""
        return self.lr * active

    def step(self, params: list[Tensor], grads: list[Tensor], state: dict[str, Tensor], active: Tensor) -> None:
        """In-place update of ``params``; frozen runs are left untouched."""
        apply_step(params, grads, self.step_sizes(grads, state, active))


@dataclass(frozen=True)
class GroupRMSprop:
    """GroupRMSprop ("adaptive learning rate"): one scalar second-moment state per run.

    s ← β s + (1 − β) Σ_p ‖∇p‖²,   t ← t + 1,   η_t = lr / (sqrt(s / (1 − β^t)) + ε),   p ← p − η_t ∇p.

    It is gradient descent whose step is normalised by the running RMS of the whole gradient (not per-parameter
    RMSprop). Only active runs update ``s`` and ``t``.
    """

    lr: Tensor  # (B,)
    beta: float = 0.99
    eps: float = 1e-6

    def init_state(self, params: list[Tensor]) -> dict[str, Tensor]:
        """s = 0 and t = 0 for every run."""
        batch = params[0].shape[0]
        return {
            "second_moment": torch.zeros(batch, dtype=params[0].dtype, device=params[0].device),
            "step_count": torch.zeros(batch, dtype=torch.int64, device=params[0].device),
        }

    def step_sizes(self, grads: list[Tensor], state: dict[str, Tensor], active: Tensor) -> Tensor:
        """Advance s, t of active runs (in place) and return η_t per run (0 for frozen runs)."""
        sq = squared_gradient_norm(grads)
        s = state["second_moment"]
        t = state["step_count"]
        s.copy_(torch.where(active, self.beta * s + (1 - self.beta) * sq, s))
        t.add_(active.to(t.dtype))
        correction = 1 - torch.pow(
            torch.as_tensor(self.beta, dtype=s.dtype, device=s.device), t.clamp(min=1).to(s.dtype)
        )
        eta = self.lr / (torch.sqrt(s / correction) + self.eps)
        return torch.where(active, eta, torch.zeros_like(eta))

    def step(self, params: list[Tensor], grads: list[Tensor], state: dict[str, Tensor], active: Tensor) -> None:
        """In-place update of ``params`` (see class docstring)."""
        apply_step(params, grads, self.step_sizes(grads, state, active))


@dataclass(frozen=True)
class Adam:
    """Adam (Kingma & Ba) with per-element moments, batched over runs, with a per-run learning rate.

    For every parameter element, with g its gradient and t the run's step count (t ← t + 1 first):

        m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g²,
        p ← p − (lr_b / (1 − β₁^t)) · m / (sqrt(v) / sqrt(1 − β₂^t) + ε),

    the same operations, in the same order, as ``torch.optim.Adam`` (no weight decay, no AMSGrad), so a single run
    matches it to rounding. Frozen runs (``active`` false) keep their parameters, moments and step count: their
    gradient is ignored, even if it is not finite. State: ``exp_avg_i``, ``exp_avg_sq_i`` per parameter i, and
    ``step_count`` ``(B,)`` int64.
    """

    lr: Tensor  # (B,)
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    def init_state(self, params: list[Tensor]) -> dict[str, Tensor]:
        """m = v = 0 and t = 0 for every run."""
        state = {"step_count": torch.zeros(params[0].shape[0], dtype=torch.int64, device=params[0].device)}
        for i, p in enumerate(params):
            state[f"exp_avg_{i}"] = torch.zeros_like(p)
            state[f"exp_avg_sq_{i}"] = torch.zeros_like(p)
        return state

    def step(self, params: list[Tensor], grads: list[Tensor], state: dict[str, Tensor], active: Tensor) -> None:
        """In-place update of ``params`` and ``state`` for the active runs (see class docstring)."""
        t = state["step_count"]
        t.add_(active.to(t.dtype))
        dtype = params[0].dtype
        steps = t.clamp(min=1).to(dtype)
        correction1 = 1 - torch.pow(torch.as_tensor(self.beta1, dtype=dtype, device=t.device), steps)
        correction2_sqrt = torch.sqrt(1 - torch.pow(torch.as_tensor(self.beta2, dtype=dtype, device=t.device), steps))
        step_size = self.lr.to(dtype) / correction1
        for i, (p, g) in enumerate(zip(params, grads)):
            mask = _per_run(active, p)
            m, v = state[f"exp_avg_{i}"], state[f"exp_avg_sq_{i}"]
            m.copy_(torch.where(mask, torch.lerp(m, g, 1 - self.beta1), m))
            v.copy_(torch.where(mask, (v * self.beta2).addcmul_(g, g, value=1 - self.beta2), v))
            denom = (v.sqrt() / _per_run(correction2_sqrt, p)).add_(self.eps)
            update = m / denom * _per_run(step_size, p)
            p.copy_(torch.where(mask, p - update, p))


def make_optimizer(name: str, lr: Tensor) -> GradientDescent | GroupRMSprop | Adam:
    """Optimizer by config name: ``gd`` (plain gradient descent; the paper code's ``sgd`` without momentum, full
    batch), ``group_rmsprop`` or ``adam`` (default hyperparameters β₁ = 0.9, β₂ = 0.999, ε = 1e-8, as PyTorch's)."""
    if name == "gd":
        return GradientDescent(lr)
    if name == "group_rmsprop":
        return GroupRMSprop(lr)
    if name == "adam":
        return Adam(lr)
    raise ValueError(f"unknown optimizer '{name}' (expected 'gd', 'group_rmsprop' or 'adam')")
