"""Reading the few structures stored in the Planetoid raw files (Python pickles) without unpickling anything.

The ``ind.<name>.{x,tx,allx,y,ty,ally,graph}`` files of Cora and CiteSeer are pickles (protocol 2, written by
Python 2): scipy CSR matrices, numpy arrays, and a ``defaultdict(list)`` adjacency. Unpickling runs whatever callable
the stream names, so this module never calls :mod:`pickle`: it walks the opcode stream with
:func:`pickletools.genops` (a parser: it executes nothing, imports nothing) and interprets a small whitelist of opcodes
on a stack of inert values. ``GLOBAL`` names are only compared with :data:`ALLOWED_GLOBALS` (never imported), and the
only "calls" are the five constructions these files contain, rebuilt by hand from their arguments:

- ``numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b'b')`` + ``BUILD (version, shape, dtype, fortran,
  raw bytes)``: an array of a plain numeric dtype (bool, signed/unsigned integer, float) from its raw bytes;
- ``numpy.dtype(code, 0, 1)`` + ``BUILD (3 or 4, byte order, None, None, None, -1, -1, 0[, None])``: such a dtype;
- ``scipy.sparse.csr.csr_matrix()`` (``NEWOBJ``) + ``BUILD {'data', 'indices', 'indptr', '_shape', ...}``: a CSR
  matrix, built with :class:`scipy.sparse.csr_matrix` from those arrays (fully checked: consistent, indices in range);
- ``collections.defaultdict(list)`` + ``SETITEMS``: the adjacency, returned as a plain ``dict[int, list[int]]``;
- ``_codecs.encode(text, 'latin1')``: how Python 3 writes bytes in protocol 2 (the raw bytes of arrays).

Anything else — another global, another opcode, a construction with other arguments, an object dtype, a stream that
is truncated or has bytes after ``STOP``, a result that is not an array, CSR matrix or int → list-of-int dict — is a
:class:`~rankrepro.core.errors.DataError` naming the file. Limits: protocol 0/1 text opcodes, protocol 4+ framing and
``STACK_GLOBAL``, and every other Python type are not read (the registered files need none of them); sizes are bounded
by the file (an array's raw bytes must match its shape and dtype exactly).
"""

from __future__ import annotations

import math
import os
import pickletools
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from rankrepro.core.errors import DataError
from rankrepro.core.io import one_line


class Global(Enum):
    """The only globals a stream may name; each stands for itself (nothing is imported)."""

    RECONSTRUCT = "numpy _reconstruct"
    NDARRAY = "numpy.ndarray"
    DTYPE = "numpy.dtype"
    CSR_MATRIX = "scipy.sparse.csr_matrix"
    DEFAULTDICT = "collections.defaultdict"
    LIST = "list"
    ENCODE = "_codecs.encode"


#: ``GLOBAL`` argument (``module name``) -> what it stands for; Python 2 and 3 spellings, numpy 1 and 2, scipy < and
#: >= 1.8 module names
ALLOWED_GLOBALS: dict[str, Global] = {
    "numpy.core.multiarray _reconstruct": Global.RECONSTRUCT,
    "numpy._core.multiarray _reconstruct": Global.RECONSTRUCT,
    "numpy ndarray": Global.NDARRAY,
    "numpy dtype": Global.DTYPE,
    "scipy.sparse.csr csr_matrix": Global.CSR_MATRIX,
    "scipy.sparse._csr csr_matrix": Global.CSR_MATRIX,
    "collections defaultdict": Global.DEFAULTDICT,
    "__builtin__ list": Global.LIST,
    "builtins list": Global.LIST,
    "_codecs encode": Global.ENCODE,
}

#: the dtype codes an array may have: bool, signed and unsigned integers, floats, with their size in bytes ("i4")
_NUMERIC_CODE = re.compile(r"[biuf][1-9][0-9]?")

#: what the reader returns
PickledData = np.ndarray | sp.csr_matrix | dict[int, list[int]]


class _Rejected(Exception):
    """The stream does something outside the whitelist; the message says what (the caller adds the file)."""


