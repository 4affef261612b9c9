"""The data layer: IDX parsing, checksum-verified fetching (cache, mirror, download), errors, and the real data.

The network is mocked at its boundary only (the ``opener`` of :func:`fetch_dataset`, or ``urllib.request.urlopen``
itself): every byte served comes from the offline mirror ``../shared/datasets`` beside the repository. Tests that need
the mirror are skipped cleanly when it is absent.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from rankrepro import cli
from rankrepro.core.errors import DataError
from rankrepro.data.image_datasets import IDX_FILES, load_image_classification, read_idx
from rankrepro.data.registry import (
    DATASETS,
    DOWNLOAD_TIMEOUT,
    MANIFEST,
    MIRROR_ENV,
    OFFLINE_ENV,
    downloads_disabled,
    fetch_dataset,
    get_dataset,
    md5_file,
    resolve_mirror,
)

MIRROR = Path(__file__).resolve().parents[3] / "shared" / "datasets"
needs_mirror = pytest.mark.skipif(
    not (MIRROR / "mnist").is_dir() or not (MIRROR / "fashion-mnist").is_dir(),
    reason=f"offline dataset mirror {MIRROR} is absent",
)


class FakeNetwork:
    """Stands in for ``urlopen``: serves given bytes for given URLs, raises URLError for every other URL."""

    def __init__(self, payloads: dict[str, bytes] | None = None) -> None:
        self.payloads = payloads or {}
        self.calls: list[tuple[str, float | None]] = []

    def __call__(self, url: str, timeout: float | None = None) -> io.BytesIO:
        self.calls.append((url, timeout))
        if url in self.payloads:
            return io.BytesIO(self.payloads[url])
        raise urllib.error.URLError(f"offline test network: {url}")

    @property
    def urls(self) -> list[str]:
        return [url for url, _ in self.calls]


def no_network(url: str, timeout: float | None = None):
    raise AssertionError(f"unexpected download of {url}")


def files_under(folder: Path) -> list[str]:
    """Every file below ``folder`` (relative names, sorted), temporary files included."""
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


def mirror_bytes(dataset: str, name: str) -> bytes:
    return (MIRROR / DATASETS[dataset].folder / DATASETS[dataset].file(name).mirror_name).read_bytes()


@pytest.fixture(scope="session")
def real_cache(tmp_path_factory) -> Path:
    """A data cache holding both real datasets, fetched once from the mirror."""
    if not (MIRROR / "mnist").is_dir() or not (MIRROR / "fashion-mnist").is_dir():
        pytest.skip(f"offline dataset mirror {MIRROR} is absent")
    cache = tmp_path_factory.mktemp("data-cache")
    for name in ("mnist", "fashion-mnist"):
        fetch_dataset(name, cache, MIRROR, opener=no_network)
    return cache


def copy_cached(real_cache: Path, dataset: str, cache: Path) -> Path:
    """Copy one dataset's verified cache folder into ``cache``; returns the copy."""
    return Path(shutil.copytree(real_cache / dataset, cache / dataset))


# ---------------------------------------------------------------------------------------------------------------------
# IDX parsing


def idx(type_code: int, shape: tuple[int, ...], payload: bytes) -> bytes:
    return bytes([0, 0, type_code, len(shape)]) + b"".join(size.to_bytes(4, "big") for size in shape) + payload


def test_read_idx_ubyte_1d(tmp_path):
    path = tmp_path / "labels-idx1-ubyte"
    path.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x04\x07\x00\x09\xff")
    array = read_idx(path)
    assert array.dtype == np.uint8
    assert array.tolist() == [7, 0, 9, 255]


def test_read_idx_ubyte_3d(tmp_path):
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(idx(0x08, (2, 3, 2), bytes(range(12))))
    array = read_idx(path)
    assert array.shape == (2, 3, 2) and array.dtype == np.uint8
    np.testing.assert_array_equal(array, np.arange(12, dtype=np.uint8).reshape(2, 3, 2))
    assert array.flags.writeable


def test_read_idx_int32_big_endian(tmp_path):
    path = tmp_path / "ints-idx2-int"
    path.write_bytes(idx(0x0C, (2, 2), b"\x00\x00\x00\x01\xff\xff\xff\xfe\x00\x01\x00\x00\x7f\xff\xff\xff"))
    array = read_idx(path)
    assert array.dtype == np.int32 and array.dtype.isnative
    assert array.tolist() == [[1, -2], [65536, 2**31 - 1]]


