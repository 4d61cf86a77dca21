r"""Compiled CPU kernel: each row of logits read once from memory and its gradient written once.

The row-blocked NumPy path (:mod:`sparse_reg.backends.numpy`) makes about a dozen NumPy passes over
every block; each pass is fast, but together they cost 20 to 30 times one read of the logits and
one write of the gradient. This module compiles the whole objective into one loop over rows with
`Numba <https://numba.pydata.org>`_: a row is loaded from memory once, every further sweep over it
(maximum, sum of exponentials, penalty and loss statistics, gradient) runs on cache-resident data,
and the gradient is stored once. Rows are split over threads with ``numba.prange``.

Numba is optional (the ``fast`` extra). Without it, or with ``SPARSE_REG_CPU_KERNEL=0`` in the
environment (then Numba is not even imported), :func:`run` returns ``False`` and the NumPy path
computes the result itself. Compiled functions are cached on disk where Numba finds a writable
directory; where it finds none, they are compiled in memory, with one warning (:func:`_njit`).

The mathematics is the core's (:mod:`sparse_reg.regularizer`). With :math:`\ell = \log s`,
:math:`W_k = s_k^p` (:math:`\operatorname{clip}(s_k, c, 1)^p` in clamp mode),
:math:`A_k = 1[s_k \ge c]` (all ones without a clamp), :math:`P = \sum_k W_k`,
:math:`Q = \sum_k A_k W_k` and :math:`G = \partial L/\partial \ell`:

.. math::
   \frac{\partial J}{\partial u_j} = \lambda p A_j W_j + G_j - s_j\Bigl(\lambda p Q + \sum_k G_k\Bigr),

then the chain rule's :math:`1/\tau` and the caller's scale (a mean's :math:`1/N`) and, with
normalisation, :math:`(d - n\,(n\cdot d))/\lVert z\rVert`.

Every built-in base loss is :math:`\alpha L_1 + \beta L_2` with :math:`L_1, L_2` drawn from the
per-loss formulas below. Each loss names its terms in :attr:`~sparse_reg.BaseLoss.kernel` (the
terms of :data:`sparse_reg.backends.cupy.KERNEL_TERMS`, which the CUDA kernel evaluates too), and
:func:`kernel_codes` turns them into the integer codes that select the formulas here, so one
compiled kernel per dtype serves them all and a loss is defined in one place. A loss without kernel
terms (a user registration, also one that re-registers a built-in name) is not handled here:
:func:`run` returns ``False``.

Numba's LLVM has no vector maths library, so a call to ``math.exp`` or ``np.exp`` stays a scalar
libm call. Intel's SVML would vectorise it, but Numba uses it only with an SVML-patched llvmlite,
which the PyPI wheels are not (``numba -s``: "llvmlite Using SVML Patched LLVM: False"; the
``icc_rt`` wheel alone does not help); measured in a Numba 0.68.1 loop over 2^20 float32 values,
``math.exp`` and ``np.exp`` take 5.6 and 5.8 ns per value even with ``fastmath=True``, the routine
below 0.8 ns. The kernel's
exponentials all take log-probabilities, :math:`x \le 0`; it evaluates them as :math:`2^n e^r`
with :math:`n = \operatorname{round}(x/\ln 2)` and a polynomial in :math:`|r| \le \ln 2/2` (the
Cephes coefficients in float32, the Taylor series in float64; within 1 ulp of the correctly rounded
value, as the tests check), a branch-free loop body that LLVM vectorizes.

Results are reproducible bit for bit, from call to call and from process to process. The row
sums are taken with ``reassoc``, so a vectorised and a scalar loop add in different orders; a
loop that both stores into a scratch row and sums gets a runtime overlap check that chooses
between the two by the rows' addresses on the heap, so every sum has a loop of its own that only
reads. Indices are unsigned where a loop starts past 0: a signed one gets Numba's negative-index
wraparound, which turns vector loads and stores into gathers and scatters.

Numba starts its thread pool on the first parallel call. Its OpenMP layer then sets the OpenMP
thread count of the calling thread to Numba's (``omp_set_num_threads``), and that runtime is the
one PyTorch's CPU operators share when both link ``libgomp.so.1``: a ``torch.set_num_threads``
made before the first kernel call would be undone by it, and every later matrix product would
split its work differently. :func:`run` therefore starts the pool itself, once, and puts the
caller's OpenMP thread count back (:func:`_start_threads`).
"""

from __future__ import annotations

import ctypes
import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import numpy as np

from sparse_reg._numerics import NORM_EPS
from sparse_reg.backends.cupy import KERNEL_TERMS
from sparse_reg.losses import RCE_SCALE, BaseLoss
from sparse_reg.regularizer import Objective

__all__ = ["available", "disabled", "kernel_codes", "run"]

_ENABLED = os.environ.get("SPARSE_REG_CPU_KERNEL", "1") != "0"

