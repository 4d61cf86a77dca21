"""Backend dispatch: the one place that knows array-library names.

The logits decide the library and the device; labels follow them. Host (NumPy) data is moved to
another library only when asked for with ``backend=``. A hop between two device libraries is never
implicit: it hides a copy or a stream hazard, so it is refused with a pointer to :func:`to_backend`.

Supported names: ``"numpy"``, ``"torch"``, ``"cupy"``, ``"jax"`` and ``"array_api_strict"``. A device
may follow a colon, as in ``"torch:cuda"`` or ``"torch:cuda:1"``.
"""

from __future__ import annotations

import importlib
from functools import cache
from types import ModuleType
from typing import Any

from sparse_reg.backends._compat import (
    array_namespace,
    device,
    is_array_api_obj,
    is_lazy_array,
    is_torch_array,
    library_of,
)
from sparse_reg.errors import BackendMismatchError, BackendUnavailableError

__all__ = [
    "BACKENDS",
    "array_namespace",
    "device",
    "fast_path",
    "import_library",
    "is_lazy_array",
    "library_of",
    "resolve",
    "to_backend",
]

#: Backend name -> (module to import, the extra that installs it).
_LIBRARIES: dict[str, tuple[str, str]] = {
    "numpy": ("numpy", "sparse_reg"),
    "torch": ("torch", "sparse_reg[torch]"),
    "cupy": ("cupy", "sparse_reg[cupy]"),
    "jax": ("jax.numpy", "sparse_reg[jax]"),
    "array_api_strict": ("array_api_strict", "sparse_reg[test]"),
}
BACKENDS: tuple[str, ...] = tuple(_LIBRARIES)

#: Backends with a fused value-and-gradient implementation, and the module that holds it.
_FAST_PATHS: dict[str, str] = {
    "numpy": "sparse_reg.backends.numpy",
    "torch": "sparse_reg.backends.torch",
    "cupy": "sparse_reg.backends.cupy",
}


def _split(backend: str) -> tuple[str, str | None]:
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a string such as 'torch' or 'cupy'; got {backend!r}")
    name, _, dev = backend.partition(":")
    if name not in _LIBRARIES:
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
    module_name, extra = _LIBRARIES[name]
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # CuPy fails with RuntimeError, not ImportError, on a broken CUDA
        raise BackendUnavailableError(
            f"backend={name!r} needs the {module_name.split('.')[0]!r} package, which could not be "
            f"imported ({type(exc).__name__}: {exc}); install it with: pip install '{extra}'"
        ) from exc
    if name == "cupy":
        _require_cuda_devices(module)
    return module


def _require_cuda_devices(cupy: ModuleType) -> None:
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        raise BackendUnavailableError(
            f"backend='cupy' needs a CUDA device, but CUDA reported: {exc}"
        ) from exc
    if count == 0:
        raise BackendUnavailableError("backend='cupy' needs a CUDA device; none was found")


def _from_host(x: Any, backend: str) -> Any:
    """Copy host (NumPy) data into the library and device named by ``backend``."""
    name, dev = _split(backend)
    lib = import_library(name)
    if name == "numpy":
        return x
    if name == "torch":
        target = lib.device(dev or "cpu")
        if target.type == "cuda" and not lib.cuda.is_available():
            raise BackendUnavailableError(
                f"backend={backend!r} needs a CUDA device, but torch.cuda.is_available() is False"
            )
        return lib.as_tensor(x, device=target)
    if name == "jax":
        import jax

        return jax.device_put(lib.asarray(x), jax.devices(dev)[0] if dev else None)
    return lib.asarray(x)


def _as_array(x: Any, argument: str) -> Any:
    if isinstance(x, (list, tuple)):
        import numpy as np

        return np.asarray(x)
    if not is_array_api_obj(x):
        raise TypeError(
            f"{argument} must be an array (NumPy, CuPy, PyTorch, JAX or any array-API library); "
            f"got {type(x).__name__}"
        )
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
    logits = _as_array(logits, "logits")
    labels = _as_array(labels, "labels")
    if backend is not None:
        name, _ = _split(backend)
        have = library_of(logits)
        if have != name:
            if have != "numpy":
                raise BackendMismatchError(
                    f"backend={backend!r} was asked for, but logits is a {have} array; convert it "
                    f"explicitly with sparse_reg.backends.to_backend(logits, {name!r}) "
                    "(zero-copy through DLPack on the same device)"
                )
            logits = _from_host(logits, backend)
    xp = array_namespace(logits)
    logits_library, labels_library = library_of(logits), library_of(labels)
    if labels_library != logits_library:
        if labels_library != "numpy":
            raise BackendMismatchError(
                f"logits is a {logits_library} array but labels is a {labels_library} array; "
                "pass both from one library, or convert with sparse_reg.backends.to_backend"
            )
        labels = xp.asarray(labels, device=device(logits))
    return xp, logits, labels


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
    return _fast_path_module(library_of(x))


@cache
def _fast_path_module(library: str) -> ModuleType | None:
    module = _FAST_PATHS.get(library)
    return importlib.import_module(module) if module else None