def test_read_idx_float64(tmp_path):
    path = tmp_path / "doubles-idx1-double"
    path.write_bytes(idx(0x0E, (2,), np.array([0.5, -3.25], dtype=">f8").tobytes()))
    assert read_idx(path).tolist() == [0.5, -3.25]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "bad magic"),
        (b"\x00\x00\x08", "bad magic"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "type code 0x07"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x04\x01\x02\x03", "truncated"),
        (b"\x00\x00\x0c\x01\x00\x00\x00\x01\x00\x00\x01", "truncated"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x01\x01\x02", "longer than its header says"),
    ],
    ids=["magic", "too-short", "type", "header-truncated", "data-truncated", "int32-truncated", "trailing-bytes"],
)
def test_read_idx_rejects_corrupt_files(tmp_path, content, fragment):
    path = tmp_path / "corrupt-idx"
    path.write_bytes(content)
    with pytest.raises(DataError, match=fragment) as info:
        read_idx(path)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------------------------------------------------------------
# Registry and mirror setting


def test_registry_entries_are_well_formed():
    assert {"mnist", "fashion-mnist", "cifar-10"} <= set(DATASETS)
    assert {spec.reader for spec in DATASETS.values()} <= {
        "idx",
        "cifar-binary",
        "planetoid",
        "npz-graph",
        "gnn-benchmark-npz",
        "ogbn-zip",
    }
    for name, spec in DATASETS.items():
        assert spec.name == name and spec.folder == name  # the data_fetch rule writes <cache>/<name>/MANIFEST.json
        assert len(set(spec.file_names)) == len(spec.files)
        for remote in spec.files:
            assert remote.md5 is None or (len(remote.md5) == 32 and int(remote.md5, 16) >= 0)  # None: unpublished
            # gzip streams are stored decompressed (name = mirror name without .gz); others verbatim under their name
            assert remote.mirror_name == (f"{remote.name}.gz" if remote.gzipped else remote.name)
            assert all(url.startswith(("https://", "http://")) for url in remote.urls)
    assert get_dataset("mnist").file("t10k-labels-idx1-ubyte").urls == (
        "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz",
        "https://yann.lecun.com/exdb/mnist/t10k-labels-idx1-ubyte.gz",
    )


