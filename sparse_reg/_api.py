"""The front door: :func:`loss` and :func:`loss_and_grad` validate, resolve the backend, delegate."""

from __future__ import annotations

import inspect
from types import ModuleType
from typing import Any

from sparse_reg._compat import is_traced
from sparse_reg._numerics import Array
from sparse_reg._reduction import check_reduction
from sparse_reg._validation import check_flag
from sparse_reg.backends import library_of, resolve_call
from sparse_reg.criterion import (
    CRITERION_DEFAULTS,
    DEFAULT_CRITERION,
    Batch,
    Criterion,
    prepare,
)
from sparse_reg.errors import NoClosedFormGradientError
from sparse_reg.losses import get_loss, reserve_argument_names
from sparse_reg.regularizer import DEFAULTS, Objective, check_tau_for_dtype, sr_terms

__all__ = ["loss", "loss_and_grad"]


def loss(
    logits: Any,
    labels: Any,
    *,
    base: str = "ce",
    tau: float = DEFAULTS["tau"],
    p: float = DEFAULTS["p"],
    lam: Any = DEFAULTS["lam"],
    normalize: bool = DEFAULTS["normalize"],
    clamp: float | None = DEFAULTS["clamp"],
    weight: Any = CRITERION_DEFAULTS["weight"],
    ignore_index: int = CRITERION_DEFAULTS["ignore_index"],
    label_smoothing: float = CRITERION_DEFAULTS["label_smoothing"],
    reduction: str = "mean",
    backend: str | None = None,
    fused: bool = True,
    **base_params: Any,
) -> Array:
    r"""Sparse-regularized loss :math:`L(\sigma_\tau(z), y) + \lambda \sum_k \sigma_\tau(z)_k^p`.

    Parameters
    ----------
    logits
        Array of shape ``(N, C)``, floating point, from NumPy, CuPy, PyTorch, JAX or any array-API
        library. It decides the library and device of the computation and of the result. As for
        :func:`torch.nn.functional.cross_entropy`, ``(N, C, d1, ..., dk)`` (classes on axis 1, one
        sample per position) and a single sample ``(C,)`` are accepted too. A NumPy array stored in
        the other byte order (``astype(">f4")``) is converted to the machine's once, as NumPy
        itself would compute with it; float128 (long double) is refused with :class:`TypeError`,
        and a torch tensor on the ``meta`` device with :class:`ValueError`.
    labels
        Integer class indices in ``[0, C)`` (or ``ignore_index``) of the logits' shape without the
        class axis: ``(N,)``, ``(N, d1, ..., dk)``, or ``()`` for ``(C,)`` logits. Or class
        probabilities :math:`t`, floating point, of the logits' shape: the base term is then
        :math:`\sum_c t_c L(s, c)`, the expectation over the labels, defined for every built-in loss
        (:meth:`sparse_reg.BaseLoss.expectation`); entries must be :math:`\ge 0`, and rows are not
        required to sum to 1, as in torch. NumPy labels follow the logits to their library and
        device.
    base
        Base loss name (see :func:`sparse_reg.available_losses`): ``"ce"``, ``"focal"`` (alias
        ``"fl"``), ``"gce"``, ``"mae"``, ``"mse"``, ``"rce"``, ``"sce"``, ``"nce"``, ``"nfl"``,
        ``"ngce"``, ``"nmae"``, ``"nce+rce"``, ``"nce+mae"``, ``"nfl+rce"``, ``"nfl+mae"``, or one
        added with :func:`sparse_reg.register_loss`.
    tau
        Sharpening temperature :math:`\tau > 0` (default 0.5, the paper's CIFAR setting), at least
        the supported minimum of the logits' dtype (:data:`sparse_reg.regularizer.MIN_TAU`):
        ``1e-4`` for float16, ``1e-24`` for bfloat16 and float32, ``1e-280`` for float64; a
        smaller number raises :class:`ValueError`. A traced ``tau`` (a JAX tracer) is not checked.
    p
        Penalty exponent in :math:`(0, 1]` (default 0.1); :math:`p = 1` switches the penalty off
        in effect, since :math:`\sum_k s_k = 1`.
    lam
        Penalty weight :math:`\lambda \ge 0` (default 1.0), a number or a 0-D array; grow it during
        training with :class:`sparse_reg.LambdaSchedule`. ``lam=0`` gives the plain base loss on
        the sharpened output.
    normalize
        L2-normalise each row of logits before dividing by :math:`\tau`, as the official code does
        on CIFAR (default ``False``: the paper's formula).
    clamp
        ``None`` (default) computes the penalty exactly in the log domain; ``1e-7`` reproduces the
        official code's ``clamp(s, 1e-7, 1) ** p``.
    weight
        Per-class weights :math:`w` of shape ``(C,)``, finite and :math:`\ge 0` (torch also
        takes negative ones), checked on every call: a bad weight raises a ``ValueError`` where
        the values are in host memory (NumPy, CPU tensors, JAX on the CPU), and makes the value
        and every gradient entry NaN where they are not read (device memory such as CUDA or
        CuPy, ``torch.compile``, ``jax.jit``). Sample :math:`i` with class index :math:`y_i`
        counts :math:`\omega_i = w_{y_i}` times in the whole objective, base term and penalty,
        and the mean divides by :math:`\sum_i \omega_i`: a reweighting of samples, which keeps
        each sample's minimiser and the meaning of :math:`\lambda` (see
        :mod:`sparse_reg.criterion`). With class probabilities the base term is
        :math:`\sum_c w_c t_c L(s, c)` and every sample counts once, as in torch.
    ignore_index
        Samples whose label equals it are left out of the base term, the penalty and the mean's
        denominator (default -100, as in torch; their value and gradient are 0). Refused with
        class probabilities, as in torch.
    label_smoothing
        :math:`\varepsilon \in [0, 1]`: the target becomes :math:`(1-\varepsilon)\,t +
        \varepsilon/C` (:math:`t = e_y` for class indices), as in torch, for any base loss.
    reduction
        ``"mean"`` (default) or ``"sum"`` over the batch, or ``"none"`` for per-sample values.
    backend
        ``None`` lets ``logits`` decide; ``"numpy"``, ``"torch"``, ``"cupy"``, ``"jax"`` or
        ``"array_api_strict"`` (optionally with a device, e.g. ``"torch:cuda"``) moves NumPy input
        to that library. Arrays of another device library are never converted implicitly: use
        :func:`sparse_reg.backends.to_backend`.
    fused
        Use the backend's fused value-and-gradient path where one exists (default). ``False`` runs
        the array-API reference, which torch and JAX differentiate by autograd.
    **base_params
        Parameters of the base loss, e.g. ``gamma`` for focal, ``q`` for GCE, ``alpha`` and
        ``beta`` for SCE and the active-passive sums.

    Returns
    -------
    Array
        A 0-D array (``"mean"``, ``"sum"``) or the labels' shape (``"none"``: ``(N,)``,
        ``(N, d1, ..., dk)``, or ``()`` for one sample) in the logits' library and device. The
        dtype is the logits' for float32 and float64; float16 and bfloat16 logits are computed in
        float32 and give a float32 value, as under autocast.

    Notes
    -----
    * The mean of an empty batch (``N = 0``) is 0, and its gradient has shape ``(0, C)``; so is a
      mean over no counted sample (every label ignored, or of weight 0), where torch gives NaN.
    * With :math:`\lambda = 0` and :math:`\tau = 1`, ``base="ce"`` equals
      :func:`torch.nn.functional.cross_entropy` with the same ``weight``, ``ignore_index``,
      ``label_smoothing``, targets, shapes and reduction.
    * Cost: class indices, with or without ``weight`` and ``ignore_index``, run the backend's
      fused path (weights and ignored labels add one pass over the gradient); class probabilities
      and ``label_smoothing > 0`` run the array-API reference
      (:func:`sparse_reg.regularizer.sr_terms`), as ``fused=False`` does.
    * Labels are checked to lie in ``[0, C)``, which reads their values. Under tracing
      (``jax.jit``, ``jax.vmap``, ``torch.compile``, ``torch.func`` transforms) the values do not
      exist yet, or reading them would break the compiled graph, so the check cannot raise: a
      sample whose label is out of range gets a NaN value and gradient instead, and a reduction
      over it is NaN. To make that an error under JAX, wrap the jitted function in
      ``jax.experimental.checkify.checkify(f, errors=checkify.float_checks)``.
    * ``tau`` and ``lam`` may be JAX tracers (``jax.jit`` arguments, ``jax.grad`` with respect
      to them); their range is then not checked. On torch, ``torch.compile`` captures the call in
      one graph and ``torch.func`` transforms run the reference formula (see :doc:`/backends`).
    * Non-finite logits are not checked, since that would force a device synchronisation: a row
      holding NaN or ``+inf`` gives NaN in that row's value and gradient only; ``-inf`` entries are
      classes of probability zero and are handled exactly while the row has a finite entry.
    * Extremes: the log-sum-exp is shifted before dividing by :math:`\tau`, and norms are taken
      on rows scaled by their largest entry, so float32 logits up to the dtype's largest value and
      every supported :math:`\tau` give finite results wherever float64 does and the result fits
      the dtype. The limits: where a log-probability falls below the dtype's range
      (logit gaps above :math:`3.4\cdot10^{38}\,\tau` in float32) the NCE and NFL losses (and
      their sums) are NaN; with ``normalize=True`` a row holding an infinite entry is NaN on the
      fused paths; a gradient entry beyond the dtype's range (of order :math:`1/\tau`) is ``inf``; and the
      CUDA kernel forms :math:`z/\tau` and :math:`\lVert z\rVert^2` directly, so there float32
      logits must stay below :math:`10^{19}` with ``normalize=True`` and :math:`|z|/\tau` below
      :math:`3.4\cdot10^{38}`. Use float64 beyond these.

    Examples
    --------
    >>> import numpy as np
    >>> import sparse_reg as sr
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    >>> labels = np.array([0, 2])
    >>> float(sr.loss(logits, labels, tau=0.5, p=0.1, lam=1.0))
    2.2326...
    """
    return _evaluate(dict(locals()), need_grad=False)


