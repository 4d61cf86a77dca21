r"""The options of :class:`torch.nn.CrossEntropyLoss` for any base loss: class weights, ignored
labels, label smoothing, class-probability targets, and inputs with extra dimensions.

Everything here happens around the per-sample objective of :mod:`sparse_reg.regularizer`, which
itself only ever sees a batch of shape ``(M, C)``:

* **Shapes.** Logits ``(N, C, d1, ..., dk)`` have their class axis moved last and are flattened to
  ``(M, C)``, :math:`M = N d_1\cdots d_k`; a single sample ``(C,)`` becomes ``(1, C)``.
  :class:`Layout` puts per-sample values and the gradient back into the input's shape.
* **Targets.** Integer labels stay integer (the fused paths take them); class probabilities
  :math:`t`, and hard labels under label smoothing, :math:`t = (1-\varepsilon)\,e_y +
  \varepsilon/C`, become target masses :math:`m_c = w_c t_c` and the base term is
  :math:`B_i = \sum_c m_{ic} L(s_i, c)` (:meth:`sparse_reg.BaseLoss.expectation`).
* **Class weights** must be finite and :math:`\ge 0` (:func:`check_weight_values`), checked at
  call time where the values are in host memory, folded into the computation as NaN elsewhere
  (:func:`poison_weight`), so no call waits for a device.
* **Sample weights.** Sample :math:`i` counts with :math:`\omega_i = w_{y_i}` (class indices;
  0 when :math:`y_i` is ``ignore_index``) or :math:`\omega_i = 1` (class probabilities), as in
  torch's mean. Its objective is :math:`B_i + \lambda\,\omega_i R_i`, with
  :math:`R_i = \sum_k s_{ik}^p`, and the mean divides the sum by :math:`W = \sum_i \omega_i`.

Why the penalty is weighted by :math:`\omega_i`: with class indices and no smoothing, sample
:math:`i`'s whole objective is :math:`w_{y_i}\,(L_i + \lambda R_i)`, the paper's per-sample
objective scaled. Class weights thus reweight samples, as resampling the data would, and leave
each sample's minimiser (the sharpened one-hot output the paper's analysis relies on) unchanged;
the mean is a weighted average of per-sample objectives, so :math:`\lambda` keeps its meaning and
the objective does not change when all weights are multiplied by one constant, in every reduction.
An unweighted penalty would instead give class :math:`k` an effective :math:`\lambda / w_k`. It is
also what lets the fused paths serve class weights and ignored labels: one factor per row on
their value and gradient, applied outside the kernels.

With :math:`\lambda = 0` and :math:`\tau = 1`, ``base="ce"`` is
:func:`torch.nn.functional.cross_entropy` with the same options, exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType, ModuleType
from typing import Any, NamedTuple

import numpy as np

from sparse_reg._compat import (
    device,
    follow_logits,
    host_scalar,
    is_jax_array,
    is_torch_array,
    is_traced,
    namespace_of,
)
from sparse_reg._numerics import Array, compute_dtype, label_mask, nan_rows
from sparse_reg._reduction import gradient_scale, reduce, weighted_scale
from sparse_reg._validation import (
    check_label_values,
    check_logits_and_target,
    check_probabilities,
    nan_where_labels_invalid,
    real_scalar,
)
from sparse_reg.regularizer import Parameter

__all__ = [
    "CRITERION_DEFAULTS",
    "CRITERION_PARAMETERS",
    "Batch",
    "Criterion",
    "Layout",
    "prepare",
]


def check_weight(weight: Any) -> Any:
    """Validate the type, dimension and dtype of per-class weights: ``None``, or a 1-D real array
    (a list is taken as NumPy data). The length and the values (:func:`check_weight_values`) are
    checked at call time, against the logits, so a module's buffer changed in place is seen."""
    if weight is None:
        return None
    if isinstance(weight, (list, tuple)):
        weight = np.asarray(weight)
    ndim, dtype = getattr(weight, "ndim", None), getattr(weight, "dtype", None)
    if ndim is None or dtype is None or isinstance(weight, np.generic):
        raise TypeError(f"weight must be None or a 1-D array of per-class weights; got {weight!r}")
    if ndim != 1:
        raise ValueError(
            f"weight must be 1-D with shape (C,), one weight per class; got shape {tuple(weight.shape)}"
        )
    kind = np.dtype(dtype).kind if isinstance(weight, np.ndarray) else None
    if (kind is not None and kind not in "iuf") or (kind is None and not _is_real_array(weight)):
        raise TypeError(f"weight must have a real (integer or floating) dtype; got {dtype}")
    return weight


