r"""The training criterion on every backend.

``--backend torch`` uses :class:`sparse_reg.nn.SparseRegLoss` (fused closed-form backward).
``--backend numpy`` and ``--backend cupy`` hand the logits to that library (``.numpy()`` on the
CPU, DLPack on CUDA, no copy), run that library's fused path there (the one behind
:func:`sparse_reg.loss_and_grad`, giving both terms and the gradient in one pass) and bring the gradient
back through :class:`sparse_reg.backends.torch.SparseRegFunction` (the same function the torch
backend uses, with another engine), so any backend trains a torch model. With
:math:`\bar J = \frac1N\sum_i L(s_i, y_i) + \lambda \frac1N\sum_i\sum_k s_{ik}^p` the function
returns :math:`\bar J` and its backward is :math:`g\cdot\partial\bar J/\partial z` for the incoming
scalar :math:`g`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from sparse_reg._reduction import gradient_scale, reduce_objective
from sparse_reg.backends import array_namespace, get_backend, import_library
from sparse_reg.backends.torch import Engine, Reduced, differentiable_terms
from sparse_reg.nn import SparseRegLoss
from sparse_reg.regularizer import Objective
from sparse_reg.schedule import AdaptiveLambda, LambdaSchedule
from sparse_reg.train.config import Config

__all__ = ["Criterion", "LossTerms"]


class LossTerms(NamedTuple):
    """The batch-mean objective (differentiable) and its two terms (detached, for logging)."""

    value: torch.Tensor
    base: torch.Tensor
    penalty: torch.Tensor


def library_engine(backend: str, lam: Callable[[], float]) -> Engine:
    r"""An engine that runs ``backend``'s fused path on the tensors' memory (no copy) and hands the
    results back as tensors; ``lam()`` gives the current :math:`\lambda` as a number."""
    lib = import_library(backend)
    fast = get_backend(backend).fast_path

    def engine(logits, labels, objective, need_grad, reduction) -> Reduced:
        z = _to_library(logits.detach(), backend)
        y = _to_library(labels, backend)
        weight = lam()
        terms = fast.sr_terms(
            z, y, objective.with_lam(weight), need_grad=need_grad,
            grad_scale=gradient_scale(reduction, z.shape[0]),
        )
        reduced = reduce_objective(terms.base, terms.penalty, weight, reduction, array_namespace(z))
        value, base, penalty = (
            _to_torch(lib.asarray(v, dtype=lib.float64), logits.device) for v in reduced
        )
        grad = None if terms.grad is None else _to_torch(lib.asarray(terms.grad), logits.device)
        return Reduced(value.to(logits.dtype), base, penalty, grad)

    return engine


def _to_library(x: torch.Tensor, backend: str) -> Any:
    if backend == "numpy":
        return x.cpu().numpy()
    return import_library(backend).from_dlpack(x.contiguous())


def _to_torch(x: Any, device: torch.device) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if type(x).__module__.startswith("numpy"):
        return torch.from_numpy(x.copy() if not x.flags.writeable else x).to(device)
    return torch.from_dlpack(x)


class Criterion(torch.nn.Module):
    r"""The run's loss :math:`L(\sigma_\tau(z), y) + \lambda_t\sum_k\sigma_\tau(z)_k^p` on one backend.

    Parameters
    ----------
    config
        Loss name, SR tuple, base-loss parameters and backend.
    schedule
        The :math:`\lambda` schedule the module follows: open loop or adaptive (default: the
        epoch schedule of ``config``'s tuple).
    """

    def __init__(self, config: Config, schedule: LambdaSchedule | AdaptiveLambda | None = None) -> None:
        super().__init__()
        self.backend = config.backend
        self.schedule = schedule or LambdaSchedule(config.lam0, config.rho, config.every)
        arguments = config.objective_arguments()
        del arguments["lam"]  # the module follows the schedule
        self.module = SparseRegLoss(schedule=self.schedule, **arguments)
        self.engine = None if self.backend == "torch" else library_engine(self.backend, lambda: self.lam)

    @property
    def objective(self) -> Objective:
        """The validated objective (its lam is the module's buffer; the bridge sets a number)."""
        return self.module.objective

    @property
    def lam(self) -> float:
        return float(self.schedule.lam)

    def set_epoch(self, epoch: int) -> None:
        """Follow the :math:`\\lambda` schedule to ``epoch`` (0-indexed)."""
        self.module.set_epoch(epoch)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> LossTerms:
        """Batch-mean objective of float ``logits`` (N, C) against ``labels`` (N,)."""
        logits = logits.float()
        if self.backend == "torch":
            value = self.module(logits, labels)
            return LossTerms(value, self.module.last_base, self.module.last_penalty)
        return LossTerms(
            *differentiable_terms(logits, labels, self.objective, "mean", self.engine)
        )

    def state_dict_schedule(self) -> dict[str, Any]:
        return self.schedule.state_dict()

    def load_schedule(self, state: dict[str, Any]) -> None:
        self.schedule.load_state_dict(state)
        self.module.set_epoch(self.schedule.epoch)
