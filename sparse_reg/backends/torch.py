"""PyTorch hooks, and the package's one ``autograd.Function``.

Autograd never records the formula. :class:`SparseRegFunction`'s forward runs one fused
implementation (an *engine*) that gives the reduced value and the gradient together, and its
backward only hands back the saved gradient (scaled when the incoming gradient is not 1), instead
of replaying dozens of small kernels and keeping their activations. The native engine:

* CPU tensors run the row-blocked NumPy kernel of :mod:`sparse_reg.backends.numpy` on the tensor's
  own memory (zero copy; bfloat16 tensors are widened to float32 first, as autocast would).
* CUDA tensors run the CuPy RawKernel of :mod:`sparse_reg.backends.cupy` on torch's current stream,
  through DLPack, when CuPy is installed; otherwise, and on other devices, the array-API core.

The trainer's NumPy and CuPy backends pass their own engine, so they share this function.
:math:`\\lambda` is read from the objective at call time and a 0-D tensor is never turned into a
Python number on a GPU (no synchronisation).

Under ``torch.compile`` and inside ``torch.func`` transforms (``vmap``, ``grad``), the tensors have
no memory to hand to NumPy or CuPy (see :func:`sparse_reg._compat.is_traced`): the native engine
then runs the same closed-form value and gradient in torch operators, with :math:`\\lambda` as a
tensor, so a compiled step holds one graph with no guard on :math:`\\lambda`. Inside
``torch.func`` transforms, :func:`differentiable_terms` runs :func:`reference_terms` instead, so
derivatives of every order are exact. There the label range cannot be checked; a row with a label
outside ``[0, C)`` gets NaN in its value and gradient instead.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import cache
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np
import torch

from sparse_reg._compat import is_traced
from sparse_reg._reduction import gradient_scale, reduce_objective
from sparse_reg._validation import nan_where_labels_invalid
from sparse_reg.backends import numpy as numpy_path
from sparse_reg.errors import BackendUnavailableError
from sparse_reg.regularizer import Objective, SRTerms
from sparse_reg.regularizer import sr_terms as core_sr_terms

__all__ = [
    "Engine",
    "Reduced",
    "SparseRegFunction",
    "differentiable_loss",
    "differentiable_terms",
    "from_host",
    "host_view",
    "native_engine",
    "reference_terms",
    "sr_terms",
    "supports",
    "value_and_grad",
]


def from_host(x: object, device: str | None) -> torch.Tensor:
    """Copy host data to a tensor on ``device`` (default: the CPU)."""
    target = torch.device(device or "cpu")
    if target.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError(
            f"backend='torch:{device}' needs a CUDA device, but torch.cuda.is_available() is False"
        )
    return torch.as_tensor(x, device=target)


def host_view(x: torch.Tensor) -> np.ndarray | None:
    """The tensor's memory as a NumPy array when it is on the CPU (zero copy), else ``None``
    (also for bfloat16, which NumPy has no dtype for: such targets are checked in torch)."""
    # is_cpu rather than device.type throughout: it builds no device object (a sixth of the cost).
    if not x.is_cpu or x.requires_grad or x.dtype == torch.bfloat16 or is_traced(x):
        return None
    return x.numpy()


def supports(objective: Objective) -> bool:
    """Fused whenever the base loss has a closed-form gradient."""
    return objective.base.grad is not None


@cache
def _cupy_path() -> ModuleType | None:
    """:mod:`sparse_reg.backends.cupy` when CuPy imports and sees a device, else ``None``."""
    try:
        importlib.import_module("cupy")
        module = importlib.import_module("sparse_reg.backends.cupy")
    except Exception:  # a missing or broken CUDA install: fall back to the core
        return None
    return module if module.available() else None


def _cpu_numpy_terms(
    logits: torch.Tensor, labels: torch.Tensor, objective: Objective, need_grad: bool, scale: float
) -> tuple[SRTerms, torch.Tensor | None]:
    """NumPy terms of a CPU tensor, and the gradient as a tensor in the logits' dtype."""
    z = logits.detach()
    if z.dtype == torch.bfloat16:  # NumPy has no bfloat16
        z = z.float()
    terms = numpy_path.fused_terms(
        z.numpy(),
        (labels if labels.is_cpu else labels.cpu()).numpy(),
        objective,
        need_grad=need_grad,
        grad_scale=scale,
    )
    if terms.grad is None:
        return terms, None
    grad = torch.from_numpy(terms.grad)
    return terms, grad if grad.dtype == logits.dtype else grad.to(logits.dtype)