def check_weight_values(weight: Any) -> bool:
    r"""Raise unless every class weight is finite and :math:`\ge 0`, where the values can be read
    without a device synchronisation; return whether they were read.

    Read: NumPy arrays, CPU tensors and JAX arrays on the CPU, outside tracing. Not read (returns
    ``False``): device memory (CUDA tensors, CuPy, JAX on an accelerator), where reading would
    wait for the device on every call, and traced arrays (``torch.compile``, ``jax.jit``), which
    have no values; the caller then folds the rule into the computation (:func:`poison_weight`).

    Negative weights, which torch accepts, are refused: torch's mean divides by
    :math:`W = \sum_i w_{y_i}`, which can then be 0 (an infinite or NaN mean) or negative (the
    sign of the whole objective flips), and a sample of negative weight has a loss unbounded
    below (its penalty rewards dense outputs), so a minimiser no longer exists.
    """
    values = _host_values(weight)
    if values is None:
        return False
    # Two reductions, run on every call: NaN fails the first comparison, inf the second.
    if values.size and not (values.min() >= 0 and values.max() < np.inf):
        bad = values[~(np.isfinite(values) & (values >= 0))]
        raise ValueError(
            f"weight must hold finite values >= 0 (one per class; torch accepts negative weights, "
            f"sparse_reg refuses them); got {bad.tolist()} among {weight!r}"
        )
    return True


def poison_weight(weight: Array, xp: ModuleType) -> Array:
    r"""``weight`` unchanged if every entry is finite and :math:`\ge 0`, else NaN everywhere.

    The rule of :func:`check_weight_values` as arithmetic, for weights whose values cannot be read
    (device memory, tracing): no branch on the values and no synchronisation. All of the weight
    becomes NaN, not only the bad entry, because the mean divides by :math:`W = \sum_i \omega_i`
    and a NaN :math:`W` would give the other rows a zero gradient (a finite wrong number); this
    way the value and every gradient entry of the call are NaN.
    """
    ok = xp.all(xp.isfinite(weight) & (weight >= 0))
    return weight + xp.where(ok, xp.zeros_like(ok, dtype=weight.dtype),
                             xp.full_like(ok, xp.nan, dtype=weight.dtype))


def _is_real_array(x: Any) -> bool:
    xp = namespace_of(x)  # a per-type dict: array_namespace's functools caches warn when traced
    return bool(xp.isdtype(x.dtype, ("integral", "real floating")))


def _host_values(x: Any) -> np.ndarray | None:
    """A NumPy view or copy of a small array whose values are in host memory and readable without
    tracing or synchronisation, else ``None``."""
    if isinstance(x, np.ndarray):
        return x
    if is_traced(x):
        return None
    if is_torch_array(x):
        if not x.is_cpu:
            return None
        x = x.detach()
        try:
            return x.numpy()  # a zero-copy view
        except TypeError:  # bfloat16, which NumPy has no dtype for
            return x.float().numpy()
    if is_jax_array(x) and all(d.platform == "cpu" for d in x.devices()):
        return np.asarray(x)
    return None


def check_ignore_index(ignore_index: Any) -> int:
    """Validate the ignored label: an integer (Python or NumPy), as torch's ``ignore_index``."""
    if isinstance(ignore_index, (bool, np.bool_)) or not isinstance(ignore_index, (int, np.integer)):
        raise TypeError(f"ignore_index must be an integer; got {ignore_index!r}")
    return int(ignore_index)


def check_label_smoothing(label_smoothing: Any) -> float:
    r"""Validate the label smoothing :math:`\varepsilon`: a number in :math:`[0, 1]` (Python,
    NumPy scalar, or a 0-D array in host memory)."""
    number = real_scalar(label_smoothing)
    if number is None and getattr(label_smoothing, "ndim", None) == 0 and _is_real_array(label_smoothing):
        number = host_scalar(label_smoothing)
    if number is None or not math.isfinite(number):
        raise TypeError(
            f"label_smoothing must be a finite real number in [0, 1]; got {label_smoothing!r}"
        )
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"label_smoothing must lie in [0, 1]; got {label_smoothing!r}")
    return number


