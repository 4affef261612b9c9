"""Real graphs from the data layer: Cora and CiteSeer through torch_geometric's ``Planetoid`` loader, Chameleon and
Squirrel from their .npz, every file fetched and MD5-verified by :mod:`rankrepro.datasets` first.

Each comes back as a :class:`GraphDataset`: float32 vertex features, int64 labels, and the undirected simple edge
list (u < v, unique, self-loops removed: the protocol of the edge-sparsification experiments).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rankrepro.datasets import fetch_dataset, get_dataset
from rankrepro.errors import DataError
from rankrepro.graphs import undirected_edges

#: torch_geometric's names of the Planetoid datasets
PLANETOID_NAMES = {"cora": "Cora", "citeseer": "CiteSeer"}
#: where, inside a dataset's cache folder, torch_geometric's Planetoid reads raw and writes processed files
PYG_ROOT = "pyg"


@dataclass(frozen=True, eq=False)
class GraphDataset:
    """A vertex-classification graph: features ``(n, f)`` float32, labels ``(n,)`` int64, edges ``(m, 2)``."""

    name: str
    features: np.ndarray
    labels: np.ndarray
    edges: np.ndarray
    class_names: tuple[str, ...]

    @property
    def num_nodes(self) -> int:
        """Number of vertices."""
        return len(self.labels)


def _planetoid_root(folder: Path, name: str) -> Path:
    """A Planetoid root whose ``<Name>/raw/`` holds (links to) the verified files of the cache folder."""
    root = folder / PYG_ROOT
    raw = root / PLANETOID_NAMES[name] / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for remote in get_dataset(name).files:
        target = raw / remote.name
        if not target.exists():
            try:
                os.link(folder / remote.name, target)
            except OSError:
                shutil.copyfile(folder / remote.name, target)
    return root


def _read_planetoid(folder: Path, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, labels and directed edge pairs through ``torch_geometric.datasets.Planetoid``."""
    from torch_geometric.datasets import Planetoid

    data = Planetoid(str(_planetoid_root(folder, name)), PLANETOID_NAMES[name])[0]
    return data.x.numpy().astype(np.float32), data.y.numpy().astype(np.int64), data.edge_index.numpy().T


def _read_npz_graph(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, labels and edge pairs of a heterophilous-graphs .npz (no pickled objects allowed)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return (archive["node_features"].astype(np.float32), archive["node_labels"].astype(np.int64),
                    archive["edges"].astype(np.int64))
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"cannot read the graph archive {path}: {exc}") from None


def load_graph(name: str, cache_root: str | os.PathLike, mirror: str | os.PathLike | None) -> GraphDataset:
    """Fetch (and verify) graph dataset ``name``, then read it; the edges become undirected, unique, loop-free."""
    spec = get_dataset(name)
    if spec.reader not in ("planetoid", "npz-graph"):
        raise DataError(f"dataset '{name}' is not a graph dataset (graph datasets: "
                        f"{', '.join(n for n in PLANETOID_NAMES)}, chameleon, squirrel)")
    folder = fetch_dataset(name, cache_root, mirror)
    if spec.reader == "planetoid":
        features, labels, pairs = _read_planetoid(folder, name)
    else:
        features, labels, pairs = _read_npz_graph(folder / spec.files[0].name)
    if len(features) != len(labels) or (len(pairs) and pairs.max() >= len(labels)):
        raise DataError(f"dataset '{name}': {len(features)} feature rows, {len(labels)} labels and vertex ids up "
                        f"to {pairs.max() if len(pairs) else -1} do not fit together")
    return GraphDataset(name=name, features=features, labels=labels, edges=undirected_edges(pairs),
                        class_names=spec.classes)