_LOSS_SIGNATURE = inspect.signature(loss)
# The names loss() takes for itself, and SparseRegLoss's schedule (its lam): no base-loss
# parameter may have one of them.
reserve_argument_names((set(_LOSS_SIGNATURE.parameters) - {"base_params"}) | {"schedule"})


def loss_and_grad(logits: Any, labels: Any, **arguments: Any) -> tuple[Array, Array]:
    r"""The loss of :func:`loss` and its closed-form gradient with respect to the logits.

    Takes exactly the arguments of :func:`loss`. The gradient is computed by the one chain rule of
    :mod:`sparse_reg.regularizer` on every backend, so NumPy and CuPy need no autograd.

    Returns
    -------
    value : Array
        As :func:`loss` returns it.
    grad : Array
        :math:`\partial\,\text{value}/\partial z`, the logits' shape, in the logits' dtype. With
        ``reduction="none"``, row :math:`i` (position :math:`i` along the class axis) is the
        gradient of sample :math:`i`'s loss.

    Raises
    ------
    NoClosedFormGradientError
        The base loss was registered without a gradient and the library (NumPy, CuPy,
        array-api-strict) has no autograd.

    Examples
    --------
    >>> import numpy as np
    >>> import sparse_reg as sr
    >>> value, grad = sr.loss_and_grad(np.array([[2.0, 0.5, -1.0]]), np.array([0]))
    >>> grad.shape, abs(float(grad.sum())) < 1e-12
    ((1, 3), True)
    """
    bound = _LOSS_SIGNATURE.bind(logits, labels, **arguments)
    bound.apply_defaults()
    return _evaluate(bound.arguments, need_grad=True)