def test_unknown_dataset_lists_the_known_ones(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'cifar-11'.*mnist, fashion-mnist"):
        fetch_dataset("cifar-11", tmp_path, None, opener=no_network)
    assert not any(tmp_path.iterdir())


def test_resolve_mirror_precedence(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    assert resolve_mirror(None) is None
    assert resolve_mirror("") is None
    assert resolve_mirror("/data/mirror") == Path("/data/mirror")
    assert resolve_mirror("rel/mirror") == tmp_path / "rel" / "mirror"  # relative to the current directory
    monkeypatch.setenv(MIRROR_ENV, "/from/env")
    assert resolve_mirror("/data/mirror") == Path("/from/env")  # the environment variable overrides the config
    assert resolve_mirror(None) == Path("/from/env")
    monkeypatch.setenv(MIRROR_ENV, "")
    assert resolve_mirror("/data/mirror") == Path("/data/mirror")  # empty = unset
    assert resolve_mirror(None) is None


def test_data_layer_imports_neither_torch_nor_snakemake():
    code = (
        "import sys, rankrepro.data.registry, rankrepro.data.image_datasets, rankrepro.data.sources; "
        "print(sorted(m for m in ('torch', 'snakemake') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------------------------------
# Fetching: mirror, cache, download


@needs_mirror
def test_fetch_from_mirror_then_reuse_cache(tmp_path):
    cache = tmp_path / "cache"
    folder = fetch_dataset("mnist", cache, MIRROR, opener=no_network)
    assert folder == cache / "mnist"
    assert files_under(folder) == sorted([*IDX_FILES, MANIFEST])
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["dataset"] == "mnist"
    for entry, remote in zip(manifest["files"], DATASETS["mnist"].files, strict=True):
        assert entry["name"] == remote.name and entry["md5"] == remote.md5 == md5_file(folder / remote.name)
        assert entry["source"] == f"mirror {MIRROR / 'mnist' / remote.mirror_name}"
        assert entry["bytes"] == (folder / remote.name).stat().st_size
    before = {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}

    # second fetch: no mirror, no network; the verified cache is used as it is (manifest untouched)
    assert fetch_dataset("mnist", cache, None, opener=no_network) == folder
    assert {path.name: path.stat().st_mtime_ns for path in folder.iterdir()} == before


@needs_mirror
def test_download_falls_through_to_the_second_url(tmp_path):
    spec = DATASETS["mnist"]
    network = FakeNetwork({remote.urls[1]: mirror_bytes("mnist", remote.name) for remote in spec.files})
    folder = fetch_dataset("mnist", tmp_path / "cache", tmp_path / "no-such-mirror", opener=network)
    assert network.urls == [url for remote in spec.files for url in remote.urls]  # first URL fails, then second
    assert {timeout for _, timeout in network.calls} == {DOWNLOAD_TIMEOUT}
    sources = {entry["name"]: entry["source"] for entry in json.loads((folder / MANIFEST).read_text())["files"]}
    assert sources == {remote.name: remote.urls[1] for remote in spec.files}
    assert all(md5_file(folder / remote.name) == remote.md5 for remote in spec.files)


@needs_mirror
def test_default_opener_is_urllib_urlopen(tmp_path, monkeypatch, real_cache):
    # only the missing file is downloaded; the verified cached ones are kept
    folder = copy_cached(real_cache, "fashion-mnist", tmp_path / "cache")
    (folder / "train-labels-idx1-ubyte").unlink()
    (folder / MANIFEST).unlink()
    remote = DATASETS["fashion-mnist"].file("train-labels-idx1-ubyte")
    network = FakeNetwork({remote.urls[0]: mirror_bytes("fashion-mnist", remote.name)})
    monkeypatch.setattr(urllib.request, "urlopen", network)
    fetch_dataset("fashion-mnist", tmp_path / "cache", None)
    assert network.urls == [remote.urls[0]]
    assert md5_file(folder / remote.name) == remote.md5
    assert (folder / MANIFEST).is_file()


@needs_mirror
def test_checksum_mismatch_stores_nothing_then_falls_back_to_a_good_source(tmp_path, caplog):
    remote = DATASETS["mnist"].file("train-images-idx3-ubyte")  # the first file fetched
    altered = bytearray(gzip.decompress(mirror_bytes("mnist", "t10k-labels-idx1-ubyte")))  # a valid IDX, wrong bytes
    altered[5000] ^= 0xFF
    bad_mirror = tmp_path / "bad-mirror"
    (bad_mirror / "mnist").mkdir(parents=True)
    (bad_mirror / "mnist" / remote.mirror_name).write_bytes(gzip.compress(bytes(altered)))
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as info:
        fetch_dataset("mnist", cache, bad_mirror, opener=FakeNetwork())
    message = str(info.value)
    for fragment in (
        "checksum mismatch",
        "'mnist'",
        "'train-images-idx3-ubyte'",
        remote.md5,
        hashlib.md5(altered).hexdigest(),
        str(bad_mirror / "mnist" / remote.mirror_name),
    ):
        assert fragment in message
    assert "\n" not in message
    assert files_under(cache) == []  # no temporary, no partial, no manifest

    # a good download after the bad mirror file: stored, with a warning naming the mismatch
    network = FakeNetwork({url: mirror_bytes("mnist", r.name) for r in DATASETS["mnist"].files for url in r.urls[:1]})
    with caplog.at_level(logging.INFO, logger="rankrepro"):
        fetch_dataset("mnist", cache, bad_mirror, opener=network)
    assert md5_file(cache / "mnist" / remote.name) == remote.md5
    assert any(
        record.levelno == logging.WARNING and "checksum mismatch" in record.getMessage() for record in caplog.records
    )


@needs_mirror
def test_truncated_gzip_in_mirror_leaves_no_partial_file(tmp_path):
    remote = DATASETS["mnist"].file("train-images-idx3-ubyte")
    bad_mirror = tmp_path / "bad-mirror"
    (bad_mirror / "mnist").mkdir(parents=True)
    (bad_mirror / "mnist" / remote.mirror_name).write_bytes(mirror_bytes("mnist", remote.name)[:200_000])
    with pytest.raises(DataError, match="not available.*unreadable"):
        fetch_dataset("mnist", tmp_path / "cache", bad_mirror, opener=FakeNetwork())
    assert files_under(tmp_path / "cache") == []


@needs_mirror
def test_tampered_cache_is_detected_and_replaced(tmp_path, real_cache, caplog):
    folder = copy_cached(real_cache, "mnist", tmp_path / "cache")
    target = folder / "t10k-labels-idx1-ubyte"
    data = bytearray(target.read_bytes())
    data[100] = (data[100] + 1) % 10
    target.write_bytes(bytes(data))

    # unavailable replacement: the tampered file is removed, the manifest too, and loading fails with a DataError
    with pytest.raises(DataError, match="'mnist' is not available: file 't10k-labels-idx1-ubyte'"):
        load_image_classification("mnist", tmp_path / "cache", None, opener=FakeNetwork())
    assert files_under(folder) == sorted(IDX_FILES[:3])

    target.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="rankrepro"):
        fetch_dataset("mnist", tmp_path / "cache", MIRROR, opener=no_network)
    assert md5_file(target) == DATASETS["mnist"].file(target.name).md5
    assert any(
        "t10k-labels-idx1-ubyte" in record.getMessage() and "expected" in record.getMessage()
        for record in caplog.records
    )
    sources = {entry["name"]: entry["source"] for entry in json.loads((folder / MANIFEST).read_text())["files"]}
    assert sources[target.name].startswith("mirror ")


def test_unavailable_dataset_says_how_to_supply_it(tmp_path):
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    network = FakeNetwork()
    with pytest.raises(DataError) as info:
        fetch_dataset("mnist", tmp_path / "cache", empty, opener=network)
    message = str(info.value)
    remote = DATASETS["mnist"].file("train-images-idx3-ubyte")
    for fragment in (
        "dataset 'mnist'",
        "data_mirror",
        MIRROR_ENV,
        "<mirror>/mnist/train-images-idx3-ubyte.gz",
        str(empty / "mnist" / remote.mirror_name),
        *remote.urls,
        "offline test network",
    ):
        assert fragment in message
    assert "\n" not in message
    assert network.urls == list(remote.urls)
    assert not (tmp_path / "cache").exists() or files_under(tmp_path / "cache") == []

    with pytest.raises(DataError, match="no data mirror set"):
        fetch_dataset("fashion-mnist", tmp_path / "cache", None, opener=FakeNetwork())


@pytest.mark.parametrize(
    ("value", "disabled"),
    [
        ("1", True),
        ("true", True),
        (" YES ", True),
        ("on", True),
        ("", False),
        ("0", False),
        ("False", False),
        ("no", False),
        ("off", False),
    ],
)
def test_downloads_disabled_reads_the_environment(monkeypatch, value, disabled):
    monkeypatch.setenv(OFFLINE_ENV, value)
    assert downloads_disabled() is disabled


def test_downloads_disabled_rejects_a_value_it_does_not_understand(monkeypatch):
    monkeypatch.setenv(OFFLINE_ENV, "maybe")
    with pytest.raises(DataError, match=r"RANKREPRO_OFFLINE='maybe' is not understood"):
        downloads_disabled()
    with pytest.raises(DataError, match="not understood"):
        fetch_dataset("mnist", Path("unused"), None, opener=no_network)


def test_offline_never_opens_a_url_and_says_how_to_supply_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv(OFFLINE_ENV, "1")
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    with pytest.raises(DataError) as info:
        fetch_dataset("mnist", tmp_path / "cache", empty, opener=no_network)  # no_network fails the test if called
    message = str(info.value)
    remote = DATASETS["mnist"].file("train-images-idx3-ubyte")
    for fragment in (
        "dataset 'mnist'",
        f"downloads: disabled by {OFFLINE_ENV}=1",
        str(empty / "mnist" / remote.mirror_name),
        f"unsetting {OFFLINE_ENV} and allowing network access to",
        *remote.urls,
    ):
        assert fragment in message
    assert "\n" not in message
    assert not (tmp_path / "cache").exists() or files_under(tmp_path / "cache") == []


@needs_mirror
def test_offline_still_takes_the_mirror_and_the_cache(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(OFFLINE_ENV, "yes")
    folder = fetch_dataset("mnist", tmp_path / "cache", MIRROR, opener=no_network)
    assert all(md5_file(folder / remote.name) == remote.md5 for remote in DATASETS["mnist"].files)
    assert fetch_dataset("mnist", tmp_path / "cache", None, opener=no_network) == folder


def test_offline_leaves_a_file_without_urls_as_it_was(tmp_path, monkeypatch):
    # a dataset with no canonical download reports the mirror alone, not a "downloads" source it never had
    monkeypatch.setenv(OFFLINE_ENV, "1")
    spec = DATASETS["mnist"]
    monkeypatch.setitem(DATASETS, "mnist", replace(spec, files=tuple(replace(f, urls=()) for f in spec.files)))
    with pytest.raises(DataError) as info:
        fetch_dataset("mnist", tmp_path / "cache", tmp_path / "no-mirror", opener=no_network)
    message = str(info.value)
    assert "no such file" in message and "this dataset has no canonical download" in message
    assert "downloads:" not in message and OFFLINE_ENV not in message


@pytest.fixture
def restore_logging():
    """The CLI reconfigures the root logger; put it back so later tests log as before."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_cli_fetch_unavailable_exits_2_with_one_line(tmp_path, monkeypatch, capsys, restore_logging):
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    network = FakeNetwork()
    monkeypatch.setattr(urllib.request, "urlopen", network)
    monkeypatch.setenv(MIRROR_ENV, str(MIRROR))  # the --mirror flag overrides the environment variable
    code = cli.main(["data", "fetch", "mnist", "--cache", str(tmp_path / "cache"), "--mirror", str(empty)])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rankrepro: error: dataset 'mnist' is not available")
    assert MIRROR_ENV in lines[0] and "data_mirror" in lines[0]
    assert network.urls  # the default opener was used


def test_cli_unknown_dataset_exits_2(tmp_path, capsys, restore_logging):
    assert cli.main(["data", "fetch", "emnist", "--cache", str(tmp_path)]) == 2
    known = ", ".join(DATASETS)
    assert capsys.readouterr().err.strip() == f"rankrepro: error: unknown dataset 'emnist'; known datasets: {known}"


@needs_mirror
def test_cli_list_and_fetch_with_config(tmp_path, monkeypatch, capsys, restore_logging, real_cache):
    copy_cached(real_cache, "mnist", tmp_path / "cache")
    config = tmp_path / "tier.yaml"
    config.write_text(f"tier: unit\ndata_cache: {tmp_path / 'cache'}\ndata_mirror: {MIRROR}\nexperiments: {{}}\n")
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    assert cli.main(["data", "list", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"[fetched in {tmp_path / 'cache' / 'mnist'}]" in out and "47040016 bytes" in out
    assert "[not cached in" in out  # fashion-mnist
    assert cli.main(["data", "fetch", "fashion-mnist", "--config", str(config)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "cache" / "fashion-mnist")
    assert (tmp_path / "cache" / "fashion-mnist" / MANIFEST).is_file()


# ---------------------------------------------------------------------------------------------------------------------
# Files without a published checksum: the first copy is accepted and its MD5 recorded, later runs verify against it

UNPUBLISHED = "amazon-computers"  # one file, md5=None in the registry


def manifest_entry(folder: Path) -> dict:
    (entry,) = json.loads((folder / MANIFEST).read_text())["files"]
    return entry


def test_unpublished_checksum_first_fetch_is_accepted_with_a_warning_and_recorded(tmp_path, caplog):
    remote = DATASETS[UNPUBLISHED].files[0]
    assert remote.md5 is None
    payload = b"first copy of an unverifiable file"
    network = FakeNetwork({remote.urls[0]: payload})
    with caplog.at_level(logging.INFO, logger="rankrepro"):
        folder = fetch_dataset(UNPUBLISHED, tmp_path / "cache", None, opener=network)
    assert (folder / remote.name).read_bytes() == payload
    entry = manifest_entry(folder)
    assert entry["md5"] == hashlib.md5(payload).hexdigest() and entry["source"] == remote.urls[0]
    assert entry["checksum"].startswith("no published checksum") and entry["bytes"] == len(payload)
    assert any(
        record.levelno == logging.WARNING
        and "could not be verified" in record.getMessage()
        and entry["md5"] in record.getMessage()
        for record in caplog.records
    )


def test_unpublished_checksum_second_run_verifies_the_cache_against_the_recorded_md5(tmp_path):
    remote = DATASETS[UNPUBLISHED].files[0]
    folder = fetch_dataset(UNPUBLISHED, tmp_path / "cache", None, opener=FakeNetwork({remote.urls[0]: b"v1"}))
    before = {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}
    assert fetch_dataset(UNPUBLISHED, tmp_path / "cache", None, opener=no_network) == folder
    assert {path.name: path.stat().st_mtime_ns for path in folder.iterdir()} == before  # manifest untouched
    assert manifest_entry(folder)["source"] == remote.urls[0]


def test_unpublished_checksum_corrupted_cache_is_refetched_and_checked_against_the_record(tmp_path, caplog):
    remote = DATASETS[UNPUBLISHED].files[0]
    cache = tmp_path / "cache"
    folder = fetch_dataset(UNPUBLISHED, cache, None, opener=FakeNetwork({remote.urls[0]: b"original"}))
    recorded = manifest_entry(folder)["md5"]
    target = folder / remote.name

    # corrupted, upstream unchanged: reported, fetched again, verified against the recorded MD5
    target.write_bytes(b"0riginal")
    with caplog.at_level(logging.WARNING, logger="rankrepro"):
        fetch_dataset(UNPUBLISHED, cache, None, opener=FakeNetwork({remote.urls[0]: b"original"}))
    assert target.read_bytes() == b"original" and manifest_entry(folder)["md5"] == recorded
    assert any(
        f"expected {recorded}" in record.getMessage() and "fetching it again" in record.getMessage()
        for record in caplog.records
    )

    # corrupted, and the download differs from the record: a checksum mismatch, nothing stored
    target.write_bytes(b"0riginal")
    with pytest.raises(DataError) as info:
        fetch_dataset(UNPUBLISHED, cache, None, opener=FakeNetwork({remote.urls[0]: b"changed upstream"}))
    message = str(info.value)
    for fragment in (
        "checksum mismatch",
        f"'{UNPUBLISHED}'",
        f"expected MD5 {recorded}",
        "no checksum is published",
        f"delete {folder}",
        hashlib.md5(b"changed upstream").hexdigest(),
    ):
        assert fragment in message
    assert "\n" not in message and files_under(folder) == []

    # corrupted and offline: the corrupt copy is removed and loading fails with "not available"
    fetch_dataset(UNPUBLISHED, cache, None, opener=FakeNetwork({remote.urls[0]: b"original"}))
    target.write_bytes(b"0riginal")
    with pytest.raises(DataError, match=f"'{UNPUBLISHED}' is not available"):
        fetch_dataset(UNPUBLISHED, cache, None, opener=FakeNetwork())
    assert files_under(folder) == []


def test_unpublished_checksum_cached_file_without_a_record_is_accepted_and_recorded(tmp_path, caplog):
    remote = DATASETS[UNPUBLISHED].files[0]
    folder = tmp_path / "cache" / UNPUBLISHED
    folder.mkdir(parents=True)
    (folder / remote.name).write_bytes(b"placed by hand")
    with caplog.at_level(logging.WARNING, logger="rankrepro"):
        fetch_dataset(UNPUBLISHED, tmp_path / "cache", None, opener=no_network)
    entry = manifest_entry(folder)
    assert entry["md5"] == hashlib.md5(b"placed by hand").hexdigest() and entry["source"] == "cache"
    assert any("no published or recorded checksum" in record.getMessage() for record in caplog.records)


# ---------------------------------------------------------------------------------------------------------------------
# The real data


@pytest.fixture(scope="session")
def image_datasets(real_cache):
    return {
        name: load_image_classification(name, real_cache, None, opener=no_network)
        for name in ("mnist", "fashion-mnist")
    }


MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.parametrize(
    ("name", "train_counts", "test_counts", "mean", "std"),
    [
        ("mnist", MNIST_TRAIN_COUNTS, MNIST_TEST_COUNTS, 0.1307, 0.3081),
        ("fashion-mnist", [6000] * 10, [1000] * 10, 0.2860, 0.3530),
    ],
)
def test_real_image_datasets(image_datasets, name, train_counts, test_counts, mean, std):
    data = image_datasets[name]
    assert data.train_images.shape == (60000, 28, 28) and data.test_images.shape == (10000, 28, 28)
    assert data.train_images.dtype == np.uint8 and data.test_images.dtype == np.uint8
    assert data.train_labels.dtype == np.int64 and data.train_labels.shape == (60000,)
    assert data.test_labels.dtype == np.int64 and data.test_labels.shape == (10000,)
    assert np.bincount(data.train_labels, minlength=10).tolist() == train_counts
    assert np.bincount(data.test_labels, minlength=10).tolist() == test_counts
    counts = np.bincount(data.train_images.ravel(), minlength=256)  # exact moments from the pixel histogram
    values = np.arange(256) / 255
    pixel_mean = counts @ values / counts.sum()
    pixel_std = np.sqrt(counts @ (values - pixel_mean) ** 2 / counts.sum())
    assert pixel_mean == pytest.approx(mean, abs=1e-3)
    assert pixel_std == pytest.approx(std, abs=1e-3)
    assert data.num_classes == 10


def test_class_names():
    assert DATASETS["mnist"].classes == tuple("0123456789")
    assert DATASETS["fashion-mnist"].classes == (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    )


# ---------------------------------------------------------------------------------------------------------------------
# CIFAR-10 (binary archive): a synthetic archive with the real layout, registered under its own MD5


def _cifar_archive(path: Path, train_per_batch: int = 2, test: int = 3, drop: str | None = None) -> bytes:
    """Write a CIFAR-10-layout .tar.gz: record k of a batch has label k % 10 and pixel planes R=k, G=100+k, B=200+k."""
    import tarfile

    def batch(count: int) -> bytes:
        records = []
        for k in range(count):
            planes = np.concatenate([np.full(1024, value, np.uint8) for value in (k, 100 + k, 200 + k)])
            records.append(np.concatenate([[k % 10], planes]).astype(np.uint8).tobytes())
        return b"".join(records)

    members = {f"cifar-10-batches-bin/data_batch_{i}.bin": batch(train_per_batch) for i in range(1, 6)}
    members["cifar-10-batches-bin/test_batch.bin"] = batch(test)
    members["cifar-10-batches-bin/batches.meta.txt"] = b"airplane\n"
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            if name == drop:
                continue
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path.read_bytes()


@pytest.fixture
def cifar_mirror(tmp_path, monkeypatch) -> Path:
    """A mirror holding a synthetic CIFAR-10 archive, registered with that archive's MD5."""
    import dataclasses

    from rankrepro.data import registry

    mirror = tmp_path / "mirror"
    (mirror / "cifar-10").mkdir(parents=True)
    data = _cifar_archive(mirror / "cifar-10" / registry.CIFAR_ARCHIVE)
    spec = registry.DATASETS["cifar-10"]
    remote = dataclasses.replace(spec.files[0], md5=hashlib.md5(data).hexdigest())
    monkeypatch.setitem(registry.DATASETS, "cifar-10", dataclasses.replace(spec, files=(remote,)))
    return mirror


def test_cifar_archive_is_read_member_by_member_into_hwc_images(cifar_mirror, tmp_path):
    data = load_image_classification("cifar-10", tmp_path / "cache", cifar_mirror, opener=no_network)
    assert data.train_images.shape == (10, 32, 32, 3) and data.train_images.dtype == np.uint8
    assert data.test_images.shape == (3, 32, 32, 3) and data.num_classes == 10
    assert data.train_labels.tolist() == [0, 1] * 5 and data.test_labels.tolist() == [0, 1, 2]
    assert data.test_images[2, 5, 7].tolist() == [2, 102, 202]  # (R, G, B) planes → channels last
    assert files_under(tmp_path / "cache" / "cifar-10") == sorted(["cifar-10-binary.tar.gz", MANIFEST])


def test_a_cifar_archive_without_a_batch_or_with_a_torn_batch_is_a_data_error(tmp_path):
    from rankrepro.data.image_datasets import parse_cifar_batch, read_cifar_archive

    archive = tmp_path / "a.tar.gz"
    _cifar_archive(archive, drop="cifar-10-batches-bin/test_batch.bin")
    with pytest.raises(DataError, match="lacks cifar-10-batches-bin/test_batch.bin"):
        read_cifar_archive(archive)
    with pytest.raises(DataError, match="not a multiple of 3073"):
        parse_cifar_batch(b"\x00" * 3000, "batch")
    (tmp_path / "b.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(DataError, match="cannot read the CIFAR-10 archive"):
        read_cifar_archive(tmp_path / "b.tar.gz")


def test_cifar_unavailable_offline_names_both_ways_to_supply_it(tmp_path):
    network = FakeNetwork()
    with pytest.raises(DataError, match="cifar-10") as info:
        load_image_classification("cifar-10", tmp_path / "cache", None, opener=network)
    assert network.urls == ["https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"]
    assert "RANKREPRO_DATA_MIRROR" in str(info.value)
