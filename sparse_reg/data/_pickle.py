"""Restricted unpickling of the CIFAR python batches.

Loading never runs code: only the few NumPy and codec globals plain arrays need are resolved. The
work is bounded by the size of the input as well, because a pickle can describe far more than it
holds: memo references (``BINGET``, ``DUP``) share one object many times, so 300 bytes can build a
list with :math:`10^{12}` leaves that hashing, printing or converting it to an array would walk.
Hence, for a pickle of ``n`` bytes:

* the result, counting an object once per path that reaches it, has at most ``n`` elements, and
  holds no reference cycle and no object array;
* an array built empty (``_reconstruct``, ``ndarray``) has at most ``n`` bytes;
* dict keys are atoms (strings, bytes, numbers, ``None``), so hashing a key is cheap, and sets,
  which CIFAR never holds, are refused;
* ``_codecs.encode`` is only the ``latin1`` encoding protocol 2 uses for bytes.
"""

from __future__ import annotations

import io
import math
import pickle
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import CorruptDatasetError

__all__ = ["load_pickle"]

# Only what plain NumPy arrays, dicts, lists and bytes need. CIFAR's files were written by
# Python 2 with protocol 2; files re-written by Python 3 add ``_codecs.encode`` (protocol 2 bytes)
# or ``_frombuffer`` (protocol 5 arrays).
_ALLOWED = {
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}

_ATOMS = (str, bytes, int, float, bool, type(None))
# What the expanded-size walk descends into (an array only to refuse object arrays).
_CONTAINERS = (dict, list, tuple, np.ndarray)


class _BoundedPickle(pickle.UnpicklingError):
    """A bound of this module refused the pickle (reported without the exception's type name)."""


class _ArrayType:
    """Stands for ``numpy.ndarray`` in a pickle: calling it allocates within the byte bound."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def __call__(self, shape: Any, dtype: Any = float, *args: Any, **kwargs: Any) -> np.ndarray:
        _check_allocation(shape, dtype, self.limit)
        return np.ndarray(shape, dtype, *args, **kwargs)


def _check_allocation(shape: Any, dtype: Any, limit: int) -> None:
    """Refuse an empty array of more than ``limit`` bytes before NumPy allocates it."""
    dims = (shape,) if isinstance(shape, int) else tuple(shape)
    nbytes = math.prod(int(d) for d in dims) * np.dtype(dtype).itemsize
    if nbytes > limit:
        raise _BoundedPickle(
            f"it declares an array of shape {dims} and dtype {np.dtype(dtype)} ({nbytes} bytes), "
            f"more than the {limit} bytes of the whole file"
        )


def _reconstruct_within(limit: int, array_type: _ArrayType) -> Callable[..., np.ndarray]:
    from numpy._core.multiarray import _reconstruct

    def reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        if subtype is not array_type and subtype is not np.ndarray:
            raise _BoundedPickle(f"it calls _reconstruct of {subtype!r}; only numpy.ndarray is allowed")
        _check_allocation(shape, dtype, limit)
        return _reconstruct(np.ndarray, shape, dtype)

    return reconstruct


def _latin1_encode(obj: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # Protocol 2 writes bytes as _codecs.encode(text, "latin1"); no other codec is needed.
    if encoding.replace("-", "").replace("_", "").lower() not in ("latin1", "iso88591"):
        raise _BoundedPickle(f"it calls _codecs.encode with encoding {encoding!r}; only latin1 is allowed")
    return obj.encode("latin1", errors)


def _atom_keys(keys: Iterable[Any]) -> None:
    for key in keys:
        if not isinstance(key, _ATOMS):
            raise _BoundedPickle(
                f"it has a dict key of type {type(key).__name__}; keys must be strings or numbers"
            )


def _no_sets(self: Any) -> None:
    raise _BoundedPickle("it holds a set; CIFAR batches hold dicts, lists, bytes and arrays only")


def _setitem(self: Any) -> None:
    _atom_keys([self.stack[-2]])
    pickle._Unpickler.load_setitem(self)


def _setitems(self: Any) -> None:
    # The items above the mark are the current stack until pop_mark swaps it out.
    _atom_keys(self.stack[0::2])
    pickle._Unpickler.load_setitems(self)


def _dict(self: Any) -> None:
    _atom_keys(self.stack[0::2])
    pickle._Unpickler.load_dict(self)


def _dispatch() -> dict[int, Callable[[Any], None]]:
    """The pure-Python unpickler's opcode table with the hashing opcodes checked first."""
    table = dict(pickle._Unpickler.dispatch)
    table.update({opcode[0]: _no_sets for opcode in (pickle.EMPTY_SET, pickle.ADDITEMS, pickle.FROZENSET)})
    table.update({pickle.SETITEM[0]: _setitem, pickle.SETITEMS[0]: _setitems, pickle.DICT[0]: _dict})
    return table


