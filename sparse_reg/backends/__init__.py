"""Backend dispatch: resolve the library and device of a call, and move data between libraries.

The logits decide the library and the device; labels follow them. Host (NumPy) data is moved to
another library only when asked for with ``backend=``. A hop between two device libraries is never
implicit: it hides a copy or a stream hazard, so it is refused with a pointer to :func:`to_backend`.

The supported libraries and what each provides are the rows of :data:`REGISTRY` (see
:mod:`sparse_reg.backends._registry` for the contract): ``"numpy"``, ``"torch"``, ``"cupy"``,
``"jax"`` and ``"array_api_strict"``. A device may follow a colon, as in ``"torch:cuda"`` or
``"torch:cuda:1"``.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import numpy as np

from sparse_reg._compat import (
    array_namespace,
    device,
    follow_logits,
    is_array_api_obj,
    is_lazy_array,
    is_torch_array,
    is_torch_type,
    library_of,
    namespace_of,
)
from sparse_reg._validation import refuse_meta
from sparse_reg.backends._registry import REGISTRY, Backend, BackendHooks, get_backend
from sparse_reg.errors import BackendMismatchError, BackendUnavailableError

__all__ = [
    "BACKENDS",
    "REGISTRY",
    "Backend",
    "BackendHooks",
    "array_namespace",
    "device",
    "fast_path",
    "get_backend",
    "import_library",
    "is_lazy_array",
    "library_of",
    "resolve",
    "resolve_call",
    "to_backend",
]

#: The names ``backend=`` accepts.
BACKENDS: tuple[str, ...] = tuple(REGISTRY)


def _split(backend: str) -> tuple[str, str | None]:
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a string such as 'torch' or 'cupy'; got {backend!r}")
    name, _, dev = backend.partition(":")
    if name not in REGISTRY:
        raise ValueError(
            f"unknown backend {backend!r}; valid backends: {', '.join(BACKENDS)} "
            "(a device may follow a colon, e.g. 'torch:cuda')"
        )
    return name, dev or None


def import_library(backend: str) -> ModuleType:
    """Import the array library behind ``backend``, with an install hint when it is missing.

    Raises
    ------
    BackendUnavailableError
        The library is not installed, or (CuPy) no CUDA device is present.
    """
    name, _ = _split(backend)
    row = REGISTRY[name]
    try:
        module = importlib.import_module(row.import_name)
    except Exception as exc:  # CuPy fails with RuntimeError, not ImportError, on a broken CUDA
        raise BackendUnavailableError(
            f"backend={name!r} needs the {row.import_name.split('.')[0]!r} package, which could not "
            f"be imported ({type(exc).__name__}: {exc}); install it with: pip install '{row.extra}'"
        ) from exc
    if row.requires_device:
        row.hooks_module.require_device()
    return module


def _from_host(x: Any, backend: str) -> Any:
    """Copy host (NumPy) data into the library and device named by ``backend``."""
    name, dev = _split(backend)
    lib = import_library(name)
    hooks = REGISTRY[name].hooks_module
    return hooks.from_host(x, dev) if hooks is not None else lib.asarray(x)


#: Types already seen to be arrays: the check is per type, and a measurable part of a small call.
_ARRAY_TYPES: set[type] = set()


def _as_array(x: Any, argument: str) -> Any:
    if type(x) in _ARRAY_TYPES:
        return x
    if isinstance(x, (list, tuple)):
        return np.asarray(x)
    if not (is_torch_type(type(x)) or is_array_api_obj(x)):  # is_array_api_obj warns when traced
        raise TypeError(
            f"{argument} must be an array (NumPy, CuPy, PyTorch, JAX or any array-API library); "
            f"got {type(x).__name__}"
        )
    _ARRAY_TYPES.add(type(x))
    return x


def _native(x: Any) -> Any:
    """``x`` in the machine's byte order: a NumPy array stored big-endian (``astype('>f4')``,
    data read from a file) is converted once here, as every NumPy operation would; no compiled
    path or device library takes the other byte order."""
    if type(x) is np.ndarray and not x.dtype.isnative:  # one type test on the common call
        return x.astype(x.dtype.newbyteorder("="))
    return x


def resolve(logits: Any, labels: Any, backend: str | None = None) -> tuple[ModuleType, Any, Any]:
    """Return ``(xp, logits, labels)`` with both arrays in the namespace the call runs in.

    Parameters
    ----------
    logits, labels
        Arrays of any supported library; Python lists are taken as NumPy data.
    backend
        ``None`` lets the logits decide. A name moves host (NumPy) input to that library; input
        already in it is left alone.

    Raises
    ------
    BackendMismatchError
        ``logits`` belongs to a library other than NumPy and ``backend`` names another one, or
        ``labels`` belongs to a device library other than the logits'.
    """
    return resolve_call(logits, labels, backend)[1:]


def resolve_call(
    logits: Any, labels: Any, backend: str | None = None
) -> tuple[Backend | None, ModuleType, Any, Any]:
    """:func:`resolve`, with the :class:`Backend` row of the library the call runs in first
    (``None`` for an array-API library outside :data:`REGISTRY`)."""
    logits = _native(_as_array(logits, "logits"))
    labels = _native(_as_array(labels, "labels"))
    library = library_of(logits)
    if library == "torch":
        refuse_meta(logits, "logits")
        refuse_meta(labels, "labels")
    if backend is not None:
        name, _ = _split(backend)
        if library != name:
            if library != "numpy":
                raise BackendMismatchError(
                    f"backend={backend!r} was asked for, but logits is a {library} array; convert "
                    f"it explicitly with sparse_reg.backends.to_backend(logits, {name!r}) "
                    "(zero-copy through DLPack on the same device)"
                )
            logits, library = _from_host(logits, backend), name
    xp = namespace_of(logits)
    return REGISTRY.get(library), xp, logits, follow_logits("labels", labels, logits, xp)


def to_backend(x: Any, backend: str) -> Any:
    """Convert ``x`` to another array library without copying, through DLPack.

    Both libraries then share the memory: writing to one is seen by the other. A torch tensor that
    requires grad is detached first, since a DLPack capsule carries no autograd history.

    Parameters
    ----------
    x
        An array of any DLPack-capable library.
    backend
        Target library name (see :data:`BACKENDS`).

    Examples
    --------
    >>> import numpy as np
    >>> from sparse_reg.backends import to_backend
    >>> to_backend(np.arange(3.0), "numpy")
    array([0., 1., 2.])
    """
    name, _ = _split(backend)
    lib = import_library(name)
    if is_torch_array(x) and x.requires_grad:
        x = x.detach()
    if library_of(x) == name:
        return x
    try:
        return lib.from_dlpack(x)
    except (BufferError, RuntimeError, TypeError, ValueError) as exc:
        raise BackendMismatchError(
            f"cannot hand a {library_of(x)} array on {device(x)} to {name} without a copy: {exc}. "
            "Move it to a device both libraries share first (e.g. copy to the host)."
        ) from exc


def fast_path(x: Any) -> ModuleType | None:
    """The fused implementation module for the library of array ``x``, or ``None``."""
    row = get_backend(library_of(x))
    return row.fast_path if row is not None else None