loss_and_grad.__signature__ = _LOSS_SIGNATURE.replace(return_annotation="tuple[Array, Array]")


#: Validated objectives by their arguments other than ``lam``, for arguments of plain Python types
#: only (a 0-D array ``lam`` is read at call time and is never cached). The key holds each value's
#: type, so ``True`` and ``1`` stay apart, and the registered loss object's id, so re-registering a
#: name is seen (the cached objective holds that object, so its id cannot be reused while the entry
#: exists). ``lam`` is left out of the key because a schedule changes it on every call: the entry
#: then holds the last ``lam``, and a new one is validated alone (:meth:`Objective.with_lam`).
_OBJECTIVES: dict[tuple[Any, ...], Objective] = {}
_PLAIN_TYPES = frozenset({str, int, float, bool, type(None)})
_MAX_CACHED = 256


def _objective(
    arguments: dict[str, Any], base_params: dict[str, Any], lam: Any, traced: bool
) -> Objective:
    """The validated objective of ``arguments`` (its fields but ``lam``), ``base_params`` and
    ``lam``, from :data:`_OBJECTIVES` when every argument is of a plain type."""
    types = (type(lam), *map(type, arguments.values()), *map(type, base_params.values()))
    # Traced calls skip the cache: under torch.compile a lookup would become a guard on the
    # cache's contents (a recompilation once the entry exists), and a tracer must never be kept.
    if traced or not _PLAIN_TYPES.issuperset(types):
        return Objective.create(**base_params, **arguments, lam=lam)
    key = (id(get_loss(arguments["base"])), *arguments.values(), *base_params.items(), *types)
    objective = _OBJECTIVES.get(key)
    if objective is None:
        objective = Objective.create(**base_params, **arguments, lam=lam)
    elif objective.lam != lam:  # equal numbers, equal objectives: check_lam keeps float(lam)
        objective = objective.with_lam(lam)
    else:
        return objective
    if key in _OBJECTIVES or len(_OBJECTIVES) < _MAX_CACHED:
        _OBJECTIVES[key] = objective
    return objective