numba = None
if _ENABLED:  # switched off, Numba is never imported, so nothing is compiled or cached
    try:  # the optional dependency: everything below the guard needs it
        import numba
        from numba import types
        from numba.extending import intrinsic, overload
    except ImportError:  # pragma: no cover - exercised by installs without the ``fast`` extra
        numba = None

# The loss terms and their integer codes are the CUDA kernel's (KERNEL_TERMS, in code order), so a
# loss defined once, with its ``kernel`` terms, runs in both kernels.
_TERM_CODE = {term: code for code, term in enumerate(KERNEL_TERMS)}
NONE, CE, FOCAL, GCE, MAE, MSE, RCE, NCE, NFL, NGCE, NMAE = (
    _TERM_CODE[term] for term in ("NONE", "CE", "FOCAL", "GCE", "MAE", "MSE", "RCE", "NCE", "NFL", "NGCE",
                                  "NMAE")
)

#: Batches with fewer elements run as one chunk, on one thread: a split costs more than it saves.
PARALLEL_MIN_ELEMENTS = 2**17

#: Terms per partial sum of the kernel's long row sums: each partial sum is taken in the compute
#: dtype (vectorised, a few terms per vector lane), and the partial sums are added in float64.
SUM_BLOCK = 256

#: Row chunks per thread in the parallel loop: several, so that threads finishing early steal work.
_CHUNKS_PER_THREAD = 4

#: Logits per overlapping last window of the exponential sweep (see :func:`_rows`): two of AVX2's
#: 8-lane float32 vectors; with 8, LLVM did not keep the window's loop as one vector step (slower).
_WINDOW = 16

#: Largest shift below the row maximum whose exponential stays a normal float32 (e**-87 is not).
_MAX_SHIFT = 80.0

#: Whether compiled functions are cached on disk: until Numba finds no writable directory for the
#: cache (:func:`_njit`).
_CACHE = True

#: Whether Numba's thread pool has been started (by :func:`_start_threads`).
_THREADS_STARTED = False

#: Names under which an OpenMP runtime may already be loaded into the process.
_OPENMP_LIBRARIES = ("libgomp.so.1", "libiomp5.so", "libomp.so", "libomp.so.5", "libomp.dylib",
                     "libiomp5.dylib")

# Layout of the per-call configuration tuple handed to the kernel (rounded to the compute dtype there).
_TAU, _P, _CLAMP, _LAM, _ALPHA, _BETA, _GAMMA, _Q, _SCALE = range(9)
# Layout of the integer flags tuple.
_CODE1, _CODE2, _USE_CLAMP, _NORMALIZE, _DETACH, _NEED_GRAD = range(6)


def available() -> bool:
    """Whether the compiled kernel is installed and enabled (``SPARSE_REG_CPU_KERNEL`` not ``0``)."""
    return numba is not None and _ENABLED


@contextmanager
def disabled() -> Iterator[None]:
    """Run the enclosed code on the NumPy fallback, as an install without Numba would."""
    global _ENABLED
    previous, _ENABLED = _ENABLED, False
    try:
        yield
    finally:
        _ENABLED = previous


def kernel_codes(loss: BaseLoss) -> tuple[int, int] | None:
    """The kernel's codes of ``loss``'s terms (:attr:`~sparse_reg.BaseLoss.kernel`, the second
    ``NONE`` for a single term), or ``None`` for a loss without kernel terms (a user registration)."""
    return _codes(tuple(loss.kernel))


@cache
def _codes(terms: tuple[str, ...]) -> tuple[int, int] | None:
    """:func:`kernel_codes` of a loss with these terms, worked out once (it is asked on every call)."""
    if not 1 <= len(terms) <= 2 or any(term not in _TERM_CODE for term in terms):
        return None
    return _TERM_CODE[terms[0]], _TERM_CODE[terms[1] if len(terms) == 2 else "NONE"]


def _loaded_openmp() -> ctypes.CDLL | None:
    """The OpenMP runtime already loaded into the process (this loads none), or ``None``."""
    no_load = getattr(os, "RTLD_NOLOAD", None)
    if no_load is None:  # pragma: no cover - Windows
        return None
    for name in _OPENMP_LIBRARIES:
        try:
            library = ctypes.CDLL(name, mode=no_load | os.RTLD_LAZY)
        except OSError:
            continue
        if hasattr(library, "omp_get_max_threads") and hasattr(library, "omp_set_num_threads"):
            return library
    return None


def _start_threads() -> None:
    """Start Numba's thread pool, leaving the calling thread's OpenMP thread count as it was.

    Numba's OpenMP threading layer calls ``omp_set_num_threads`` with its own thread count when it
    starts; in a process where that runtime is shared (PyTorch's ``libgomp``), the count set by
    ``torch.set_num_threads`` would silently change with the first kernel call.
    """
    global _THREADS_STARTED
    if _THREADS_STARTED:
        return
    openmp = _loaded_openmp()
    count = openmp.omp_get_max_threads() if openmp is not None else None
    numba.get_num_threads()  # starts the pool (the threading layer) if it is not running yet
    if openmp is not None and openmp.omp_get_max_threads() != count:
        openmp.omp_set_num_threads(count)
    _THREADS_STARTED = True


