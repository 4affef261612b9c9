"""Nothing in the data cache is ever unpickled: a pickle payload planted in any file the project reads (or in the
processed folder torch_geometric's Planetoid once read) never runs; the file is fetched again and verified, or the
user gets a one-line DataError. Truncated raw files heal the same way."""

from __future__ import annotations

import builtins
import logging
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rankrepro.core.errors import DataError
from rankrepro.data.graph_datasets import _read_npz_graph, _read_test_index, load_graph
from rankrepro.data.pickle_free import read_pickled_data
from rankrepro.data.registry import DATASETS, MANIFEST, fetch_dataset, md5_file
from rankrepro.data.sources import DataSource

MIRROR = Path(__file__).resolve().parents[3] / "shared" / "datasets"
GRAPHS = ("cora", "citeseer", "chameleon")
PLANETOID_PARTS = ("x", "y", "tx", "ty", "allx", "ally", "graph", "test.index")

pytestmark = pytest.mark.skipif(
    not all((MIRROR / folder).is_dir() for folder in ("planetoid", "heterophilous", "mnist")),
    reason="offline dataset mirror not present",
)


class Payload:
    """Unpickling this creates the file ``marker`` (what an attacker's command would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


def plant(path: Path, marker: Path) -> None:
    """Write a payload to ``path`` in the form a reader of that path would expect: ``torch.save`` for ``.pt``, an
    object array for ``.npz``, a plain pickle otherwise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".pt":
        torch.save(Payload(marker), path)
    elif path.suffix == ".npz":
        np.savez(
            path,
            node_features=np.array([Payload(marker)], dtype=object),
            node_labels=np.array([0]),
            edges=np.zeros((0, 2), dtype=np.int64),
        )
    else:
        path.write_bytes(pickle.dumps(Payload(marker), protocol=2))


def test_the_planted_payloads_are_live(tmp_path):
    """Each planted form runs its payload when loaded the unsafe way (so its not running below means something)."""
    for suffix, unsafe_load in [
        (".pt", lambda p: torch.load(p, weights_only=False)),
        (".npz", lambda p: np.load(p, allow_pickle=True)["node_features"]),
        ("", lambda p: pickle.loads(p.read_bytes())),
    ]:
        marker = tmp_path / f"marker{suffix}"
        plant(tmp_path / f"planted{suffix}", marker)
        unsafe_load(tmp_path / f"planted{suffix}")
        assert marker.exists()


@pytest.fixture(scope="module")
def verified_cache(tmp_path_factory) -> Path:
    """A data cache with the graphs and MNIST fetched (and verified) once from the mirror."""
    cache = tmp_path_factory.mktemp("verified-cache")
    for name in (*GRAPHS, "mnist"):
        fetch_dataset(name, cache, MIRROR)
    return cache


@pytest.fixture(scope="module")
def clean_graphs(verified_cache):
    return {name: load_graph(name, verified_cache, MIRROR) for name in GRAPHS}