def sr_terms(
    logits: torch.Tensor,
    labels: torch.Tensor,
    objective: Objective,
    *,
    need_grad: bool,
    grad_scale: float = 1.0,
) -> SRTerms:
    """Drop-in for :func:`sparse_reg.regularizer.sr_terms` on torch tensors (same semantics).

    The result carries no autograd history; use :func:`differentiable_terms` for that. Traced
    tensors run the array-API reference in torch operators.
    """
    if is_traced(logits):
        return core_sr_terms(logits.detach(), labels, objective, need_grad=need_grad, grad_scale=grad_scale)
    if logits.device.type == "cpu":
        terms, grad = _cpu_numpy_terms(logits, labels, objective, need_grad, grad_scale)
        return SRTerms(torch.from_numpy(terms.base), torch.from_numpy(terms.penalty), grad)
    cupy_path = _cupy_path() if logits.device.type == "cuda" else None
    if cupy_path is not None:
        return cupy_path.torch_terms(logits, labels, objective, need_grad=need_grad, grad_scale=grad_scale)
    return core_sr_terms(logits.detach(), labels, objective, need_grad=need_grad, grad_scale=grad_scale)


class Reduced(NamedTuple):
    """What an engine returns: the reduced objective, its two terms, and the gradient.

    ``value = base + lam * penalty``, each reduced as asked (``(N,)`` for ``"none"``); ``grad`` is
    :math:`\\partial\\,\\text{value}/\\partial z` (``None`` when not asked for), in the logits'
    dtype and device.
    """

    value: torch.Tensor
    base: torch.Tensor
    penalty: torch.Tensor
    grad: torch.Tensor | None


#: ``engine(logits, labels, objective, need_grad, reduction) -> Reduced``: one fused evaluation.
Engine = Callable[[torch.Tensor, torch.Tensor, Objective, bool, str], Reduced]


def native_engine(
    logits: torch.Tensor, labels: torch.Tensor, objective: Objective, need_grad: bool, reduction: str
) -> Reduced:
    """The fused value and gradient of torch tensors, on their own device (see the module text)."""
    scale = gradient_scale(reduction, logits.shape[0])
    traced = is_traced(logits)
    if logits.is_cpu and not traced:
        # Reduce on the NumPy side: for small batches each torch op costs more than the math.
        terms, grad = _cpu_numpy_terms(logits, labels, objective, need_grad, scale)
        value, base, penalty = reduce_objective(
            terms.base, terms.penalty, float(objective.lam), reduction, np
        )
        as_tensor = torch.from_numpy
        return Reduced(
            as_tensor(np.asarray(value)), as_tensor(np.asarray(base)), as_tensor(np.asarray(penalty)), grad
        )
    terms = sr_terms(logits, labels, objective, need_grad=need_grad, grad_scale=scale)
    base, grad = terms.base, terms.grad
    if traced:  # the label range was not checked: NaN marks a row with an invalid label
        base = nan_where_labels_invalid(base, labels, logits.shape[1], torch)
        grad = None if grad is None else nan_where_labels_invalid(grad, labels, logits.shape[1], torch)
    return Reduced(*reduce_objective(base, terms.penalty, _lam_like(objective, base), reduction, torch), grad)


def _lam_like(objective: Objective, base: torch.Tensor) -> object:
    """The objective's lam in ``base``'s dtype when it is a tensor: a 0-D float64 buffer would
    otherwise promote a float32 reduced value to float64."""
    lam = objective.lam
    return lam.to(base.dtype) if isinstance(lam, torch.Tensor) else lam


