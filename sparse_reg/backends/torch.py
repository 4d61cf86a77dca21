"""PyTorch path: an ``autograd.Function`` whose forward computes the value and the gradient together.

Autograd never records the formula. The forward pass runs one fused implementation, and the backward
pass only scales the saved gradient, instead of replaying dozens of small kernels and keeping their
activations:

* CPU tensors run the row-blocked NumPy kernel of :mod:`sparse_reg.backends.numpy` on the tensor's
  own memory (zero copy; 16-bit tensors are widened to float32 first, as autocast would).
* CUDA tensors run the CuPy RawKernel of :mod:`sparse_reg.backends.cupy` on torch's current stream,
  through DLPack, when CuPy is installed; otherwise, and on other devices, the array-API core.

:math:`\\lambda` is read from the objective at call time and a 0-D tensor is never turned into a
Python number on a GPU (no synchronisation), so a schedule that changes it never recompiles a
captured training step.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import cache
from types import ModuleType

import numpy as np
import torch

from sparse_reg._api import reduce
from sparse_reg.backends import numpy as numpy_path
from sparse_reg.regularizer import Objective, SRTerms
from sparse_reg.regularizer import sr_terms as core_sr_terms

__all__ = ["differentiable_loss", "differentiable_terms", "sr_terms", "supports", "value_and_grad"]

_WIDENED = (torch.float16, torch.bfloat16)


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
        (labels if labels.device.type == "cpu" else labels.cpu()).numpy(),
        objective,
        need_grad=need_grad,
        grad_scale=scale,
    )
    if terms.grad is None:
        return terms, None
    grad = torch.from_numpy(terms.grad)
    return terms, grad if grad.dtype == logits.dtype else grad.to(logits.dtype)


def _cpu_terms(
    logits: torch.Tensor, labels: torch.Tensor, objective: Objective, need_grad: bool, scale: float
) -> SRTerms:
    terms, grad = _cpu_numpy_terms(logits, labels, objective, need_grad, scale)
    return SRTerms(torch.from_numpy(terms.base), torch.from_numpy(terms.penalty), grad)


def _terms(
    logits: torch.Tensor,
    labels: torch.Tensor,
    objective: Objective,
    need_grad: bool,
    scale: float = 1.0,
) -> SRTerms:
    """Per-sample terms, with the gradient multiplied by ``scale`` (folded into the kernel)."""
    if logits.device.type == "cpu":
        return _cpu_terms(logits, labels, objective, need_grad, scale)
    cupy_path = _cupy_path() if logits.device.type == "cuda" else None
    if cupy_path is not None:
        return cupy_path.torch_terms(logits, labels, objective, need_grad=need_grad, grad_scale=scale)
    return core_sr_terms(logits.detach(), labels, objective, need_grad=need_grad, grad_scale=scale)


def sr_terms(
    logits: torch.Tensor,
    labels: torch.Tensor,
    objective: Objective,
    *,
    need_grad: bool,
    grad_scale: float = 1.0,
) -> SRTerms:
    """Drop-in for :func:`sparse_reg.regularizer.sr_terms` on torch tensors (same semantics).

    The result carries no autograd history; use :func:`differentiable_terms` for that.
    """
    return _terms(logits, labels, objective, need_grad, grad_scale)


def _mean_scale(reduction: str, num_rows: int) -> float:
    return 1.0 / max(num_rows, 1) if reduction == "mean" else 1.0


def _reduced(terms: SRTerms, lam: object, reduction: str, xp: ModuleType) -> tuple[object, ...]:
    """The reduced value, base and penalty, in the namespace of ``terms`` (NumPy on the CPU)."""
    if reduction == "none":
        return terms.base + lam * terms.penalty, terms.base, terms.penalty
    base, penalty = reduce(terms.base, reduction, xp), reduce(terms.penalty, reduction, xp)
    return base + lam * penalty, base, penalty


class _SparseRegFunction(torch.autograd.Function):
    """One differentiable output; the base and penalty terms for logging go to ``logs``.

    Returning them as extra (non-differentiable) outputs would cost each call autograd bookkeeping
    that matters for the small batches of the paper's setting.
    """

    @staticmethod
    def forward(ctx, logits, labels, objective, reduction, logs):
        # The mean's 1/N is applied inside the kernel, so backward is one multiply by grad_value.
        need_grad = ctx.needs_input_grad[0]
        scale = _mean_scale(reduction, logits.shape[0])
        if logits.device.type == "cpu":
            # Reduce on the NumPy side: for small batches each torch op costs more than the math.
            terms, grad = _cpu_numpy_terms(logits, labels, objective, need_grad, scale)
            reduced = _reduced(terms, float(objective.lam), reduction, np)
            value, base, penalty = map(torch.from_numpy, map(np.asarray, reduced))
        else:
            terms = _terms(logits, labels, objective, need_grad, scale)
            grad = terms.grad
            value, base, penalty = _reduced(terms, objective.lam, reduction, torch)
        logs.extend((base, penalty))
        ctx.reduction = reduction
        if grad is not None:
            ctx.save_for_backward(grad)  # freed after backward, unlike a ctx attribute
        return value

    @staticmethod
    def backward(ctx, grad_value):
        (grad,) = ctx.saved_tensors
        if ctx.reduction == "none":
            return grad * grad_value[:, None].to(grad.dtype), None, None, None, None
        return grad * grad_value, None, None, None, None  # a 0-D factor keeps grad's dtype


def differentiable_terms(
    logits: torch.Tensor, labels: torch.Tensor, objective: Objective, reduction: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reduced objective (differentiable), base term and penalty term (for logging)."""
    logs: list[torch.Tensor] = []
    value = _SparseRegFunction.apply(logits, labels, objective, reduction, logs)
    return value, logs[0], logs[1]


def differentiable_loss(
    logits: torch.Tensor, labels: torch.Tensor, objective: Objective, reduction: str
) -> torch.Tensor:
    """The reduced objective, differentiable through the closed-form backward."""
    return _SparseRegFunction.apply(logits, labels, objective, reduction, [])


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
