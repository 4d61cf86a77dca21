r"""Sharpening, the :math:`\ell_p` penalty, and the sparse-regularized objective with its gradient.

For logits :math:`z` (optionally replaced by :math:`n = z/\lVert z\rVert`), :math:`u = z/\tau`,
:math:`\ell = \log\operatorname{softmax}(u)` and :math:`s = e^\ell`, the per-sample objective is

.. math:: J(z, y) = L(s, y) + \lambda \sum_k s_k^p .

With :math:`g = \partial J/\partial \ell = \partial L/\partial\ell + \lambda p\, s^p`, one chain rule
serves every base loss:

.. math::
   \frac{\partial J}{\partial u} = g - s \sum_k g_k,\qquad
   \frac{\partial J}{\partial z} = \frac{1}{\tau}\frac{\partial J}{\partial u},

followed, with normalisation, by :math:`(d - n\,(n\cdot d))/\lVert z\rVert`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType, ModuleType
from typing import Any, NamedTuple

import numpy as np

from sparse_reg._compat import array_namespace, host_scalar, is_traced, traceable_namespace
from sparse_reg._frozen import FrozenMapping
from sparse_reg._numerics import (
    Array,
    compute_dtype,
    label_mask,
    log_softmax,
    normalize_backward,
    unit_rows,
)
from sparse_reg._validation import real_scalar
from sparse_reg.losses import BaseLoss, get_loss

__all__ = [
    "DEFAULTS",
    "MIN_TAU",
    "OBJECTIVE_PARAMETERS",
    "Objective",
    "Parameter",
    "SRTerms",
    "check_tau_for_dtype",
    "lp_penalty",
    "sharpen",
    "sr_terms",
]


def _check_positive(name: str, value: Any) -> float:
    number = real_scalar(value)
    if number is None or not math.isfinite(number):
        raise TypeError(f"{name} must be a finite real number; got {value!r}")
    if number <= 0:
        raise ValueError(f"{name} must be > 0; got {value!r}")
    return number


def check_tau(tau: Any) -> Any:
    """Validate the sharpening temperature: a finite number > 0.

    A 0-D traced array (``tau`` an argument of a ``jax.jit`` function, or differentiated by
    ``jax.grad``) is taken unchecked, since it has no value yet: there ``tau <= 0`` gives NaN or
    inf rather than an error.
    """
    if getattr(tau, "ndim", None) == 0 and is_traced(tau):
        return tau
    return _check_positive("tau", tau)


#: The smallest supported ``tau`` per logits dtype, checked by :func:`check_tau_for_dtype`. The
#: gradient is of order :math:`1/(\tau \max(\lVert z\rVert, \epsilon))` with normalisation
#: (:math:`\epsilon` = ``NORM_EPS`` = 1e-12), so :math:`10^{12}/\tau` must stay well inside
#: the compute dtype: 1e-24 leaves float32 (and bfloat16, computed in float32) a factor 300, and
#: 1e-280 leaves float64 sixteen orders. float16's gradient, of order :math:`1/\tau`, overflows its
#: 65504 below 1e-4. Within these, every path agrees with the float64 reference to the fuzz
#: corpus's tolerances (``tests/test_fuzz_corpus.py``); measured on random logits, values and
#: gradients (relative to :math:`\max(|\nabla|, 1/\tau)`) stay within 1e-6 down to tau = 1e-35
#: in float32 and 1e-300 in float64 without normalisation.
_MIN_TAU = {"float16": 1e-4, "bfloat16": 1e-24, "float32": 1e-24, "float64": 1e-280}
MIN_TAU: Mapping[str, float] = MappingProxyType(_MIN_TAU)

#: :func:`_min_tau` by dtype. Plain dictionaries, not functools.cache or the mapping proxy, which
#: torch.compile cannot trace without a graph break; torch dtypes in a table of their own, since
#: torch.compile cannot compare a torch dtype with the NumPy dtypes a key lookup meets, and every
#: other library's dtypes in one table per dtype class, since array_api_strict warns when its
#: dtypes are compared with NumPy's.
_MIN_TAU_BY_TORCH_DTYPE: dict[Any, tuple[float, str]] = {}
_MIN_TAU_BY_DTYPE_CLASS: dict[type, dict[Any, tuple[float, str]]] = {}


def _min_tau(dtype: Any) -> tuple[float, str]:
    """:data:`MIN_TAU` of ``dtype`` and its name, worked out once per dtype."""
    if type(dtype).__module__ == "torch":
        table = _MIN_TAU_BY_TORCH_DTYPE
    else:
        table = _MIN_TAU_BY_DTYPE_CLASS.get(type(dtype))
        if table is None:  # not setdefault: it would build an empty dict on every call
            table = _MIN_TAU_BY_DTYPE_CLASS[type(dtype)] = {}
    found = table.get(dtype)
    if found is None:
        name = str(dtype).rsplit(".", 1)[-1]
        found = table[dtype] = (_MIN_TAU.get(name, 0.0), name)
    return found


def check_tau_for_dtype(tau: Any, dtype: Any) -> None:
    """Refuse a host ``tau`` below :data:`MIN_TAU` of the logits' ``dtype``.

    ``tau`` is :attr:`Objective.tau`: a Python float once checked, unless traced (a JAX tracer),
    whose value cannot be read; a traced ``tau`` below the minimum gives inaccurate or non-finite
    results rather than an error.
    """
    if type(tau) is not float:
        return
    minimum, name = _min_tau(dtype)
    if tau < minimum:
        raise ValueError(
            f"tau must be >= {minimum:g} for {name} logits; got {tau!r} (see MIN_TAU in "
            "sparse_reg.regularizer; use float64 logits for a smaller tau)"
        )


def check_p(p: Any) -> float:
    """Validate the penalty exponent: a number in (0, 1]."""
    p = _check_positive("p", p)
    if p > 1:
        raise ValueError(f"p must lie in (0, 1]; got {p!r}")
    return p


def check_clamp(clamp: Any) -> float | None:
    """Validate the probability clamp: ``None`` or a number in (0, 1)."""
    if clamp is None:
        return None
    clamp = _check_positive("clamp", clamp)
    if clamp >= 1:
        raise ValueError(f"clamp must be None or lie in (0, 1); got {clamp!r}")
    return clamp


def check_lam(lam: Any) -> Any:
    """Validate the penalty weight: a number >= 0 (Python or NumPy), or a 0-D array.

    A NumPy number or 0-D NumPy array becomes a Python float. Another library's 0-D array is kept
    (so a schedule can change it in place, and a tensor that requires grad gets its gradient);
    its value is checked where reading it costs no device synchronisation (CPU tensors), and is
    not inspected on a GPU or under tracing (a JAX tracer, a tensor under ``torch.compile``), where
    a negative value gives a wrong loss rather than an error.
    """
    number = real_scalar(lam)
    if number is None and (
        getattr(lam, "ndim", None) != 0 or not _is_real(lam) or isinstance(lam, np.generic)
    ):
        raise TypeError(f"lam must be a real number >= 0 or a 0-D array; got {lam!r}")
    value = number if number is not None else host_scalar(lam)
    if value is not None and (not math.isfinite(value) or value < 0):
        raise ValueError(f"lam must be a finite number >= 0; got {lam!r}")
    return number if number is not None else lam


def _is_real(x: Any) -> bool:
    """Whether array ``x`` has a real (integer or floating, not boolean) dtype."""
    return bool(array_namespace(x).isdtype(x.dtype, ("integral", "real floating")))


def check_normalize(normalize: Any) -> bool:
    """Validate the normalisation switch: ``True`` or ``False``."""
    if not isinstance(normalize, bool):
        raise TypeError(f"normalize must be True or False; got {normalize!r}")
    return normalize


@dataclass(frozen=True)
class Parameter:
    """One parameter of the objective: its name, default, validator and a one-line description.

    :data:`OBJECTIVE_PARAMETERS` is the one list of them; :meth:`Objective.create`,
    :func:`sparse_reg.loss`, :class:`sparse_reg.nn.SparseRegLoss` and the trainer's configuration
    take their names, defaults and checks from it.
    """

    name: str
    default: Any
    check: Callable[[Any], Any]
    help: str


#: The objective's parameters besides the base loss and its own parameters, in signature order.
OBJECTIVE_PARAMETERS: tuple[Parameter, ...] = (
    Parameter("tau", 0.5, check_tau, "sharpening temperature tau > 0"),
    Parameter("p", 0.1, check_p, "exponent p in (0, 1] of the penalty sum_k s_k^p"),
    Parameter("lam", 1.0, check_lam, "penalty weight lambda >= 0 (a number or a 0-D array)"),
    Parameter("normalize", False, check_normalize,
              "L2-normalise the logits before dividing by tau (the official CIFAR code)"),
    Parameter("clamp", None, check_clamp,
              "clamp probabilities at this value before the power, as the official code (1e-7); "
              "none: exact"),
)
#: Each parameter's default, by name.
DEFAULTS: Mapping[str, Any] = MappingProxyType({p.name: p.default for p in OBJECTIVE_PARAMETERS})


@dataclass(frozen=True)
class Objective:
    r"""A fully validated sparse-regularized objective :math:`L + \lambda\sum_k s_k^p`.

    Build it with :meth:`create`; every argument is checked there, once. The fields besides
    ``base`` and ``params`` are :data:`OBJECTIVE_PARAMETERS`.
    """

    base: BaseLoss
    params: Mapping[str, Any]
    tau: float
    p: float
    lam: Any
    normalize: bool
    clamp: float | None

    @classmethod
    def create(cls, base: str = "ce", **arguments: Any) -> Objective:
        """Validate the arguments of :func:`sparse_reg.loss` and bundle them.

        ``arguments`` are the :data:`OBJECTIVE_PARAMETERS` (each defaulting to its
        :attr:`Parameter.default`); every other name is a parameter of the base loss.
        """
        loss = get_loss(base)
        fields = {p.name: p.check(arguments.pop(p.name, p.default)) for p in OBJECTIVE_PARAMETERS}
        return cls(base=loss, params=FrozenMapping(loss.resolve_params(arguments)), **fields)

    def with_lam(self, lam: Any) -> Objective:
        """The same objective with another penalty weight (used by schedules)."""
        return Objective(
            self.base, self.params, self.tau, self.p, check_lam(lam), self.normalize, self.clamp
        )


class SRTerms(NamedTuple):
    """Per-sample pieces of the objective.

    Attributes
    ----------
    base
        :math:`L(s_i, y_i)`, shape ``(N,)``.
    penalty
        :math:`\\sum_k s_{ik}^p`, shape ``(N,)`` (not yet multiplied by :math:`\\lambda`).
    grad
        :math:`\\partial(L + \\lambda\\sum_k s_k^p)/\\partial z_i`, shape ``(N, C)`` in the logits'
        dtype, or ``None`` when not asked for.
    """

    base: Array
    penalty: Array
    grad: Array | None


def _penalty(log_probs: Array, p: float, clamp: float | None, xp: ModuleType) -> tuple[Array, Array]:
    r"""Row sums :math:`R = \sum_k s_k^p` and :math:`\partial R/\partial \log s_k`.

    Exact mode computes :math:`s^p = e^{p\log s}` (finite when :math:`s` underflows) with
    :math:`\partial R/\partial\log s = p\,s^p`. Clamp mode is the official code's
    :math:`\sum_k \operatorname{clip}(s_k, c, 1)^p`, whose gradient is zero where the clamp binds.
    """
    if clamp is None:
        powered = xp.exp(p * log_probs)
        return xp.sum(powered, axis=-1), p * powered
    probs = xp.exp(log_probs)
    powered = xp.clip(probs, min=clamp, max=1.0) ** p
    # Clamped where s < c; a NaN s (a row holding NaN or +inf) is not, so its NaN reaches the
    # whole row's gradient, as without a clamp, rather than leaving finite entries beside it.
    clamped = probs < clamp
    return xp.sum(powered, axis=-1), xp.where(clamped, xp.zeros_like(powered), p * powered)


def _sharpened_log_probs(
    z: Array, tau: float, normalize: bool, xp: ModuleType
) -> tuple[Array, Array | None, Array | None]:
    """``log_softmax(z'/tau)`` with ``z'`` the (optionally L2-normalised) logits, plus the norm."""
    if not normalize:
        return log_softmax(z, xp, scale=tau), None, None
    unit, norm = unit_rows(z, xp)
    return log_softmax(unit, xp, scale=tau), unit, norm


def sharpen(logits: Array, tau: float = 0.5, *, normalize: bool = False) -> Array:
    r"""Sharpened output distribution :math:`\sigma_\tau(z) = \operatorname{softmax}(z/\tau)`.

    Parameters
    ----------
    logits
        Array of shape ``(..., C)`` from any array-API library.
    tau
        Temperature > 0; :math:`\tau < 1` sharpens, :math:`\tau \to 0` tends to one-hot at the
        argmax, :math:`\tau \to \infty` to uniform. The argmax and the ranking never change.
    normalize
        Replace :math:`z` by :math:`z/\lVert z\rVert_2` first, as the official code does on CIFAR.

    Returns
    -------
    Array
        Probabilities, same shape, dtype and device as ``logits`` (computed in float32 for 16-bit
        input).

    Examples
    --------
    >>> import numpy as np
    >>> from sparse_reg import sharpen
    >>> sharpen(np.array([[1.0, 0.0]]), tau=0.5).round(4)
    array([[0.8808, 0.1192]])
    """
    xp = array_namespace(logits)
    tau = check_tau(tau)
    check_tau_for_dtype(tau, logits.dtype)
    z = xp.astype(logits, compute_dtype(xp, logits.dtype))
    log_s, _, _ = _sharpened_log_probs(z, tau, normalize, xp)
    return xp.astype(xp.exp(log_s), logits.dtype)


def lp_penalty(probs: Array, p: float = 0.1, *, clamp: float | None = None) -> Array:
    r"""The sparsity penalty :math:`\lVert s\rVert_p^p = \sum_k s_k^p` of each row.

    On the simplex, :math:`1 \le \sum_k s_k^p \le C^{1-p}` for :math:`0 < p < 1`, with equality on
    the left exactly at one-hot rows and on the right exactly at the uniform row; :math:`p = 1` gives
    the constant 1 (no sparsity pressure).

    Parameters
    ----------
    probs
        Probabilities of shape ``(..., C)``.
    p
        Exponent in (0, 1].
    clamp
        ``None`` (default) evaluates :math:`s^p = e^{p \log s}` exactly (0 for :math:`s = 0`);
        a value such as ``1e-7`` reproduces the official code, :math:`\operatorname{clip}(s,
        c, 1)^p`, where every entry below :math:`c` counts as :math:`c^p`.

    Returns
    -------
    Array
        Shape ``probs.shape[:-1]``.

    Examples
    --------
    >>> import numpy as np
    >>> from sparse_reg import lp_penalty
    >>> lp_penalty(np.array([[1.0, 0.0, 0.0], [1/3, 1/3, 1/3]]), p=0.5).round(4)
    array([1.    , 1.7321])
    """
    xp = array_namespace(probs)
    p, clamp = check_p(p), check_clamp(clamp)
    positive = probs > 0
    safe = xp.where(positive, probs, xp.ones_like(probs))
    log_probs = xp.where(positive, xp.log(safe), xp.full_like(probs, -math.inf))
    return _penalty(log_probs, p, clamp, xp)[0]


def sr_terms(
    logits: Array,
    labels: Array,
    objective: Objective,
    *,
    need_grad: bool,
    grad_scale: Any = 1.0,
    penalty_weight: Array | None = None,
) -> SRTerms:
    r"""Per-sample base loss, penalty and (optionally) gradient: the array-API reference.

    Every fast path in :mod:`sparse_reg.backends` must agree with this function. ``logits`` has
    shape ``(N, C)`` and ``labels`` integer shape ``(N,)``, already validated and in one namespace.
    The gradient is multiplied by ``grad_scale`` (a mean's :math:`1/N`; a number or a 0-D array)
    within the chain rule, so a reduction costs no extra pass.

    The criterion options (:mod:`sparse_reg.criterion`) use two generalisations, found only here:
    ``labels`` may be floating point of shape ``(N, C)``, non-negative target masses :math:`m`,
    and the base term is then :math:`\sum_c m_c L(s, c)`
    (:meth:`~sparse_reg.BaseLoss.expectation`); and ``penalty_weight`` (shape ``(N,)``) puts a
    factor :math:`\omega_i` on each sample's penalty in the gradient, which is then that of
    :math:`B_i + \lambda\,\omega_i \sum_k s_{ik}^p` (the returned penalty stays unweighted).
    """
    xp = traceable_namespace(logits)  # array_namespace's functools caches warn when traced
    z = xp.astype(logits, compute_dtype(xp, logits.dtype))
    log_s, unit, norm = _sharpened_log_probs(z, objective.tau, objective.normalize, xp)
    base_loss, params = objective.base, objective.params
    if need_grad and base_loss.grad is None:
        raise TypeError(f"base loss {base_loss.name!r} has no closed-form gradient")
    if xp.isdtype(labels.dtype, "real floating"):
        masses = xp.astype(labels, z.dtype)
        base, base_grad = base_loss.expectation(log_s, masses, xp=xp, need_grad=need_grad, **params)
    else:
        mask = label_mask(labels, z.shape[-1], xp)
        base, base_grad = base_loss.value(log_s, mask, xp=xp, **params), None
    penalty, dpenalty = _penalty(log_s, objective.p, objective.clamp, xp)
    if not need_grad:
        return SRTerms(base, penalty, None)
    if base_grad is None:
        base_grad = base_loss.grad(log_s, mask, xp=xp, **params)
    lam = objective.lam if penalty_weight is None else objective.lam * penalty_weight[:, None]
    g = base_grad + lam * dpenalty
    s = xp.exp(log_s)
    grad = (g - s * xp.sum(g, axis=-1, keepdims=True)) * (grad_scale / objective.tau)
    if objective.normalize:  # linear in the incoming gradient, so the scale passes through
        grad = normalize_backward(grad, unit, norm, xp)
    return SRTerms(base, penalty, xp.astype(grad, logits.dtype))
