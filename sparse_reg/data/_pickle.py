"""Restricted unpickling of the CIFAR python batches."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

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


class _Restricted(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("numpy.core"):
            # NumPy 2 renamed numpy.core to numpy._core; the old path only warns.
            module = "numpy._core" + module[len("numpy.core") :]
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return super().find_class(module, name)


def load_pickle(path: Path, content: bytes) -> dict[str, Any]:
    """Unpickle a CIFAR batch into a dict with ``str`` keys.

    Raises
    ------
    CorruptDatasetError
        The bytes are not a pickle of a dict of plain data (any unpickling failure, including a
        refused global, is reported with the file name).
    """
    try:
        obj = _Restricted(io.BytesIO(content), encoding="bytes").load()
    except Exception as exc:  # any failure inside pickle means the file is not what we expect
        raise CorruptDatasetError(
            f"{path}: not a valid CIFAR python pickle ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(obj, dict):
        raise CorruptDatasetError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}