#: The criterion's parameters, in signature order, declared once for :func:`sparse_reg.loss`,
#: :func:`sparse_reg.loss_and_grad` and :class:`sparse_reg.nn.SparseRegLoss`.
CRITERION_PARAMETERS: tuple[Parameter, ...] = (
    Parameter("weight", None, check_weight,
              "per-class weights w of shape (C,): sample i counts w[y_i] times, as in torch"),
    Parameter("ignore_index", -100, check_ignore_index,
              "samples with this label are left out of the loss, the penalty and the mean"),
    Parameter("label_smoothing", 0.0, check_label_smoothing,
              "mix the target with the uniform distribution: (1 - eps) t + eps / C"),
)
#: Each criterion parameter's default, by name.
CRITERION_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {p.name: p.default for p in CRITERION_PARAMETERS}
)


@dataclass(frozen=True)
class Criterion:
    """Validated :data:`CRITERION_PARAMETERS`; build it with :meth:`create`."""

    weight: Any
    ignore_index: int
    label_smoothing: float

    @classmethod
    def create(cls, **arguments: Any) -> Criterion:
        """Check each of :data:`CRITERION_PARAMETERS` (missing ones take their default)."""
        unknown = sorted(set(arguments) - set(CRITERION_DEFAULTS))
        if unknown:
            raise TypeError(f"unexpected criterion argument(s) {', '.join(unknown)}")
        return cls(**{p.name: p.check(arguments.get(p.name, p.default)) for p in CRITERION_PARAMETERS})


DEFAULT_CRITERION = Criterion(None, -100, 0.0)


@dataclass(frozen=True)
class Layout:
    """How the flattened ``(M, C)`` batch maps back to the input's shape.

    ``samples`` is the shape of per-sample values (``(N, d1, ..., dk)``, or ``()`` for one
    sample); ``permutation`` moved the class axis last (``None``: it already was).
    """

    samples: tuple[int, ...]
    logits: tuple[int, ...]
    permutation: tuple[int, ...] | None

    def values(self, x: Array, xp: ModuleType) -> Array:
        """Per-sample values ``(M,)`` in the input's sample shape."""
        return xp.reshape(x, self.samples)

    def grad(self, g: Array, xp: ModuleType) -> Array:
        """A gradient ``(M, C)`` in the logits' shape."""
        if self.permutation is None:
            return xp.reshape(g, self.logits)
        moved = xp.reshape(g, tuple(self.logits[i] for i in self.permutation))
        inverse = tuple(int(i) for i in np.argsort(self.permutation))
        return xp.permute_dims(moved, inverse)


def _flatten(logits: Array, labels: Array, soft: bool, xp: ModuleType) -> tuple[Array, Array, Layout | None]:
    """``(M, C)`` logits and ``(M,)`` labels (``(M, C)`` probabilities), and the :class:`Layout`
    back (``None`` for input that already has that shape)."""
    if logits.ndim == 2:
        return logits, labels, None
    shape = tuple(logits.shape)
    if logits.ndim == 1:
        return (xp.reshape(logits, (1, shape[0])), xp.reshape(labels, (1, -1) if soft else (1,)),
                Layout((), shape, None))
    permutation = (0, *range(2, logits.ndim), 1)
    flat = xp.reshape(xp.permute_dims(logits, permutation), (-1, shape[1]))
    if soft:
        labels = xp.reshape(xp.permute_dims(labels, permutation), (-1, shape[1]))
    else:
        labels = xp.reshape(labels, (-1,))
    return flat, labels, Layout(shape[:1] + shape[2:], shape, permutation)