def run(
    logits: np.ndarray,
    labels: np.ndarray,
    objective: Objective,
    *,
    base: np.ndarray,
    penalty: np.ndarray,
    grad: np.ndarray | None,
    grad_scale: float,
) -> bool:
    """Fill ``base``, ``penalty`` and (when given) ``grad`` by the kernel; ``False`` if it cannot.

    Parameters
    ----------
    logits
        ``(N, C)`` floating array; 16-bit input is computed in float32.
    labels
        Integer ``(N,)`` class indices in ``[0, C)``.
    objective
        The validated objective; its base loss must have kernel terms (:func:`kernel_codes`).
    base, penalty
        ``(N,)`` outputs in the compute dtype (float32 for 16-bit input, else the logits' dtype).
    grad
        ``(N, C)`` output of any float dtype, or ``None`` when no gradient is wanted.
    grad_scale
        Factor folded into the gradient (a mean's :math:`1/N`).

    Returns
    -------
    bool
        ``False`` (nothing written) when Numba is absent or disabled, or the loss has no kernel.

    Raises
    ------
    ValueError
        A label outside ``[0, C)`` (the kernel skips such a row and reports it).
    """
    codes = kernel_codes(objective.base)
    num_rows, num_classes = logits.shape
    if codes is None or not available() or num_classes == 0:
        return False
    _start_threads()  # before any compile, cache load or thread query would start the pool
    dtype = base.dtype
    z = np.ascontiguousarray(logits, dtype=dtype)
    y = np.ascontiguousarray(labels, dtype=np.int64)
    direct = grad is not None and grad.dtype == dtype and grad.flags.c_contiguous
    out = grad if direct else np.empty((num_rows, num_classes) if grad is not None else (0, 0), dtype)
    params = objective.params
    # Tuples of Python numbers rather than arrays: building two small arrays cost more than the
    # kernel's whole run on a small batch. Every entry is converted, so the tuples' types (and with
    # them the compiled kernel) are the same on every call; the kernel rounds them to the dtype.
    config = (
        float(objective.tau), float(objective.p), float(objective.clamp or 0.0), float(objective.lam),
        float(params.get("alpha", 1.0)), float(params.get("beta", 1.0)), float(params.get("gamma", 0.0)),
        float(params.get("q", 1.0)), float(grad_scale),
    )
    flags = (codes[0], codes[1], int(objective.clamp is not None), int(objective.normalize),
             int(bool(params.get("detach_weight", False))), int(grad is not None))
    # A batch too small to split runs outside the thread pool: entering a parallel region costs a
    # few microseconds, and wakes threads that would then spin for nothing.
    if z.size < PARALLEL_MIN_ELEMENTS:
        skipped = _kernel_serial(z, y, config, flags, base, penalty, out)
    else:
        chunks = max(1, min(num_rows, numba.get_num_threads() * _CHUNKS_PER_THREAD))
        skipped = _kernel(z, y, config, flags, base, penalty, out, chunks)
    if skipped:  # rows skipped for a bad label
        bad = y[(y < 0) | (y >= num_classes)][0]
        raise ValueError(f"labels must lie in [0, {num_classes}) for {num_classes} classes; got {bad}")
    if grad is not None and not direct:
        grad[...] = out
    return True