@dataclass(eq=False)
class _Dtype:
    """``numpy.dtype(code, 0, 1)`` awaiting its ``BUILD`` state (byte order); ``value`` once built."""

    code: str
    value: np.dtype | None = None


@dataclass(eq=False)
class _Array:
    """``_reconstruct(ndarray, (0,), b'b')`` awaiting its ``BUILD`` state; ``value`` once built."""

    value: np.ndarray | None = None


@dataclass(eq=False)
class _Csr:
    """``csr_matrix()`` awaiting its ``BUILD`` state dict; ``value`` once built."""

    value: sp.csr_matrix | None = None


@dataclass(eq=False)
class _Mark:
    """A ``MARK`` on the stack."""


@dataclass
class _Machine:
    """The stack and memo of the opcode walk."""

    stack: list[Any] = field(default_factory=list)
    memo: dict[int, Any] = field(default_factory=dict)

    def pop(self) -> Any:
        """The top value (a :class:`_Rejected` on an empty stack or a mark)."""
        if not self.stack or isinstance(self.stack[-1], _Mark):
            raise _Rejected("stack underflow")
        return self.stack.pop()

    def pop_to_mark(self) -> list[Any]:
        """The values above the topmost mark, which is removed."""
        for index in range(len(self.stack) - 1, -1, -1):
            if isinstance(self.stack[index], _Mark):
                values = self.stack[index + 1 :]
                del self.stack[index:]
                return values
        raise _Rejected("no MARK on the stack")

    def top(self) -> Any:
        """The top value, left in place."""
        if not self.stack or isinstance(self.stack[-1], _Mark):
            raise _Rejected("stack underflow")
        return self.stack[-1]


def _text(value: Any) -> str | None:
    """``value`` as text if it is a ``str`` (Python 2 strings arrive latin-1 decoded) or ``bytes`` (decoded latin-1)."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value if isinstance(value, str) else None


def _raw_bytes(value: Any) -> bytes:
    """The raw bytes of an array state: ``bytes``, or a Python 2 string (read latin-1, so encoded back latin-1)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:
            return value.encode("latin-1")
        except UnicodeEncodeError:
            raise _Rejected("array data is text that is not latin-1") from None
    raise _Rejected(f"array data of type {type(value).__name__} (an object array?)")


def _reduce(func: Any, args: Any) -> Any:
    """The inert stand-in for ``func(*args)``, for the whitelisted constructions only."""
    if not isinstance(args, tuple):
        raise _Rejected("REDUCE without an argument tuple")
    if (
        func is Global.RECONSTRUCT
        and len(args) == 3
        and args[0] is Global.NDARRAY
        and args[1] == (0,)
        and _text(args[2]) == "b"
    ):
        return _Array()
    if (
        func is Global.DTYPE
        and len(args) == 3
        and isinstance(args[0], str)
        and args[1] in (0, False)
        and args[2] in (1, True)
    ):
        return _Dtype(args[0])
    if func is Global.DEFAULTDICT and args == (Global.LIST,):
        return {}
    if func is Global.ENCODE and len(args) == 2 and isinstance(args[0], str) and args[1] in ("latin1", "latin-1"):
        return _raw_bytes(args[0])
    shown = func.value if isinstance(func, Global) else type(func).__name__
    raise _Rejected(f"a call of {shown} with arguments outside the whitelist")


def _build_dtype(stub: _Dtype, state: Any) -> None:
    """Give a dtype stand-in its value: a plain numeric dtype in the byte order the state names."""
    if not (
        isinstance(state, tuple)
        and len(state) in (8, 9)
        and state[0] in (3, 4)
        and state[2:5] == (None, None, None)
        and state[5:8] == (-1, -1, 0)
        and state[8:] in ((), (None,))
        and state[1] in ("<", ">", "|", "=")
    ):
        raise _Rejected(f"a dtype state outside the whitelist: {state!r:.100}")
    if not _NUMERIC_CODE.fullmatch(stub.code):
        raise _Rejected(f"a dtype {stub.code!r:.20} that is not a plain number type")
    try:
        dtype = np.dtype(stub.code)
    except (TypeError, ValueError):
        raise _Rejected(f"an unknown dtype code {stub.code!r:.20}") from None
    stub.value = dtype.newbyteorder(state[1]) if state[1] in "<>" and dtype.itemsize > 1 else dtype


