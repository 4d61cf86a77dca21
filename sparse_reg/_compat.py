"""The only import of :mod:`array_api_compat` in the package.

Keeping the dependency behind one module means a change of its API touches one file, and the rest of
the code reads as plain array-API code.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import (
    array_namespace,
    device,
    is_array_api_obj,
    is_cupy_array,
    is_jax_array,
    is_lazy_array,
    is_numpy_array,
    is_torch_array,
)

from sparse_reg.errors import BackendMismatchError

__all__ = [
    "array_namespace",
    "device",
    "device_of",
    "host_scalar",
    "is_array_api_obj",
    "is_cupy_array",
    "is_jax_array",
    "is_lazy_array",
    "is_numpy_array",
    "is_torch_array",
    "is_torch_type",
    "is_traced",
    "library_of",
    "namespace_of",
    "traceable_namespace",
]


#: Library name and namespace by array type: both follow from the type alone, and the checks that
#: find them are a measurable part of a small call.
_LIBRARY_BY_TYPE: dict[type, str] = {}
_NAMESPACE_BY_TYPE: dict[type, Any] = {}


def library_of(x: object) -> str:
    """Name the array library that owns ``x``.

    Returns one of ``"numpy"``, ``"torch"``, ``"cupy"``, ``"jax"``, or the top-level module name of
    any other array-API library (``"array_api_strict"``, ...).
    """
    name = _LIBRARY_BY_TYPE.get(type(x))
    if name is None:
        name = _LIBRARY_BY_TYPE[type(x)] = _find_library(x)
    return name


def namespace_of(x: object) -> Any:
    """:func:`array_namespace` of one array, remembered per array type."""
    namespace = _NAMESPACE_BY_TYPE.get(type(x))
    if namespace is None:
        if is_torch_type(type(x)):  # array_namespace's type checks would warn when traced
            import array_api_compat.torch as namespace
        else:
            namespace = array_namespace(x)
        _NAMESPACE_BY_TYPE[type(x)] = namespace
    return namespace


def traceable_namespace(x: object) -> Any:
    """:func:`namespace_of` for code that ``torch.compile`` traces mid-graph: a torch tensor's
    namespace without the per-type table, whose contents a read while tracing turns into a guard
    (a later call that adds a type then costs a recompilation)."""
    if is_torch_type(type(x)):
        import array_api_compat.torch as namespace

        return namespace
    return namespace_of(x)


def device_of(x: Any) -> Any:
    """:func:`device` of ``x``; a torch tensor's own ``device`` attribute, which
    ``torch.compile`` traces without the warnings of :func:`device`'s functools caches."""
    # No per-type table here: one filled while torch.compile traces can cost a recompilation.
    if is_torch_type(type(x)):
        return x.device
    return device(x)


def is_torch_type(cls: type) -> bool:
    """Whether ``cls`` is :class:`torch.Tensor` or a subclass defined in torch (fake and functional
    tensors included), decided without array_api_compat's type checks: those are functools
    caches, and ``torch.compile`` prints a warning for each one it traces."""
    module = cls.__module__
    if module != "torch" and not module.startswith("torch."):
        return False
    import torch

    return issubclass(cls, torch.Tensor)


def is_traced(x: Any) -> bool:
    """Whether ``x`` has no values to read yet: a JAX tracer (``jax.jit``, ``jax.grad``,
    ``jax.vmap``), or a torch tensor seen by ``torch.compile`` or met inside a ``torch.func``
    transform (``vmap``, ``grad``). Reading such an array (``bool``, ``float``, ``.numpy()``)
    fails, or under ``torch.compile`` breaks the graph and guards on the value."""
    # The defining module first: array_api_compat's type checks are functools caches, which
    # torch.compile warns about each time it traces one (a dozen warnings on a first compile).
    module = type(x).__module__
    if module.startswith("torch") or (not module.startswith(("jax", "numpy")) and is_torch_array(x)):
        import torch

        # Inside a torch.func transform even a plain tensor refuses .numpy(), so the question is
        # whether a transform is active, not whether x itself is wrapped.
        return torch.compiler.is_compiling() or torch._C._functorch.maybe_current_level() is not None
    if is_jax_array(x):
        import jax

        return isinstance(x, jax.core.Tracer)
    return False


def host_scalar(x: Any) -> float | None:
    """The value of a 0-D array when reading it costs no device synchronisation (NumPy, CPU
    tensors), else ``None`` (device memory, traced arrays)."""
    if is_numpy_array(x):
        return float(x)
    if is_torch_array(x) and x.device.type == "cpu" and not is_traced(x):
        return float(x.detach())
    return None


def _find_library(x: object) -> str:
    if is_torch_type(type(x)):  # first: the checks below would warn when traced
        return "torch"
    if is_numpy_array(x):
        return "numpy"
    if is_torch_array(x):
        return "torch"
    if is_cupy_array(x):
        return "cupy"
    if is_jax_array(x):
        return "jax"
    return type(x).__module__.split(".")[0]


def follow_logits(name: str, array: Any, logits: Any, xp: Any) -> Any:
    """``array`` (the argument ``name``) in the library and on the device of ``logits``: NumPy
    input is moved there; an array of another library raises :class:`BackendMismatchError`."""
    library, other = library_of(logits), library_of(array)
    if other == library:
        return array
    if other != "numpy":
        raise BackendMismatchError.mixed("logits", library, name, other)
    return xp.asarray(array, device=device(logits))
