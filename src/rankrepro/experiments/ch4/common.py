"""What chapter 4's experiments share: the GNN kinds of the config schema (``$defs/gnn_models``) and their labels."""

from __future__ import annotations

from typing import Literal

#: a GNN kind the config may name (schema ``$defs/gnn_models``)
GnnModel = Literal["gcn", "gat", "gin", "resgcn"]

#: how figures, tables and claims name each GNN kind
MODEL_LABELS: dict[str, str] = {"gcn": "GCN", "gat": "GAT", "gin": "GIN", "resgcn": "ResGCN"}