def _build_array(stub: _Array, state: Any) -> None:
    """Give an array stand-in its value: ``(version, shape, dtype, is_fortran, raw bytes)`` (version optional)."""
    if isinstance(state, tuple) and len(state) == 5 and state[0] == 1:
        state = state[1:]
    if not (
        isinstance(state, tuple)
        and len(state) == 4
        and isinstance(state[0], tuple)
        and all(type(size) is int and size >= 0 for size in state[0])
        and isinstance(state[1], _Dtype)
        and state[1].value is not None
        and state[2] in (0, 1)
    ):
        raise _Rejected(f"an array state outside the whitelist: {state!r:.100}")
    shape, dtype, fortran, raw = state[0], state[1].value, bool(state[2]), _raw_bytes(state[3])
    if len(raw) != math.prod(shape) * dtype.itemsize:
        raise _Rejected(f"array data of {len(raw)} bytes for shape {shape} of {dtype}")
    stub.value = np.frombuffer(raw, dtype=dtype).reshape(shape, order="F" if fortran else "C").copy(order="K")


def _build_csr(stub: _Csr, state: Any) -> None:
    """Give a CSR stand-in its value from the ``data``, ``indices``, ``indptr`` and ``_shape`` of its state dict."""
    if not isinstance(state, dict) or not all(isinstance(key, str) for key in state):
        raise _Rejected("a csr_matrix state that is not a dict of names")
    shape = state.get("_shape", state.get("shape"))
    arrays = [state.get(key) for key in ("data", "indices", "indptr")]
    if (
        state.get("format", "csr") != "csr"
        or not isinstance(shape, tuple)
        or len(shape) != 2
        or not all(type(size) is int and size >= 0 for size in shape)
        or not all(isinstance(array, _Array) and array.value is not None and array.value.ndim == 1 for array in arrays)
    ):
        raise _Rejected("a csr_matrix state without 1-d data, indices, indptr arrays and a 2-d shape")
    data, indices, indptr = (array.value for array in arrays)
    if indices.dtype.kind not in "iu" or indptr.dtype.kind not in "iu":
        raise _Rejected("a csr_matrix with non-integer indices")
    try:
        matrix = sp.csr_matrix((data, indices, indptr), shape=shape)
        matrix.check_format(full_check=True)  # column indices in range, indptr monotone (toarray trusts them)
        stub.value = matrix
    except ValueError as exc:
        raise _Rejected(f"an inconsistent csr_matrix ({exc})") from None


def _build(target: Any, state: Any) -> None:
    """``BUILD``: set the state of a whitelisted stand-in (once)."""
    builders = {_Dtype: _build_dtype, _Array: _build_array, _Csr: _build_csr}
    builder = builders.get(type(target))
    if builder is None or target.value is not None:
        raise _Rejected(f"BUILD of a {type(target).__name__}")
    builder(target, state)


def _finished(value: Any) -> PickledData:
    """The result of the stream: an array, a CSR matrix, or an int -> list-of-int dict."""
    if isinstance(value, (_Array, _Csr)) and value.value is not None:
        return value.value
    if isinstance(value, dict) and all(
        type(key) is int and isinstance(items, list) and all(type(item) is int for item in items)
        for key, items in value.items()
    ):
        return {key: list(items) for key, items in value.items()}
    raise _Rejected(f"the stream holds a {type(value).__name__}, not an array, CSR matrix or adjacency dict")


#: opcodes that push their argument as it is
_PUSH_ARGUMENT = {
    "BININT",
    "BININT1",
    "BININT2",
    "LONG1",
    "BINFLOAT",
    "BINSTRING",
    "SHORT_BINSTRING",
    "BINUNICODE",
    "SHORT_BINUNICODE",
    "BINBYTES",
    "SHORT_BINBYTES",
}
_PUSH_CONSTANT = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}
_TUPLE_SIZES = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}