if numba is not None:

    def _bitcast(targets: dict, doc: str) -> Any:
        """A Numba intrinsic reinterpreting the bits of a value as the type ``targets`` maps it to."""

        def cast(typingctx, value):
            target = targets.get(value)
            if target is None:
                return None

            def codegen(context, builder, signature, args):
                return builder.bitcast(args[0], context.get_value_type(target))

            return target(value), codegen

        cast.__doc__ = doc
        return intrinsic(cast)

    _INT_TO_FLOAT = {types.int32: types.float32, types.int64: types.float64}
    _bits_as_float = _bitcast(_INT_TO_FLOAT, "An int32 (int64) as the float32 (float64) with the same bits.")
    _float_bits = _bitcast(
        {f: i for i, f in _INT_TO_FLOAT.items()},
        "A float32 (float64) as the int32 (int64) with the same bits.",
    )

    def vexp(x):  # pragma: no cover - replaced by the overload inside compiled code
        """:math:`e^x` for :math:`x \\le 0`, vectorizable: see the module docstring."""
        return math.exp(x)

    # n = round(x / ln 2), r = x - n ln 2 (Cody-Waite: ln 2 split in two parts, so that n ln 2 is
    # exact), then 2^n from its bits. The kernel's arguments are log-probabilities, so x <= 0 (up to
    # a rounding residual): no overflow branch. Below the smallest normal the result is flushed to 0
    # (-inf gives 0). The clip is written so that a NaN x passes through it (and so through the
    # result), and n's bits are read off n + 1.5 * 2^23 (n's integer in the low mantissa bits)
    # rather than by a float-to-int conversion, which is undefined for NaN.
    def _exp32(x):
        clipped = np.float32(-87.33654) if x < np.float32(-87.33654) else x
        n = np.floor(clipped * np.float32(1.44269504088896341) + np.float32(0.5))
        r = (clipped - n * np.float32(0.693359375)) - n * np.float32(-2.12194440e-4)
        # Cephes expf: 1 + r + r^2 P(r), P of degree 5, evaluated by Estrin's scheme: three
        # independent pairs joined by r^2, a dependency chain half as long as Horner's, so the
        # vectorised sweep is not held up by FMA latency.
        r2 = r * r
        low = np.float32(1.6666665459e-1) * r + np.float32(5.0000001201e-1)
        mid = np.float32(8.3334519073e-3) * r + np.float32(4.1665795894e-2)
        high = np.float32(1.9875691500e-4) * r + np.float32(1.3981999507e-3)
        poly = (high * r2 + mid) * r2 + low
        biased = _float_bits(n + np.float32(12582912.0)) - np.int32(0x4B400000 - 127)  # n + 127
        value = (poly * r2 + r + np.float32(1.0)) * _bits_as_float(np.int32(biased << 23))
        return np.float32(0.0) if x < np.float32(-87.33654) else value

    def _exp64(x):
        clipped = -708.3964 if x < -708.3964 else x
        n = np.floor(clipped * 1.4426950408889634 + 0.5)
        r = (clipped - n * 6.93145751953125e-1) - n * 1.42860682030941723212e-6
        # The Taylor series to r^13 / 13!: its truncation is below 2^-53 on |r| <= ln(2) / 2.
        poly = 1.0 / 6227020800.0
        poly = poly * r + 1.0 / 479001600.0
        poly = poly * r + 1.0 / 39916800.0
        poly = poly * r + 1.0 / 3628800.0
        poly = poly * r + 1.0 / 362880.0
        poly = poly * r + 1.0 / 40320.0
        poly = poly * r + 1.0 / 5040.0
        poly = poly * r + 1.0 / 720.0
        poly = poly * r + 1.0 / 120.0
        poly = poly * r + 1.0 / 24.0
        poly = poly * r + 1.0 / 6.0
        poly = poly * r + 0.5
        biased = _float_bits(n + 6755399441055744.0) - np.int64(0x4338000000000000 - 1023)  # n + 1023
        value = (poly * r * r + r + 1.0) * _bits_as_float(np.int64(biased << 52))
        return 0.0 if x < -708.3964 else value

    @overload(vexp)
    def _vexp_overload(x):
        if x == types.float32:
            return _exp32
        if x == types.float64:
            return _exp64
        return None

    # reassoc lets LLVM vectorize the row sums (as NumPy's pairwise sums, not in index order);
    # error_model="numpy" gives IEEE division (inf, NaN) instead of a Python ZeroDivisionError check.
    # Scalars are typed through `one` (1 in the compute dtype): a bare Python number would promote
    # float32 arithmetic to float64.
    _JIT = dict(nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})

    def _njit(**options: Any) -> Any:
        """``numba.njit`` with :data:`_JIT` and the on-disk cache where Numba has a writable
        directory for it (``NUMBA_CACHE_DIR``, the package's ``__pycache__``, the user's cache).

        Where it has none, Numba refuses ``cache=True`` when the function is decorated, which
        would make importing this module, and with it every NumPy call, fail: the kernel is then
        compiled in memory on each process's first call instead, with one warning.
        """

        def decorate(function: Any) -> Any:
            global _CACHE
            if _CACHE:
                try:
                    return numba.njit(cache=True, **options, **_JIT)(function)
                except RuntimeError as exc:  # "cannot cache function ...: no locator available"
                    if "no locator" not in str(exc):
                        raise
                    _CACHE = False
                    warnings.warn(
                        "sparse_reg: Numba found no writable cache directory (set NUMBA_CACHE_DIR "
                        "to one); the CPU kernel is compiled anew in each process",
                        RuntimeWarning, stacklevel=2,
                    )
            return numba.njit(cache=False, **options, **_JIT)(function)

        return decorate

    @_njit()
    def _focal(ell, gamma, detach, one):
        r"""Focal term :math:`F(\ell) = -(1-e^\ell)^\gamma \ell` and :math:`F'(\ell)`, as
        :func:`sparse_reg.losses._focal` (log-domain :math:`1 - a`, the limit at :math:`a = 1`)."""
        one_minus_a = -math.expm1(ell)
        positive = one_minus_a > 0
        at_one = one if gamma == 0 else one - one
        weight = one_minus_a**gamma if positive else at_one
        value = -weight * ell
        if detach:
            return value, -weight
        ratio = ell / one_minus_a if positive else -one
        return value, -weight + gamma * math.exp(ell) * weight * ratio

    @_njit()
    def _label_term(code, ell_y, classes, gamma, q, detach, one, rce):
        """Value and :math:`\\partial L/\\partial \\ell_y` of a loss that depends on :math:`\\ell_y` only."""
        if code == CE:
            return -ell_y, -one
        if code == FOCAL:
            return _focal(ell_y, gamma, detach, one)
        if code == GCE:
            return -math.expm1(q * ell_y) / q, -math.exp(q * ell_y)
        if code == MAE:
            return -(one + one) * math.expm1(ell_y), -(one + one) * math.exp(ell_y)
        if code == RCE:
            return -rce * math.expm1(ell_y), -rce * math.exp(ell_y)
        if code == NMAE:
            others = classes - one
            return -math.expm1(ell_y) / others, -math.exp(ell_y) / others
        return one - one, one - one

    @_njit()
    def _dense_term(code, weight, label, ell, e, inverse_total, dense, classes, gamma, q, detach, one):
        """Add ``weight`` times a dense loss's :math:`\\partial L/\\partial\\ell` to ``dense`` and
        return the loss's value; ``ell`` holds the row's :math:`\\log s`, ``e * inverse_total`` its
        :math:`s`."""
        num_classes = ell.shape[0]
        zero = one - one
        ell_y = ell[label]
        total = zero
        if code == MSE:
            two_weight = (one + one) * weight
            for k in range(num_classes):  # stores and sums apart (see _rows)
                s = e[k] * inverse_total
                dense[k] += two_weight * s * (s - (one if k == label else zero))
            for k in range(num_classes):
                diff = e[k] * inverse_total - (one if k == label else zero)
                total += diff * diff
            return total
        if code == NCE:
            for k in range(num_classes):
                total += ell[k]
            ratio = ell_y / total
            for k in range(num_classes):
                dense[k] += weight * ((one if k == label else zero) - ratio) / total
            return ratio
        if code == NFL:
            for k in range(num_classes):
                total += _focal(ell[k], gamma, detach, one)[0]
            ratio = _focal(ell_y, gamma, detach, one)[0] / total
            for k in range(num_classes):
                slope = _focal(ell[k], gamma, detach, one)[1]
                dense[k] += weight * ((one if k == label else zero) - ratio) * slope / total
            return ratio
        # NGCE: (1 - s_y^q) / (C - sum_k s_k^q)
        for k in range(num_classes):
            total += vexp(q * ell[k])
        denominator = classes - total
        ratio = -math.expm1(q * ell_y) / denominator
        for k in range(num_classes):
            dense[k] += weight * q * vexp(q * ell[k]) * (ratio - (one if k == label else zero)) / denominator
        return ratio

    @_njit()
    def _is_dense(code):
        return code == MSE or code == NCE or code == NFL or code == NGCE

    # The two helpers below run inside _rows's row loop: inlined in Numba's IR, so that LLVM
    # optimises their loops with the row's (measured: called, they gave back the sweep's gain).
    @_njit(inline="always")
    def _sum_of_squares(z, i, zero):
        """:math:`\\sum_k z_{ik}^2`, the squared norm of row ``i``."""
        squares = zero
        for k in range(z.shape[1]):
            squares += z[i, k] * z[i, k]
        return squares

    @_njit(inline="always")
    def _store_exponentials(z, i, first, last, before, inverse_scale, offset, p, e, w):
        """:math:`e_k = e^{t_k}` and :math:`f_k = e^{p t_k}` for ``first <= k < last``, with
        :math:`t_k = (z_{ik} - b) a - o` (``before`` :math:`b`, ``inverse_scale`` :math:`a`,
        ``offset`` :math:`o`)."""
        for k in range(first, last):
            t = (z[i, k] - before) * inverse_scale - offset
            e[k] = vexp(t)
            w[k] = vexp(p * t)  # s^p T^p: finite where s underflows

    @_njit()
    def _row_range(z, i):
        """Maximum and minimum of row ``i`` of ``z`` (NaN entries aside), in eight running maxima
        and minima: a single one is a chain of compare-and-select that LLVM does not vectorize;
        eight become one vector."""
        num_classes = z.shape[1]
        whole = num_classes - num_classes % 8
        h0 = h1 = h2 = h3 = h4 = h5 = h6 = h7 = z[i, 0]
        l0 = l1 = l2 = l3 = l4 = l5 = l6 = l7 = z[i, 0]
        for k in range(0, whole, 8):
            x = z[i, k]
            h0, l0 = (x if x > h0 else h0), (x if x < l0 else l0)
            x = z[i, k + 1]
            h1, l1 = (x if x > h1 else h1), (x if x < l1 else l1)
            x = z[i, k + 2]
            h2, l2 = (x if x > h2 else h2), (x if x < l2 else l2)
            x = z[i, k + 3]
            h3, l3 = (x if x > h3 else h3), (x if x < l3 else l3)
            x = z[i, k + 4]
            h4, l4 = (x if x > h4 else h4), (x if x < l4 else l4)
            x = z[i, k + 5]
            h5, l5 = (x if x > h5 else h5), (x if x < l5 else l5)
            x = z[i, k + 6]
            h6, l6 = (x if x > h6 else h6), (x if x < l6 else l6)
            x = z[i, k + 7]
            h7, l7 = (x if x > h7 else h7), (x if x < l7 else l7)
        top, low = h0, l0
        for h, m in ((h1, l1), (h2, l2), (h3, l3), (h4, l4), (h5, l5), (h6, l6), (h7, l7)):
            top = h if h > top else top
            low = m if m < low else low
        for k in range(whole, num_classes):
            top = z[i, k] if z[i, k] > top else top
            low = z[i, k] if z[i, k] < low else low
        return top, low

    @_njit()
    def _rows(start, stop, z, labels, config, flags, base, penalty, grad, ell, w, e, dense):
        """Rows ``start:stop``: the whole objective, one read of ``z[i]``, one write of ``grad[i]``;
        returns the number of rows skipped for a label outside ``[0, C)``.

        ``ell``, ``w``, ``e`` and ``dense`` are per-thread scratch rows (cache-resident). With
        :math:`t = u - \\max u` and :math:`T = \\sum_k e^{t_k}`, the sweep over the row stores
        :math:`e_k = e^{t_k}` and :math:`f_k = e^{p t_k}`, from which :math:`s_k = e_k/T` and
        :math:`W_k = T^{-p} f_k` follow without another exponential; with
        normalisation, :math:`n\\cdot d` is assembled from row sums of :math:`x e` and
        :math:`x f`, so the gradient is written in one sweep.

        :math:`t_k = (x_k - m)/(\\lVert x\\rVert\\tau)`, with :math:`m` the row maximum (or its
        bound :math:`\\lVert x\\rVert` with normalisation, for :math:`\\tau \\ge 1/40`). The shift
        comes before the division, so :math:`z/\\tau` is never formed and the error of :math:`t_k`
        is relative to :math:`t_k`, not to :math:`m/\\tau`: :math:`x_k - m \\le 0`, and an overflow
        there gives :math:`-\\infty`, whose exponential is 0. Without normalisation
        :math:`x = z` (and the norm is 1); with it, :math:`x = z` too unless the sum of squares
        overflows (logits beyond about :math:`10^{19}` in float32), in which case :math:`x = 2^{-b} z`
        with :math:`2^{b-1} \\le \\max_k |z_k| < 2^b`: an exact scaling by a power of two, which
        leaves :math:`n = x/\\lVert x\\rVert` unchanged and keeps the row sums and the norm
        finite; the backward's :math:`1/\\lVert z\\rVert` is then :math:`2^{-b}/\\lVert x\\rVert`.
        """
        num_classes = z.shape[1]
        real = base.dtype.type  # the compute dtype, which the configuration is rounded to
        one, zero = real(1.0), real(0.0)
        norm_eps, rce, classes = real(NORM_EPS), real(RCE_SCALE), real(num_classes)
        tau, p, clamp = real(config[_TAU]), real(config[_P]), real(config[_CLAMP])
        lam, alpha, beta = real(config[_LAM]), real(config[_ALPHA]), real(config[_BETA])
        gamma, q, scale = real(config[_GAMMA]), real(config[_Q]), real(config[_SCALE])
        code1, code2, detach = flags[_CODE1], flags[_CODE2], flags[_DETACH]
        use_clamp, normalize, need_grad = flags[_USE_CLAMP], flags[_NORMALIZE], flags[_NEED_GRAD]
        clamp_pow = clamp**p
        lam_p = lam * p
        has_dense = _is_dense(code1) or _is_dense(code2)
        bound_shift = normalize and tau >= 2 / real(_MAX_SHIFT)
        # s_k = e_k / T < c needs e_k < c T <= c C (every e_k <= 1, up to rounding): a row whose
        # smallest e_k is not below twice that bound has no clamped entry, and skips the clamp's sweep.
        ceiling = clamp * classes * (one + one) if use_clamp else zero
        # Under the bound shift a row's bound on that test is the same for every row, t >= -2/tau up
        # to a few ulps: it is made once, with a margin that makes it true wherever a row's would be.
        bound_clamped = use_clamp and vexp(-(one + one) / tau * (one + real(2.0**-18))) < ceiling
        window = np.uint64(_WINDOW)
        ahead_row, ahead_squares = -1, zero  # the next row's sum of squares, once it is known
        skipped = 0
        for i in range(start, stop):
            label = labels[i]
            if label < 0 or label >= num_classes:  # checked here: a separate pass costs more
                skipped += 1
                continue
            # The first sweep reads the row from memory; every later one finds it in cache. Rows are
            # indexed in place: a row view would cost reference counting on every row.
            norm = one  # of x = pre z, the row as the sweeps below read it
            pre = one
            if normalize:
                squares = ahead_squares if ahead_row == i else _sum_of_squares(z, i, zero)
                if not math.isfinite(squares):
                    # Squares of logits beyond ~1e19 overflow float32: scale the row by a power of
                    # two (exact) that brings its peak into [1/2, 1); n = x / |x| is unchanged.
                    peak = zero
                    for k in range(num_classes):
                        peak = max(peak, abs(z[i, k]))
                    if math.isfinite(peak):  # else the row holds inf or NaN: NaN either way
                        pre = real(math.ldexp(1.0, -math.frexp(peak)[1]))
                        squares = zero
                        for k in range(num_classes):
                            x = z[i, k] * pre
                            squares += x * x
                norm = max(math.sqrt(squares), norm_eps)
            inverse_scale = one / (norm * tau)  # u = x / (|x| tau)
            if bound_shift:
                # |n| <= 1, so x <= |x|: shifting by that bound instead of max x saves a sweep,
                # and e^(u - 1/tau) >= e^(-2/tau) cannot underflow.
                top, offset, low = norm, one / tau, -norm
            else:
                top, low = _row_range(z, i)
                top, low = top * pre, low * pre  # max x and min x: pre is positive
                if not math.isfinite(top):  # no finite maximum: the core shifts by 0 (NaN row)
                    top = zero
                offset = zero
            # t = (x - m) a with a = 1/(|x| tau), the shift before the scaling: x - m is exact
            # near the maximum (Sterbenz), so t's error is relative to t itself. As x a - m a, one
            # fused multiply-add, it was relative to m a: for m / tau beyond 1/eps (tau = 1e-6 in
            # float32) the largest t, exactly 0, came out as rounding noise, positive and large
            # enough below tau = 1e-9 to overflow the exponential. With the bound shift, m a = 1/tau
            # <= 40 keeps that error below 40 eps.
            scaled_row = pre != one
            before = zero if bound_shift else top
            # The clamp's sweep is needed only where the smallest e_k, e^t at x = min x (t grows with
            # x), is below the ceiling. With the bound shift, x >= -|x| bounds it without a sweep,
            # the same bound for every row (bound_clamped); only where that bound does not rule a
            # clamp out is the row's own minimum looked up.
            if bound_shift and bound_clamped:
                low = _row_range(z, i)[1] * pre
            may_clamp = bound_clamped if bound_shift else use_clamp
            maybe_clamped = may_clamp and vexp((low - before) * inverse_scale - offset) < ceiling
            # The exponentials: T = sum e, F = sum f, and the row sums x.e, x.f for n . d, each in
            # partial sums of SUM_BLOCK terms in the compute dtype (vectorised) added in float64, so
            # that their rounding error does not grow with the row length.
            total, f_sum, ze_sum, zf_sum = 0.0, 0.0, 0.0, 0.0
            for block in range(0, num_classes, SUM_BLOCK):
                block_stop = min(block + SUM_BLOCK, num_classes)
                # Unsigned bounds: LLVM cannot prove a signed index from `block` non-negative.
                first, last = np.uint64(block), np.uint64(block_stop)
                part_e, part_f, part_ze, part_zf = zero, zero, zero, zero
                # Stores and sums in separate loops (see the module text: reproducibility).
                if not scaled_row:  # almost every call (then pre = 1)
                    # Whole windows, then the last window again, overlapping (the same values
                    # stored twice): with 8-lane vectors LLVM leaves the remainder to a scalar
                    # loop, which took an eighth of the row's time at C = 100.
                    body = first + ((last - first) // window * window)
                    _store_exponentials(z, i, first, body, before, inverse_scale, offset, p, e, w)
                    if body != last:
                        tail = last - window if last >= window else body
                        _store_exponentials(z, i, tail, last, before, inverse_scale, offset, p, e, w)
                else:  # the same t, on the row scaled by pre
                    for k in range(first, last):
                        t = (z[i, k] * pre - before) * inverse_scale - offset
                        e[k] = vexp(t)
                        w[k] = vexp(p * t)
                for k in range(first, last):
                    part_e += e[k]
                    part_f += w[k]
                if normalize:  # n . d is needed only with normalisation
                    for k in range(first, last):
                        x = z[i, k] * pre
                        part_ze += x * e[k]
                        part_zf += x * w[k]
                total += part_e
                f_sum += part_f
                ze_sum += part_ze
                zf_sum += part_zf
            total, f_sum, ze_sum, zf_sum = real(total), real(f_sum), real(ze_sum), real(zf_sum)
            if normalize and i + 1 < stop:
                # The next row's first read from memory, here rather than at its own start: its
                # loads then overlap with this row's serial tail (log, divisions, coefficients).
                ahead_row, ahead_squares = i + 1, _sum_of_squares(z, i + 1, zero)
            log_total = math.log(total)
            inverse_total = one / total
            shrink = math.exp(-p * log_total)  # T^-p, so that W = shrink f
            active_sum = shrink * f_sum  # Q = sum_k A_k W_k, and P without a clamp
            penalty_sum = active_sum
            if maybe_clamped:
                # clip(s, c, 1)^p is W where s >= c and c^p below, where the gradient vanishes.
                threshold = clamp * total
                f_sum, zf_sum, active_count = zero, zero, zero
                for k in range(num_classes):  # stores and sums apart, as in the sweep above
                    w[k] = w[k] if e[k] >= threshold else zero
                for k in range(num_classes):
                    f_sum += w[k]
                    zf_sum += (z[i, k] * pre if normalize else zero) * w[k]
                    active_count += one if e[k] >= threshold else zero
                active_sum = shrink * f_sum
                penalty_sum = active_sum + clamp_pow * (classes - active_count)
            penalty[i] = penalty_sum
            # The base loss alpha L1 + beta L2: label-only terms as scalars, dense ones in `dense`.
            ell_y = (z[i, label] * pre - before) * inverse_scale - offset - log_total
            label_grad = zero
            value = zero
            if has_dense:
                for k in range(num_classes):
                    ell[k] = (z[i, k] * pre - before) * inverse_scale - offset - log_total
                    dense[k] = zero
            for code, weight in ((code1, alpha), (code2, beta)):
                if code == NONE:
                    continue
                if _is_dense(code):
                    value += weight * _dense_term(code, weight, label, ell, e, inverse_total, dense,
                                                  classes, gamma, q, detach, one)
                else:
                    term, slope = _label_term(code, ell_y, classes, gamma, q, detach, one, rce)
                    value += weight * term
                    label_grad += weight * slope
            base[i] = value
            if not need_grad:
                continue
            grad_sum = label_grad
            zd_sum = zero
            if has_dense:
                for k in range(num_classes):
                    grad_sum += dense[k]
                    zd_sum += (z[i, k] * pre if normalize else zero) * dense[k]
            factor = scale / tau
            if normalize:
                factor = factor * pre / norm  # the normalisation backward's 1/|z|, folded in
            # d = (lam p A W + G - s (lam p Q + sum G)) factor = coef_w A f - coef_e e + factor G
            coef_w = lam_p * shrink * factor
            coef_e = (lam_p * active_sum + grad_sum) * inverse_total * factor
            along = zero
            if normalize and norm > norm_eps:
                # n . d / |x| for d -> d - n (n . d), from the row sums (d already carries 1/|z|)
                dot = coef_w * zf_sum - coef_e * ze_sum + factor * (zd_sum + label_grad * (z[i, label] * pre))
                along = dot / norm / norm  # (norm * norm can overflow where squares did not)
            # The only write of the row; a dense base loss adds its term in a second, in-cache sweep.
            if normalize:
                along_pre = along * pre
                for k in range(num_classes):
                    grad[i, k] = coef_w * w[k] - coef_e * e[k] - along_pre * z[i, k]
            else:
                for k in range(num_classes):
                    grad[i, k] = coef_w * w[k] - coef_e * e[k]
            if has_dense:
                for k in range(num_classes):
                    grad[i, k] += factor * dense[k]
            grad[i, label] += factor * label_grad
        return skipped

    @_njit()
    def _scratch(num_classes, like):
        """Per-thread scratch rows for log s, f, e and the dense loss gradient."""
        return (np.empty(num_classes, like.dtype), np.empty(num_classes, like.dtype),
                np.empty(num_classes, like.dtype), np.empty(num_classes, like.dtype))

    @_njit()
    def _kernel_serial(z, labels, config, flags, base, penalty, grad):
        """Every row on the calling thread (a batch too small to split); returns the number of rows
        skipped for a label outside ``[0, C)``."""
        ell, w, e, dense = _scratch(z.shape[1], base)
        return _rows(0, z.shape[0], z, labels, config, flags, base, penalty, grad, ell, w, e, dense)

    @_njit(parallel=True)
    def _kernel(z, labels, config, flags, base, penalty, grad, chunks):
        """Every row, in ``chunks`` contiguous ranges spread over Numba's threads; returns the number
        of rows skipped for a label outside ``[0, C)``."""
        num_rows = z.shape[0]
        skipped = 0
        for chunk in numba.prange(chunks):
            ell, w, e, dense = _scratch(z.shape[1], base)
            start, stop = chunk * num_rows // chunks, (chunk + 1) * num_rows // chunks
            skipped += _rows(start, stop, z, labels, config, flags, base, penalty, grad, ell, w, e, dense)
        return skipped