class Batch(NamedTuple):
    """A validated call, flattened: what the objective is evaluated on, and how to weigh it.

    A named tuple rather than a frozen dataclass: one is built on every call, and a frozen
    dataclass sets its nine fields one ``object.__setattr__`` at a time (three times as long).

    Attributes
    ----------
    logits
        Shape ``(M, C)``.
    labels
        Integer class indices ``(M,)`` (ignored ones replaced by 0), or for :attr:`soft`, the
        target masses :math:`m = w \\odot t` of shape ``(M, C)`` (0 in ignored rows).
    soft
        The base term is the expectation over :attr:`labels` (class probabilities or label
        smoothing): only the array-API reference computes it.
    weights
        :math:`\\omega_i` of shape ``(M,)``, or ``None`` when every sample counts once.
    valid
        Boolean ``(M,)``, false for ignored samples; ``None`` when none is ignored.
    total
        The mean's denominator :math:`W = \\sum_i \\omega_i` (a 0-D array), or ``None`` for
        :math:`M`.
    checked
        Whether the label values were checked (``False`` under tracing: rows with an invalid
        label become NaN).
    indices
        The integer labels (ignored ones replaced by 0), or ``None`` for class probabilities.
    layout
        The input's shape, or ``None`` when it was ``(M, C)`` already.
    """

    logits: Array
    labels: Array
    soft: bool
    weights: Array | None
    valid: Array | None
    total: Array | None
    checked: bool
    indices: Array | None
    layout: Layout | None

    @property
    def weighted(self) -> bool:
        """Whether some sample counts other than once (class weights or ignored labels)."""
        return self.weights is not None

    def kernel_scale(self, reduction: str, xp: ModuleType) -> Any:
        """The ``grad_scale`` to evaluate the terms with; the rest comes from :meth:`grad`."""
        if self.total is None:
            return gradient_scale(reduction, self.logits.shape[0])
        return weighted_scale(reduction, self.total, xp) if self.soft else 1.0

    def penalty_weight(self) -> Array | None:
        """``penalty_weight`` for :func:`sparse_reg.regularizer.sr_terms` on the soft path."""
        return self.weights if self.soft else None

    def weigh(self, base: Array, penalty: Array, xp: ModuleType) -> tuple[Array, Array]:
        """Per-sample base and penalty terms of the weighted objective (see the module text)."""
        if not self.checked:
            # Both terms: the base term of a row without a class has no path back to the logits
            # (its mask is empty), so only the penalty's carries the NaN into the gradient.
            base = nan_where_labels_invalid(base, self.indices, self.logits.shape[1], xp)
            penalty = nan_where_labels_invalid(penalty, self.indices, self.logits.shape[1], xp)
        if self.weights is None:
            return base, penalty
        base = self._rows(base if self.soft else base * self.weights, xp)
        return base, self._rows(penalty * self.weights, xp)

    def _rows(self, x: Array, xp: ModuleType) -> Array:
        """``x`` with ignored rows exactly 0, whatever their logits (NaN included)."""
        if self.valid is None:
            return x
        valid = self.valid if x.ndim == 1 else self.valid[:, None]
        return xp.where(valid, x, xp.zeros_like(x))

    def reduce(self, per_sample: Array, reduction: str, xp: ModuleType) -> Array:
        """Weighed per-sample values (:meth:`weigh`) reduced: a mean over :math:`W`; with
        ``"none"``, in the input's sample shape."""
        return self.shaped(reduce(per_sample, reduction, xp, self.total), reduction, xp)

    def shaped(self, value: Array, reduction: str, xp: ModuleType) -> Array:
        """A reduced value in the input's shape (``"none"`` on ``(N, d1, ...)`` input)."""
        return self.layout.values(value, xp) if reduction == "none" and self.layout is not None else value

    def grad(self, grad: Array, reduction: str, xp: ModuleType, *, weighed: bool = False) -> Array:
        """The gradient of the terms evaluated with :meth:`kernel_scale`, completed: each row's
        weight (class indices), NaN rows under tracing, the input's shape. ``weighed``: ``grad``
        is that of the sum of :meth:`weigh`'s terms instead (autograd), so only the reduction's
        factor is missing."""
        if not self.checked:
            grad = nan_where_labels_invalid(grad, self.indices, self.logits.shape[1], xp)
        if weighed:
            grad = grad * (gradient_scale(reduction, self.logits.shape[0]) if self.total is None
                           else xp.astype(weighted_scale(reduction, self.total, xp), grad.dtype))
        elif self.weights is not None and not self.soft:
            factor = self.weights * weighted_scale(reduction, self.total, xp)
            grad = grad * xp.astype(factor, grad.dtype)[:, None]
        grad = self._rows(grad, xp)
        return grad if self.layout is None else self.layout.grad(grad, xp)



