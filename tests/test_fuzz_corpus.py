"""A fixed corpus of extreme inputs, run on every available path against the float64 reference.

:func:`build_corpus` makes the same deterministic list of cases on every run: batches holding a
regular row and rows with NaN, ``+inf``, ``-inf`` entries, the dtype's largest value, denormals,
all-equal and all-zero entries; ``tau`` across the supported range of each dtype
(:data:`~sparse_reg.regularizer.MIN_TAU`) and just below it; float16, bfloat16, float32, float64;
contiguous, strided and transposed layouts; several base losses, exponents, clamps and
normalisation.

Each case runs on every path available here: NumPy with the compiled kernel and with the NumPy
fallback, torch (CPU), JAX and array-api-strict (the reference formula in the dtype itself), and
the CUDA kernel compiled for the host (``tests/_cuda_host.py``) where a C++ compiler is present.
Each must agree with the array-API reference run on float64 copies of the same logits
(``fused=False``), the reference rounded to the dtype the path returns (the documented rule:
results are finite wherever float64's are *and the result fits the dtype*):

* NaN, ``+inf`` and ``-inf`` in the same places, in value and gradient;
* finite values within ``rtol * max(1, |ref|)``; gradients within ``rtol * S`` with
  ``S = max(max |ref grad|, 1 / tau)`` the gradient's natural scale (every entry carries the chain
  rule's :math:`1/\\tau`, so rounding errors are of that order however small the entry);
* ``rtol`` per dtype: :data:`TOLERANCE`.

A ``tau`` below the dtype's minimum must raise the same ``ValueError`` with the same message on
every path.

Rows are left out of a comparison only by :func:`known_limits`, each with its reason: the
documented limits (the normalised losses where a log-probability falls below the dtype's range;
the CUDA kernel's direct :math:`z/\tau` for the dtype's largest logits).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

import sparse_reg as sr
from sparse_reg.backends import _cpu_kernel as kernel
from sparse_reg.regularizer import MIN_TAU

#: Relative tolerance per logits dtype, on values and on gradients (see the module text). 16-bit
#: logits are computed in float32; their gradient is rounded to 16 bits (8 bits of bfloat16).
TOLERANCE = {"float16": 2e-3, "bfloat16": 1.6e-2, "float32": 2e-5, "float64": 1e-10}

#: Classes per row; rows of the corpus, each a function of the dtype's largest value and its
#: smallest denormal, with its label.
CLASSES = 5
ROWS: dict[str, tuple[Callable[[float, float], list[float]], int]] = {
    "regular": (lambda big, tiny: [2.0, -1.0, 0.5, 3.0, -2.5], 1),
    "nan": (lambda big, tiny: [0.0, math.nan, 1.0, 2.0, -1.0], 2),
    "posinf": (lambda big, tiny: [0.0, math.inf, 1.0, 2.0, -1.0], 0),
    "neginf": (lambda big, tiny: [1.0, -math.inf, 0.5, -math.inf, 2.0], 4),
    "huge": (lambda big, tiny: [big, big / 2, 0.0, -big, 1.0], 1),
    "denormal": (lambda big, tiny: [tiny, 0.0, -tiny, 2 * tiny, 0.0], 3),
    "equal": (lambda big, tiny: [3.0] * CLASSES, 2),
    "zero": (lambda big, tiny: [0.0] * CLASSES, 0),
}

DTYPES = ("float16", "bfloat16", "float32", "float64")
LAYOUTS = ("contiguous", "strided", "transposed")
#: Base losses with their parameters; every one has a fused path.
BASES: tuple[tuple[str, dict[str, float]], ...] = (
    ("ce", {}), ("focal", {"gamma": 0.5}), ("gce", {"q": 0.7}), ("mae", {}), ("nce", {}),
    ("sce", {}), ("nce+rce", {}),
)
#: (p, clamp, normalize), cycled through with the bases.
MODES = ((0.1, None, False), (0.5, 1e-7, False), (1.0, None, True), (0.1, 1e-7, True))


@dataclass(frozen=True)
class Case:
    """One input of the corpus: a batch of :data:`ROWS` in ``dtype`` and ``layout``, and an
    objective. ``refused`` holds the message every path must raise (as ``ValueError``), if any."""

    dtype: str
    layout: str
    tau: float
    base: str
    params: dict[str, float] = field(default_factory=dict)
    p: float = 0.1
    clamp: float | None = None
    normalize: bool = False
    lam: float = 1.0
    refused: str | None = None

    @property
    def id(self) -> str:
        mode = f"p{self.p:g}-clamp{self.clamp or 'none'}-{'norm' if self.normalize else 'raw'}"
        below = "-below-min" if self.refused else ""
        return f"{self.dtype}-{self.layout}-tau{self.tau:.0e}{below}-{self.base}-{mode}"

    def arguments(self) -> dict[str, Any]:
        return dict(base=self.base, tau=self.tau, p=self.p, clamp=self.clamp,
                    normalize=self.normalize, lam=self.lam, **self.params)


def taus(dtype: str) -> tuple[float, ...]:
    """Temperatures across the supported range of ``dtype``: its minimum up to 10."""
    low = MIN_TAU[dtype]
    middle = math.sqrt(low)  # halfway, on a log scale, between the minimum and 1
    return (low, middle, 1e-2, 0.5, 10.0)


def build_corpus() -> list[Case]:
    """The corpus: every dtype with every temperature of :func:`taus`, each with the next base
    loss, mode and layout in turn (so each appears with several dtypes and temperatures), plus
    one case per dtype just below its minimum ``tau``."""
    cases, turn = [], 0
    for dtype in DTYPES:
        for tau in taus(dtype):
            for _ in range(2):
                base, params = BASES[turn % len(BASES)]
                p, clamp, normalize = MODES[turn % len(MODES)]
                cases.append(Case(dtype, LAYOUTS[turn % len(LAYOUTS)], tau, base, params, p, clamp,
                                  normalize))
                turn += 1
        below = MIN_TAU[dtype] / 2
        cases.append(Case(dtype, "contiguous", below, "ce",
                          refused=f"tau must be >= {MIN_TAU[dtype]:g} for {dtype} logits; got {below!r}"))
    return cases


CORPUS = build_corpus()


# --- inputs --------------------------------------------------------------------------------------


def _limits(dtype: str) -> tuple[float, float]:
    """The largest finite value and the smallest positive denormal of ``dtype``."""
    if dtype == "bfloat16":
        return 3.3895313892515355e38, 9.183549615799121e-41
    info = np.finfo(dtype)
    return float(info.max), float(info.smallest_subnormal)


def host_batch(case: Case) -> tuple[np.ndarray, np.ndarray]:
    """The case's logits as float64 NumPy values exactly representable in its dtype, and labels."""
    big, tiny = _limits(case.dtype)
    values = np.array([make(big, tiny) for make, _ in ROWS.values()], dtype=np.float64)
    labels = np.array([label for _, label in ROWS.values()], dtype=np.int64)
    return values, labels


