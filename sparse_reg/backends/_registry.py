r"""The backend contract and the one table of supported array libraries.

A backend is one :class:`Backend` row in :data:`REGISTRY` plus, where the library needs more than the
array-API core, one hooks module in this package implementing :class:`BackendHooks`. Everything
that needs to know about libraries (dispatch, the trainer's choices, the test suite's backend list,
the documentation tables) reads this table; nothing else names a library.

Adding a backend: write ``sparse_reg/backends/<name>.py`` with the hooks the library needs and add
one :class:`Backend` line to :data:`REGISTRY`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from sparse_reg._frozen import FrozenMapping

if TYPE_CHECKING:  # the contract names the objective's types; nothing is imported at run time
    from sparse_reg.regularizer import Objective, SRTerms

__all__ = ["REGISTRY", "Backend", "BackendHooks", "get_backend"]


class _cached:
    """:func:`functools.cached_property` without the lock it takes before Python 3.12, which
    ``torch.compile`` cannot trace: a race computes the value twice, which is harmless here."""

    def __init__(self, compute: Callable[[Any], Any]) -> None:
        self.compute, self.__doc__ = compute, compute.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        value = instance.__dict__[self.name] = self.compute(instance)
        return value


@runtime_checkable
class BackendHooks(Protocol):
    """What a hooks module ``sparse_reg.backends.<name>`` provides.

    Every function is optional except :func:`from_host` and :func:`host_view`; :class:`Backend`
    says which ones a row promises (``fused``, ``autograd``, ``requires_device``), and the test
    suite checks each promise against the module. A row that is both fused and autograd also
    provides ``differentiable_loss(logits, labels, objective, reduction)``.
    """

    def from_host(self, x: Any, device: str | None) -> Any:
        """Copy host (NumPy) data to this library, on ``device`` (``None``: the default)."""

    def host_view(self, x: Any) -> Any:
        """A zero-copy NumPy view of ``x`` when it lives in host memory and that view is cheap,
        else ``None`` (used for checks that read values, such as the label range)."""

    def supports(self, objective: Objective) -> bool:
        """Whether :func:`sr_terms` has a fused implementation of ``objective``."""

    def sr_terms(
        self, logits: Any, labels: Any, objective: Objective, *, need_grad: bool, grad_scale: float
    ) -> SRTerms:
        """The fast path: same contract as :func:`sparse_reg.regularizer.sr_terms`."""

    def value_and_grad(self, per_sample: Callable[[Any], Any], x: Any) -> tuple[Any, Any]:
        """Per-sample values and the gradient of their sum, by the library's autograd."""

    def require_device(self) -> None:
        """Raise :class:`~sparse_reg.errors.BackendUnavailableError` without a usable device."""


@dataclass(frozen=True)
class Backend:
    """One supported array library.

    Attributes
    ----------
    name
        The name of ``backend=`` and of :func:`sparse_reg.backends.library_of`.
    import_name
        The module that is the library's array namespace (``"jax.numpy"`` for JAX).
    extra
        The pip requirement that installs it, for error messages and the docs.
    hooks
        The module implementing :class:`BackendHooks`, or ``None``: the array-API core and
        ``asarray`` serve it.
    fused
        The hooks provide a fused value-and-gradient path (``supports``, ``sr_terms``).
    autograd
        The hooks differentiate a value-only registered loss (``value_and_grad``).
    trainer
        ``python -m sparse_reg.train --backend`` accepts it (it can exchange tensors with torch).
    test_ids
        The ids the test suite parametrises over: the name, optionally with a device or variant
        after a colon (``"torch:cuda"``, ``"array_api_strict:2024.12"``).
    gpu_ids
        The subset of ``test_ids`` that need a CUDA device.
    requires_device
        The library cannot run at all without a CUDA device; the hooks' ``require_device()``
        raises :class:`~sparse_reg.errors.BackendUnavailableError` when there is none.
    """

    name: str
    import_name: str
    extra: str
    hooks: str | None = None
    fused: bool = False
    autograd: bool = False
    trainer: bool = False
    test_ids: tuple[str, ...] = ()
    gpu_ids: tuple[str, ...] = field(default=())
    requires_device: bool = False

    @_cached
    def hooks_module(self) -> ModuleType | None:
        """The imported hooks module (importing it imports the library)."""
        if not self.hooks:
            return None
        module = sys.modules.get(self.hooks)
        if module is None and self.name == "torch":
            # torch.compile runs an import statement while it traces (the first call that meets a
            # tensor can be inside a compiled function), but cannot trace importlib.import_module.
            from sparse_reg.backends import torch as module
        return module or importlib.import_module(self.hooks)

    @_cached
    def fast_path(self) -> ModuleType | None:
        """The hooks module when it has a fused path, else ``None``."""
        return self.hooks_module if self.fused else None


#: Every supported library, in the order of ``sparse_reg.backends.BACKENDS``.
REGISTRY: FrozenMapping[str, Backend] = FrozenMapping({
    backend.name: backend
    for backend in (
        Backend("numpy", "numpy", "sparse_reg", "sparse_reg.backends.numpy", fused=True,
                trainer=True, test_ids=("numpy",)),
        Backend("torch", "torch", "sparse_reg[torch]", "sparse_reg.backends.torch", fused=True,
                autograd=True, trainer=True, test_ids=("torch", "torch:cuda"),
                gpu_ids=("torch:cuda",)),
        Backend("cupy", "cupy", "sparse_reg[cupy]", "sparse_reg.backends.cupy", fused=True,
                trainer=True, test_ids=("cupy",), gpu_ids=("cupy",), requires_device=True),
        Backend("jax", "jax.numpy", "sparse_reg[jax]", "sparse_reg.backends.jax", autograd=True,
                test_ids=("jax",)),
        Backend("array_api_strict", "array_api_strict", "sparse_reg[test]",
                test_ids=("array_api_strict", "array_api_strict:2024.12")),
    )
})


def get_backend(name: str) -> Backend | None:
    """The :class:`Backend` row of library ``name``, or ``None`` for an unlisted library."""
    return REGISTRY.get(name)
