"""Real graphs from the data layer: Cora and CiteSeer through torch_geometric's ``Planetoid`` loader, Chameleon and
Squirrel from their .npz, DBLP and Amazon Computers from their graph2gauss / gnn-benchmark .npz (CSR matrices), and
ogbn-arxiv from OGB's zip (read directly, without the ``ogb`` package); every file fetched and MD5-verified by
:mod:`rankrepro.datasets` first.

Each comes back as a :class:`GraphDataset`: float32 vertex features, int64 labels, and the undirected simple edge
list (u < v, unique, self-loops removed: the protocol of the edge-sparsification experiments).
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from rankrepro.datasets import DATASETS, DatasetSpec, Opener, check_labels, fetch_dataset, get_dataset
from rankrepro.errors import DataError
from rankrepro.graphs import undirected_edges

log = logging.getLogger(__name__)

#: torch_geometric's names of the Planetoid datasets
PLANETOID_NAMES = {"cora": "Cora", "citeseer": "CiteSeer"}
#: where, inside a dataset's cache folder, torch_geometric's Planetoid reads raw and writes processed files
PYG_ROOT = "pyg"
#: the registry's readers of graph datasets
GRAPH_READERS = ("planetoid", "npz-graph", "gnn-benchmark-npz", "ogbn-zip")
#: the members of an OGB node-property-prediction zip that are read, by their path below ``<name>/``
OGBN_EDGES, OGBN_FEATURES, OGBN_LABELS = "raw/edge.csv.gz", "raw/node-feat.csv.gz", "raw/node-label.csv.gz"
#: optional member naming ogbn-arxiv's classes (``label idx,arxiv category`` rows; OGB's spelling)
OGBN_ARXIV_CLASS_NAMES = "mapping/labelidx2arxivcategeory.csv.gz"


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


def _csr(archive, prefix: str) -> sp.csr_matrix:
    """The CSR matrix stored as ``<prefix>_data``, ``_indices``, ``_indptr`` and ``_shape`` in an open .npz."""
    return sp.csr_matrix((archive[f"{prefix}_data"], archive[f"{prefix}_indices"], archive[f"{prefix}_indptr"]),
                         shape=tuple(int(size) for size in archive[f"{prefix}_shape"]))


def _npz_class_names(archive) -> tuple[str, ...]:
    """The ``class_names`` of an open .npz if stored as plain strings; () if absent or pickled (never unpickled)."""
    if "class_names" not in archive.files:
        return ()
    try:
        names = archive["class_names"]
    except ValueError:  # an object array: reading it would need pickle
        return ()
    return tuple(str(name) for name in names.ravel()) if names.dtype.kind in "US" else ()


def _read_gnn_benchmark_npz(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """Features (dense float32), labels (int64), directed edge pairs and class names (() if the file has none
    readable without pickle) of a graph2gauss / gnn-benchmark .npz: the adjacency as CSR ``adj_*`` arrays, the
    features as CSR ``attr_*`` arrays (or a dense ``attr_matrix``), one label per vertex in ``labels``."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            adjacency = _csr(archive, "adj")
            if "attr_data" in archive.files:
                features = _csr(archive, "attr").toarray().astype(np.float32)
            else:
                features = np.asarray(archive["attr_matrix"], dtype=np.float32)
            labels = archive["labels"]
            names = _npz_class_names(archive)
    except (OSError, KeyError, ValueError, TypeError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read the graph archive {path} (delete it to fetch it again): {exc}") from None
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or features.ndim != 2:
        raise DataError(f"the graph archive {path} has labels {labels.shape} {labels.dtype} and features "
                        f"{features.shape}: expected one integer label per vertex and a feature matrix")
    if adjacency.shape[0] != adjacency.shape[1]:
        raise DataError(f"the graph archive {path} has a non-square adjacency matrix {adjacency.shape}")
    adjacency.eliminate_zeros()
    coo = adjacency.tocoo()
    return features, labels.astype(np.int64), np.stack([coo.row, coo.col], axis=1).astype(np.int64), names


def _zip_member(archive: zipfile.ZipFile, suffix: str) -> str | None:
    """The one member of ``archive`` whose name is ``<dataset>/<suffix>`` (or ``suffix``); None if absent."""
    matches = [name for name in archive.namelist() if name == suffix or name.endswith(f"/{suffix}")]
    return min(matches, key=len) if matches else None


def _read_csv_gz(archive: zipfile.ZipFile, member: str, dtype: type) -> np.ndarray:
    """A gzipped comma-separated numeric table in ``archive``, one row per line, as a 2-d array."""
    with archive.open(member) as raw, gzip.open(raw, "rt", encoding="ascii") as text:
        return np.loadtxt(text, delimiter=",", dtype=dtype, ndmin=2)


def _ogbn_class_names(archive: zipfile.ZipFile) -> tuple[str, ...]:
    """ogbn-arxiv's category names in label order (``arxiv cs ai`` → ``cs.AI``), () if absent or malformed."""
    member = _zip_member(archive, OGBN_ARXIV_CLASS_NAMES)
    if member is None:
        return ()
    with archive.open(member) as raw, gzip.open(raw, "rt", encoding="utf-8") as text:
        rows = [line.strip().split(",") for line in text if line.strip()][1:]  # the first line is a header
    if not rows or any(len(row) != 2 or not row[0].isdigit() for row in rows):
        return ()
    names = {int(index): category.strip() for index, category in rows}
    if sorted(names) != list(range(len(names))):
        return ()
    return tuple(_arxiv_category(names[index]) for index in range(len(names)))


def _arxiv_category(category: str) -> str:
    """OGB's ``arxiv cs ai`` as arXiv writes it, ``cs.AI`` (other spellings are kept as they are)."""
    parts = category.split()
    return f"{parts[1]}.{parts[2].upper()}" if len(parts) == 3 and parts[0] == "arxiv" else category


def _read_ogbn_zip(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """Features (float32), labels (int64), directed edge pairs and class names (() if the archive names none) of an
    OGB node-property-prediction zip: ``<name>/raw/edge.csv.gz`` (one ``source,target`` pair per line),
    ``node-feat.csv.gz`` (one feature row per vertex) and ``node-label.csv.gz`` (one label per vertex)."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = {suffix: _zip_member(archive, suffix) for suffix in (OGBN_EDGES, OGBN_FEATURES, OGBN_LABELS)}
            missing = [suffix for suffix, member in members.items() if member is None]
            if missing:
                raise DataError(f"the OGB archive {path} lacks {', '.join(missing)} (delete it to fetch it again)")
            pairs = _read_csv_gz(archive, members[OGBN_EDGES], np.int64)
            features = _read_csv_gz(archive, members[OGBN_FEATURES], np.float32)
            labels = _read_csv_gz(archive, members[OGBN_LABELS], np.int64)
            names = _ogbn_class_names(archive)
    except (OSError, ValueError, EOFError, zlib.error, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the OGB archive {path} (delete it to fetch it again): {exc}") from None
    if pairs.shape[1] != 2 or labels.shape[1] != 1:
        raise DataError(f"the OGB archive {path} has edge rows of {pairs.shape[1]} values and label rows of "
                        f"{labels.shape[1]}: expected source,target pairs and one label per vertex")
    return features, labels[:, 0], pairs, names


def _class_names(spec: DatasetSpec, names: tuple[str, ...]) -> tuple[str, ...]:
    """The class names a reader found in the files if they match the registry's number of classes, else the
    registry's."""
    if names and len(names) != len(spec.classes):
        log.warning("%s: the files name %d classes, the registry %d; using the registry's names", spec.name,
                    len(names), len(spec.classes))
    return names if len(names) == len(spec.classes) else spec.classes


def graph_dataset_names() -> tuple[str, ...]:
    """Names of the registry's graph datasets."""
    return tuple(name for name, spec in DATASETS.items() if spec.reader in GRAPH_READERS)


def load_graph(name: str, cache_root: str | os.PathLike, mirror: str | os.PathLike | None, *,
               opener: Opener | None = None) -> GraphDataset:
    """Fetch (and verify) graph dataset ``name`` (``opener`` as in :func:`~rankrepro.datasets.fetch_dataset`), then
    read it; the edges become undirected, unique, loop-free."""
    spec = get_dataset(name)
    if spec.reader not in GRAPH_READERS:
        raise DataError(f"dataset '{name}' is not a graph dataset (graph datasets: "
                        f"{', '.join(graph_dataset_names())})")
    folder = fetch_dataset(name, cache_root, mirror, opener=opener)
    names: tuple[str, ...] = ()
    if spec.reader == "planetoid":
        features, labels, pairs = _read_planetoid(folder, name)
    elif spec.reader == "npz-graph":
        features, labels, pairs = _read_npz_graph(folder / spec.files[0].name)
    elif spec.reader == "gnn-benchmark-npz":
        features, labels, pairs, names = _read_gnn_benchmark_npz(folder / spec.files[0].name)
    else:
        features, labels, pairs, names = _read_ogbn_zip(folder / spec.files[0].name)
    if len(features) != len(labels) or (len(pairs) and (pairs.min() < 0 or pairs.max() >= len(labels))):
        raise DataError(f"dataset '{name}': {len(features)} feature rows, {len(labels)} labels and vertex ids "
                        f"{pairs.min() if len(pairs) else 0}..{pairs.max() if len(pairs) else -1} do not fit together")
    check_labels(spec, labels, "the vertex labels")
    return GraphDataset(name=name, features=features, labels=labels, edges=undirected_edges(pairs),
                        class_names=_class_names(spec, names))
