"""Real datasets: a registry and checksum-verified fetching into the project's data cache.

Every dataset is described by a :class:`DatasetSpec` in :data:`DATASETS` (its files, their MD5s and canonical URLs);
a new dataset needs a registry entry only. :func:`fetch_dataset` puts each file into ``<cache>/<folder>/``:

1. a cached file whose MD5 matches is kept as it is;
2. otherwise the file is taken from the offline mirror (``<mirror>/<folder>/<mirror_name>``, a folder laid out like
   ``shared/datasets``; see :func:`resolve_mirror`), else downloaded from each canonical URL in turn (unless
   ``$RANKREPRO_OFFLINE`` forbids downloads: :func:`downloads_disabled`);
3. the bytes are decompressed (``gzipped`` files) while they stream into a temporary file beside the target, the MD5
   is computed on the way, and the file is moved into place only if the MD5 matches: the cache never holds a partial
   or unverified file. The checksum is always the MD5 of the bytes stored in the cache.

Some upstream files have no published checksum (``md5=None`` in the registry). The first complete copy obtained is
accepted with a warning that it could not be verified, and its MD5 is recorded in the manifest; from then on that
recorded MD5 plays the registry's part (a cached copy, or a fresh download, that differs from it is rejected).

Finally ``<cache>/<folder>/MANIFEST.json`` is written (atomically, last): it is the output of the workflow's
``data_fetch`` rule. Every failure a user can fix (unknown dataset, checksum mismatch, no source reachable) is a
:class:`~rankrepro.core.errors.DataError` with a one-line message that says how to supply the data.

The readers of the fetched files are :mod:`rankrepro.data.image_datasets` and :mod:`rankrepro.data.graph_datasets`.
This module never imports Snakemake or torch: the workflow imports it at parse time.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import logging
import os
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from rankrepro.core.errors import DataError
from rankrepro.core.io import atomic_write, atomic_write_text, one_line

log = logging.getLogger(__name__)

#: environment variable naming the offline mirror; it overrides the config key ``data_mirror``
MIRROR_ENV = "RANKREPRO_DATA_MIRROR"
#: name of the file, in a dataset's cache folder, that records the verified files (the workflow's output)
MANIFEST = "MANIFEST.json"
#: environment variable that, set to 1/true/yes/on, forbids downloads: a file neither cached nor in the mirror is then
#: unavailable at once (for machines whose firewall drops connections, where each URL would wait DOWNLOAD_TIMEOUT)
OFFLINE_ENV = "RANKREPRO_OFFLINE"
#: seconds a download may stall before the URL counts as unreachable
DOWNLOAD_TIMEOUT = 60.0
_CHUNK = 1 << 20

#: ``opener(url, timeout=...)`` returns a readable binary stream usable as a context manager (urlopen's signature)
Opener = Callable[..., IO[bytes]]


# ---------------------------------------------------------------------------------------------------------------------
# The registry


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset.

    ``name`` is the file's name in the cache (decompressed), ``md5`` the MD5 of the bytes stored in the cache (of the
    decompressed content for ``gzipped`` files, of the file itself otherwise) or None when upstream publishes none
    (the first copy fetched is then trusted and its MD5 recorded in the manifest), ``mirror_name`` its name in the
    mirror folder, ``urls`` the canonical downloads (tried in order), ``gzipped`` whether mirror and downloads are
    gzip streams to decompress (otherwise they are copied verbatim).
    """

    name: str
    md5: str | None
    mirror_name: str
    urls: tuple[str, ...]
    gzipped: bool


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: its registry ``name``, a ``title``, the ``folder`` it has in the mirror and in the cache, its files,
    licence and homepage, (classification datasets) the names of its classes in label order, the ``reader`` of its
    files — ``idx`` (MNIST's four IDX files), ``cifar-binary`` (the CIFAR-10 binary tarball), ``planetoid`` (the
    Planetoid raw files: pickles, read without unpickling by :mod:`rankrepro.data.pickle_free`), ``npz-graph`` (a
    heterophilous-graphs .npz), ``gnn-benchmark-npz`` (a graph2gauss / gnn-benchmark .npz of CSR matrices) or
    ``ogbn-zip`` (an OGB node-property-prediction zip) — and the ``mirror_folder`` holding its files in the mirror when
    that differs from ``folder`` (Cora and CiteSeer share ``planetoid/``).

    The workflow's ``data_fetch`` rule writes ``<cache>/<name>/MANIFEST.json``, so ``folder`` equals ``name``.
    """

    name: str
    title: str
    folder: str
    files: tuple[RemoteFile, ...]
    licence: str
    homepage: str
    classes: tuple[str, ...] = field(default=())
    reader: str = "idx"
    mirror_folder: str = ""

    def file(self, name: str) -> RemoteFile:
        """The file called ``name`` (a :class:`DataError` if the dataset has none)."""
        for remote in self.files:
            if remote.name == name:
                return remote
        raise DataError(f"dataset '{self.name}' has no file '{name}'; its files: {', '.join(self.file_names)}")

    @property
    def file_names(self) -> tuple[str, ...]:
        """Names of the dataset's files in the cache."""
        return tuple(remote.name for remote in self.files)


