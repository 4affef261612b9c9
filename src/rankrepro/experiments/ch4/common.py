"""What chapter 4's experiments share: the GNN kinds of the config schema (``$defs/gnn_models``), their labels, and
the check of a ``per_model`` plan that restricts a model's seeds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from rankrepro.core.errors import ConfigError

#: a GNN kind the config may name (schema ``$defs/gnn_models``)
GnnModel = Literal["gcn", "gat", "gin", "resgcn"]

#: how figures, tables and claims name each GNN kind
MODEL_LABELS: dict[str, str] = {"gcn": "GCN", "gat": "GAT", "gin": "GIN", "resgcn": "ResGCN"}


def check_model_seeds(where: str, model_seeds: Mapping[str, int], models: Sequence[str], seeds: int) -> None:
    """A ConfigError for a ``per_model`` plan (``model_seeds``: model → its number of seeds) that reaches outside
    its experiment: a model not in ``models``, or more seeds than the experiment's ``seeds`` (a plan runs the
    first seeds of the experiment, never others). ``where``: the config path of the plans, for the message."""
    for model, count in model_seeds.items():
        if model not in models:
            raise ConfigError(f"{where}.{model}: '{model}' is not one of the experiment's models {list(models)}")
        if count > seeds:
            raise ConfigError(f"{where}.{model}: {count} seeds, more than the experiment's {seeds}")
