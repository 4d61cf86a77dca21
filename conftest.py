"""Shared test configuration for ``tests/`` and ``proofs/``: backends and hypothesis profiles.

Backends are chosen with ``SPARSE_REG_BACKENDS`` (comma-separated, default: all). Each one that is
missing, or that needs a GPU this machine lacks, is skipped with the reason. The hypothesis profile
comes from ``SPARSE_REG_HYPOTHESIS_PROFILE``: ``dev`` (default, fast), ``ci`` or ``thorough``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from sparse_reg.backends import REGISTRY

_SUPPRESS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
settings.register_profile("dev", max_examples=25, deadline=None, suppress_health_check=_SUPPRESS)
# ci: the same examples on every run (derandomize), and no example database, so a failure stored
# by one backend's run never replays on another (the database key ignores the backend parameter).
settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=_SUPPRESS,
                          derandomize=True, database=None, print_blob=True)
# thorough explores: random draws even where Hypothesis would derandomize by default (CI=true).
settings.register_profile("thorough", max_examples=1000, deadline=None,
                          suppress_health_check=_SUPPRESS, derandomize=False)
settings.load_profile(os.environ.get("SPARSE_REG_HYPOTHESIS_PROFILE", "dev"))


@dataclass(frozen=True)
class Backend:
    """One array library (and device) the suite runs on.

    Attributes
    ----------
    name
        The test id, e.g. ``"torch"``, ``"torch:cuda"``, ``"array_api_strict:2024.12"``.
    xp
        The array-API namespace (compat-wrapped where the library is not compliant itself).
    asarray
        Converts NumPy data to this backend and device, keeping the dtype.
    has_float64
        Whether float64 is available (always here: JAX runs with x64 enabled).
    """

    name: str
    xp: ModuleType
    asarray: Callable[[Any], Any]
    has_float64: bool = True

    def __repr__(self) -> str:
        return self.name


def to_numpy(x: Any) -> np.ndarray:
    """Copy any backend's array to a NumPy array (for comparisons in tests only)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":
            x = x.float()
        return x.numpy()
    if hasattr(x, "get"):  # CuPy
        return x.get()
    if type(x).__module__.startswith("array_api_strict"):
        import array_api_strict as strict

        return np.asarray(strict.asarray(x, device=strict.Device("CPU_DEVICE")))
    return np.asarray(x)


def _make_backend(name: str) -> Backend:
    library, _, variant = name.partition(":")
    if library == "numpy":
        return Backend(name, np, np.asarray)
    if library == "array_api_strict":
        strict = pytest.importorskip("array_api_strict")
        strict.set_array_api_strict_flags(api_version=variant or strict.__array_api_version__)
        return Backend(name, strict, strict.asarray)
    if library == "torch":
        torch = pytest.importorskip("torch")
        from array_api_compat import array_namespace

        if variant == "cuda" and not torch.cuda.is_available():
            pytest.skip("torch:cuda needs a CUDA device; torch.cuda.is_available() is False")
        device = torch.device(variant or "cpu")
        return Backend(name, array_namespace(torch.empty(0)), lambda a: torch.as_tensor(a, device=device))
    if library == "jax":
        jax = pytest.importorskip("jax")
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        return Backend(name, jnp, jnp.asarray)
    if library == "cupy":
        try:
            cupy = importlib.import_module("cupy")
            if cupy.cuda.runtime.getDeviceCount() == 0:
                raise RuntimeError("no CUDA device")
        except Exception as exc:
            pytest.skip(f"cupy needs an installed CuPy and a CUDA device: {exc}")
        from array_api_compat import array_namespace

        return Backend(name, array_namespace(cupy.empty(0)), cupy.asarray)
    raise ValueError(f"unknown test backend {name!r}")


ALL_BACKENDS = tuple(test_id for row in REGISTRY.values() for test_id in row.test_ids)
SELECTED = tuple(b for b in os.environ.get("SPARSE_REG_BACKENDS", ",".join(ALL_BACKENDS)).split(",") if b)


@pytest.fixture(params=SELECTED)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each selected backend in turn; skipped with a reason where unavailable."""
    made = _make_backend(request.param)
    yield made
    if request.param.startswith("array_api_strict"):
        made.xp.reset_array_api_strict_flags()


@pytest.fixture(params=[p for p in SELECTED if not p.startswith("array_api_strict:")])
def fast_backend(request: pytest.FixtureRequest) -> Backend:
    """The selected backends minus the extra array-api-strict version (for expensive properties)."""
    return _make_backend(request.param)


@pytest.fixture
def numpy_of() -> Callable[[Any], np.ndarray]:
    """The :func:`to_numpy` helper, as a fixture for modules that cannot import this file."""
    return to_numpy
