r"""NumPy path: the objective and its gradient in row blocks, with in-place ufuncs.

With the ``fast`` extra installed, :func:`fused_terms` hands every built-in loss to the compiled
kernel of :mod:`sparse_reg.backends._cpu_kernel` (one read of each row, one write of its gradient);
the row blocks below are the fallback, and the path of user-registered losses.

The array-API core (:func:`sparse_reg.regularizer.sr_terms`) allocates a fresh ``(N, C)`` array for
every operation and sweeps the whole batch each time, so for large batches every step is a trip to
main memory. Here the rows are processed in blocks sized to stay in the CPU cache, every
elementwise step writes into one of two scratch buffers, and the gradient is written once. Blocks
are independent, and NumPy releases the GIL inside ufuncs, so large batches are split over threads.

The mathematics is the core's (see :mod:`sparse_reg.regularizer`). With :math:`\ell = \log s`,
:math:`W_k = s_k^p` (:math:`\operatorname{clip}(s_k, c, 1)^p` in clamp mode),
:math:`A_k = 1[s_k \ge c]` (all ones without a clamp), :math:`P = \sum_k W_k`,
:math:`Q = \sum_k A_k W_k` and :math:`G = \partial L/\partial \ell`:

.. math::
   \frac{\partial J}{\partial u_j} = \lambda p A_j W_j + G_j - s_j\Bigl(\lambda p Q + \sum_k G_k\Bigr).

Base losses come from the registry unchanged, except CE, the hottest, whose value
:math:`-\ell_y` and gradient :math:`-e_y` are spelled out. For the losses declared
:attr:`~sparse_reg.BaseLoss.label_only` (focal, GCE, MAE, RCE, SCE among the built-ins),
:math:`G = g_y e_y`, so their value and :math:`g_y` are evaluated by the registry on the label
column alone, an ``(N, 1)`` problem, and the dense ``(N, C)`` one-hot gradient is never formed.
With normalisation, :math:`u \le 1/\tau`, so the log-sum-exp is shifted by that bound rather than
by the row maximum.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any

import numpy as np

from sparse_reg._compat import array_namespace
from sparse_reg._numerics import NORM_EPS
from sparse_reg.backends import _cpu_kernel
from sparse_reg.losses import BUILTIN_LOSSES, get_loss
from sparse_reg.regularizer import Objective, SRTerms

__all__ = ["from_host", "fused_terms", "host_view", "sr_terms", "supports"]

#: Elements per scratch buffer in one row block: 2**16 float32 values (256 KiB) keep the two
#: scratch buffers, the input rows and the output rows of a block inside a 1 MiB L2 cache.
BLOCK_ELEMENTS = 2**16

#: Largest shift below the row maximum whose exponential stays a normal float32 (e**-87 is not).
_MAX_SHIFT = 80.0

#: Rows up to this length are summed by a dot product: its sequential error bound, C * eps,
#: stays below 1e-5 in float32.
_SHORT_ROW = 128

#: Batches smaller than this (in elements) run on the calling thread: a pool hand-off costs more.
THREAD_MIN_ELEMENTS = 2**20


# Matched by identity, not name: a user may re-register "ce" with other semantics. The tuple keeps
# the objects alive, so their ids are never reused by another loss.
_CE = get_loss("ce")
_BUILTIN_LOSSES = tuple(get_loss(name) for name in BUILTIN_LOSSES)
_BUILTIN = frozenset(map(id, _BUILTIN_LOSSES))
# The namespace the core hands the registry for NumPy input. The built-in losses use only functions
# NumPy 2 itself provides with standard semantics, so they get NumPy directly (no wrapper overhead).
_XP = array_namespace(np.empty(0))
_POOL: ThreadPoolExecutor | None = None
_CPUS = os.cpu_count() or 1


def from_host(x: Any, device: str | None) -> Any:
    """Host data is NumPy data already."""
    return x


def host_view(x: np.ndarray) -> np.ndarray:
    """A NumPy array is its own host view."""
    return x


def supports(objective: Objective) -> bool:
    """Fused whenever the base loss has a closed-form gradient."""
    return objective.base.grad is not None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=_CPUS, thread_name_prefix="sparse_reg")
    return _POOL


def _row_sum(x: np.ndarray) -> np.ndarray:
    """Sum of each row: a matrix-vector product with ones for short rows (one BLAS call, several
    times faster there than a reduction or ``np.vecdot``), NumPy's pairwise summation otherwise
    (error growing as log C)."""
    if x.shape[1] <= _SHORT_ROW:
        return x @ _ones(x.shape[1], x.dtype)
    return np.add.reduce(x, axis=1)


@cache
def _ones(length: int, dtype: np.dtype) -> np.ndarray:
    """A read-only vector of ones, made once per (length, dtype)."""
    ones = np.ones(length, dtype=dtype)
    ones.flags.writeable = False
    return ones


def _block(
    z: np.ndarray,
    labels: np.ndarray,
    objective: Objective,
    lam: float,
    grad_scale: float,
    grad_out: np.ndarray | None,
    base_out: np.ndarray,
    penalty_out: np.ndarray,
) -> None:
    """Fill one row block of the outputs; ``z`` is already in the compute dtype.

    The gradient is multiplied by ``grad_scale`` on the way (a mean's :math:`1/N`, for free).
    """
    rows, num_classes = z.shape
    tau, p, clamp, params = objective.tau, objective.p, objective.clamp, objective.params
    xp = np if id(objective.base) in _BUILTIN else _XP
    # u, then log s, then W, then the gradient: written in place in the output when it can hold it.
    direct = grad_out is not None and grad_out.dtype == z.dtype
    work = grad_out if direct else np.empty_like(z)
    probs = np.empty_like(z)  # exp(u - m), then s, then scratch
    factor = grad_scale / tau  # the chain rule's 1/tau, and the caller's scale
    if objective.normalize:
        squares = np.vecdot(z, z)
        if rows and not np.isfinite(np.maximum.reduce(squares)):
            # Squares of logits beyond ~1e19 overflow float32. Normalisation ignores the scale of a
            # row, so divide such a row by its largest entry (the gradient then by the same). Only
            # such rows: a row of tiny logits scaled up would escape the clamp at NORM_EPS, which
            # the reference applies to the true norm.
            peak = np.maximum.reduce(np.abs(z), axis=1, keepdims=True)
            overflowed = ~np.isfinite(squares)[:, None]
            peak = np.where(overflowed & np.isfinite(peak) & (peak > 0), peak, 1)
            z = z / peak
            squares, factor = np.vecdot(z, z), factor / peak
        norm = np.maximum(np.sqrt(squares)[:, None], NORM_EPS)
        # the projection of the normalisation's backward vanishes where the norm is clamped
        projection = (norm > NORM_EPS) / (norm * norm)
        factor = factor / norm  # the backward's 1/|z|, folded into the coefficients below
    if objective.normalize and tau >= 2 / _MAX_SHIFT:
        # u = n / tau with |n| <= 1, so u <= 1/tau: shifting by that bound instead of the row max
        # saves a reduction, and exp(u - 1/tau) >= exp(-2/tau) cannot underflow.
        np.subtract(z, norm, out=work)
        np.divide(work, norm * tau, out=work)
    else:
        # log-softmax by the max shift, taken before the division so z / tau is never formed (it
        # overflows for logits near the dtype's limit or a tiny tau). The core shifts a row without
        # a finite maximum by 0; such a row (only -inf, or holding +inf or NaN) is NaN either way,
        # so that fix-up is skipped.
        np.subtract(z, np.maximum.reduce(z, axis=1, keepdims=True), out=work)
        np.divide(work, norm * tau if objective.normalize else tau, out=work)
    np.exp(work, out=probs)
    total = _row_sum(probs)[:, None]
    np.subtract(work, np.log(total), out=work)

    at_label = (np.arange(rows), labels)
    if objective.base is _CE:
        # The hottest loss, spelled out: its registry value is -log s_y and its gradient -e_y.
        np.negative(work[at_label], out=base_out)
        dense, label_grad, grad_sum = None, -1.0, -1.0
    elif objective.base.label_only:
        column = np.ones((rows, 1), dtype=bool)
        log_s_y = work[at_label][:, None]
        base_out[...] = objective.base.value(log_s_y, column, xp=xp, **params)
        dense = None
        if grad_out is not None:
            label_grad = objective.base.grad(log_s_y, column, xp=xp, **params)[:, 0]
            grad_sum = label_grad[:, None]
    else:
        mask = labels[:, None] == np.arange(num_classes)
        base_out[...] = objective.base.value(work, mask, xp=xp, **params)
        if grad_out is not None:
            dense = objective.base.grad(work, mask, xp=xp, **params)
            grad_sum = _row_sum(dense)[:, None]

    np.divide(probs, total, out=probs)  # s
    if clamp is not None:
        # clip(s, c, 1)**p = exp(p max(log s, log c)): the clamp is one maximum on the log-probs.
        np.maximum(work, math.log(clamp), out=work)
    np.multiply(work, p, out=work)
    np.exp(work, out=work)  # W = s**p (clip(s, c, 1)**p), finite where s underflows
    penalty_out[...] = _row_sum(work)
    if clamp is None:
        active_sum = penalty_out[:, None]
    else:
        # The clamp's gradient vanishes below c: A W, by a multiply with the mask A = [s >= c].
        np.multiply(work, probs >= clamp, out=work)
        active_sum = _row_sum(work)[:, None]
    if grad_out is None:
        return

    np.multiply(work, lam * p * factor, out=work)
    np.multiply(probs, (lam * p * active_sum + grad_sum) * factor, out=probs)
    np.subtract(work, probs, out=work)
    if dense is None:
        work[at_label] += label_grad * (factor[:, 0] if objective.normalize else factor)
    else:
        np.add(work, np.multiply(dense, factor), out=work)  # a registered grad may be read-only
    if objective.normalize:
        # d -> (d - n (n . d)) / |z| with n = z / |z|, where work already holds d / |z|.
        along = np.vecdot(z, work)[:, None] * projection
        np.multiply(z, along, out=probs)
        np.subtract(work, probs, out=work)
    if not direct:
        grad_out[...] = work


def fused_terms(
    logits: np.ndarray,
    labels: np.ndarray,
    objective: Objective,
    *,
    need_grad: bool,
    grad_out: np.ndarray | None = None,
    grad_scale: float = 1.0,
    block_elements: int = BLOCK_ELEMENTS,
) -> SRTerms:
    """Per-sample base loss, penalty and gradient, row block by row block.

    Parameters
    ----------
    logits, labels, objective, need_grad
        As for :func:`sparse_reg.regularizer.sr_terms`; ``logits`` is a NumPy array of shape
        ``(N, C)``.
    grad_out
        Optional ``(N, C)`` array the gradient is written into (any float dtype: the values are
        cast on the way in). Without it, one is allocated in the logits' dtype.
    grad_scale
        Factor applied to the gradient inside the kernel (e.g. :math:`1/N` for a mean).
    block_elements
        Approximate number of elements per row block (at least one row per block).

    Returns
    -------
    SRTerms
        ``base`` and ``penalty`` in the compute dtype (float32 for 16-bit input), ``grad`` as
        given or allocated.
    """
    if need_grad and objective.base.grad is None:
        raise TypeError(f"base loss {objective.base.name!r} has no closed-form gradient")
    num_rows, num_classes = logits.shape
    dtype = np.float32 if logits.dtype.itemsize < 4 else logits.dtype  # as compute_dtype
    base = np.empty(num_rows, dtype=dtype)
    penalty = np.empty(num_rows, dtype=dtype)
    if need_grad and grad_out is None:
        grad_out = np.empty(logits.shape, dtype=logits.dtype)
    grad = grad_out if need_grad else None
    if _cpu_kernel.run(logits, labels, objective, base=base, penalty=penalty, grad=grad,
                       grad_scale=grad_scale):
        return SRTerms(base, penalty, grad)  # the compiled kernel, when installed and it has the loss
    lam = float(objective.lam)
    step = max(1, block_elements // max(num_classes, 1))

    if step >= num_rows:  # one block: no slicing, no hand-off
        with np.errstate(all="ignore"):
            _block(np.asarray(logits, dtype=dtype), labels, objective, lam, grad_scale, grad, base, penalty)
        return SRTerms(base, penalty, grad)

    def run(start: int) -> None:
        rows = slice(start, min(start + step, num_rows))
        with np.errstate(all="ignore"):  # NaN/inf logits give NaN rows, as in the core
            _block(
                np.asarray(logits[rows], dtype=dtype),
                labels[rows],
                objective,
                lam,
                grad_scale,
                None if grad is None else grad[rows],
                base[rows],
                penalty[rows],
            )

    _for_each(run, range(0, num_rows, step), parallel=logits.size >= THREAD_MIN_ELEMENTS)
    return SRTerms(base, penalty, grad)


def _for_each(fn: Callable[[int], None], starts: range, *, parallel: bool) -> None:
    if not parallel or len(starts) < 2 or _CPUS < 2:
        for start in starts:
            fn(start)
        return
    for future in [_pool().submit(fn, start) for start in starts]:
        future.result()


def sr_terms(
    logits: Any, labels: Any, objective: Objective, *, need_grad: bool, grad_scale: float = 1.0
) -> SRTerms:
    """Drop-in for :func:`sparse_reg.regularizer.sr_terms` on NumPy arrays (same semantics).

    Examples
    --------
    >>> import numpy as np
    >>> from sparse_reg.backends import numpy as fast
    >>> from sparse_reg.regularizer import Objective
    >>> terms = fast.sr_terms(np.array([[2.0, 0.5, -1.0]]), np.array([0]), Objective.create(),
    ...                       need_grad=True)
    >>> bool(abs(terms.grad.sum()) < 1e-12)
    True
    """
    return fused_terms(
        np.asarray(logits), np.asarray(labels), objective, need_grad=need_grad, grad_scale=grad_scale
    )