def prepare(
    logits: Array,
    labels: Array,
    criterion: Criterion,
    xp: ModuleType,
    host_view: Callable[[Array], np.ndarray | None] | None = None,
) -> Batch:
    """Validate ``(logits, labels)`` against ``criterion`` and flatten them into a :class:`Batch`.

    ``host_view`` gives a zero-copy NumPy view of an array in host memory, or ``None`` (the
    backend's hook), which makes the checks on label values cheap.
    """
    soft = check_logits_and_target(logits, labels, xp)
    if soft and criterion.ignore_index != CRITERION_DEFAULTS["ignore_index"]:
        raise ValueError(
            f"ignore_index={criterion.ignore_index} cannot be used with class-probability labels "
            "(floating point), as in torch; pass integer class indices to ignore samples"
        )
    z, labels, layout = _flatten(logits, labels, soft, xp)
    num_classes = z.shape[1]
    host = host_view(labels) if host_view is not None else None
    # isinstance, not library_of: its per-type cache, filled while torch.compile traces, would
    # become a guard that fails on the next call (one recompilation).
    if host is None and isinstance(labels, np.ndarray):
        host = labels
    weight = None if criterion.weight is None else _weight_for(criterion.weight, z, xp)
    smoothing = criterion.label_smoothing
    if soft:
        dtype = compute_dtype(xp, z.dtype)
        check_probabilities(labels, xp, host)
        masses = xp.astype(labels, dtype)
        if host is None and is_traced(labels):  # unchecked: a row with a negative entry is NaN
            masses = nan_rows(masses, xp.all(masses >= 0, axis=-1), xp)
        if smoothing:
            masses = masses * (1 - smoothing) + smoothing / num_classes
        if weight is not None:
            masses = masses * weight
        return Batch(z, masses, True, None, None, None, True, None, layout)
    checked, ignored = check_label_values(labels, num_classes, xp, host, criterion.ignore_index)
    if not ignored and weight is None and not smoothing:  # the common call: every sample counts once
        return Batch(z, labels, False, None, None, None, checked, labels, layout)
    dtype = compute_dtype(xp, z.dtype)
    valid = None
    if ignored:
        valid = labels != criterion.ignore_index
        labels = xp.where(valid, labels, xp.zeros_like(labels))
    weights = None
    if weight is not None:
        weights = xp.take(weight, labels if _index_dtype_ok(labels, xp) else xp.astype(labels, xp.int64))
        if not checked:  # traced: an out-of-range label must not index out of bounds
            weights = xp.where((labels >= 0) & (labels < num_classes), weights, xp.zeros_like(weights))
    if valid is not None:
        # *_like of the labels, not device(z): no device query for torch.compile to trace.
        weights = xp.where(valid, xp.ones_like(labels, dtype=dtype) if weights is None else weights,
                           xp.zeros_like(labels, dtype=dtype))
    total = None if weights is None else xp.sum(weights)
    if not smoothing:
        return Batch(z, labels, False, weights, valid, total, checked, labels, layout)
    one_hot = xp.astype(label_mask(labels, num_classes, xp), dtype)
    masses = one_hot * (1 - smoothing) + smoothing / num_classes
    if weight is not None:
        masses = masses * weight
    if valid is not None:
        masses = xp.where(valid[:, None], masses, xp.zeros_like(masses))
    return Batch(z, masses, True, weights, valid, total, checked, labels, layout)


def _index_dtype_ok(labels: Array, xp: ModuleType) -> bool:
    """Whether ``labels`` can index an array as they are (``take`` wants a wide integer dtype)."""
    return labels.dtype in (xp.int32, xp.int64)


def _weight_for(weight: Any, logits: Array, xp: ModuleType) -> Array | None:
    """``weight`` in the logits' library, device and compute dtype, checked against ``C``; its
    values are checked here, at call time, or made NaN where bad when they cannot be read
    (:func:`poison_weight`)."""
    if weight is None:
        return None
    read = check_weight_values(weight)
    weight = follow_logits("weight", weight, logits, xp)
    # Traced, a device is not known (a JAX tracer's is None) or costs a traced query: skipped.
    if not (is_traced(weight) or is_traced(logits)) and device(weight) != device(logits):
        raise ValueError(
            f"weight is on device {device(weight)} but logits on {device(logits)}; move it there"
        )
    num_classes = logits.shape[1]
    if tuple(weight.shape) != (num_classes,):
        raise ValueError(
            f"weight must have shape (C,) = ({num_classes},), one weight per class; "
            f"got {tuple(weight.shape)}"
        )
    weight = xp.astype(weight, compute_dtype(xp, logits.dtype))
    return weight if read else poison_weight(weight, xp)
