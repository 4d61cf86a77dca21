"""PyTorch module wrapper: :class:`SparseRegLoss` (imports torch, so import it explicitly)."""

from __future__ import annotations

from typing import Any

import torch

from sparse_reg._compat import is_traced
from sparse_reg._frozen import FrozenMapping
from sparse_reg._reduction import check_reduction
from sparse_reg._validation import check_flag
from sparse_reg.backends import array_namespace
from sparse_reg.backends import torch as torch_backend
from sparse_reg.criterion import CRITERION_DEFAULTS, Criterion, check_weight_values, prepare
from sparse_reg.losses import get_loss
from sparse_reg.regularizer import DEFAULTS, Objective, check_tau_for_dtype, sr_terms
from sparse_reg.schedule import AdaptiveLambda, LambdaSchedule

__all__ = ["SAFE_GLOBALS", "SparseRegLoss"]

#: The array-API namespace of torch tensors (looked up once: it is the same for every tensor).
_TORCH_NAMESPACE = array_namespace(torch.empty(0))


class SparseRegLoss(torch.nn.Module):
    r"""Sparse-regularized loss as a :class:`torch.nn.Module`, fused forward and backward.

    Computes :math:`L(\sigma_\tau(z), y) + \lambda_t \sum_k \sigma_\tau(z)_k^p` like
    :func:`sparse_reg.loss`, with :math:`\lambda_t` taken from a :class:`~sparse_reg.LambdaSchedule`
    that follows the epoch (:meth:`set_epoch`). :math:`\lambda` lives in a 0-D buffer, so a
    changing :math:`\lambda` never triggers a ``torch.compile`` recompilation, and it moves with
    ``.to(device)``.

    Parameters
    ----------
    base
        Base loss name, as for :func:`sparse_reg.loss`.
    tau, p, normalize, clamp, reduction, fused, **base_params
        As for :func:`sparse_reg.loss`.
    weight, ignore_index, label_smoothing
        As for :func:`sparse_reg.loss`, and as :class:`torch.nn.CrossEntropyLoss` takes them
        (compared argument by argument in the getting-started guide); ``weight`` is a buffer,
        so it follows ``.to(device)`` and the state dict. Its values must be finite and
        :math:`\ge 0` (negative weights, which torch accepts, are refused); they are checked at
        construction and on every call, so a buffer changed in place is seen: a ``ValueError``
        for a CPU buffer, NaN in the value and every gradient entry on a GPU and under
        ``torch.compile`` (a check there would wait for the device). Logits may be ``(N, C)``, ``(C,)`` or
        ``(N, C, d1, ..., dk)``, and labels class indices or class probabilities.
    schedule
        The :math:`\lambda` schedule: a :class:`~sparse_reg.LambdaSchedule` (open loop, by the
        clock), a :class:`~sparse_reg.AdaptiveLambda` (closed loop, by a held-out score given
        to its ``update`` once per epoch), or a plain number for a constant :math:`\lambda`.
        This is the one way to give :math:`\lambda` (``lam=`` raises a ``TypeError`` that says so),
        since the module's :math:`\lambda` follows the epoch.

    Notes
    -----
    * ``torch.compile``: the default (fused) and the reference path each compile to one graph
      (``fullgraph=True`` works), and :meth:`set_epoch` never recompiles, since :math:`\lambda` is
      read from the buffer on the device. Under compilation the label range is not checked (it
      would read the labels): a label outside ``[0, C)`` gives NaN in that row's value and
      gradient, hence a NaN mean.
    * Arguments: ``logits`` and ``labels`` must be torch tensors (a ``TypeError`` names the
      other types); :func:`sparse_reg.loss` takes the other libraries.
    * ``torch.func``: ``vmap`` and ``grad`` (any order) run the array-API reference in torch
      operators, with the same NaN rule for labels.
    * ``copy.deepcopy``, ``pickle``, ``torch.save`` and ``torch.optim.swa_utils.AveragedModel``
      copy the module with its schedule and :math:`\lambda`; a registered base loss is pickled by
      name, so it must be registered where the copy is loaded. The classes a pickled criterion is
      made of are registered with ``torch.serialization.add_safe_globals`` (:data:`SAFE_GLOBALS`),
      so ``torch.load(weights_only=True)`` of a model holding one needs no allowlist of ours.
    * Autocast: 16-bit logits are computed in float32, the value is float32 and the gradient has
      the logits' dtype.

    Attributes
    ----------
    last_base, last_penalty : torch.Tensor
        The base-loss term and the (unweighted) penalty term of the last call, reduced like the
        loss and detached, for logging. ``last_base + lam * last_penalty`` is the last value.

    Examples
    --------
    >>> import torch
    >>> import sparse_reg as sr
    >>> from sparse_reg.nn import SparseRegLoss
    >>> criterion = SparseRegLoss("ce", tau=0.5, p=0.1, schedule=sr.LambdaSchedule(1.2, 1.03))
    >>> logits = torch.randn(8, 10, requires_grad=True)
    >>> criterion(logits, torch.randint(0, 10, (8,))).backward()
    >>> criterion.set_epoch(10)
    >>> round(float(criterion.lam), 4)
    1.6127
    """

    lam: torch.Tensor

    def __init__(
        self,
        base: str = "ce",
        *,
        tau: float = DEFAULTS["tau"],
        p: float = DEFAULTS["p"],
        schedule: LambdaSchedule | float = DEFAULTS["lam"],
        normalize: bool = DEFAULTS["normalize"],
        clamp: float | None = DEFAULTS["clamp"],
        weight: torch.Tensor | None = CRITERION_DEFAULTS["weight"],
        ignore_index: int = CRITERION_DEFAULTS["ignore_index"],
        label_smoothing: float = CRITERION_DEFAULTS["label_smoothing"],
        reduction: str = "mean",
        fused: bool = True,
        **base_params: Any,
    ) -> None:
        if "lam" in base_params:
            raise TypeError(
                f"SparseRegLoss takes lambda as schedule=, not lam=; got lam={base_params['lam']!r}. "
                "Pass schedule=<number> for a constant lambda or schedule=LambdaSchedule(...)"
            )
        super().__init__()
        criterion = Criterion.create(
            weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing
        )
        check_weight_values(criterion.weight)  # at construction too, not only at the first call
        # A buffer, as in torch.nn.CrossEntropyLoss: it follows .to(device) and the state dict.
        self.register_buffer("weight", None if weight is None else torch.as_tensor(criterion.weight))
        self.ignore_index, self.label_smoothing = criterion.ignore_index, criterion.label_smoothing
        if not isinstance(schedule, (LambdaSchedule, AdaptiveLambda)):
            schedule = LambdaSchedule(lam0=schedule)
        self.schedule = schedule
        self.reduction = check_reduction(reduction)
        self.register_buffer("lam", torch.tensor(schedule.lam, dtype=torch.float64))
        self._objective = Objective.create(
            base, tau=tau, p=p, lam=self.lam, normalize=normalize, clamp=clamp, **base_params
        )
        self.fused = check_flag("fused", fused) and torch_backend.supports(self._objective)
        self.last_base: torch.Tensor | None = None
        self.last_penalty: torch.Tensor | None = None

    @property
    def objective(self) -> Objective:
        r"""The validated objective; its :math:`\lambda` is the module's ``lam`` buffer."""
        # .to()/.cuda() replace the buffer object, so the objective follows it by identity.
        if self._objective.lam is not self.lam:
            self._objective = self._objective.with_lam(self.lam)
        return self._objective

    def set_epoch(self, epoch: int) -> None:
        """Follow the schedule to ``epoch`` (0-indexed) and update :math:`\\lambda` in place
        (an :class:`~sparse_reg.AdaptiveLambda` gives the weight its last ``update`` chose)."""
        self.schedule.epoch = epoch
        self.lam.fill_(self.schedule.lam)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The loss of ``logits`` against ``labels``, shaped as for :func:`sparse_reg.loss`:
        ``(N, C)`` (or ``(C,)``, or ``(N, C, d1, ..., dk)``) against class indices ``(N,)`` (``()``,
        ``(N, d1, ..., dk)``) or class probabilities of the logits' shape."""
        _check_tensor("logits", logits)
        _check_tensor("labels", labels)
        xp = _TORCH_NAMESPACE
        criterion = Criterion(self.weight, self.ignore_index, self.label_smoothing)
        batch = prepare(logits, labels, criterion, xp, torch_backend.host_view)
        objective, reduction = self.objective, self.reduction
        if not is_traced(logits):  # tau is a constant of the module: compiled code need not check it
            check_tau_for_dtype(objective.tau, batch.logits.dtype)
        if batch.soft:
            objective.base.check_soft_targets()
        if self.fused and not batch.soft:
            # Class weights and ignored labels: per-sample values, weighed and reduced here, so
            # autograd scales each row of the fused gradient.
            value, base, penalty = torch_backend.differentiable_terms(
                batch.logits, batch.labels, objective, "none" if batch.weighted else reduction
            )
            if batch.weighted:
                (value, base), penalty = batch.weigh(value, base, xp), batch.weigh(penalty, penalty, xp)[1]
            value, base, penalty = (batch.reduce(x, reduction, xp) if batch.weighted else
                                    batch.shaped(x, reduction, xp) for x in (value, base, penalty))
        else:
            terms = sr_terms(batch.logits, batch.labels, objective, need_grad=False)
            base, penalty = batch.weigh(terms.base, terms.penalty, xp)
            base, penalty = batch.reduce(base, reduction, xp), batch.reduce(penalty, reduction, xp)
            # lam is a float64 buffer: in the terms' dtype, so float32 logits give a float32 value.
            value = base + self.lam.to(base.dtype) * penalty
        # Plain attributes, written past nn.Module.__setattr__ (which looks each name up in the
        # parameter, buffer and submodule tables: a cost per call at small batch sizes).
        self.__dict__["last_base"], self.__dict__["last_penalty"] = base.detach(), penalty.detach()
        return value

    def get_extra_state(self) -> dict[str, Any]:
        return {"schedule": self.schedule.state_dict()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.schedule.load_state_dict(state["schedule"])
        self.lam.fill_(self.schedule.lam)

    def extra_repr(self) -> str:
        o = self.objective
        params = "".join(f", {k}={v}" for k, v in o.params.items())
        return (
            f"base={o.base.name!r}, tau={o.tau}, p={o.p}, schedule={self.schedule}, "
            f"normalize={o.normalize}, clamp={o.clamp}, reduction={self.reduction!r}{params}"
        )


def _check_tensor(name: str, x: Any) -> None:
    """Raise a :class:`TypeError` naming ``name`` unless ``x`` is a tensor: the module computes on
    torch tensors only (:func:`sparse_reg.loss` takes the other libraries)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"SparseRegLoss expects torch tensors; {name} is a {type(x).__module__}.{type(x).__qualname__}"
            f" ({x!r:.80}). Convert it with torch.as_tensor, or call sparse_reg.loss for NumPy, "
            "JAX or CuPy arrays"
        )


#: What a pickled :class:`SparseRegLoss` is made of besides torch's own classes: the module, the
#: plain-data classes it holds, and ``get_loss``, which only looks a registered loss up by name.
#: Registered as safe, so ``torch.load(weights_only=True)`` of a model holding the criterion needs
#: no allowlist of the user's (once ``sparse_reg.nn`` is imported).
SAFE_GLOBALS: tuple[Any, ...] = (
    SparseRegLoss, Objective, LambdaSchedule, AdaptiveLambda, FrozenMapping, get_loss
)
if hasattr(torch.serialization, "add_safe_globals"):
    torch.serialization.add_safe_globals(list(SAFE_GLOBALS))