#: the CIFAR-10 binary archive (kept compressed in the cache: its MD5 is the published one of the .tar.gz)
CIFAR_ARCHIVE = "cifar-10-binary.tar.gz"


def _gz_files(md5s: dict[str, str], url_bases: tuple[str, ...]) -> tuple[RemoteFile, ...]:
    """Gzipped files named ``<name>.gz`` in the mirror and at every URL base."""
    return tuple(
        RemoteFile(
            name=name,
            md5=md5,
            mirror_name=f"{name}.gz",
            urls=tuple(f"{base}{name}.gz" for base in url_bases),
            gzipped=True,
        )
        for name, md5 in md5s.items()
    )


def _plain_files(md5s: dict[str, str | None], url_base: str) -> tuple[RemoteFile, ...]:
    """Files stored verbatim, under the same name in the mirror and at ``url_base``."""
    return tuple(
        RemoteFile(name=name, md5=md5, mirror_name=name, urls=(f"{url_base}{name}",), gzipped=False)
        for name, md5 in md5s.items()
    )


#: the Planetoid raw files (as torch_geometric's Planetoid expects them; read by rankrepro.data.pickle_free); MD5s of
#: the kimiyoung/planetoid files, whose SHA-256 the offline mirror's README publishes
PLANETOID_URL = "https://github.com/kimiyoung/planetoid/raw/master/data/"
PLANETOID_MD5 = {
    "cora": {
        "x": "190831eee19d8f330d89d94b40a65c5a",
        "y": "78344284e3ff7fd24eb9c307d51351eb",
        "tx": "b29c36916768e1d2f55391c1aa9317ac",
        "ty": "48bf43f54fa5b86089a4bd0299795f10",
        "allx": "c9083193a57057dd1238321e140194d7",
        "ally": "125d70817fe1fdbfdcad991995e81579",
        "graph": "b37c419cec179f45834467630c278e4c",
        "test.index": "9b822cae1d01f41e8bf8782e20367c0e",
    },
    "citeseer": {
        "x": "baeb0100b5a8af8d41f928113ce0a4e5",
        "y": "8b99f50aa950fbbf9a7a2b71ff9cac97",
        "tx": "c25ab826a7e95c0922ab625de705f7df",
        "ty": "356894a73b7a7eff43c3580f2fcf92a4",
        "allx": "28486b4b9c4ee076b4eee2febd89ba86",
        "ally": "f0df7e5f859245e32987bfd224d01657",
        "graph": "5f88483d5f5cc2b26b987bbbfb695005",
        "test.index": "70af39d4dff8aaa5c63f8dc526b16534",
    },
}
HETEROPHILOUS_URL = "https://github.com/yandex-research/heterophilous-graphs/raw/main/data/"


def _planetoid(name: str, title: str, classes: tuple[str, ...]) -> DatasetSpec:
    """Cora / CiteSeer: the eight ``ind.<name>.*`` raw files, in the mirror's ``planetoid/`` folder."""
    return DatasetSpec(
        name=name,
        title=title,
        folder=name,
        mirror_folder="planetoid",
        files=_plain_files({f"ind.{name}.{part}": md5 for part, md5 in PLANETOID_MD5[name].items()}, PLANETOID_URL),
        licence="MIT (kimiyoung/planetoid)",
        homepage="https://github.com/kimiyoung/planetoid",
        classes=classes,
        reader="planetoid",
    )


