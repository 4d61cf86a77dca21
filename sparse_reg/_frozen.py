"""A read-only mapping that pickles: :class:`FrozenMapping`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

__all__ = ["FrozenMapping"]

K = TypeVar("K")
V = TypeVar("V")


class FrozenMapping(Mapping[K, V]):
    """A read-only view of a private copy of a mapping.

    Used instead of :class:`types.MappingProxyType` for mappings that objects hold (an objective's
    loss parameters, a loss's defaults, the backend table): a mapping proxy cannot be pickled, so
    neither ``copy.deepcopy``, ``pickle`` nor ``torch.save`` could copy an object holding one, and
    ``torch.compile`` breaks its graph at a proxy once any dictionary changed during tracing.

    Examples
    --------
    >>> import pickle
    >>> from sparse_reg._frozen import FrozenMapping
    >>> m = FrozenMapping({"q": 0.7})
    >>> pickle.loads(pickle.dumps(m)) == m, m["q"]
    (True, 0.7)
    """

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[K, V] | None = None) -> None:
        self._data: dict[K, V] = dict(data or {})

    def __getitem__(self, key: K) -> V:
        return self._data[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def get(self, key: K, default: V | None = None) -> V | None:
        """``self[key]``, or ``default`` when the key is absent."""
        # Mapping.get goes through __getitem__ and a try block, two Python frames per lookup;
        # the objective's loss parameters are read this way on every call.
        return self._data.get(key, default)

    def __repr__(self) -> str:
        return f"FrozenMapping({self._data!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenMapping, (self._data,))
