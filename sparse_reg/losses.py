r"""The base-loss registry: one short definition per loss.

Every base loss is a function of the log-probabilities :math:`\ell = \log s` (shape ``(N, C)``) and
the one-hot label mask, with :math:`a = s_y = e^{\ell_y}`. Each definition gives the per-sample value
and, where it has one, the closed-form gradient :math:`g = \partial L/\partial \ell` of shape
``(N, C)``. One chain rule (:mod:`sparse_reg.regularizer`) turns :math:`g` into the gradient with
respect to the logits for every loss, so a loss never differentiates through the softmax itself.

Working on :math:`\ell` rather than :math:`s` keeps every formula in the log domain: :math:`1 - a`
is ``-expm1(l_y)``, exact even when :math:`a` rounds to 1, and :math:`a^q` is ``exp(q l_y)``, finite
even when :math:`a` underflows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType, ModuleType
from typing import Any, Protocol

from sparse_reg._compat import device_of
from sparse_reg._frozen import FrozenMapping
from sparse_reg._numerics import Array, at_label
from sparse_reg._validation import real_scalar

__all__ = [
    "BaseLoss",
    "available_losses",
    "get_loss",
    "register_loss",
]


class ValueFn(Protocol):
    def __call__(self, log_s: Array, mask: Array, *, xp: ModuleType, **params: Any) -> Array: ...


class GradFn(Protocol):
    def __call__(self, log_s: Array, mask: Array, *, xp: ModuleType, **params: Any) -> Array: ...


_SWITCH = "True or False"
#: Valid range of each built-in parameter: a predicate and the words for the error message.
_PARAM_RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "gamma": (lambda v: v >= 0, "a number >= 0"),
    "q": (lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "alpha": (lambda v: v >= 0, "a number >= 0"),
    "beta": (lambda v: v >= 0, "a number >= 0"),
    "detach_weight": (lambda v: isinstance(v, bool), _SWITCH),
}


@dataclass(frozen=True)
class BaseLoss:
    r"""A registered base loss :math:`L(s, y)`.

    Attributes
    ----------
    name
        Registry key, as passed to ``base=``.
    value
        ``value(log_s, mask, *, xp, **params)`` -> per-sample loss, shape ``(N,)``.
    grad
        ``grad(log_s, mask, *, xp, **params)`` -> :math:`\partial L/\partial \log s`, shape
        ``(N, C)``; ``None`` for a value-only loss, which is then differentiated by autograd.
    defaults
        Parameter names and their default values.
    formula
        The per-sample value in LaTeX, for the documentation.
    grad_formula
        :math:`\partial L/\partial \log s` in LaTeX, for the documentation.
    label_only
        The value and the gradient depend on :math:`\log s` only through :math:`\log s_y`, and
        not on the number of classes: fast paths may evaluate them on the ``(N, 1)`` label column
        alone (the gradient is then zero off the label).
    kernel
        The terms of the CUDA kernel (:mod:`sparse_reg.backends.cupy`) that compute this loss, as
        :math:`\alpha T_1 + \beta T_2` (the weights from ``alpha``, ``beta``, else 1); empty for a
        loss the kernel does not have, which then runs on the array-API reference there.
    soft_mask
        Given class probabilities :math:`t` (rows on the simplex) as the mask, ``value`` and
        ``grad`` return the expectation :math:`\sum_c t_c L(s, c)` and its gradient (true of a
        loss linear in the mask); see :meth:`expectation`.
    parts
        For a weighted sum (:func:`register_sum`): the parameter holding each part's weight, and
        the part.
    """

    name: str
    value: ValueFn
    grad: GradFn | None
    defaults: Mapping[str, Any] = field(default_factory=dict)
    formula: str = ""
    grad_formula: str = ""
    label_only: bool = False
    kernel: tuple[str, ...] = ()
    soft_mask: bool = False
    parts: tuple[tuple[str, BaseLoss], ...] = ()

    @property
    def soft_targets(self) -> bool:
        """Whether :meth:`expectation` is defined: class-probability targets are accepted."""
        if self.parts:
            return all(part.soft_targets for _, part in self.parts)
        return self.soft_mask or self.label_only

    def check_soft_targets(self) -> None:
        """Raise :class:`ValueError`, naming the loss, unless it accepts class probabilities."""
        if not self.soft_targets:
            raise ValueError(
                f"soft targets (class probabilities, or label_smoothing > 0) are not defined for "
                f"base loss {self.name!r}: its value is neither a function of log s_y alone nor "
                "declared to give the expectation over a probability mask; pass integer class "
                "indices, or register the loss with soft_mask=True if, given class probabilities "
                "as the mask, its value and gradient are the expectation over them"
            )

    def expectation(
        self, log_s: Array, masses: Array, *, xp: ModuleType, need_grad: bool, **params: Any
    ) -> tuple[Array, Array | None]:
        r"""The loss of class-probability targets, :math:`\sum_c m_c L(s, c)`, and its gradient.

        ``masses`` (shape ``(N, C)``, non-negative) are the targets, possibly scaled by class
        weights. A :attr:`label_only` loss (a sum of such losses too), :math:`L(s, c) =
        f(\log s_c)`, is evaluated on every class column at once and summed with weights
        :math:`m_c` (:func:`_mass_sum`), as the definition reads. Otherwise each row is divided by
        its total :math:`M = \sum_c m_c` to a distribution :math:`t` and the result is
        :math:`M\,\mathbb E_{c\sim t}[L(s, c)]`: a :attr:`soft_mask` loss receives :math:`t` as
        its mask, a sum averages its :attr:`parts`. Other losses raise :class:`ValueError`.

        The first way keeps the derivative with respect to the targets, :math:`L(s, c)`, finite
        where it is (the division by :math:`M` would pass an infinite entry to the whole row as
        NaN), as torch's probability-target cross entropy has it.

        Returns
        -------
        value, grad
            Shape ``(N,)``, and :math:`\partial/\partial\log s` of shape ``(N, C)`` (``None``
            unless ``need_grad``).
        """
        self.check_soft_targets()
        if self.label_only:
            per_class, per_class_grad = self._per_class(log_s, xp, need_grad, params)
            grad = None
            if need_grad:
                grad = xp.where(masses != 0, masses * per_class_grad, xp.zeros_like(per_class_grad))
            return _mass_sum(per_class, masses, xp), grad
        total = xp.sum(masses, axis=-1)
        positive = total > 0
        share = masses / xp.where(positive, total, xp.ones_like(total))[:, None]
        value, grad = self._expected(log_s, share, xp, need_grad, params)
        scale = xp.where(positive, total, xp.zeros_like(total))
        return value * scale, None if grad is None else grad * scale[:, None]

    def _per_class(
        self, log_s: Array, xp: ModuleType, need_grad: bool, params: Mapping[str, Any]
    ) -> tuple[Array, Array | None]:
        r"""A :attr:`label_only` loss's :math:`L(s, c)` for every class ``c`` (shape ``(N, C)``),
        and its derivative in :math:`\log s_c` (``None`` unless ``need_grad``): the loss of an
        ``(N C, 1)`` problem whose one class is each column in turn."""
        rows, num_classes = log_s.shape
        column = xp.reshape(log_s, (rows * num_classes, 1))
        ones = xp.ones(column.shape, dtype=xp.bool, device=device_of(log_s))
        per_class = xp.reshape(self.value(column, ones, xp=xp, **params), (rows, num_classes))
        if not need_grad:
            return per_class, None
        return per_class, xp.reshape(self.grad(column, ones, xp=xp, **params), (rows, num_classes))

    def _expected(
        self, log_s: Array, targets: Array, xp: ModuleType, need_grad: bool, params: Mapping[str, Any]
    ) -> tuple[Array, Array | None]:
        r""":math:`\mathbb E_{c\sim t}[L(s, c)]` and its gradient, for rows ``targets`` on the simplex."""
        if self.parts:
            values, grads = [], []
            for weight, part in self.parts:
                value, grad = part._expected(log_s, targets, xp, need_grad, _split_params(part, params))
                values.append(params[weight] * value)
                grads.append(None if grad is None else params[weight] * grad)
            return values[0] + values[1], grads[0] + grads[1] if need_grad else None
        if self.soft_mask:
            grad = self.grad(log_s, targets, xp=xp, **params) if need_grad else None
            return self.value(log_s, targets, xp=xp, **params), grad
        # label_only: f(log s_c) for every class c at once.
        per_class, per_class_grad = self._per_class(log_s, xp, need_grad, params)
        grad = None
        if need_grad:
            grad = xp.where(targets != 0, targets * per_class_grad, xp.zeros_like(per_class_grad))
        return at_label(per_class, targets, xp), grad

    def resolve_params(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Merge ``given`` over the defaults, rejecting unknown names and out-of-range values."""
        unknown = sorted(set(given) - set(self.defaults))
        if unknown:
            valid = ", ".join(sorted(self.defaults)) or "no parameters"
            raise TypeError(
                f"base loss {self.name!r} got unexpected parameter(s) {', '.join(unknown)}; "
                f"it takes: {valid}"
            )
        params = {**self.defaults, **given}
        for key, val in given.items():
            check = _PARAM_RANGES.get(key)
            if check is not None:
                params[key] = _checked(self.name, key, val, *check)
        return params

    def __reduce__(self) -> tuple[Any, ...]:
        # A registered loss is pickled by name, as Python pickles functions: its functions may be
        # closures (the sums of register_sum), and unpickling gives the registered object itself,
        # which the fast paths recognise by identity. Another definition (one replaced since by
        # overwrite=True) is pickled field by field.
        if _REGISTRY.get(self.name) is self:
            return (get_loss, (self.name,))
        return (BaseLoss, tuple(getattr(self, f.name) for f in fields(self)))


