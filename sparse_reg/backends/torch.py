"""PyTorch path: an ``autograd.Function`` whose backward is the closed-form gradient.

Autograd never records the formula: the forward pass computes the value and the gradient together,
and the backward pass only scales the saved gradient. That is one pass over the logits instead of
the dozens of small kernels (and their saved activations) of the formula's autograd graph.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from sparse_reg._api import reduce
from sparse_reg.regularizer import Objective, sr_terms

__all__ = ["differentiable_loss", "differentiable_terms", "sr_terms", "supports", "value_and_grad"]


def supports(objective: Objective) -> bool:
    """Fused whenever the base loss has a closed-form gradient."""
    return objective.base.grad is not None


class _SparseRegFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, labels, objective, reduction):
        terms = sr_terms(logits, labels, objective, need_grad=ctx.needs_input_grad[0])
        ctx.reduction = reduction
        if terms.grad is not None:
            ctx.save_for_backward(terms.grad)
        value = reduce(terms.base + objective.lam * terms.penalty, reduction, torch)
        base, penalty = reduce(terms.base, reduction, torch), reduce(terms.penalty, reduction, torch)
        ctx.mark_non_differentiable(base, penalty)
        return value, base, penalty

    @staticmethod
    def backward(ctx, grad_value, _grad_base, _grad_penalty):
        (grad,) = ctx.saved_tensors
        if ctx.reduction == "none":
            scale = grad_value[:, None]
        elif ctx.reduction == "mean":
            scale = grad_value / max(grad.shape[0], 1)
        else:
            scale = grad_value
        return grad * scale.to(grad.dtype), None, None, None


def differentiable_terms(
    logits: torch.Tensor, labels: torch.Tensor, objective: Objective, reduction: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reduced objective (differentiable), base term and penalty term (for logging)."""
    return _SparseRegFunction.apply(logits, labels, objective, reduction)


def differentiable_loss(
    logits: torch.Tensor, labels: torch.Tensor, objective: Objective, reduction: str
) -> torch.Tensor:
    """The reduced objective, differentiable through the closed-form backward."""
    return differentiable_terms(logits, labels, objective, reduction)[0]


def value_and_grad(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Value and gradient of a scalar function by autograd (for value-only user losses)."""
    with torch.enable_grad():
        z = x.detach().requires_grad_(True)
        value = fn(z)
        (grad,) = torch.autograd.grad(value, z)
    return value.detach(), grad
