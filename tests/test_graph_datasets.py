"""Graph datasets of the data layer: registry entries, the Planetoid and .npz readers, and the real graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rankrepro.datasets import DATASETS, DataSource, mirror_path
from rankrepro.errors import DataError
from rankrepro.graph_datasets import _read_npz_graph, load_graph
from rankrepro.graphs import check_edges

MIRROR = Path(__file__).resolve().parents[2] / "shared" / "datasets"
needs_mirror = pytest.mark.skipif(not (MIRROR / "planetoid").is_dir(), reason="offline dataset mirror not present")


def test_graph_datasets_live_in_the_mirror_folders_of_their_family():
    assert mirror_path(Path("/m"), DATASETS["cora"], DATASETS["cora"].files[0]) == Path("/m/planetoid/ind.cora.x")
    assert mirror_path(Path("/m"), DATASETS["squirrel"], DATASETS["squirrel"].files[0]) == Path(
        "/m/heterophilous/squirrel.npz")
    assert all(len(DATASETS[name].files) == 8 for name in ("cora", "citeseer"))


def test_a_non_graph_dataset_or_a_corrupt_archive_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not a graph dataset"):
        load_graph("mnist", tmp_path, None)
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(DataError, match="cannot read the graph archive"):
        _read_npz_graph(tmp_path / "bad.npz")


def test_npz_graphs_are_read_without_pickle(tmp_path):
    np.savez(tmp_path / "g.npz", node_features=np.ones((3, 2)), node_labels=np.array([0, 1, 1]),
             edges=np.array([[0, 1], [1, 2]]))
    features, labels, edges = _read_npz_graph(tmp_path / "g.npz")
    assert features.dtype == np.float32 and labels.tolist() == [0, 1, 1] and edges.tolist() == [[0, 1], [1, 2]]


@needs_mirror
@pytest.mark.parametrize("name,nodes,edges,features,classes", [
    ("cora", 2708, 5278, 1433, 7), ("citeseer", 3327, 4552, 3703, 6),
    ("chameleon", 2277, 31371, 2325, 5), ("squirrel", 5201, 198353, 2089, 5)])
def test_real_graphs_have_the_published_sizes(tmp_path_factory, name, nodes, edges, features, classes):
    graph = DataSource(tmp_path_factory.getbasetemp() / "graph-cache", MIRROR).graph(name)
    assert graph.num_nodes == nodes and len(graph.edges) == edges and graph.features.shape == (nodes, features)
    assert set(graph.labels.tolist()) == set(range(classes)) and len(graph.class_names) == classes
    check_edges(graph.edges, nodes)  # undirected, unique, no self-loops