def _mass_sum(per_class: Array, masses: Array, xp: ModuleType) -> Array:
    r""":math:`\sum_c m_c L_c` per row, with a class of mass 0 adding exactly 0 even where its
    loss :math:`L_c` is infinite (a class of probability 0), and :math:`\partial/\partial m_c =
    L_c` everywhere, :math:`\pm\infty` included, as torch and optax give it.

    A plain product would make such a class's value :math:`0\cdot\infty` = NaN; masking the loss
    with ``where`` makes its mass derivative 0 (or NaN, from the masked product's backward). So the
    masked sum is completed by :math:`(m_c\,b)\,(\pm b)` at those classes, with :math:`b` the
    dtype's largest finite number: its value is exactly 0 (:math:`m_c = 0`) and its derivative
    :math:`\pm b^2` overflows to :math:`\pm\infty`, while the derivative with respect to the
    loss, and so to the logits, stays 0.
    """
    kept = masses != 0
    zero = xp.zeros_like(per_class)
    term = masses * xp.where(kept, per_class, zero)
    edge = ~kept & xp.isinf(per_class)
    big = xp.finfo(per_class.dtype).max
    infinite = (xp.where(edge, masses, xp.zeros_like(masses)) * big) * xp.where(
        edge, xp.sign(per_class) * big, zero
    )
    return xp.sum(term + infinite, axis=-1)