#: graph2gauss (Bojchevski & Günnemann 2018): the .npz files PyG's ``CitationFull`` downloads
GRAPH2GAUSS_URL = "https://github.com/abojchevski/graph2gauss/raw/master/data/"
#: gnn-benchmark (Shchur et al. 2018): the .npz files PyG's ``Amazon`` and ``Coauthor`` download
GNN_BENCHMARK_URL = "https://github.com/shchur/gnn-benchmark/raw/master/data/npz/"
#: OGB's node-property-prediction archives (what the ``ogb`` package downloads)
OGB_NODEPROPPRED_URL = "http://snap.stanford.edu/ogb/data/nodeproppred/"


def _heterophilous(name: str, title: str, md5: str) -> DatasetSpec:
    """Chameleon / Squirrel: one .npz (features, labels, edges, 10 splits) in the mirror's ``heterophilous/``."""
    return DatasetSpec(
        name=name,
        title=title,
        folder=name,
        mirror_folder="heterophilous",
        files=_plain_files({f"{name}.npz": md5}, HETEROPHILOUS_URL),
        licence="MIT (yandex-research/heterophilous-graphs)",
        homepage="https://github.com/yandex-research/heterophilous-graphs",
        classes=tuple(str(k) for k in range(5)),
        reader="npz-graph",
    )


#: dataset name -> spec
DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="mnist",
            title="MNIST handwritten digits (60k train / 10k test, 28x28 grey)",
            folder="mnist",
            files=_gz_files(
                {
                    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
                    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
                    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
                    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
                },
                # torchvision's mirrors, in its order
                ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://yann.lecun.com/exdb/mnist/"),
            ),
            licence="CC BY-SA 3.0 (Yann LeCun, Corinna Cortes, Christopher J.C. Burges)",
            homepage="https://yann.lecun.com/exdb/mnist/",
            classes=tuple(str(digit) for digit in range(10)),
        ),
        DatasetSpec(
            name="fashion-mnist",
            title="Fashion-MNIST Zalando article images (60k train / 10k test, 28x28 grey)",
            folder="fashion-mnist",
            files=_gz_files(
                {
                    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
                    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
                    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
                    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
                },
                ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
            ),
            licence="MIT (Zalando SE)",
            homepage="https://github.com/zalandoresearch/fashion-mnist",
            classes=(
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
            ),
        ),
        DatasetSpec(
            name="cifar-10",
            title="CIFAR-10 tiny images (50k train / 10k test, 32x32 colour), binary version",
            folder="cifar-10",
            files=(
                RemoteFile(
                    name=CIFAR_ARCHIVE,
                    md5="c32a1d4ab5d03f1284b67883e8d87530",
                    mirror_name=CIFAR_ARCHIVE,
                    urls=(f"https://www.cs.toronto.edu/~kriz/{CIFAR_ARCHIVE}",),
                    gzipped=False,
                ),
            ),
            licence="no licence stated; cite Krizhevsky (2009), Learning Multiple Layers of Features from Tiny Images",
            homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
            classes=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
            reader="cifar-binary",
        ),
        _planetoid(
            "cora",
            "Cora citation graph (2,708 papers, 5,278 undirected links, 1,433 word features)",
            (
                "Case_Based",
                "Genetic_Algorithms",
                "Neural_Networks",
                "Probabilistic_Methods",
                "Reinforcement_Learning",
                "Rule_Learning",
                "Theory",
            ),
        ),
        _planetoid(
            "citeseer",
            "CiteSeer citation graph (3,327 papers, 3,703 word features)",
            ("Agents", "AI", "DB", "IR", "ML", "HCI"),
        ),
        _heterophilous(
            "chameleon",
            "Chameleon Wikipedia graph (2,277 pages, 31,371 undirected links)",
            "4a6594433200171f2870f9e24a839a6a",
        ),
        _heterophilous(
            "squirrel",
            "Squirrel Wikipedia graph (5,201 pages, 198,353 undirected links)",
            "c13645621436ea17764600f88f48e556",
        ),
        # No MD5 is published for the next three files (md5=None: the first copy fetched is recorded, then verified).
        DatasetSpec(
            name="dblp",
            title="DBLP citation graph, CitationFull version (17,716 papers, 1,639 word features)",
            folder="dblp",
            files=_plain_files({"dblp.npz": None}, GRAPH2GAUSS_URL),
            licence="MIT (abojchevski/graph2gauss)",
            homepage="https://github.com/abojchevski/graph2gauss",
            classes=tuple(str(k) for k in range(4)),
            reader="gnn-benchmark-npz",
        ),
        DatasetSpec(
            name="amazon-computers",
            title="Amazon Computers co-purchase graph (13,752 products, 767 review-word features)",
            folder="amazon-computers",
            files=_plain_files({"amazon_electronics_computers.npz": None}, GNN_BENCHMARK_URL),
            licence="MIT (shchur/gnn-benchmark)",
            homepage="https://github.com/shchur/gnn-benchmark",
            classes=tuple(str(k) for k in range(10)),
            reader="gnn-benchmark-npz",
        ),
        # Two public scripts pin the archive's SHA-256 (not checked here: the registry holds MD5s):
        # 49f85c801589ecdcc52cfaca99693aaea7b8af16a9ac3f41dd85a5f3193fe276
        DatasetSpec(
            name="ogbn-arxiv",
            title="ogbn-arxiv citation graph (169,343 arXiv CS papers, 1,166,243 citations, 128 features)",
            folder="ogbn-arxiv",
            files=_plain_files({"arxiv.zip": None}, OGB_NODEPROPPRED_URL),
            licence="ODC-BY (Open Graph Benchmark)",
            homepage="https://ogb.stanford.edu/docs/nodeprop/#ogbn-arxiv",
            classes=tuple(str(k) for k in range(40)),
            reader="ogbn-zip",
        ),
    )
}


