"""Graph datasets of the data layer: registry entries, the Planetoid, .npz, gnn-benchmark .npz and OGB zip readers,
and the real graphs."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from rankrepro.core.errors import DataError
from rankrepro.core.graphs import check_edges, undirected_edges
from rankrepro.data.graph_datasets import (
    _read_gnn_benchmark_npz,
    _read_npz_graph,
    _read_ogbn_zip,
    _read_planetoid,
    _read_test_index,
    assemble_planetoid,
    load_graph,
)
from rankrepro.data.registry import DATASETS, MANIFEST, fetch_dataset, mirror_path
from rankrepro.data.sources import DataSource

MIRROR = Path(__file__).resolve().parents[3] / "shared" / "datasets"
needs_mirror = pytest.mark.skipif(not (MIRROR / "planetoid").is_dir(), reason="offline dataset mirror not present")


def test_graph_datasets_live_in_the_mirror_folders_of_their_family():
    assert mirror_path(Path("/m"), DATASETS["cora"], DATASETS["cora"].files[0]) == Path("/m/planetoid/ind.cora.x")
    assert mirror_path(Path("/m"), DATASETS["squirrel"], DATASETS["squirrel"].files[0]) == Path(
        "/m/heterophilous/squirrel.npz"
    )
    assert all(len(DATASETS[name].files) == 8 for name in ("cora", "citeseer"))


def test_a_non_graph_dataset_or_a_corrupt_archive_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not a graph dataset"):
        load_graph("mnist", tmp_path, None)
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(DataError, match="cannot read the graph archive"):
        _read_npz_graph(tmp_path / "bad.npz")


def test_npz_graphs_are_read_without_pickle(tmp_path):
    np.savez(
        tmp_path / "g.npz",
        node_features=np.ones((3, 2)),
        node_labels=np.array([0, 1, 1]),
        edges=np.array([[0, 1], [1, 2]]),
    )
    features, labels, edges = _read_npz_graph(tmp_path / "g.npz")
    assert features.dtype == np.float32 and labels.tolist() == [0, 1, 1] and edges.tolist() == [[0, 1], [1, 2]]


@needs_mirror
@pytest.mark.parametrize(
    "name,nodes,edges,features,classes",
    [
        ("cora", 2708, 5278, 1433, 7),
        ("citeseer", 3327, 4552, 3703, 6),
        ("chameleon", 2277, 31371, 2325, 5),
        ("squirrel", 5201, 198353, 2089, 5),
    ],
)
def test_real_graphs_have_the_published_sizes(tmp_path_factory, name, nodes, edges, features, classes):
    graph = DataSource(tmp_path_factory.getbasetemp() / "graph-cache", MIRROR).graph(name)
    assert graph.num_nodes == nodes and len(graph.edges) == edges and graph.features.shape == (nodes, features)
    assert set(graph.labels.tolist()) == set(range(classes)) and len(graph.class_names) == classes
    check_edges(graph.edges, nodes)  # undirected, unique, no self-loops


# ---------------------------------------------------------------------------------------------------------------------
# Cora and CiteSeer: read without unpickling, equal to torch_geometric's Planetoid


@needs_mirror
@pytest.mark.parametrize("name,pyg_name", [("cora", "Cora"), ("citeseer", "CiteSeer")])
def test_planetoid_graphs_equal_torch_geometrics_planetoid(tmp_path, name, pyg_name):
    """Features (bit for bit), labels and edge set equal what torch_geometric's Planetoid makes of the same verified
    files (the reference unpickles them: it runs on a temporary copy); the final graph is the one the library built
    through Planetoid before, so the chapter-4 numbers are unchanged."""
    planetoid = pytest.importorskip("torch_geometric.datasets").Planetoid
    folder = fetch_dataset(name, tmp_path / "cache", MIRROR)
    raw = tmp_path / "pyg" / pyg_name / "raw"
    raw.mkdir(parents=True)
    for file_name in DATASETS[name].file_names:
        shutil.copyfile(folder / file_name, raw / file_name)
    reference = planetoid(str(tmp_path / "pyg"), pyg_name)[0]

    features, labels, pairs = _read_planetoid(folder, name)
    assert features.dtype == np.float32 and features.shape == tuple(reference.x.shape)
    assert features.tobytes() == reference.x.numpy().tobytes()
    assert labels.dtype == np.int64 and np.array_equal(labels, reference.y.numpy())
    directed = {(u, v) for u, v in pairs.tolist() if u != v}
    assert directed == {(u, v) for u, v in reference.edge_index.numpy().T.tolist()}

    graph = load_graph(name, tmp_path / "cache", None)  # what the library used to build from Planetoid's output
    assert graph.features.tobytes() == reference.x.numpy().astype(np.float32).tobytes()
    assert np.array_equal(graph.labels, reference.y.numpy().astype(np.int64))
    assert np.array_equal(graph.edges, undirected_edges(reference.edge_index.numpy().T))
    test_index = _read_test_index(folder / f"ind.{name}.test.index")
    isolated = np.setdiff1d(np.arange(test_index.min(), test_index.max() + 1), test_index)
    assert len(isolated) == {"cora": 0, "citeseer": 15}[name]  # CiteSeer's test vertices without features
    assert not features[isolated].any() and not reference.x.numpy()[isolated].any()


def test_planetoid_assembly_reorders_test_rows_and_fills_missing_test_ids_with_zeros():
    allx = np.array([[1.0, 0], [0, 1]], dtype=np.float32)
    ally = np.array([[1, 0, 0], [0, 1, 0]])
    tx = np.array([[10.0, 0], [20, 0], [30, 0]], dtype=np.float32)  # test rows in test-index order
    ty = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]])
    features, labels = assemble_planetoid(allx, tx, ally, ty, np.array([5, 2, 3]), "toy")
    # test ids 2..5 with 4 missing: sorted ids take tx's rows in turn (2 <- 10, 3 <- 20, 5 <- 30, 4 <- zeros), then
    # vertex test_index[k] takes the row of sorted(test_index)[k]: 5 <- row of 2, 2 <- row of 3, 3 <- row of 5
    assert features[:, 0].tolist() == [1, 0, 20, 30, 0, 10]
    assert labels.tolist() == [0, 1, 1, 0, 0, 2]  # an all-zero label row counts as class 0
    with pytest.raises(DataError, match="toy: the Planetoid blocks .* do not fit together"):
        assemble_planetoid(allx, tx[:2], ally, ty, np.array([5, 2, 3]), "toy")
    with pytest.raises(DataError, match="do not fit together"):
        assemble_planetoid(allx, tx, ally, ty, np.array([2, 2, 3]), "toy")  # a repeated test id
    with pytest.raises(DataError, match="test ids 5..7 outside the 5 vertices"):
        assemble_planetoid(allx, tx, ally, ty, np.array([7, 5, 6]), "toy")
    with pytest.raises(DataError, match="test ids -1..1 outside the 5 vertices"):
        assemble_planetoid(allx, tx, ally, ty, np.array([0, 1, -1]), "toy")


# ---------------------------------------------------------------------------------------------------------------------
# DBLP, Amazon Computers, ogbn-arxiv: no published checksum, not in the offline mirror; synthetic files in their formats
# are served at their canonical URLs and loaded through load_graph, like a real download.

UNPUBLISHED_GRAPHS = {
    "dblp": ("https://github.com/abojchevski/graph2gauss/raw/master/data/dblp.npz", "gnn-benchmark-npz", 4),
    "amazon-computers": (
        "https://github.com/shchur/gnn-benchmark/raw/master/data/npz/amazon_electronics_computers.npz",
        "gnn-benchmark-npz",
        10,
    ),
    "ogbn-arxiv": ("http://snap.stanford.edu/ogb/data/nodeproppred/arxiv.zip", "ogbn-zip", 40),
}
#: directed pairs with a reversed duplicate (1, 0), a repeat (1, 2) and a self-loop (2, 2): 3 undirected edges remain
RAW_PAIRS = [(0, 1), (1, 0), (1, 2), (1, 2), (2, 2), (3, 0)]
CLEAN_EDGES = [[0, 1], [0, 3], [1, 2]]


def serve(payloads: dict[str, bytes]):
    """An ``urlopen`` stand-in serving ``payloads`` by URL; every other URL is unreachable."""

    def opener(url: str, timeout: float | None = None) -> io.BytesIO:
        if url in payloads:
            return io.BytesIO(payloads[url])
        raise urllib.error.URLError(f"offline test network: {url}")

    return opener


def gnn_benchmark_npz(path: Path, labels: list[int], class_names=None) -> bytes:
    """A graph2gauss / gnn-benchmark .npz of 4 vertices: CSR adjacency of RAW_PAIRS (plus an explicit zero entry,
    which is no edge), CSR features with row k = (k, 0, 0.5)."""
    rows, cols = np.array([*RAW_PAIRS, (2, 3)]).T
    adjacency = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(4, 4))  # the repeat becomes a weight 2
    row_of_entry = np.repeat(np.arange(4), np.diff(adjacency.indptr))
    adjacency.data[(row_of_entry == 2) & (adjacency.indices == 3)] = 0.0  # stored, but no edge
    features = sp.csr_matrix(np.array([[k, 0, 0.5] for k in range(4)], dtype=np.float64))
    arrays = {
        "adj_data": adjacency.data,
        "adj_indices": adjacency.indices,
        "adj_indptr": adjacency.indptr,
        "adj_shape": np.array(adjacency.shape),
        "attr_data": features.data,
        "attr_indices": features.indices,
        "attr_indptr": features.indptr,
        "attr_shape": np.array(features.shape),
        "labels": np.array(labels),
    }
    if class_names is not None:
        arrays["class_names"] = class_names
    np.savez(path, **arrays)
    return path.read_bytes()


def ogbn_zip(path: Path, labels: list[int], class_rows: list[str] | None = None) -> bytes:
    """An OGB node-property-prediction zip of 4 vertices laid out like arxiv.zip (RAW_PAIRS as citations,
    2 features per vertex: (k, -k / 2))."""

    def csv_gz(lines: list[str]) -> bytes:
        return gzip.compress("".join(f"{line}\n" for line in lines).encode())

    members = {
        "arxiv/raw/edge.csv.gz": csv_gz([f"{u},{v}" for u, v in RAW_PAIRS]),
        "arxiv/raw/node-feat.csv.gz": csv_gz([f"{k:.1f},{-k / 2:.6f}" for k in range(4)]),
        "arxiv/raw/node-label.csv.gz": csv_gz([str(label) for label in labels]),
        "arxiv/raw/node_year.csv.gz": csv_gz(["2019"] * 4),
        "arxiv/split/time/train.csv.gz": csv_gz(["0", "1"]),
    }
    if class_rows is not None:
        members["arxiv/mapping/labelidx2arxivcategeory.csv.gz"] = csv_gz(["label idx,arxiv category", *class_rows])
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path.read_bytes()


def test_new_graph_datasets_are_registered_with_their_canonical_urls_and_no_published_checksum():
    for name, (url, reader, classes) in UNPUBLISHED_GRAPHS.items():
        spec = DATASETS[name]
        (remote,) = spec.files
        assert remote.urls == (url,) and remote.md5 is None and not remote.gzipped
        assert remote.name == remote.mirror_name == url.rsplit("/", 1)[1]
        assert spec.reader == reader and len(spec.classes) == classes
        assert mirror_path(Path("/m"), spec, remote) == Path("/m") / name / remote.name


@pytest.mark.parametrize("name", ["dblp", "amazon-computers"])
def test_gnn_benchmark_npz_loads_into_a_clean_graph(tmp_path, name):
    url = UNPUBLISHED_GRAPHS[name][0]
    labels = [0, 3, 1, 3]
    data = gnn_benchmark_npz(tmp_path / "g.npz", labels)
    graph = load_graph(name, tmp_path / "cache", None, opener=serve({url: data}))
    assert graph.edges.tolist() == CLEAN_EDGES and graph.edges.dtype == np.int64
    check_edges(graph.edges, graph.num_nodes)
    assert graph.features.dtype == np.float32 and graph.features.shape == (4, 3)
    np.testing.assert_array_equal(graph.features[:, 0], np.arange(4))
    assert graph.labels.dtype == np.int64 and graph.labels.tolist() == labels
    assert graph.class_names == DATASETS[name].classes  # numbered: the file names none
    assert json.loads((tmp_path / "cache" / name / MANIFEST).read_text())["files"][0]["source"] == url


def test_gnn_benchmark_class_names_are_read_without_pickle(tmp_path):
    names = np.array(["Databases", "Data Mining", "AI", "Computer Vision"])
    url = UNPUBLISHED_GRAPHS["dblp"][0]
    graph = load_graph(
        "dblp",
        tmp_path / "cache",
        None,
        opener=serve({url: gnn_benchmark_npz(tmp_path / "g.npz", [0, 1, 2, 3], names)}),
    )
    assert graph.class_names == tuple(names)
    # pickled class names (an object array) are never unpickled: the reader reports none (numbered names are used)
    gnn_benchmark_npz(tmp_path / "pickled.npz", [0, 1, 2, 3], np.array(list(names), dtype=object))
    assert _read_gnn_benchmark_npz(tmp_path / "pickled.npz")[3] == ()


def test_a_corrupt_gnn_benchmark_npz_is_a_data_error(tmp_path):
    np.savez(tmp_path / "no-adjacency.npz", labels=np.array([0]))
    with pytest.raises(DataError, match="cannot read the graph archive .*no-adjacency.npz"):
        _read_gnn_benchmark_npz(tmp_path / "no-adjacency.npz")
    (tmp_path / "pointer.npz").write_bytes(b"version https://git-lfs.github.com/spec/v1\n")  # an LFS pointer
    with pytest.raises(DataError, match="delete it to fetch it again"):
        _read_gnn_benchmark_npz(tmp_path / "pointer.npz")


def test_labels_outside_the_classes_are_a_data_error(tmp_path):
    url = UNPUBLISHED_GRAPHS["dblp"][0]
    with pytest.raises(DataError, match="labels 0..4 do not index its 4 classes"):
        load_graph(
            "dblp", tmp_path / "cache", None, opener=serve({url: gnn_benchmark_npz(tmp_path / "g.npz", [0, 1, 2, 4])})
        )


def test_ogbn_zip_loads_into_a_clean_graph_with_arxiv_category_names(tmp_path):
    url = UNPUBLISHED_GRAPHS["ogbn-arxiv"][0]
    labels = [5, 0, 39, 5]
    rows = [f"{k},arxiv cs {'ai' if k == 0 else f'c{k}'}" for k in range(40)]
    data = ogbn_zip(tmp_path / "arxiv.zip", labels, rows)
    graph = load_graph("ogbn-arxiv", tmp_path / "cache", None, opener=serve({url: data}))
    assert graph.edges.tolist() == CLEAN_EDGES  # directed citations made undirected, unique, loop-free
    assert graph.features.dtype == np.float32 and graph.features.tolist() == [[k, -k / 2] for k in range(4)]
    assert graph.labels.dtype == np.int64 and graph.labels.tolist() == labels
    assert len(graph.class_names) == 40 and graph.class_names[:2] == ("cs.AI", "cs.C1")


def test_ogbn_zip_without_class_names_or_members(tmp_path):
    ogbn_zip(tmp_path / "a.zip", [1, 2, 3, 0])
    features, labels, pairs, names = _read_ogbn_zip(tmp_path / "a.zip")
    assert names == () and labels.tolist() == [1, 2, 3, 0] and pairs.tolist() == [list(p) for p in RAW_PAIRS]
    assert features.shape == (4, 2)
    with zipfile.ZipFile(tmp_path / "b.zip", "w") as archive:
        archive.writestr("arxiv/raw/edge.csv.gz", gzip.compress(b"0,1\n"))
    with pytest.raises(DataError, match="lacks raw/node-feat.csv.gz, raw/node-label.csv.gz"):
        _read_ogbn_zip(tmp_path / "b.zip")
    (tmp_path / "c.zip").write_bytes(b"<html>not found</html>")
    with pytest.raises(DataError, match="cannot read the OGB archive"):
        _read_ogbn_zip(tmp_path / "c.zip")


@pytest.mark.parametrize("name", sorted(UNPUBLISHED_GRAPHS))
def test_new_graph_datasets_offline_fail_naming_the_dataset_and_the_url(tmp_path, name):
    url = UNPUBLISHED_GRAPHS[name][0]
    with pytest.raises(DataError) as info:
        load_graph(name, tmp_path / "cache", tmp_path / "empty-mirror", opener=serve({}))
    message = str(info.value)
    assert f"dataset '{name}' is not available" in message and url in message and "offline test network" in message
    assert "\n" not in message
