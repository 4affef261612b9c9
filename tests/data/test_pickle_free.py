"""The pickle-opcode reader: the Planetoid structures are rebuilt without unpickling, everything else is a DataError."""

from __future__ import annotations

import builtins
import collections
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from rankrepro.core.errors import DataError
from rankrepro.data.pickle_free import parse_pickled_data, read_pickled_data

MIRROR = Path(__file__).resolve().parents[3] / "shared" / "datasets"
needs_mirror = pytest.mark.skipif(not (MIRROR / "planetoid").is_dir(), reason="offline dataset mirror not present")


class Payload:
    """Unpickling this creates the file ``marker`` (what an attacker's command would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


def test_the_payload_is_live_when_unpickled(tmp_path):
    """The payloads of these tests really run when unpickled (so their not running elsewhere means something)."""
    marker = tmp_path / "marker"
    pickle.loads(pickle.dumps(Payload(marker), protocol=2)).close()
    assert marker.exists()


def _parse(obj, protocol: int = 2):
    return parse_pickled_data(pickle.dumps(obj, protocol=protocol), "test stream")


@pytest.mark.parametrize(
    "array",
    [
        np.arange(6, dtype=np.float32).reshape(2, 3),
        np.array([[0.1, -2.5e300]], dtype=np.float64),
        np.array([[0, 1], [1, 0]], dtype=np.int32),
        np.arange(-3, 3, dtype=np.int64),
        np.array([True, False]),
        np.arange(256, dtype=np.uint8),
        np.array([1, 2, 3], dtype=">i4"),
        np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        np.array(7.5),
    ],
)
def test_arrays_of_plain_number_types_are_rebuilt_exactly(array):
    rebuilt = _parse(array)
    assert isinstance(rebuilt, np.ndarray) and rebuilt.dtype == array.dtype and rebuilt.shape == array.shape
    assert rebuilt.tobytes(order="A") == array.tobytes(order="A") and rebuilt.flags.writeable
    assert rebuilt.flags.f_contiguous == array.flags.f_contiguous


def test_csr_matrices_and_adjacency_dicts_are_rebuilt_exactly():
    matrix = sp.csr_matrix(np.array([[0, 1.5, 0], [0, 0, 0], [2, 0, -1]], dtype=np.float32))
    rebuilt = _parse(matrix)
    assert isinstance(rebuilt, sp.csr_matrix) and rebuilt.shape == (3, 3) and rebuilt.dtype == np.float32
    np.testing.assert_array_equal(rebuilt.toarray(), matrix.toarray())
    graph = collections.defaultdict(list, {0: [1, 2], 2: [0], 1: [0, 300, 70_000], 5: []})
    rebuilt = _parse(graph)
    assert type(rebuilt) is dict and rebuilt == graph and list(rebuilt) == [0, 2, 1, 5]
    shared = [4]
    assert _parse({0: shared, 1: shared}) == {0: [4], 1: [4]}  # a list referenced twice (memo)


def _py2_array(raw: bytes, code: bytes = b"i4", shape: bytes = b"K\x03\x85") -> bytes:
    """A 1-d array pickled as Python 2 wrote them (protocol 2, data as a BINSTRING, Planetoid's ``y`` files)."""
    return (
        b"\x80\x02cnumpy.core.multiarray\n_reconstruct\nq\x01cnumpy\nndarray\nq\x02K\x00\x85U\x01b\x87Rq\x03"
        b"(K\x01" + shape + b"cnumpy\ndtype\nq\x04U" + bytes([len(code)]) + code + b"K\x00K\x01\x87Rq\x05"
        b"(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89T" + struct.pack("<i", len(raw)) + raw + b"tb."
    )


def test_python2_strings_are_read_as_latin1_bytes():
    raw = np.array([1, -2, 0x7FFFFFFF], dtype="<i4").tobytes()  # bytes >= 0x80: latin-1 decoded by the parser
    np.testing.assert_array_equal(parse_pickled_data(_py2_array(raw), "py2"), [1, -2, 0x7FFFFFFF])
    empty = parse_pickled_data(_py2_array(b"", shape=b"K\x00\x85"), "py2")
    assert empty.shape == (0,) and empty.dtype == np.int32


@needs_mirror
@pytest.mark.parametrize("name", ["cora", "citeseer"])
def test_the_planetoid_raw_files_are_read(name):
    folder = MIRROR / "planetoid"
    for part, rows in [("x", None), ("tx", 1000), ("allx", None)]:
        matrix = read_pickled_data(folder / f"ind.{name}.{part}")
        assert isinstance(matrix, sp.csr_matrix) and matrix.dtype == np.float32 and rows in (None, matrix.shape[0])
        assert set(np.unique(matrix.data)) <= {1.0}  # binary word features
    for part in ("y", "ty", "ally"):
        labels = read_pickled_data(folder / f"ind.{name}.{part}")
        assert isinstance(labels, np.ndarray) and labels.ndim == 2 and set(np.unique(labels)) <= {0, 1}
    graph = read_pickled_data(folder / f"ind.{name}.graph")
    assert type(graph) is dict and len(graph) == {"cora": 2708, "citeseer": 3327}[name]


# ---------------------------------------------------------------------------------------------------------------------
# Everything outside the whitelist


@pytest.mark.parametrize("protocol", [0, 1, 2, 4, 5])
def test_a_payload_is_rejected_naming_the_file_and_never_runs(tmp_path, protocol):
    marker = tmp_path / "marker"
    path = tmp_path / "ind.cora.x"
    path.write_bytes(pickle.dumps(Payload(marker), protocol=protocol))
    with pytest.raises(DataError, match=f"{path}") as info:
        read_pickled_data(path)
    assert "\n" not in str(info.value) and not marker.exists()


@pytest.mark.parametrize(
    "make",
    [
        lambda marker: np.array([Payload(marker)], dtype=object),  # an object array
        lambda marker: sp.csr_matrix(np.eye(2)).__class__,  # a class
        lambda marker: {"data": Payload(marker)},
        lambda marker: collections.defaultdict(list, {0: [Payload(marker)]}),
        lambda marker: collections.OrderedDict({0: [1]}),
        lambda marker: [np.arange(3)],
        lambda marker: (1, 2),
        lambda marker: 42,
        lambda marker: "text",
        lambda marker: {"a": [1]},
        lambda marker: {0: (1, 2)},
        lambda marker: {0: [1.5]},
        lambda marker: np.array(["a", "b"]),
        lambda marker: np.zeros(2, dtype=[("a", "i4"), ("b", "f4")]),
        lambda marker: np.array([1 + 2j]),
        lambda marker: sp.coo_matrix(np.eye(2)),
        lambda marker: sp.csc_matrix(np.eye(2)),
        lambda marker: np.ma.masked_array([1, 2]),
    ],
)
def test_anything_but_the_whitelisted_structures_is_a_data_error(tmp_path, make):
    marker = tmp_path / "marker"
    with pytest.raises(DataError, match="test stream") as info:
        _parse(make(marker))
    assert "\n" not in str(info.value) and not marker.exists()


def _crafted(body: bytes) -> bytes:
    return b"\x80\x02" + body + b"."


@pytest.mark.parametrize(
    "stream,reason",
    [
        (
            _crafted(b"c_codecs\nencode\nX\x01\x00\x00\x00bX\x05\x00\x00\x00rot13\x86R"),
            "arguments outside the whitelist",
        ),
        (
            _crafted(
                b"cnumpy\ndtype\nX\x02\x00\x00\x00O8K\x00K\x01\x87R(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xff"
                b"K?tb"
            ),
            "dtype state",
        ),
        (_py2_array(b"\x00" * 8), "array data of 8 bytes"),  # shape (3,) of int32 needs 12
        (_py2_array(b"\x00" * 12, code=b"O8"), "not a plain number type"),
        (_py2_array(b"\x00" * 12, code=b"i3"), "unknown dtype code"),
        (_py2_array(b"\x00" * 12, code=b"a"), "not a plain number type"),
        (_py2_array(b"\x00" * 12, code=b"M8"), "not a plain number type"),
        (_py2_array(b"\x00" * 12)[:-1] + b"N.", "2 values left on the stack"),
        (_py2_array(b"\x00" * 12) + b"extra", "5 bytes after the end"),
        (_crafted(b"h\x07"), "memo entry 7 read before it is written"),
        (_crafted(b"R"), "stack underflow"),
        (_crafted(b"e"), "no MARK"),
        (_crafted(b"}(]K\x02u"), "a dict key of type list"),
        (_crafted(b"N)b"), "BUILD of a NoneType"),
        (_crafted(b"cposix\nsystem\n"), "the global 'posix system'"),
    ],
)
def test_malformed_streams_are_one_line_data_errors(stream, reason):
    with pytest.raises(DataError, match=reason) as info:
        parse_pickled_data(stream, "test stream")
    assert "\n" not in str(info.value)


def test_an_inconsistent_csr_matrix_is_a_data_error():
    matrix = sp.csr_matrix(np.eye(3, dtype=np.float32))
    matrix.indices[1] = 7  # column 7 of a 3-column matrix: toarray would write out of bounds
    with pytest.raises(DataError, match="inconsistent csr_matrix"):
        _parse(matrix)


@needs_mirror
@pytest.mark.parametrize("part", ["tx", "ty", "graph"])
def test_truncated_raw_files_are_one_line_data_errors(tmp_path, part):
    data = (MIRROR / "planetoid" / f"ind.cora.{part}").read_bytes()
    for keep in (0, 1, 2, 40, len(data) // 2, len(data) - 1):
        path = tmp_path / f"ind.cora.{part}"
        path.write_bytes(data[:keep])
        with pytest.raises(DataError, match=f"{path} is (truncated|not a pickle)") as info:
            read_pickled_data(path)
        assert "\n" not in str(info.value)


def test_every_flipped_byte_gives_a_data_error_or_a_whitelisted_value():
    streams = [
        pickle.dumps(sp.csr_matrix(np.eye(2, dtype=np.float32)), protocol=2),
        pickle.dumps(collections.defaultdict(list, {0: [1, 2], 1: [0]}), protocol=2),
        _py2_array(np.arange(3, dtype="<i4").tobytes()),
    ]
    outcomes = collections.Counter()
    for stream in streams:
        for position in range(len(stream)):
            for flip in (0x01, 0x80, 0xFF):
                corrupt = bytearray(stream)
                corrupt[position] ^= flip
                try:
                    value = parse_pickled_data(bytes(corrupt), "flipped")
                except DataError as exc:
                    assert "\n" not in str(exc)
                    outcomes["error"] += 1
                else:
                    assert isinstance(value, (np.ndarray, sp.csr_matrix, dict))
                    outcomes["value"] += 1
    assert outcomes["error"] > outcomes["value"] > 0