def get_dataset(name: str) -> DatasetSpec:
    """The spec of dataset ``name``; a :class:`DataError` listing the known datasets otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset '{name}'; known datasets: {', '.join(DATASETS)}") from None


def check_labels(spec: DatasetSpec, labels: np.ndarray, what: str) -> None:
    """Labels must index the dataset's classes (a DataError naming ``what`` and the labels' range otherwise)."""
    if len(labels) and (labels.min() < 0 or labels.max() >= len(spec.classes)):
        raise DataError(
            f"dataset '{spec.name}': {what}: labels {labels.min()}..{labels.max()} do not index its "
            f"{len(spec.classes)} classes"
        )


# ---------------------------------------------------------------------------------------------------------------------
# Where the data comes from


def resolve_mirror(configured: str | os.PathLike | None) -> Path | None:
    """The offline mirror folder: ``$RANKREPRO_DATA_MIRROR`` if set and non-empty, else ``configured`` (the config
    key ``data_mirror``), else None. A relative path is taken relative to the current directory."""
    value = os.environ.get(MIRROR_ENV, "").strip() or (str(configured).strip() if configured is not None else "")
    return Path(value).expanduser().absolute() if value else None


def downloads_disabled() -> bool:
    """True when ``$RANKREPRO_OFFLINE`` says so (1/true/yes/on, any case), False when it is unset, empty or
    0/false/no/off; any other value is a :class:`DataError` (a typo must not silently allow or forbid downloads)."""
    value = os.environ.get(OFFLINE_ENV, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise DataError(
        f"environment variable {OFFLINE_ENV}={os.environ[OFFLINE_ENV]!r} is not understood: use 1/true/yes/on to "
        "forbid downloads, or 0/false/no/off (or leave it unset) to allow them"
    )


def mirror_path(mirror: Path, spec: DatasetSpec, remote: RemoteFile) -> Path:
    """Where ``remote`` lies in a mirror folder: ``<mirror>/<mirror_folder or folder>/<mirror_name>``."""
    return Path(mirror) / (spec.mirror_folder or spec.folder) / remote.mirror_name


def md5_file(path: str | os.PathLike) -> str:
    """Hex MD5 of a file's bytes, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


class _SourceFailed(Exception):
    """A source could not deliver a file (missing, unreachable, corrupt stream); the message says why."""


class _ChecksumMismatch(_SourceFailed):
    """A source delivered a complete file whose MD5 differs from the expected one (registry's or recorded)."""

    def __init__(self, got: str) -> None:
        super().__init__(f"checksum mismatch (got MD5 {got})")
        self.got = got


#: errors of reading a source: missing file, network failure, truncated or corrupt gzip stream
_READ_ERRORS = (OSError, EOFError, zlib.error, http.client.HTTPException, ValueError)