def _checked(loss: str, key: str, value: Any, predicate: Callable[[Any], bool], words: str) -> Any:
    """``value`` if it passes ``predicate`` (numbers as Python floats), else a ValueError."""
    checked = value
    if isinstance(value, bool):  # the switches take exactly True or False; numbers never do
        valid = words == _SWITCH
    else:
        number = real_scalar(value)
        valid = number is not None and math.isfinite(number) and words != _SWITCH
        checked = number if valid else value
    if not (valid and predicate(checked)):
        raise ValueError(f"{key} of base loss {loss!r} must be {words}; got {value!r}")
    return checked


_REGISTRY: dict[str, BaseLoss] = {}
_ALIASES: dict[str, str] = {"fl": "focal"}
#: Alternative names accepted by ``base=``, and the registered loss each stands for (read-only).
ALIASES: Mapping[str, str] = MappingProxyType(_ALIASES)


def register_loss(
    name: str,
    value: ValueFn,
    grad: GradFn | None = None,
    *,
    defaults: Mapping[str, Any] | None = None,
    formula: str = "",
    grad_formula: str = "",
    label_only: bool = False,
    soft_mask: bool = False,
    overwrite: bool = False,
) -> BaseLoss:
    r"""Register a base loss so ``base=name`` finds it everywhere.

    Parameters
    ----------
    name
        The key for ``base=``; lower case by convention.
    value
        ``value(log_s, mask, *, xp, **params)`` returning the per-sample loss ``(N,)``, written with
        the array-API namespace ``xp`` (``log_s`` is :math:`\log\operatorname{softmax}(z/\tau)`,
        ``mask`` the boolean one-hot labels).
    grad
        Optional :math:`\partial L/\partial \log s` with the same signature, shape ``(N, C)``.
        Without it, torch and JAX differentiate ``value`` by autograd, and
        :func:`sparse_reg.loss_and_grad` on NumPy or CuPy raises
        :class:`~sparse_reg.errors.NoClosedFormGradientError`.
    defaults
        The loss's parameters and their defaults; only these names are accepted as ``**params``.
        None may be named like an argument of :func:`sparse_reg.loss` or ``schedule`` (``weight``,
        ``tau``, ...): such a value would go to the front door, never to the loss, so it raises.
    formula, grad_formula
        LaTeX of the value and of :math:`\partial L/\partial \log s`, for the documentation.
    label_only
        Declare that ``value`` and ``grad`` read ``log_s`` only at the label and do not depend on
        the number of classes, so the NumPy fast path evaluates them on the label column alone.
        Such a loss also accepts class-probability targets (:meth:`BaseLoss.expectation`).
    soft_mask
        Declare that ``value`` and ``grad``, given class probabilities :math:`t` as the mask (a
        float array whose rows sum to 1), return the expectation :math:`\sum_c t_c L(s, c)` and
        its gradient, as a loss linear in the mask does; it then accepts class-probability
        targets. A loss with neither declaration refuses them.
    overwrite
        Replace an existing registration of ``name`` instead of raising.

    Returns
    -------
    BaseLoss
        The registered definition.

    Notes
    -----
    The NumPy and PyTorch CPU fast paths run any loss with a ``grad``. The CUDA kernel holds the
    built-in losses only (:attr:`BaseLoss.kernel`), so on CuPy and on CUDA tensors a registered
    loss runs on the array-API reference, as ``sparse_reg.backends.cupy.supports`` reports.

    Examples
    --------
    >>> import sparse_reg as sr
    >>> def brier_y(log_s, mask, *, xp):
    ...     a = xp.exp(xp.sum(xp.where(mask, log_s, xp.zeros_like(log_s)), axis=-1))
    ...     return (1 - a) ** 2
    >>> _ = sr.register_loss("brier_y", brier_y, overwrite=True)
    >>> "brier_y" in sr.available_losses()
    True
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty string; got {name!r}")
    for switch, given in (("label_only", label_only), ("soft_mask", soft_mask)):
        if not isinstance(given, bool):
            raise TypeError(f"{switch} must be True or False; got {given!r}")
    if (name in _REGISTRY or name in _ALIASES) and not overwrite:
        raise ValueError(f"base loss {name!r} is already registered; pass overwrite=True")
    taken = sorted(set(defaults or {}) & _FRONT_DOOR_ARGUMENTS)
    if taken:
        raise ValueError(
            f"defaults of base loss {name!r} name {', '.join(map(repr, taken))}, which "
            "sparse_reg.loss and SparseRegLoss take as their own arguments, so the loss could never "
            "be given them; rename the parameter(s)"
        )
    return _add(BaseLoss(
        name, value, grad, FrozenMapping(defaults), formula, grad_formula, label_only,
        soft_mask=soft_mask,
    ))


#: Argument names of the front doors (:func:`sparse_reg.loss`, :class:`sparse_reg.nn.SparseRegLoss`),
#: which they take for themselves, so a base-loss parameter of such a name would never reach the
#: loss. The front doors add them (:func:`reserve_argument_names`): they are defined above this module.
_FRONT_DOOR_ARGUMENTS: set[str] = set()


def reserve_argument_names(names: Iterable[str]) -> None:
    """Refuse ``names`` as base-loss parameters from now on (called by the front doors)."""
    _FRONT_DOOR_ARGUMENTS.update(names)


def _add(loss: BaseLoss) -> BaseLoss:
    _REGISTRY[loss.name] = loss
    return loss


def _builtin(name: str, value: ValueFn, grad: GradFn, *, kernel: str, label_only: bool = False,
             soft_mask: bool = False, defaults: Mapping[str, Any] | None = None, formula: str,
             grad_formula: str) -> BaseLoss:
    """Register a built-in loss with its traits and its CUDA kernel term."""
    return _add(BaseLoss(name, value, grad, FrozenMapping(defaults), formula,
                         grad_formula, label_only, (kernel,), soft_mask))


def get_loss(name: str) -> BaseLoss:
    """Look up a registered base loss by name (or alias, e.g. ``"fl"`` for ``"focal"``)."""
    key = _ALIASES.get(name, name) if isinstance(name, str) else name
    try:
        return _REGISTRY[key]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown base loss {name!r}; valid: {', '.join(available_losses())}"
        ) from None


def available_losses() -> tuple[str, ...]:
    """Names of every registered base loss, in registration order."""
    return tuple(_REGISTRY)


# --- helpers shared by the definitions -------------------------------------------------------


def _on_label(per_sample: Array, mask: Array, xp: ModuleType) -> Array:
    """Place a per-sample gradient on the label column, zeros elsewhere: shape ``(N, C)``."""
    return xp.where(mask, per_sample[:, None], xp.zeros_like(per_sample)[:, None])


def _one_minus_exp(ell: Array, xp: ModuleType) -> Array:
    """:math:`1 - e^{\\ell}`, exact as :math:`\\ell \\to 0`."""
    return -xp.expm1(ell)


def _focal(ell: Array, gamma: float, detach_weight: bool, xp: ModuleType) -> tuple[Array, Array]:
    r"""Elementwise focal term :math:`F(\ell) = -(1-e^\ell)^\gamma \ell` and :math:`dF/d\ell`.

    .. math:: F'(\ell) = -(1-a)^\gamma + \gamma\, a\,(1-a)^\gamma\,\frac{\ell}{1-a}

    :math:`\ell/(1-a) \to -1` as :math:`a \to 1`; the ratio is guarded so that limit is taken
    exactly. With ``detach_weight`` the weight :math:`(1-a)^\gamma` is a constant, as in the
    official code, and :math:`F' = -(1-a)^\gamma`.
    """
    one_minus_a = _one_minus_exp(ell, xp)
    positive = one_minus_a > 0
    safe = xp.where(positive, one_minus_a, xp.ones_like(one_minus_a))
    # (1-a)^gamma has an infinite derivative at a = 1 for gamma < 1; autograd would multiply it by
    # zero and get NaN, so the power only ever sees positive arguments (0^0 = 1 is kept).
    at_one = xp.full_like(safe, 1.0 if gamma == 0 else 0.0)
    weight = xp.where(positive, safe**gamma, at_one)
    value = -weight * ell
    if detach_weight:
        return value, -weight
    ratio = xp.where(positive, ell / safe, -xp.ones_like(ell))
    return value, -weight + gamma * xp.exp(ell) * weight * ratio


# --- the built-in losses --------------------------------------------------------------------

#: RCE's :math:`-\log 0`, clamped to :math:`-\log 10^{-4}` as in the SCE paper's code.
RCE_SCALE = -math.log(1e-4)


def _ce(log_s, mask, *, xp):
    return -at_label(log_s, mask, xp)


def _ce_grad(log_s, mask, *, xp):
    return -xp.astype(mask, log_s.dtype)


def _focal_value(log_s, mask, *, xp, gamma, detach_weight):
    return _focal(at_label(log_s, mask, xp), gamma, detach_weight, xp)[0]


def _focal_grad(log_s, mask, *, xp, gamma, detach_weight):
    return _on_label(_focal(at_label(log_s, mask, xp), gamma, detach_weight, xp)[1], mask, xp)


def _gce(log_s, mask, *, xp, q):
    return -xp.expm1(q * at_label(log_s, mask, xp)) / q


def _gce_grad(log_s, mask, *, xp, q):
    return _on_label(-xp.exp(q * at_label(log_s, mask, xp)), mask, xp)


def _mae(log_s, mask, *, xp):
    return 2 * _one_minus_exp(at_label(log_s, mask, xp), xp)


def _mae_grad(log_s, mask, *, xp):
    return _on_label(-2 * xp.exp(at_label(log_s, mask, xp)), mask, xp)


def _mse(log_s, mask, *, xp):
    target = xp.astype(mask, log_s.dtype)
    diff = xp.exp(log_s) - target
    # E_t ||s - e_c||^2 = ||s - t||^2 + 1 - ||t||^2 for t on the simplex; the correction is exactly
    # 0 for a one-hot mask.
    return xp.sum(diff * diff, axis=-1) + (1 - xp.sum(target * target, axis=-1))


def _mse_grad(log_s, mask, *, xp):
    s = xp.exp(log_s)
    return 2 * s * (s - xp.astype(mask, log_s.dtype))


def _rce(log_s, mask, *, xp):
    return RCE_SCALE * _one_minus_exp(at_label(log_s, mask, xp), xp)


def _rce_grad(log_s, mask, *, xp):
    return _on_label(-RCE_SCALE * xp.exp(at_label(log_s, mask, xp)), mask, xp)


def _nce(log_s, mask, *, xp):
    return at_label(log_s, mask, xp) / xp.sum(log_s, axis=-1)


def _nce_grad(log_s, mask, *, xp):
    total = xp.sum(log_s, axis=-1)
    ratio = at_label(log_s, mask, xp) / total
    return (xp.astype(mask, log_s.dtype) - ratio[:, None]) / total[:, None]


def _nfl(log_s, mask, *, xp, gamma, detach_weight):
    focal = _focal(log_s, gamma, detach_weight, xp)[0]
    return at_label(focal, mask, xp) / xp.sum(focal, axis=-1)


def _nfl_grad(log_s, mask, *, xp, gamma, detach_weight):
    focal, dfocal = _focal(log_s, gamma, detach_weight, xp)
    total = xp.sum(focal, axis=-1)
    ratio = at_label(focal, mask, xp) / total
    return (xp.astype(mask, log_s.dtype) - ratio[:, None]) * dfocal / total[:, None]


def _ngce_parts(log_s, mask, xp, q):
    num_classes = log_s.shape[-1]
    powered = xp.exp(q * log_s)
    # 1 - s_y^q taken at the label after the elementwise map, so it is linear in the mask.
    numerator = at_label(-xp.expm1(q * log_s), mask, xp)
    return powered, numerator, num_classes - xp.sum(powered, axis=-1)


def _ngce(log_s, mask, *, xp, q):
    _, numerator, denominator = _ngce_parts(log_s, mask, xp, q)
    return numerator / denominator


def _ngce_grad(log_s, mask, *, xp, q):
    powered, numerator, denominator = _ngce_parts(log_s, mask, xp, q)
    ratio = numerator / denominator
    return q * powered * (ratio[:, None] - xp.astype(mask, log_s.dtype)) / denominator[:, None]


def _nmae(log_s, mask, *, xp):
    # (1 - s_k) at the label, linear in the mask.
    return at_label(_one_minus_exp(log_s, xp), mask, xp) / (log_s.shape[-1] - 1)


def _nmae_grad(log_s, mask, *, xp):
    return -xp.astype(mask, log_s.dtype) * xp.exp(log_s) / (log_s.shape[-1] - 1)


def _split_params(loss: BaseLoss, params: Mapping[str, Any]) -> dict[str, Any]:
    return {key: params[key] for key in loss.defaults}


def register_sum(name: str, active: str, passive: str, *, alpha: float, beta: float) -> BaseLoss:
    r"""Register :math:`\alpha L_\text{active} + \beta L_\text{passive}` from two registered losses.

    This is how SCE and the active-passive losses (NCE+RCE, ...) are built: the value and the
    gradient are the weighted sums of the parts', so nothing is written twice.
    """
    first, second = get_loss(active), get_loss(passive)

    def value(log_s, mask, *, xp, alpha, beta, **params):
        return alpha * first.value(log_s, mask, xp=xp, **_split_params(first, params)) + (
            beta * second.value(log_s, mask, xp=xp, **_split_params(second, params))
        )

    grad = None
    if first.grad is not None and second.grad is not None:

        def grad(log_s, mask, *, xp, alpha, beta, **params):
            return alpha * first.grad(log_s, mask, xp=xp, **_split_params(first, params)) + (
                beta * second.grad(log_s, mask, xp=xp, **_split_params(second, params))
            )

    formula = rf"\alpha\,[{first.formula}] + \beta\,[{second.formula}]"
    grad_formula = rf"\alpha\,[{first.grad_formula}] + \beta\,[{second.grad_formula}]"
    defaults = {"alpha": alpha, "beta": beta, **first.defaults, **second.defaults}
    # The kernel has the sum when it has both parts, each a single term.
    kernel = first.kernel + second.kernel if len(first.kernel) == len(second.kernel) == 1 else ()
    return _add(BaseLoss(
        name, value, grad, FrozenMapping(defaults), formula, grad_formula,
        first.label_only and second.label_only, kernel, parts=(("alpha", first), ("beta", second)),
    ))


_FOCAL_DEFAULTS = {"gamma": 0.5, "detach_weight": False}

_builtin("ce", _ce, _ce_grad, kernel="CE", label_only=True, soft_mask=True, formula=r"-\log s_y",
         grad_formula=r"-e_y")
_builtin(
    "focal", _focal_value, _focal_grad, kernel="FOCAL", label_only=True, defaults=_FOCAL_DEFAULTS,
    formula=r"-(1-s_y)^\gamma \log s_y",
    grad_formula=r"\bigl(\gamma\, s_y (1-s_y)^{\gamma-1}\log s_y - (1-s_y)^\gamma\bigr)\, e_y",
)
_builtin(
    "gce", _gce, _gce_grad, kernel="GCE", label_only=True, defaults={"q": 0.7},
    formula=r"(1 - s_y^q)/q", grad_formula=r"-s_y^q\, e_y",
)
_builtin(
    "mae", _mae, _mae_grad, kernel="MAE", label_only=True,
    formula=r"\lVert s - e_y\rVert_1 = 2(1 - s_y)", grad_formula=r"-2 s_y\, e_y",
)
_builtin(
    "mse", _mse, _mse_grad, kernel="MSE", soft_mask=True,
    formula=r"\lVert s - e_y\rVert_2^2", grad_formula=r"2\, s \odot (s - e_y)",
)
_builtin(
    "rce", _rce, _rce_grad, kernel="RCE", label_only=True, formula=r"-\log(10^{-4})\,(1 - s_y)",
    grad_formula=r"\log(10^{-4})\, s_y\, e_y",
)
_builtin(
    "nce", _nce, _nce_grad, kernel="NCE", soft_mask=True, formula=r"\log s_y \big/ \sum_k \log s_k",
    grad_formula=r"(e_y - L\,\mathbf 1) \big/ \sum_k \log s_k",
)
_builtin(
    "nfl", _nfl, _nfl_grad, kernel="NFL", soft_mask=True, defaults=_FOCAL_DEFAULTS,
    formula=r"(1-s_y)^\gamma \log s_y \big/ \sum_k (1-s_k)^\gamma \log s_k",
    grad_formula=r"(e_y - L\,\mathbf 1) \odot F'(\log s) \big/ \sum_k F(\log s_k)",
)
_builtin(
    "ngce", _ngce, _ngce_grad, kernel="NGCE", soft_mask=True, defaults={"q": 0.7},
    formula=r"(1 - s_y^q) \big/ \bigl(C - \sum_k s_k^q\bigr)",
    grad_formula=r"q\, s^q \odot (L\,\mathbf 1 - e_y) \big/ \bigl(C - \sum_k s_k^q\bigr)",
)
# nmae divides by C - 1: not label-only, since the column alone has C = 1.
_builtin(
    "nmae", _nmae, _nmae_grad, kernel="NMAE", soft_mask=True,
    formula=r"(1 - s_y)/(C - 1)", grad_formula=r"-s_y\, e_y / (C - 1)",
)
register_sum("sce", "ce", "rce", alpha=0.1, beta=1.0)
register_sum("nce+rce", "nce", "rce", alpha=1.0, beta=1.0)
register_sum("nce+mae", "nce", "mae", alpha=1.0, beta=1.0)
register_sum("nfl+rce", "nfl", "rce", alpha=1.0, beta=1.0)
register_sum("nfl+mae", "nfl", "mae", alpha=1.0, beta=1.0)

#: The losses shipped with the library (user registrations come after these).
BUILTIN_LOSSES: tuple[str, ...] = available_losses()