def _laid_out(values: np.ndarray, layout: str) -> np.ndarray:
    """``values`` in ``layout``: a view into a larger buffer, or the transpose of a copy."""
    if layout == "strided":
        buffer = np.zeros((values.shape[0], 2 * values.shape[1]), values.dtype)
        buffer[:, ::2] = values
        return buffer[:, ::2]
    if layout == "transposed":
        return np.ascontiguousarray(values.T).T
    return values


# --- paths ---------------------------------------------------------------------------------------


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach()
        return (x.float() if str(x.dtype) == "torch.bfloat16" else x).numpy().astype(np.float64)
    if type(x).__module__.startswith("array_api_strict"):
        return np.asarray(x._array, dtype=np.float64)
    return np.asarray(x, dtype=np.float64)


def _numpy_path(fallback: bool) -> Callable[[Case, np.ndarray, np.ndarray], Any]:
    def run(case: Case, values: np.ndarray, labels: np.ndarray) -> Any:
        logits = _laid_out(values.astype(case.dtype), case.layout)
        with kernel.disabled() if fallback else nullcontext():
            return sr.loss_and_grad(logits, labels, reduction="none", **case.arguments())
    return run


def _torch_path(case: Case, values: np.ndarray, labels: np.ndarray) -> Any:
    import torch

    if case.dtype == "bfloat16":
        logits = torch.from_numpy(_laid_out(values.astype(np.float32), case.layout)).to(torch.bfloat16)
    else:
        logits = torch.from_numpy(_laid_out(values.astype(case.dtype), case.layout))
    return sr.loss_and_grad(logits, torch.from_numpy(labels), reduction="none", **case.arguments())


