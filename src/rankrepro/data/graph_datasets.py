"""Real graphs from the data layer: Cora and CiteSeer from their Planetoid raw files (pickles, read without unpickling
by :mod:`rankrepro.data.pickle_free` and assembled as torch_geometric's ``Planetoid`` does), Chameleon and Squirrel from
their .npz, DBLP and Amazon Computers from their graph2gauss / gnn-benchmark .npz (CSR matrices), and ogbn-arxiv from
OGB's zip (read directly, without the ``ogb`` package); every file fetched and MD5-verified by
:mod:`rankrepro.data.registry` first, and nothing but those verified files is read (no processed cache).

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

from rankrepro.core.errors import DataError
from rankrepro.core.graphs import undirected_edges
from rankrepro.core.io import one_line
from rankrepro.data.pickle_free import read_pickled_data
from rankrepro.data.registry import DATASETS, DatasetSpec, Opener, check_labels, fetch_dataset, get_dataset

log = logging.getLogger(__name__)

#: the folder, inside a dataset's cache folder, where torch_geometric's Planetoid once kept its raw links and processed
#: (pickled) ``data.pt``; never read, removed when found
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


def _remove_stale_pyg(folder: Path) -> None:
    """Remove ``<folder>/pyg`` (what torch_geometric's Planetoid left in earlier versions: its processed ``data.pt`` is
    a pickle and is never read)."""
    stale = folder / PYG_ROOT
    if not stale.exists() and not stale.is_symlink():
        return
    try:
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale)
        else:
            stale.unlink()
    except OSError as exc:
        log.warning(
            "cannot remove %s (an earlier version's processed-data cache; never read): %s", stale, one_line(exc)
        )
        return
    log.info("removed %s (a processed-data cache of an earlier version; never read)", stale)


def _dense(value: object, path: Path) -> np.ndarray:
    """A Planetoid matrix (a CSR matrix or a 2-d array) as a dense 2-d array."""
    if isinstance(value, sp.csr_matrix):
        return value.toarray()
    if isinstance(value, np.ndarray) and value.ndim == 2:
        return value
    raise DataError(
        f"the Planetoid file {path} holds a {type(value).__name__}, not a matrix (delete it to fetch it again)"
    )


def _read_test_index(path: Path) -> np.ndarray:
    """The vertex ids of a Planetoid ``test.index`` file (one integer per line) as int64."""
    try:
        tokens = path.read_text(encoding="ascii").split()
        index = np.array([int(token) for token in tokens], dtype=np.int64)
    except (OSError, ValueError) as exc:
        raise DataError(
            f"cannot read the Planetoid test index {path} (delete it to fetch it again): {one_line(exc, 200)}"
        ) from None
    if index.size == 0:
        raise DataError(f"the Planetoid test index {path} is empty (delete it to fetch it again)")
    return index


def _adjacency_pairs(graph: object, path: Path) -> np.ndarray:
    """The directed pairs (key, neighbour) of a Planetoid adjacency dict, in its order, as an ``(m, 2)`` int64 array."""
    if not isinstance(graph, dict):
        raise DataError(
            f"the Planetoid file {path} holds a {type(graph).__name__}, not an adjacency dict (delete it "
            "to fetch it again)"
        )
    rows = [key for key, neighbours in graph.items() for _ in neighbours]
    cols = [neighbour for neighbours in graph.values() for neighbour in neighbours]
    return np.array([rows, cols], dtype=np.int64).reshape(2, -1).T


def assemble_planetoid(
    allx: np.ndarray, tx: np.ndarray, ally: np.ndarray, ty: np.ndarray, test_index: np.ndarray, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """Features (float32) and labels (int64) of a Planetoid graph from its dense blocks, as torch_geometric's
    ``read_planetoid_data`` builds them: the training rows ``allx`` / ``ally`` followed by the test rows, which are
    placed at the positions of the sorted test ids (missing ids in their range — CiteSeer's isolated test vertices —
    get zero rows); then vertex ``test_index[k]`` takes the row of ``sorted(test_index)[k]``. Labels are the argmax
    of the one-hot label rows (0 for an all-zero row). ``what`` names the dataset in errors."""
    ordered = np.sort(test_index)
    if (
        tx.shape[0] != len(test_index)
        or ty.shape[0] != len(test_index)
        or len(np.unique(test_index)) != len(ordered)
        or allx.shape[0] != ally.shape[0]
        or allx.shape[1] != tx.shape[1]
        or ally.shape[1] != ty.shape[1]
    ):
        raise DataError(
            f"{what}: the Planetoid blocks allx {allx.shape}, tx {tx.shape}, ally {ally.shape}, ty "
            f"{ty.shape} and {len(test_index)} test ids do not fit together"
        )
    span = int(ordered[-1] - ordered[0]) + 1
    test_features = np.zeros((span, tx.shape[1]), dtype=tx.dtype)
    test_features[ordered - ordered[0]] = tx
    test_labels = np.zeros((span, ty.shape[1]), dtype=ty.dtype)
    test_labels[ordered - ordered[0]] = ty
    features = np.concatenate([allx, test_features]).astype(np.float32)
    labels = np.argmax(np.concatenate([ally, test_labels]), axis=1).astype(np.int64)
    if ordered[0] < 0 or ordered[-1] >= len(labels):
        raise DataError(f"{what}: test ids {ordered[0]}..{ordered[-1]} outside the {len(labels)} vertices")
    features[test_index] = features[ordered]
    labels[test_index] = labels[ordered]
    return features, labels


def _read_planetoid(folder: Path, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, labels and directed edge pairs of a Planetoid dataset from its (verified) raw files in ``folder``,
    without unpickling them."""
    _remove_stale_pyg(folder)
    path = {part: folder / f"ind.{name}.{part}" for part in ("allx", "tx", "ally", "ty", "graph", "test.index")}
    blocks = {part: _dense(read_pickled_data(path[part]), path[part]) for part in ("allx", "tx", "ally", "ty")}
    features, labels = assemble_planetoid(
        blocks["allx"],
        blocks["tx"],
        blocks["ally"],
        blocks["ty"],
        _read_test_index(path["test.index"]),
        f"dataset '{name}'",
    )
    return features, labels, _adjacency_pairs(read_pickled_data(path["graph"]), path["graph"])