@pytest.fixture
def nothing_unpickles(monkeypatch):
    """Every unpickling entry point fails the test if called."""

    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled")

    for module, attribute in [(pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")]:
        monkeypatch.setattr(module, attribute, refuse)


def same_graph(a, b) -> bool:
    return (
        a.features.tobytes() == b.features.tobytes()
        and a.features.shape == b.features.shape
        and np.array_equal(a.labels, b.labels)
        and np.array_equal(a.edges, b.edges)
    )


#: (dataset, path below its cache folder) of every file the project reads, and of Planetoid's old processed cache
PLANTED = [
    ("cora", "pyg/Cora/processed/data.pt"),
    ("citeseer", "pyg/CiteSeer/processed/data.pt"),
    ("cora", "pyg/Cora/raw/ind.cora.graph"),
    *(("cora", f"ind.cora.{part}") for part in PLANETOID_PARTS),
    *(("citeseer", f"ind.citeseer.{part}") for part in PLANETOID_PARTS),
    ("chameleon", "chameleon.npz"),
    ("cora", MANIFEST),
    ("chameleon", MANIFEST),
    ("cora", "stray.pkl"),
    ("cora", "processed/data.pt"),
]


@pytest.mark.parametrize("name,relative", PLANTED)
def test_a_payload_planted_in_the_graph_cache_never_runs(
    verified_cache, clean_graphs, tmp_path, caplog, nothing_unpickles, name, relative
):
    cache = Path(shutil.copytree(verified_cache, tmp_path / "cache"))
    marker = tmp_path / "marker"
    target = cache / name / relative
    plant(target, marker)
    with caplog.at_level(logging.INFO, logger="rankrepro"):
        graph = DataSource(cache, MIRROR).graph(name)
    assert not marker.exists()
    assert same_graph(graph, clean_graphs[name])
    spec = DATASETS[name]
    if relative in spec.file_names:  # a registry file: detected by its MD5, fetched again from the mirror, verified
        assert md5_file(target) == spec.file(relative).md5
        assert any(
            str(target) in record.getMessage() and "fetching it again" in record.getMessage()
            for record in caplog.records
        )
    if relative.startswith("pyg/"):  # torch_geometric's old cache folder is removed, unread
        assert not (cache / name / "pyg").exists()


def test_a_payload_planted_in_an_image_dataset_never_runs(verified_cache, tmp_path, nothing_unpickles):
    cache = tmp_path / "cache"
    shutil.copytree(verified_cache / "mnist", cache / "mnist")
    marker = tmp_path / "marker"
    target = cache / "mnist" / "t10k-labels-idx1-ubyte"
    plant(target, marker)
    images = DataSource(cache, MIRROR).image_classification("mnist")
    assert not marker.exists() and len(images.test_labels) == 10_000
    assert md5_file(target) == DATASETS["mnist"].file(target.name).md5


def test_the_readers_reject_payloads_in_one_line(tmp_path):
    """Read directly (as if the checksum had been bypassed), a payload is a one-line DataError naming the file."""
    marker = tmp_path / "marker"
    for path, read in [
        (tmp_path / "ind.cora.allx", read_pickled_data),
        (tmp_path / "ind.cora.graph", read_pickled_data),
        (tmp_path / "chameleon.npz", _read_npz_graph),
        (tmp_path / "ind.cora.test.index", _read_test_index),
    ]:
        plant(path, marker)
        with pytest.raises(DataError, match=str(path)) as info:
            read(path)
        assert "\n" not in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("part", PLANETOID_PARTS)
def test_a_truncated_raw_file_heals_by_fetching_it_again(verified_cache, clean_graphs, tmp_path, caplog, part):
    cache = Path(shutil.copytree(verified_cache / "citeseer", tmp_path / "cache" / "citeseer")).parent
    target = cache / "citeseer" / f"ind.citeseer.{part}"
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    with caplog.at_level(logging.WARNING, logger="rankrepro"):
        graph = load_graph("citeseer", cache, MIRROR)
    assert same_graph(graph, clean_graphs["citeseer"])
    assert md5_file(target) == DATASETS["citeseer"].file(target.name).md5
    assert any(str(target) in record.getMessage() for record in caplog.records)


def test_a_truncated_raw_file_without_a_source_is_one_line(verified_cache, tmp_path):
    cache = Path(shutil.copytree(verified_cache / "cora", tmp_path / "cache" / "cora")).parent
    target = cache / "cora" / "ind.cora.graph"
    target.write_bytes(target.read_bytes()[:1000])

    def offline(url, timeout=None):
        raise OSError(f"offline: {url}")

    with pytest.raises(DataError, match="dataset 'cora' is not available: file 'ind.cora.graph'") as info:
        load_graph("cora", cache, tmp_path / "no-mirror", opener=offline)
    assert "\n" not in str(info.value) and not target.exists()  # the bad copy is gone: the next run fetches it


def test_loading_planetoid_imports_neither_torch_nor_torch_geometric(verified_cache):
    code = (
        "import sys; from rankrepro.data.graph_datasets import load_graph; "
        f"graph = load_graph('citeseer', {str(verified_cache)!r}, None); assert graph.num_nodes == 3327; "
        "print(sorted(m for m in ('torch', 'torch_geometric') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"