def _jax_path(case: Case, values: np.ndarray, labels: np.ndarray) -> Any:
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    logits = jnp.asarray(values.astype(np.float32 if case.dtype == "bfloat16" else case.dtype))
    logits = logits.astype(jnp.bfloat16) if case.dtype == "bfloat16" else logits
    return sr.loss_and_grad(logits, jnp.asarray(labels), reduction="none", **case.arguments())


def _strict_path(case: Case, values: np.ndarray, labels: np.ndarray) -> Any:
    import array_api_strict as strict

    logits = strict.asarray(values.astype(case.dtype))
    return sr.loss_and_grad(logits, strict.asarray(labels), reduction="none", **case.arguments())


def _available(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def paths(case: Case) -> Iterator[tuple[str, Callable[[Case, np.ndarray, np.ndarray], Any]]]:
    """The paths that take ``case``'s dtype and layout here, by name."""
    if case.dtype != "bfloat16":  # NumPy has no bfloat16
        if kernel.numba is not None:
            yield "numpy-kernel", _numpy_path(fallback=False)
        yield "numpy-fallback", _numpy_path(fallback=True)
    if _available("torch"):
        yield "torch", _torch_path
    if case.layout == "contiguous":  # JAX and array-api-strict arrays have no strides of their own
        if _available("jax"):
            yield "jax", _jax_path
        if _available("array_api_strict") and case.dtype in ("float32", "float64"):
            yield "array_api_strict", _strict_path


# --- comparison ----------------------------------------------------------------------------------


def _rounded(x: np.ndarray, dtype: str) -> np.ndarray:
    """``x`` rounded to ``dtype`` (overflowing to inf as a result in it would), back in float64."""
    if dtype == "bfloat16":
        import torch

        return torch.from_numpy(x).to(torch.bfloat16).double().numpy()
    with np.errstate(over="ignore"):
        return x.astype(dtype).astype(np.float64)


def reference(case: Case) -> tuple[np.ndarray, np.ndarray]:
    """The float64 reference: the array-API formula on float64 copies of the case's logits."""
    values, labels = host_batch(case)
    with np.errstate(all="ignore"):
        value, grad = sr.loss_and_grad(values, labels, reduction="none", fused=False, **case.arguments())
    return value, grad


def known_limits(case: Case, path: str) -> dict[str, str]:
    """Rows left out of the comparison of ``case`` on ``path``, by row name, with the reason: the
    documented limits (see the module text)."""
    values, _ = host_batch(case)
    skipped = {}
    if path == "cuda-emulation":
        # Documented: the CUDA kernel forms z / tau directly, which overflows for these logits.
        skipped["huge"] = "the dtype's largest logits: the CUDA kernel forms z / tau"
    if "nce" in case.base or "nfl" in case.base:
        # Documented: a log-probability below the compute dtype's range makes the normalised
        # losses' sum of log-probabilities infinite, and their value and gradient NaN.
        limit = float(np.finfo(np.float64 if case.dtype == "float64" else np.float32).max)
        with np.errstate(all="ignore"):
            gaps = (values - np.nanmax(np.where(np.isfinite(values), values, -np.inf), axis=1,
                                       keepdims=True)) / case.tau
        for name, row in zip(ROWS, gaps, strict=True):
            if np.isfinite(row).all() and row.min() < -limit:
                skipped[name] = "log-probability below the dtype's range (normalised loss)"
    return skipped


def disagreements(
    case: Case, got: tuple[Any, Any], want: tuple[np.ndarray, np.ndarray], path: str = ""
) -> list[str]:
    """How ``got`` (value, gradient) differs from the float64 reference ``want`` (empty: agrees),
    outside the rows of :func:`known_limits`."""
    value_dtype = "float64" if case.dtype == "float64" else "float32"
    rtol = TOLERANCE[case.dtype]
    keep = np.array([name not in known_limits(case, path) for name in ROWS])
    problems = []
    for what, have, ref, dtype in (("value", got[0], want[0], value_dtype),
                                   ("grad", got[1], want[1], case.dtype)):
        have, ref = _to_numpy(have)[keep], _rounded(ref, dtype)[keep]
        if have.shape != ref.shape:
            problems.append(f"{what}: shape {have.shape}, expected {ref.shape}")
            continue
        for pattern in (np.isnan, np.isposinf, np.isneginf):
            wrong = np.argwhere(pattern(have) != pattern(ref))
            if wrong.size:
                problems.append(f"{what}: {pattern.__name__} differs at {wrong[:, 0].tolist()}: "
                                f"{have[tuple(wrong[0])]} vs {ref[tuple(wrong[0])]}")
        finite = np.isfinite(have) & np.isfinite(ref)
        if what == "value":
            bound = rtol * np.maximum(1.0, np.abs(ref))
        else:
            rows = np.where(np.isfinite(ref), np.abs(ref), 0.0).max(axis=1, keepdims=True)
            bound = rtol * np.maximum(rows, 1 / case.tau) * np.ones_like(ref)
        error = np.where(finite, np.abs(have - ref), 0.0)
        bound = np.where(finite, bound, np.inf)
        if (error > bound).any():
            at = np.unravel_index(np.argmax(error / bound), error.shape)
            problems.append(f"{what}: {have[at]} vs {ref[at]} at {tuple(map(int, at))} "
                            f"(error {error[at]:.3g}, bound {bound[at]:.3g})")
    return problems


def _emulated_cuda(case: Case, values: np.ndarray, labels: np.ndarray, monkeypatch: Any) -> Any:
    """Value and gradient of the CUDA kernel compiled for the host, per sample."""
    from _cuda_host import emulated_cupy

    from sparse_reg.backends import cupy as cupy_path
    from sparse_reg.regularizer import Objective

    objective = Objective.create(**case.arguments())
    with emulated_cupy(monkeypatch):
        terms = cupy_path.fused_terms(values.astype(case.dtype), labels, objective, need_grad=True)
    return np.asarray(terms.base) + case.lam * np.asarray(terms.penalty), terms.grad


@pytest.mark.parametrize("case", CORPUS, ids=[case.id for case in CORPUS])
def test_every_path_agrees_with_the_float64_reference(case: Case) -> None:
    values, labels = host_batch(case)
    if case.refused is not None:
        for name, run in paths(case):
            with pytest.raises(ValueError) as caught:
                run(case, values, labels)
            assert str(caught.value).startswith(case.refused), (name, str(caught.value))
        return
    want = reference(case)
    found = {}
    for name, run in paths(case):
        with np.errstate(all="ignore"):
            problems = disagreements(case, run(case, values, labels), want, name)
        if problems:
            found[name] = problems
    assert not found, found


#: The corpus's cases the CUDA kernel's host emulation runs (a thread per lane: slow, so a subset).
CUDA_CASES = [case for case in CORPUS if case.refused is None and case.dtype in ("float32", "float64")
              and case.layout == "contiguous"]


@pytest.mark.parametrize("case", CUDA_CASES, ids=[case.id for case in CUDA_CASES])
def test_the_cuda_kernel_emulated_on_the_host_agrees(case: Case, monkeypatch: Any) -> None:
    from _cuda_host import compiler

    if compiler() is None:
        pytest.skip("no host C++ compiler to build the CUDA kernel's source for the CPU")
    values, labels = host_batch(case)
    with np.errstate(all="ignore"):
        got = _emulated_cuda(case, values, labels, monkeypatch)
        problems = disagreements(case, got, reference(case), "cuda-emulation")
    assert not problems, problems