def reference_terms(
    logits: torch.Tensor, labels: torch.Tensor, objective: Objective, reduction: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(value, base, penalty)`` of the array-API reference, differentiable by autograd (any
    order, and through ``torch.func`` transforms); traced rows with an invalid label are NaN."""
    terms = core_sr_terms(logits, labels, objective, need_grad=False)
    base, penalty = terms.base, terms.penalty
    if is_traced(logits):  # both terms: a row without a class reaches the logits by its penalty only
        base = nan_where_labels_invalid(base, labels, logits.shape[1], torch)
        penalty = nan_where_labels_invalid(penalty, labels, logits.shape[1], torch)
    return reduce_objective(base, penalty, _lam_like(objective, base), reduction, torch)


def _keeps_graph() -> bool:
    """Whether the running backward pass keeps the graph (``retain_graph``) for another pass.

    Asked through torch's own query (the one its compiled autograd uses); where that is absent,
    assume it does, which only costs the in-place scaling.
    """
    query = getattr(torch._C._autograd, "_get_current_graph_task_keep_graph", None)
    return True if query is None else bool(query())


class SparseRegFunction(torch.autograd.Function):
    r"""The reduced objective, differentiable through the gradient its forward already computed.

    ``apply(logits, labels, lam, objective, reduction, engine, need_grad)`` returns ``(value, base,
    penalty, grad)``: the reduced objective, its two reduced terms (for logging) and the gradient
    the forward computed (a 0-D zero when ``need_grad`` is false); only ``value`` is
    differentiable. ``engine`` is an :data:`Engine`; ``lam`` is the objective's :math:`\lambda` when it
    is a tensor that requires grad (it then gets :math:`\partial\,\text{value}/\partial\lambda`,
    the reduced penalty), else ``None``; ``need_grad`` says whether the logits need a gradient.

    ``forward`` and ``setup_context`` are separate, so ``torch.compile`` captures the function in
    one graph, and ``generate_vmap_rule`` is set, so it composes with ``torch.func`` to first order
    (the engine then runs in torch operators; see the module text).
    :func:`differentiable_terms` evaluates the reference under ``torch.func`` instead, for exact
    higher derivatives. In eager mode, a backward pass that builds a graph itself
    (``create_graph=True``, for second derivatives) differentiates the array-API reference, so
    higher derivatives are exact there too.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(logits, labels, lam, objective, reduction, engine, need_grad):
        """Run ``engine`` once; the gradient is a fourth output, kept for backward."""
        # The mean's 1/N is applied inside the kernel, so backward is at most one multiply.
        result = engine(logits, labels, objective, need_grad, reduction)
        grad = result.grad if result.grad is not None else logits.new_zeros(())
        return result.value, result.base, result.penalty, grad

    @staticmethod
    def setup_context(ctx, inputs, output):
        """Keep the gradient (and the reduced penalty, the gradient of ``lam``) for backward."""
        logits, labels, lam, objective, reduction, _, _ = inputs
        _, base, penalty, grad = output
        ctx.mark_non_differentiable(base, penalty, grad)
        # Plain attributes, not saved tensors: they are only read by a second-order backward, and
        # saving them would forbid in-place changes of the logits after the forward pass.
        ctx.logits, ctx.labels, ctx.objective, ctx.reduction = logits, labels, objective, reduction
        ctx.has_lam = lam is not None
        # Saved tensors are freed after backward, unlike ctx attributes; the penalty only for lam.
        ctx.save_for_backward(*((grad, penalty) if ctx.has_lam else (grad,)))

    @staticmethod
    def backward(ctx, grad_value, _base, _penalty, _grad):
        """The saved gradient times the incoming one (and the reduced penalty for ``lam``)."""
        if torch.is_grad_enabled() and not torch.compiler.is_compiling():
            return (*_reference_backward(ctx, grad_value), None, None, None, None)
        saved = ctx.saved_tensors
        grad, grad_lam = saved[0], None
        if ctx.has_lam:
            grad_lam = (saved[1] * grad_value).sum().to(ctx.objective.lam.dtype)
        grad_logits = _scaled(grad, grad_value, ctx.reduction) if ctx.needs_input_grad[0] else None
        return grad_logits, None, grad_lam, None, None, None, None


class _EagerSparseRegFunction(torch.autograd.Function):
    """:class:`SparseRegFunction` in the combined ``forward(ctx, ...)`` form, for eager calls.

    The same forward, context and backward; only the form differs. ``apply`` of a Function with a
    separate ``setup_context`` binds its arguments through :func:`inspect.signature` on every call,
    which is a fifth of a whole 128x10 training step; compiled and transformed calls need that
    form, eager ones do not.
    """

    @staticmethod
    def forward(ctx, *inputs):
        output = SparseRegFunction.forward(*inputs)
        SparseRegFunction.setup_context(ctx, inputs, output)
        # Only the value is differentiable: backward reads nothing of the other three outputs'
        # incoming gradients, which autograd would otherwise fill with zeros (a (N, C) one
        # among them) on every backward pass.
        ctx.set_materialize_grads(False)
        return output

    @staticmethod
    def backward(ctx, grad_value, *unused):
        """:meth:`SparseRegFunction.backward`, with the zero an undefined incoming gradient of
        the value stands for (grads are not materialised)."""
        if grad_value is None:
            grad = ctx.saved_tensors[0]
            grad_value = grad.new_zeros(grad.shape[:1] if ctx.reduction == "none" else ())
        return SparseRegFunction.backward(ctx, grad_value, *unused)


def _scaled(grad: torch.Tensor, grad_value: torch.Tensor, reduction: str) -> torch.Tensor:
    """``grad`` times the incoming gradient of the reduced value."""
    factor = grad_value[..., None] if reduction == "none" else grad_value
    if is_traced(grad):  # compiled or transformed: no value to read, no buffer to reuse
        return grad * factor.to(grad.dtype)
    # .backward() on the value sends exactly 1: then the saved gradient is the answer. Reading
    # that 1 is free on the CPU only; on a GPU it would synchronise, so there it is multiplied.
    if factor.is_cpu and factor.ndim == 0 and float(factor) == 1.0:
        return grad
    if _keeps_graph():  # retain_graph: a later pass needs the saved gradient unchanged
        return grad * factor.to(grad.dtype)
    return grad.mul_(factor)  # the last use of the saved buffer


def _reference_backward(ctx, grad_value: torch.Tensor) -> tuple[torch.Tensor | None, None, object]:
    """Gradients for ``(logits, labels, lam)`` by autograd of the array-API reference, with a
    graph (``create_graph=True``), so that second derivatives are exact instead of zero."""
    objective, logits = ctx.objective, ctx.logits
    lam = objective.lam if ctx.has_lam and ctx.needs_input_grad[2] else None
    inputs = [x for x, needed in ((logits, ctx.needs_input_grad[0]), (lam, lam is not None)) if needed]
    with torch.enable_grad():
        value = reference_terms(logits, ctx.labels, objective, ctx.reduction)[0]
        grads = list(torch.autograd.grad(value, inputs, grad_value, create_graph=True, allow_unused=True))
    grad_logits = grads.pop(0) if ctx.needs_input_grad[0] else None
    return grad_logits, None, grads.pop(0) if lam is not None else None


def differentiable_terms(
    logits: torch.Tensor,
    labels: torch.Tensor,
    objective: Objective,
    reduction: str,
    engine: Engine = native_engine,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reduced objective (differentiable), base term and penalty term (for logging).

    Inside a ``torch.func`` transform this is :func:`reference_terms` (whatever the engine), since
    the function's saved gradient would give zero, not exact, second derivatives there.
    """
    if torch._C._functorch.maybe_current_level() is not None:
        value, base, penalty = reference_terms(logits, labels, objective, reduction)
        return value, base.detach(), penalty.detach()
    need_grad = logits.requires_grad and torch.is_grad_enabled()
    apply = SparseRegFunction.apply if torch.compiler.is_compiling() else _apply_eager
    value, base, penalty, _ = apply(
        logits, labels, _lam_input(objective), objective, reduction, engine, need_grad
    )
    return value, base, penalty


#: The C++ ``apply`` beneath :meth:`torch.autograd.Function.apply`, bound to the eager Function, and
#: the two functorch hooks its Python layer calls: private to torch, so a torch without them gets the
#: public ``apply`` (the same result, a few microseconds slower).
try:
    _EAGER_APPLY = super(torch.autograd.Function, _EagerSparseRegFunction).apply
    _TRANSFORMS_ACTIVE = torch._C._are_functorch_transforms_active
    _UNWRAP_IF_DEAD = torch._C._functorch.unwrap_if_dead
except AttributeError:  # pragma: no cover - another torch version's internals
    _EAGER_APPLY = None


def _apply_eager(logits: torch.Tensor, labels: torch.Tensor, lam: torch.Tensor | None, *rest: Any) -> Any:
    """``_EagerSparseRegFunction.apply`` outside ``torch.func`` transforms, without its Python layer.

    That layer only unwraps tensors left over from a finished transform (``unwrap_if_dead``)
    before the C++ ``apply``; doing it here for the three possible tensors, instead of a
    generator over all seven arguments, is a few microseconds of a small call.
    """
    if _EAGER_APPLY is None or _TRANSFORMS_ACTIVE():
        return _EagerSparseRegFunction.apply(logits, labels, lam, *rest)
    unwrap = _UNWRAP_IF_DEAD
    return _EAGER_APPLY(unwrap(logits), unwrap(labels), None if lam is None else unwrap(lam), *rest)


def differentiable_loss(
    logits: torch.Tensor, labels: torch.Tensor, objective: Objective, reduction: str
) -> torch.Tensor:
    """The reduced objective, differentiable through the closed-form backward."""
    return differentiable_terms(logits, labels, objective, reduction)[0]


def _lam_input(objective: Objective) -> torch.Tensor | None:
    """The objective's lam when autograd must track it, else ``None``."""
    lam = objective.lam
    return lam if isinstance(lam, torch.Tensor) and lam.requires_grad else None


def value_and_grad(
    per_sample: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample values of ``per_sample(x)`` and the gradient of their sum, by autograd (for
    value-only user losses: rows are independent, so row i of the gradient is sample i's)."""
    with torch.enable_grad():
        z = x.detach().requires_grad_(True)
        values = per_sample(z)
        (grad,) = torch.autograd.grad(values.sum(), z)
    return values.detach(), grad