def _step(machine: _Machine, name: str, arg: Any) -> None:
    """Interpret one whitelisted opcode."""
    stack, memo = machine.stack, machine.memo
    if name in _PUSH_ARGUMENT:
        stack.append(arg)
    elif name in _PUSH_CONSTANT:
        stack.append(_PUSH_CONSTANT[name])
    elif name == "MARK":
        stack.append(_Mark())
    elif name == "EMPTY_TUPLE":
        stack.append(())
    elif name in _TUPLE_SIZES:
        values = [machine.pop() for _ in range(_TUPLE_SIZES[name])]
        stack.append(tuple(reversed(values)))
    elif name == "TUPLE":
        stack.append(tuple(machine.pop_to_mark()))
    elif name == "EMPTY_LIST":
        stack.append([])
    elif name == "EMPTY_DICT":
        stack.append({})
    elif name in ("APPEND", "APPENDS"):
        values = [machine.pop()] if name == "APPEND" else machine.pop_to_mark()
        target = machine.top()
        if not isinstance(target, list):
            raise _Rejected(f"{name} to a {type(target).__name__}")
        target.extend(values)
    elif name in ("SETITEM", "SETITEMS"):
        values = machine.pop_to_mark() if name == "SETITEMS" else [*reversed([machine.pop(), machine.pop()])]
        target = machine.top()
        if not isinstance(target, dict) or len(values) % 2:
            raise _Rejected(f"{name} to a {type(target).__name__}")
        for key, value in zip(values[::2], values[1::2]):
            if not isinstance(key, (int, str)):
                raise _Rejected(f"a dict key of type {type(key).__name__}")
            target[key] = value
    elif name in ("BINPUT", "LONG_BINPUT"):
        memo[arg] = machine.top()
    elif name in ("BINGET", "LONG_BINGET"):
        if arg not in memo:
            raise _Rejected(f"memo entry {arg} read before it is written")
        stack.append(memo[arg])
    elif name == "GLOBAL":
        if arg not in ALLOWED_GLOBALS:
            raise _Rejected(f"the global {arg!r:.80} (not whitelisted)")
        stack.append(ALLOWED_GLOBALS[arg])
    elif name == "REDUCE":
        args = machine.pop()
        stack.append(_reduce(machine.pop(), args))
    elif name == "NEWOBJ":
        args, cls = machine.pop(), machine.pop()
        if cls is not Global.CSR_MATRIX or args != ():
            raise _Rejected("NEWOBJ of something other than csr_matrix()")
        stack.append(_Csr())
    elif name == "BUILD":
        state = machine.pop()
        _build(machine.top(), state)
    elif name != "PROTO":
        raise _Rejected(f"the opcode {name} (not whitelisted)")


def parse_pickled_data(data: bytes, what: str) -> PickledData:
    """The numpy array, scipy CSR matrix or ``dict[int, list[int]]`` that the pickle ``data`` describes, rebuilt
    without unpickling; a one-line :class:`DataError` naming ``what`` for anything outside the whitelist, a truncated
    stream, or bytes after its end."""
    machine = _Machine()
    position = 0
    try:
        for opcode, arg, position in pickletools.genops(data):
            if opcode.name == "STOP":
                if position + 1 != len(data):
                    raise _Rejected(f"{len(data) - position - 1} bytes after the end of the pickle")
                if len(machine.stack) != 1:
                    raise _Rejected(f"{len(machine.stack)} values left on the stack")
                return _finished(machine.stack[0])
            _step(machine, opcode.name, arg)
    except _Rejected as exc:
        raise DataError(
            f"{what} is not a pickle this reader accepts: {exc} at byte {position} (delete it to fetch it again)"
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:  # genops on a truncated or malformed stream
        raise DataError(
            f"{what} is truncated or not a pickle ({one_line(exc, 200)}; delete it to fetch it again)"
        ) from None
    raise DataError(f"{what} is truncated: the pickle has no STOP (delete it to fetch it again)")


def read_pickled_data(path: str | os.PathLike) -> PickledData:
    """:func:`parse_pickled_data` of the file at ``path``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {one_line(exc)}") from None
    return parse_pickled_data(data, f"the pickled file {path}")