def _read_npz_graph(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, labels and edge pairs of a heterophilous-graphs .npz (no pickled objects allowed)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return (
                archive["node_features"].astype(np.float32),
                archive["node_labels"].astype(np.int64),
                archive["edges"].astype(np.int64),
            )
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"cannot read the graph archive {path}: {exc}") from None


def _csr(archive, prefix: str) -> sp.csr_matrix:
    """The CSR matrix stored as ``<prefix>_data``, ``_indices``, ``_indptr`` and ``_shape`` in an open .npz."""
    return sp.csr_matrix(
        (archive[f"{prefix}_data"], archive[f"{prefix}_indices"], archive[f"{prefix}_indptr"]),
        shape=tuple(int(size) for size in archive[f"{prefix}_shape"]),
    )


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
        raise DataError(
            f"the graph archive {path} has labels {labels.shape} {labels.dtype} and features "
            f"{features.shape}: expected one integer label per vertex and a feature matrix"
        )
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
        raise DataError(
            f"the OGB archive {path} has edge rows of {pairs.shape[1]} values and label rows of "
            f"{labels.shape[1]}: expected source,target pairs and one label per vertex"
        )
    return features, labels[:, 0], pairs, names


def _class_names(spec: DatasetSpec, names: tuple[str, ...]) -> tuple[str, ...]:
    """The class names a reader found in the files if they match the registry's number of classes, else the
    registry's."""
    if names and len(names) != len(spec.classes):
        log.warning(
            "%s: the files name %d classes, the registry %d; using the registry's names",
            spec.name,
            len(names),
            len(spec.classes),
        )
    return names if len(names) == len(spec.classes) else spec.classes


def graph_dataset_names() -> tuple[str, ...]:
    """Names of the registry's graph datasets."""
    return tuple(name for name, spec in DATASETS.items() if spec.reader in GRAPH_READERS)


def load_graph(
    name: str, cache_root: str | os.PathLike, mirror: str | os.PathLike | None, *, opener: Opener | None = None
) -> GraphDataset:
    """Fetch (and verify) graph dataset ``name`` (``opener`` as in :func:`~rankrepro.data.registry.fetch_dataset`), then
    read it; the edges become undirected, unique, loop-free."""
    spec = get_dataset(name)
    if spec.reader not in GRAPH_READERS:
        raise DataError(f"dataset '{name}' is not a graph dataset (graph datasets: {', '.join(graph_dataset_names())})")
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
        raise DataError(
            f"dataset '{name}': {len(features)} feature rows, {len(labels)} labels and vertex ids "
            f"{pairs.min() if len(pairs) else 0}..{pairs.max() if len(pairs) else -1} do not fit together"
        )
    check_labels(spec, labels, "the vertex labels")
    return GraphDataset(
        name=name,
        features=features,
        labels=labels,
        edges=undirected_edges(pairs),
        class_names=_class_names(spec, names),
    )