def _criterion(arguments: dict[str, Any]) -> Criterion:
    """Pop the :data:`~sparse_reg.criterion.CRITERION_PARAMETERS` off ``arguments``, validated."""
    weight = arguments.pop("weight")
    ignore_index = arguments.pop("ignore_index")
    smoothing = arguments.pop("label_smoothing")
    if weight is None and type(ignore_index) is int and ignore_index == DEFAULT_CRITERION.ignore_index \
            and type(smoothing) is float and smoothing == 0.0:  # the common call, checked already
        return DEFAULT_CRITERION
    return Criterion.create(weight=weight, ignore_index=ignore_index, label_smoothing=smoothing)


def _evaluate(arguments: dict[str, Any], *, need_grad: bool) -> Any:
    """Validate, resolve the backend and compute: the one path behind :func:`loss` and
    :func:`loss_and_grad`. ``arguments`` is the caller's own copy of the bound arguments, which is
    emptied here."""
    logits, labels = arguments.pop("logits"), arguments.pop("labels")
    backend, reduction = arguments.pop("backend"), arguments.pop("reduction")
    fused = check_flag("fused", arguments.pop("fused"))
    criterion = _criterion(arguments)
    base_params, lam = arguments.pop("base_params"), arguments.pop("lam")
    objective = _objective(arguments, base_params, lam, is_traced(logits))
    check_reduction(reduction)
    row, xp, logits, labels = resolve_call(logits, labels, backend)
    hooks = row.hooks_module if row is not None else None
    batch = prepare(logits, labels, criterion, xp, hooks.host_view if hooks else None)
    check_tau_for_dtype(objective.tau, batch.logits.dtype)
    if batch.soft:
        objective.base.check_soft_targets()
    if need_grad and objective.base.grad is None:
        return _autograd_value_and_grad(batch, objective, reduction, xp, row)
    # Class probabilities and label smoothing run the array-API reference; the fused paths take
    # class indices, and class weights and ignored labels as a factor on each row (Batch.grad).
    fast = row.fast_path if fused and row is not None and not batch.soft else None
    if fast is not None and not fast.supports(objective):
        fast = None
    if not need_grad and fast is not None and row.autograd:  # the library differentiates the value
        if not batch.weighted:
            value = fast.differentiable_loss(batch.logits, batch.labels, objective, reduction)
            return batch.shaped(value, reduction, xp)
        per_sample = fast.differentiable_loss(batch.logits, batch.labels, objective, "none")
        return batch.reduce(batch.weigh(per_sample, per_sample, xp)[0], reduction, xp)
    extra = {"penalty_weight": batch.penalty_weight()} if batch.soft else {}
    terms = (fast.sr_terms if fast is not None else sr_terms)(
        batch.logits, batch.labels, objective, need_grad=need_grad,
        grad_scale=batch.kernel_scale(reduction, xp), **extra,
    )
    base, penalty = batch.weigh(terms.base, terms.penalty, xp)
    value = batch.reduce(base + objective.lam * penalty, reduction, xp)
    return (value, batch.grad(terms.grad, reduction, xp)) if need_grad else value


def _autograd_value_and_grad(
    batch: Batch, objective: Objective, reduction: str, xp: ModuleType, row: Any
) -> tuple[Array, Array]:
    if row is None or not row.autograd:
        raise NoClosedFormGradientError(
            f"base loss {objective.base.name!r} was registered without a gradient, and "
            f"{library_of(batch.logits)} has no autograd; register it with grad=..., or call "
            "loss_and_grad on torch or JAX arrays"
        )

    def per_sample(z: Array) -> Array:
        terms = sr_terms(z, batch.labels, objective, need_grad=False)
        base, penalty = batch.weigh(terms.base, terms.penalty, xp)
        return base + objective.lam * penalty

    values, grad = row.hooks_module.value_and_grad(per_sample, batch.logits)
    return batch.reduce(values, reduction, xp), batch.grad(grad, reduction, xp, weighed=True)