class _Restricted(pickle._Unpickler):
    """The pure-Python unpickler: unlike the C one, it lets keys be checked before they are hashed."""

    dispatch: ClassVar[dict[int, Callable[[Any], None]]] = _dispatch()

    def __init__(self, content: bytes) -> None:
        super().__init__(io.BytesIO(content), encoding="bytes")
        self.array_type = _ArrayType(len(content))
        self.bounded = {
            ("numpy", "ndarray"): self.array_type,
            ("numpy._core.multiarray", "_reconstruct"): _reconstruct_within(len(content), self.array_type),
            ("_codecs", "encode"): _latin1_encode,
        }

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("numpy.core"):
            # NumPy 2 renamed numpy.core to numpy._core; the old path only warns.
            module = "numpy._core" + module[len("numpy.core") :]
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return self.bounded.get((module, name)) or super().find_class(module, name)


def _children(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return [*node.keys(), *node.values()]
    if isinstance(node, (list, tuple)):
        return list(node)
    if isinstance(node, np.ndarray) and node.dtype.hasobject:
        raise _BoundedPickle("it holds an object array; arrays must hold numbers")
    return []


def _check_expanded_size(root: Any, limit: int) -> None:
    """Refuse ``root`` if, counting shared objects once per reference, it has over ``limit`` elements.

    Sizes are memoised per object, so the walk costs the number of distinct objects and references
    (linear in the file), not the expanded size it bounds.
    """
    sizes: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if not finished and key in sizes:
            continue  # shared, and already measured: its size is memoised
        children = _children(node)
        if finished:
            open_.discard(key)
            sizes[key] = 1 + sum(sizes.get(id(c), 1) for c in children)
            if sizes[key] > limit:
                raise _BoundedPickle(
                    f"it expands to more than {limit} elements (one per byte of the file) "
                    "through shared references"
                )
        else:
            if key in open_:
                raise _BoundedPickle("it holds a reference cycle; CIFAR batches are trees")
            open_.add(key)
            stack.append((node, True))
            stack.extend((c, False) for c in children if isinstance(c, _CONTAINERS))


def load_pickle(path: Path, content: bytes) -> dict[str, Any]:
    """Unpickle a CIFAR batch into a dict with ``str`` keys, within bounds set by ``len(content)``.

    The bounds (see the module docstring): at most ``len(content)`` elements counting shared
    references once per use, no cycle, set or object array, dict keys that are atoms, and no
    empty array of more than ``len(content)`` bytes.

    Raises
    ------
    CorruptDatasetError
        The bytes are not a pickle of a dict of plain data (any unpickling failure, including a
        refused global or a bound above, is reported with the file name).
    """
    try:
        obj = _Restricted(content).load()
        _check_expanded_size(obj, len(content))
    except _BoundedPickle as exc:
        raise CorruptDatasetError(f"{path}: not a valid CIFAR python pickle: {exc}") from None
    except Exception as exc:  # any failure inside pickle means the file is not what we expect
        raise CorruptDatasetError(
            f"{path}: not a valid CIFAR python pickle ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(obj, dict):
        raise CorruptDatasetError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}
