"""What chapter 4's experiments share: the GNN kinds of the config schema (``$defs/gnn_models``), their labels, and
the check of a ``per_model`` plan that restricts a model's seeds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, Protocol

from rankrepro.core.errors import ConfigError

#: a GNN kind the config may name (schema ``$defs/gnn_models``)
GnnModel = Literal["gcn", "gat", "gin", "resgcn"]

#: how figures, tables and claims name each GNN kind
MODEL_LABELS: dict[str, str] = {"gcn": "GCN", "gat": "GAT", "gin": "GIN", "resgcn": "ResGCN"}


class SeedPlan(Protocol):
    """A ``per_model`` plan: the model runs the first ``seeds`` seeds of its experiment."""

    seeds: int


def seeds_of(per_model: Mapping[str, SeedPlan], seeds: int, model: str) -> int:
    """Number of seeds ``model`` runs: its plan's ``seeds`` where ``per_model`` has one, else the experiment's."""
    plan = per_model.get(model)
    return seeds if plan is None else plan.seeds


def check_model_seeds(where: str, per_model: Mapping[str, SeedPlan], models: Sequence[str], seeds: int) -> None:
    """A ConfigError for a ``per_model`` plan that reaches outside its experiment: a model not in ``models``, or more
    seeds than the experiment's ``seeds`` (a plan runs the first seeds of the experiment, never others).
    ``where``: the config path of the plans, for the message."""
    for model, plan in per_model.items():
        if model not in models:
            raise ConfigError(f"{where}.{model}: '{model}' is not one of the experiment's models {list(models)}")
        if plan.seeds > seeds:
            raise ConfigError(f"{where}.{model}: {plan.seeds} seeds, more than the experiment's {seeds}")