def _copy_verified(stream: IO[bytes], remote: RemoteFile, target: Path, expected: str | None) -> str:
    """Stream ``stream`` (decompressing if ``remote.gzipped``) into ``target`` atomically if its MD5 is ``expected``
    (any complete copy when ``expected`` is None); returns the MD5.

    Read-side failures raise :class:`_SourceFailed`, a wrong MD5 :class:`_ChecksumMismatch`; in every failure the
    temporary file is removed and ``target`` is untouched. Write-side failures (disk full) propagate as OSError.
    """
    got: list[str] = []

    def write(tmp: Path) -> None:
        reader = gzip.GzipFile(fileobj=stream, mode="rb") if remote.gzipped else stream
        digest = hashlib.md5(usedforsecurity=False)
        with open(tmp, "wb") as out:
            while True:
                try:
                    block = reader.read(_CHUNK)
                except _READ_ERRORS as exc:
                    raise _SourceFailed(f"unreadable ({one_line(exc)})") from exc
                if not block:
                    break
                digest.update(block)
                out.write(block)
        if expected is not None and digest.hexdigest() != expected:
            raise _ChecksumMismatch(digest.hexdigest())
        got.append(digest.hexdigest())

    atomic_write(target, write)
    return got[0]


def _from_mirror(path: Path, remote: RemoteFile, target: Path, expected: str | None) -> str:
    """Copy ``remote`` from the mirror file ``path`` into ``target`` (verified against ``expected``); its MD5."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        where = "" if path.parent.parent.is_dir() else f"; the mirror folder {path.parent.parent} does not exist"
        raise _SourceFailed(f"no such file{where}") from None
    except OSError as exc:
        raise _SourceFailed(f"cannot read it ({one_line(exc)})") from exc
    with handle:
        return _copy_verified(handle, remote, target, expected)


def _from_url(url: str, opener: Opener, remote: RemoteFile, target: Path, expected: str | None) -> str:
    """Download ``remote`` from ``url`` into ``target`` (verified against ``expected``); its MD5."""
    try:
        response = opener(url, timeout=DOWNLOAD_TIMEOUT)
    except _READ_ERRORS as exc:
        raise _SourceFailed(one_line(exc)) from exc
    with response:
        return _copy_verified(response, remote, target, expected)


def _downloads_forbidden(target: Path) -> str:
    """The fetch that stands for every URL of a file when downloads are disabled: it fails, saying why."""
    raise _SourceFailed(f"disabled by {OFFLINE_ENV}={os.environ.get(OFFLINE_ENV, '')}")


def _sources(
    spec: DatasetSpec,
    remote: RemoteFile,
    mirror: Path | None,
    opener: Opener,
    expected: str | None,
    offline: bool = False,
):
    """(label, fetch(target) -> MD5) of every source of ``remote``, in the order they are tried: mirror, then each
    URL (``offline``: one source labelled "downloads" that fails at once, when the file has URLs)."""
    if mirror is not None:
        path = mirror_path(mirror, spec, remote)
        yield f"mirror {path}", lambda target: _from_mirror(path, remote, target, expected)
    if offline:
        if remote.urls:
            yield "downloads", _downloads_forbidden
        return
    for url in remote.urls:
        yield url, lambda target, url=url: _from_url(url, opener, remote, target, expected)


def _mismatch_error(
    spec: DatasetSpec, remote: RemoteFile, source: str, got: str, others: str, expected: str, folder: Path
) -> DataError:
    recorded = (
        ""
        if remote.md5 is not None
        else (
            f" (no checksum is published: this MD5 was recorded in {folder / MANIFEST} when the file was first fetched; "  # noqa: E501
            f"if the upstream file really changed, delete {folder} to accept the new one)"
        )
    )
    return DataError(
        f"checksum mismatch in dataset '{spec.name}', file '{remote.name}' from {source}: expected MD5 {expected}"
        f"{recorded}, got {got}; the file was not stored (a corrupted mirror file or download: replace or delete it)"
        + (f". Other sources: {others}" if others else "")
    )


def _unavailable_error(
    spec: DatasetSpec, remote: RemoteFile, mirror: Path | None, reasons: str, offline: bool = False
) -> DataError:
    if mirror is None:
        reasons = "no data mirror set" + (f"; {reasons}" if reasons else "")
    layout = mirror_path(Path("<mirror>"), spec, remote).as_posix()
    urls = ", ".join(remote.urls) if remote.urls else "(none: this dataset has no canonical download)"
    network = f"unsetting {OFFLINE_ENV} and allowing" if offline and remote.urls else "allowing"
    return DataError(
        f"dataset '{spec.name}' is not available: file '{remote.name}' could not be obtained ({reasons}). "
        f"Supply it either by setting `data_mirror:` in the tier config or the {MIRROR_ENV} environment variable to "
        f"a folder laid out like shared/datasets (this file at {layout}), or by {network} network access to {urls}"
    )


def _describe_failures(failures: list[tuple[str, _SourceFailed]]) -> str:
    return "; ".join(f"{source}: {exc}" for source, exc in failures)


def _fetch_file(
    spec: DatasetSpec,
    remote: RemoteFile,
    target: Path,
    mirror: Path | None,
    opener: Opener,
    expected: str | None,
    offline: bool = False,
) -> tuple[str, str]:
    """Put ``remote`` at ``target`` from the first source that delivers it with MD5 ``expected`` (any complete copy
    when None: no published or recorded checksum); returns the source's label and the file's MD5.

    A source that fails (missing, unreachable, corrupt, wrong checksum) passes the turn to the next one; when none
    delivers, the error is a checksum mismatch if some source delivered wrong bytes, else "not available".
    """
    failures: list[tuple[str, _SourceFailed]] = []
    for source, fetch in _sources(spec, remote, mirror, opener, expected, offline):
        try:
            got = fetch(target)
        except _SourceFailed as exc:
            log.debug("%s/%s: %s: %s", spec.name, remote.name, source, exc)
            failures.append((source, exc))
            continue
        mismatched = any(isinstance(exc, _ChecksumMismatch) for _, exc in failures)
        earlier = f" (after failures: {_describe_failures(failures)})" if failures else ""
        if expected is None:
            log.warning(
                "%s/%s: no published checksum, so the copy from %s could not be verified; accepted with "
                "MD5 %s, recorded in %s (later runs verify against it)%s",
                spec.name,
                remote.name,
                source,
                got,
                MANIFEST,
                earlier,
            )
        else:
            log.log(
                logging.WARNING if mismatched else logging.INFO,
                "%s/%s: verified MD5 %s, from %s%s",
                spec.name,
                remote.name,
                got,
                source,
                earlier,
            )
        return source, got
    for source, exc in failures:
        if isinstance(exc, _ChecksumMismatch):
            others = _describe_failures([(s, e) for s, e in failures if s != source])
            raise _mismatch_error(spec, remote, source, exc.got, others, str(expected), target.parent)
    raise _unavailable_error(spec, remote, mirror, _describe_failures(failures), offline)


def _cached_md5(spec: DatasetSpec, remote: RemoteFile, target: Path, expected: str | None) -> str | None:
    """The MD5 of ``target`` if it holds a usable copy of ``remote`` (MD5 ``expected``; any copy when None), else
    None; a wrong file is deleted (and reported)."""
    if not target.is_file():
        return None
    got = md5_file(target)
    if expected is None:
        log.warning(
            "%s/%s: no published or recorded checksum; the cached file %s is accepted as it is (MD5 %s, now "
            "recorded in %s)",
            spec.name,
            remote.name,
            target,
            got,
            MANIFEST,
        )
        return got
    if got == expected:
        log.info("%s/%s: cached copy verified (MD5 %s)", spec.name, remote.name, got)
        return got
    origin = "" if remote.md5 is not None else f" (recorded in {MANIFEST} when first fetched)"
    log.warning(
        "%s/%s: cached file %s has MD5 %s, expected %s%s; fetching it again",
        spec.name,
        remote.name,
        target,
        got,
        expected,
        origin,
    )
    target.unlink()
    return None


def _previous_entries(manifest: Path) -> dict[str, dict[str, Any]]:
    """File name -> entry of an existing manifest (empty if there is none or it is unreadable)."""
    try:
        entries = json.loads(manifest.read_text(encoding="utf-8"))["files"]
        return {entry["name"]: entry for entry in entries if isinstance(entry, dict) and isinstance(entry["name"], str)}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _recorded_md5(entry: dict[str, Any] | None) -> str | None:
    """The MD5 a manifest entry records, if it is a well-formed hex MD5."""
    md5 = entry.get("md5") if entry else None
    if isinstance(md5, str) and len(md5) == 32 and all(c in "0123456789abcdef" for c in md5):
        return md5
    return None


def _recorded_source(entry: dict[str, Any] | None, md5: str) -> str:
    """The source a manifest entry records for the file with this MD5 ("cache" if none)."""
    source = entry.get("source") if entry and entry.get("md5") == md5 else None
    return source if isinstance(source, str) else "cache"


#: what a manifest entry says of a file whose MD5 was recorded at its first fetch, not published upstream
RECORDED_CHECKSUM = "no published checksum: MD5 recorded when the file was first fetched, verified since"


def _write_manifest(spec: DatasetSpec, folder: Path, sources: dict[str, str], md5s: dict[str, str]) -> Path:
    """Write ``MANIFEST.json`` (atomically; not rewritten when its content is unchanged, so its mtime stays)."""
    manifest = folder / MANIFEST
    record: dict[str, Any] = {
        "dataset": spec.name,
        "title": spec.title,
        "folder": spec.folder,
        "licence": spec.licence,
        "homepage": spec.homepage,
        "checksum": "md5 of the bytes stored in this folder",
        "files": [
            {
                "name": remote.name,
                "md5": md5s[remote.name],
                "bytes": (folder / remote.name).stat().st_size,
                "source": sources[remote.name],
                **({} if remote.md5 is not None else {"checksum": RECORDED_CHECKSUM}),
            }
            for remote in spec.files
        ],
    }
    text = json.dumps(record, indent=2, sort_keys=True) + "\n"
    if not manifest.is_file() or manifest.read_bytes() != text.encode("utf-8"):  # bytes: any old content is replaced
        atomic_write_text(manifest, text)
    return manifest


def fetch_dataset(
    name: str, cache_root: str | os.PathLike, mirror: str | os.PathLike | None, *, opener: Opener | None = None
) -> Path:
    """Make sure every file of dataset ``name`` is in ``<cache_root>/<folder>/`` with its registry MD5 (for a file
    without one: the MD5 recorded in the manifest when it was first fetched).

    Cached files are verified (a tampered one is fetched again); missing ones come from ``mirror`` (a folder laid out
    like shared/datasets, or None) or else from the canonical URLs, opened with ``opener(url, timeout=...)``
    (default :func:`urllib.request.urlopen`, looked up at call time) unless ``$RANKREPRO_OFFLINE`` forbids downloads
    (:func:`downloads_disabled`). ``MANIFEST.json`` is written last. Returns the dataset's cache folder. Raises
    :class:`DataError` when a file cannot be obtained or fails its checksum.
    """
    spec = get_dataset(name)
    offline = downloads_disabled()
    opener = opener if opener is not None else urllib.request.urlopen
    mirror = Path(mirror) if mirror is not None else None
    folder = Path(cache_root) / spec.folder
    manifest = folder / MANIFEST
    previous = _previous_entries(manifest)
    sources: dict[str, str] = {}
    md5s: dict[str, str] = {}
    try:
        for remote in spec.files:
            target = folder / remote.name
            entry = previous.get(remote.name)
            expected = remote.md5 if remote.md5 is not None else _recorded_md5(entry)
            cached = _cached_md5(spec, remote, target, expected)
            if cached is not None:
                sources[remote.name], md5s[remote.name] = _recorded_source(entry, cached), cached
                continue
            manifest.unlink(missing_ok=True)  # the folder is incomplete until every file is verified again
            sources[remote.name], md5s[remote.name] = _fetch_file(
                spec, remote, target, mirror, opener, expected, offline
            )
        _write_manifest(spec, folder, sources, md5s)
    except OSError as exc:
        raise DataError(f"cannot write dataset '{spec.name}' into the data cache {folder}: {one_line(exc)}") from None
    return folder


def cached_files(name: str, cache_root: str | os.PathLike) -> dict[str, int | None]:
    """File name -> size in bytes of each file of dataset ``name`` in the cache (None if absent; not verified)."""
    spec = get_dataset(name)
    folder = Path(cache_root) / spec.folder
    return {
        remote.name: (folder / remote.name).stat().st_size if (folder / remote.name).is_file() else None
        for remote in spec.files
    }
