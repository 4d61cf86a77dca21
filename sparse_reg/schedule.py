r"""The penalty weight's schedules, open loop and closed.

The paper's open-loop :math:`\lambda_t = \lambda_0\,\rho^{\lfloor t / r\rfloor}` runs on three
clocks; :class:`AdaptiveLambda` is driven by a held-out score instead.

The clock :math:`t` is the epoch (the official code), the optimizer step, or the fraction of the run
done (*progress*). Progress measures time in epochs of a *reference run* of ``horizon`` epochs,
stretched over the ``total`` steps of this run, so one tuple :math:`(\lambda_0, \rho, r)` keeps its
:math:`\lambda` range and pace on a run of any length, dataset size or batch size.
:func:`lambda_at` is the same rule as a pure function of the step on arrays, for ``jax.jit``,
``torch.compile`` and optax.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

__all__ = ["UNITS", "AdaptiveLambda", "LambdaSchedule", "lambda_at"]

#: The clocks :attr:`LambdaSchedule.unit` accepts.
UNITS: tuple[str, ...] = ("epoch", "step", "progress")


def lambda_at(
    step: Any,
    lam0: float,
    rho: float,
    every: Any,
    warmup: Any = 0,
    *,
    scale: Any = 1,
    lam_max: float | None = None,
) -> Any:
    r""":math:`\lambda` at optimizer step ``step``, jittable: array operators only, no branches.

    .. math::

        u = \text{scale}\cdot t, \qquad
        \lambda(t) = \begin{cases}
            \lambda_0\, u / w & u < w \quad\text{(linear warm-up from 0)}\\
            \min\bigl(\lambda_0\,\rho^{\lfloor (u - w)/r \rfloor},\ \lambda_{\max}\bigr) & u \ge w
        \end{cases}

    With integer ``step``, ``every``, ``warmup`` and ``scale`` the growth index is computed exactly
    in integers (no floating-point rounding at period boundaries). :class:`LambdaSchedule` maps
    every clock onto this form (:meth:`LambdaSchedule.step_fn`).

    Parameters
    ----------
    step
        The 0-indexed optimizer step: a Python int or an integer array of any library (a jax tracer,
        a torch tensor, a NumPy array).
    lam0, rho
        Initial weight and growth factor per period.
    every
        Period :math:`r`, in units of ``scale * step``.
    warmup
        Length :math:`w` of the linear warm-up from 0 to :math:`\lambda_0`, in the same units (0: none).
    scale
        Units per step (the progress clock uses ``horizon`` with ``every`` and ``warmup``
        multiplied by ``total``).
    lam_max
        Optional cap on :math:`\lambda` (``None``: none; on float32 arrays a large exponent gives inf).

    Returns
    -------
    float or array
        :math:`\lambda`, with the shape of ``step`` and a floating dtype.

    Examples
    --------
    >>> import jax
    >>> import jax.numpy as jnp
    >>> from sparse_reg.schedule import lambda_at
    >>> fn = jax.jit(lambda t: lambda_at(t, 4.0, 2.0, 2345))
    >>> [float(fn(jnp.asarray(t))) for t in (0, 2344, 2345, 23449)]
    [4.0, 4.0, 8.0, 2048.0]
    """
    if isinstance(step, int):
        import numpy as np

        with np.errstate(over="ignore"):
            value = lambda_at(
                np.asarray(step, dtype=np.int64), lam0, rho, every, warmup, scale=scale, lam_max=lam_max
            )
        return float(value)
    # Operators only (no namespace lookup), so jax.jit and torch.compile trace it as plain arithmetic.
    u = step * scale
    grown = u - warmup
    index = (grown * (grown > 0)) // every
    lam = lam0 * rho ** (index * 1.0)
    if lam_max is not None:
        lam = lam.clip(max=lam_max)
    if isinstance(warmup, int) and warmup == 0:
        return lam
    # lam is finite wherever grown < 0 (index 0 there), so the blend never multiplies inf by 0.
    return lam * (grown >= 0) + (lam0 * u / warmup) * (grown < 0)


@dataclass
class LambdaSchedule:
    r"""Geometric growth of :math:`\lambda` during training.

    .. math:: \lambda_t = \lambda_0\,\rho^{\lfloor (t - w) / r \rfloor}\quad (t \ge w),
              \qquad \lambda_t = \lambda_0\, t / w\quad (t < w)

    with :math:`r` = ``every`` and :math:`w` = ``warmup`` (0 by default: no warm-up). The clock
    :math:`t` depends on ``unit``:

    * ``"epoch"`` (default): the 0-indexed epoch, exactly the official code's "multiply by
      :math:`\rho` after every :math:`r`-th epoch". The paper's settings: MNIST ``(4, 2, 5)``
      giving :math:`\lambda_{49} = 2048`; CIFAR-10 ``(1.2, 1.03, 1)`` giving
      :math:`\lambda_{119} \approx 40.4`.
    * ``"step"``: the 0-indexed optimizer step; ``every`` and ``warmup`` count steps.
    * ``"progress"``: the fraction of the run done, in epochs of a reference run of ``horizon``
      epochs: :math:`t = \text{horizon}\cdot s / \text{total}` at step :math:`s` of ``total``.
      ``every`` and ``warmup`` count reference epochs, so the tuple written for a ``horizon``-epoch
      run gives the same :math:`\lambda` range and the same pace (as a fraction of the run) on a
      run of any number of steps. On the run it was written for, it is the epoch schedule step for
      step: MNIST, 469 steps an epoch, ``total = 23450`` doubles :math:`\lambda` every
      :math:`5\times469` steps.

    Parameters
    ----------
    lam0
        Initial weight, >= 0.
    rho
        Growth factor per period, > 0 (1 keeps :math:`\lambda` constant).
    every
        Period :math:`r`, an int >= 1, in units of the clock.
    epoch
        The current epoch (``unit="epoch"``), advanced by :meth:`step` (or set directly).
    unit
        ``"epoch"``, ``"step"`` or ``"progress"``.
    warmup
        Warm-up :math:`w`, an int >= 0 in units of the clock: :math:`\lambda` rises linearly from
        0 to :math:`\lambda_0` and grows only after it.
    horizon
        ``unit="progress"`` only: the length of the reference run in epochs (an int >= 1).
    total
        ``unit="progress"`` only: the number of optimizer steps of this run (an int >= 1).
    count
        The current optimizer step (``unit="step"`` or ``"progress"``), advanced by :meth:`step`.
    lam_max
        Optional cap on :math:`\lambda` (``None``: none).

    Raises
    ------
    ValueError
        A parameter is out of range or of the wrong type, ``unit="progress"`` lacks ``horizon`` or
        ``total``, or :math:`\lambda` at the asked time exceeds the float64 range.

    Examples
    --------
    >>> from sparse_reg import LambdaSchedule
    >>> schedule = LambdaSchedule(lam0=4.0, rho=2.0, every=5)
    >>> schedule(0), schedule(4), schedule(5), schedule(49)
    (4.0, 4.0, 8.0, 2048.0)
    >>> short = LambdaSchedule(4.0, 2.0, 5, unit="progress", horizon=50, total=10 * 20)
    >>> short(0), short(19), short(20), short(199)     # 10 epochs of 20 steps: the same range
    (4.0, 4.0, 8.0, 2048.0)
    """

    lam0: float
    rho: float = 1.0
    every: int = 1
    epoch: int = 0
    unit: str = "epoch"
    warmup: int = 0
    horizon: int | None = None
    total: int | None = None
    count: int = 0
    lam_max: float | None = None

    def __post_init__(self) -> None:
        if not _is_real(self.lam0) or self.lam0 < 0:
            raise ValueError(f"lam0 must be a finite number >= 0; got {self.lam0!r}")
        if not _is_real(self.rho) or self.rho <= 0:
            raise ValueError(f"rho must be a finite number > 0; got {self.rho!r}")
        for name, least in (("every", 1), ("epoch", 0), ("warmup", 0), ("count", 0)):
            value = getattr(self, name)
            if not _is_count(value) or value < least:
                raise ValueError(f"{name} must be an int >= {least}; got {value!r}")
        if self.unit not in UNITS:
            raise ValueError(f"unit must be one of {', '.join(UNITS)}; got {self.unit!r}")
        for name in ("horizon", "total"):
            value = getattr(self, name)
            if self.unit == "progress" and value is None:
                raise ValueError(
                    f"unit='progress' needs {name}, an int >= 1 (horizon: epochs of the reference run; "
                    "total: optimizer steps of this run); got None"
                )
            if value is not None and (not _is_count(value) or value < 1):
                raise ValueError(f"{name} must be None or an int >= 1; got {value!r}")
        if self.lam_max is not None and (not _is_real(self.lam_max) or self.lam_max < self.lam0):
            raise ValueError(f"lam_max must be None or a finite number >= lam0; got {self.lam_max!r}")

    def __call__(self, t: int | None = None) -> float:
        """:math:`\\lambda` at time ``t`` of the clock (default: now): an epoch for ``unit="epoch"``,
        an optimizer step otherwise."""
        name = "epoch" if self.unit == "epoch" else "step"
        if t is None:
            t = self.epoch if self.unit == "epoch" else self.count
        if not _is_count(t) or t < 0:
            raise ValueError(f"{name} must be an int >= 0; got {t!r}")
        every, warmup, scale = self._step_units()
        value = lambda_at(t, self.lam0, self.rho, every, warmup, scale=scale, lam_max=self.lam_max)
        if not math.isfinite(value):
            # rho ** index overflowed float64; say which settings do it instead of returning inf.
            raise ValueError(
                f"lambda at {name} {t} exceeds the float64 range (lam0={self.lam0!r} times "
                f"rho={self.rho!r} to the power {max(t * scale - warmup, 0) // every}); lower rho, "
                "raise every, or cap it with lam_max"
            )
        return value

    def _step_units(self) -> tuple[int, int, int]:
        # (every, warmup, scale) of lambda_at for this clock: progress is t = horizon * s / total,
        # so both sides are multiplied by total to stay in integers.
        if self.unit == "progress":
            return self.every * self.total, self.warmup * self.total, self.horizon  # type: ignore[operator]
        return self.every, self.warmup, 1

    def step_fn(self, steps_per_epoch: int | None = None):
        r"""This schedule as a pure function of the optimizer step (see :func:`lambda_at`).

        The returned ``fn(step)`` takes an int or an integer array (jax tracer, torch tensor) and
        works under ``jax.jit`` and ``torch.compile``; an epoch schedule needs ``steps_per_epoch``
        and changes :math:`\lambda` on the epoch boundaries only, as the trainer does.

        Parameters
        ----------
        steps_per_epoch
            Optimizer steps per epoch; required for ``unit="epoch"`` only.
        """
        per_epoch = 1
        if self.unit == "epoch":
            if not _is_count(steps_per_epoch) or steps_per_epoch < 1:  # type: ignore[operator]
                raise ValueError(
                    f"steps_per_epoch must be an int >= 1 for an epoch schedule; got {steps_per_epoch!r}"
                )
            per_epoch = steps_per_epoch  # type: ignore[assignment]
        every, warmup, scale = self._step_units()
        lam0, rho, lam_max = self.lam0, self.rho, self.lam_max

        def fn(step: Any) -> Any:
            return lambda_at(step // per_epoch, lam0, rho, every, warmup, scale=scale, lam_max=lam_max)

        return fn

    @property
    def lam(self) -> float:
        """:math:`\\lambda` now."""
        return self()

    def step(self) -> float:
        """Advance the clock one tick (an epoch, or an optimizer step); returns the new :math:`\\lambda`."""
        if self.unit == "epoch":
            self.epoch += 1
        else:
            self.count += 1
        return self.lam

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: the parameters and the current epoch and step."""
        return {
            "lam0": self.lam0,
            "rho": self.rho,
            "every": self.every,
            "epoch": self.epoch,
            "unit": self.unit,
            "warmup": self.warmup,
            "horizon": self.horizon,
            "total": self.total,
            "count": self.count,
            "lam_max": self.lam_max,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`. A state of the epoch-only form (keys ``lam0``, ``rho``,
        ``every``, ``epoch``) is accepted too; any other set of keys is refused."""
        expected = set(self.state_dict())
        keys = set(state)
        if keys != expected and keys != set(_EPOCH_ONLY_KEYS):
            raise ValueError(
                f"state must have exactly the keys {sorted(_EPOCH_ONLY_KEYS)} (the epoch-only form) "
                f"or {sorted(expected)}; got {sorted(state)}"
            )
        restored = LambdaSchedule(**state)
        for name in expected:
            setattr(self, name, getattr(restored, name))


_EPOCH_ONLY_KEYS = ("lam0", "rho", "every", "epoch")


@dataclass
class AdaptiveLambda:
    r""":math:`\lambda` driven by a held-out score: held at :math:`\lambda_0` while the score
    improves, then grown to saturation once it stops improving.

    Sparse regularization helps inside a window: :math:`\lambda` must be large *after* the network
    has learned the clean signal and *before* it memorises the flipped labels. The accuracy on a
    held-out split with its *noisy* labels tracks the clean accuracy (under symmetric noise with
    :math:`\eta < (K-1)/K` it is an increasing affine function of it; see
    ``proofs/theorem3_noisy_selection.py``), so its plateau marks the window's start. Once per
    epoch, :meth:`update` takes that score :math:`a_t`:

    .. math::

        b_t = \max_{u \le t} a_u, \qquad
        \lambda_{t+1} = \begin{cases}
            \lambda_t & \text{while the last } \text{patience} \text{ scores include one above }
                        b_{t'} + \delta \text{ (the best before it)},\\
            \min(\gamma\,\lambda_t,\ \lambda_{\max}) & \text{from the first epoch that does not, on.}
        \end{cases}

    Growth, once started, never stops (as in the paper's schedule, :math:`\lambda` only grows),
    so with growth :math:`\gamma` the weight reaches :math:`\lambda_{\max}` within
    :math:`\lceil\log_\gamma(\lambda_{\max}/\lambda_0)\rceil` epochs of the plateau.

    Parameters
    ----------
    lam0
        The weight held until the plateau, a finite number >= 0.
    lam_max
        The saturation weight, a finite number >= ``lam0``.
    growth
        Factor :math:`\gamma > 1` per epoch once growing.
    patience
        Epochs without an improvement of more than ``min_delta`` that mark the plateau (int >= 1).
    min_delta
        Least rise of the score over its best that counts as an improvement (>= 0, in the score's
        units: 0.005 is half a point of accuracy).

    Attributes
    ----------
    lam : float
        The weight for the next epoch.
    best : float
        The best score so far (``-inf`` before the first).
    stale : int
        Epochs since the best score.
    growing : bool
        Whether the plateau has been reached.
    epoch : int
        Scores seen so far; :class:`sparse_reg.nn.SparseRegLoss` sets it through ``set_epoch``.

    Raises
    ------
    ValueError
        A parameter is out of range or of the wrong type (the message names it), or :meth:`update`
        is given a score that is not a finite number.

    Examples
    --------
    >>> from sparse_reg import AdaptiveLambda
    >>> control = AdaptiveLambda(lam0=4.0, lam_max=64.0, growth=4.0, patience=2)
    >>> [control.update(score) for score in (0.30, 0.40, 0.45, 0.44, 0.45, 0.46, 0.46)]
    [4.0, 4.0, 4.0, 4.0, 16.0, 64.0, 64.0]
    >>> control.growing, control.best
    (True, 0.46)

    In a training loop of one's own, with :class:`sparse_reg.nn.SparseRegLoss` (see the docs'
    "Adaptive lambda" section)::

        control = sr.AdaptiveLambda(lam0=4.0, lam_max=2048.0)
        criterion = SparseRegLoss("ce", tau=0.1, p=0.1, schedule=control)
        for epoch in range(epochs):
            train_one_epoch(model, criterion)
            control.update(accuracy(model, x_heldout, y_heldout_noisy))
            criterion.set_epoch(epoch + 1)   # the module's lambda follows the controller
    """

    lam0: float
    lam_max: float
    growth: float = 4.0
    patience: int = 2
    min_delta: float = 0.0
    lam: float | None = None
    best: float = -math.inf
    stale: int = 0
    growing: bool = False
    epoch: int = 0

    def __post_init__(self) -> None:
        if not _is_real(self.lam0) or self.lam0 < 0:
            raise ValueError(f"lam0 must be a finite number >= 0; got {self.lam0!r}")
        if not _is_real(self.lam_max) or self.lam_max < self.lam0:
            raise ValueError(f"lam_max must be a finite number >= lam0 ({self.lam0!r}); got {self.lam_max!r}")
        if not _is_real(self.growth) or self.growth <= 1:
            raise ValueError(f"growth must be a finite number > 1; got {self.growth!r}")
        if not _is_count(self.patience) or self.patience < 1:
            raise ValueError(f"patience must be an int >= 1; got {self.patience!r}")
        if not _is_real(self.min_delta) or self.min_delta < 0:
            raise ValueError(f"min_delta must be a finite number >= 0; got {self.min_delta!r}")
        if self.lam is None:
            self.lam = float(self.lam0)
        elif not _is_real(self.lam) or not self.lam0 <= self.lam <= self.lam_max:
            raise ValueError(f"lam must be a number in [lam0, lam_max]; got {self.lam!r}")
        if not isinstance(self.best, (int, float)) or isinstance(self.best, bool) or math.isnan(self.best):
            raise ValueError(f"best must be a number or -inf; got {self.best!r}")
        for name in ("stale", "epoch"):
            value = getattr(self, name)
            if not _is_count(value) or value < 0:
                raise ValueError(f"{name} must be an int >= 0; got {value!r}")
        if not isinstance(self.growing, bool):
            raise ValueError(f"growing must be a bool; got {self.growing!r}")

    def update(self, score: float) -> float:
        r"""Take one epoch's held-out score; returns :math:`\lambda` for the next epoch."""
        if not _is_real(score):
            raise ValueError(f"score must be a finite number; got {score!r}")
        self.epoch += 1
        if score > self.best + self.min_delta:
            self.best, self.stale = float(score), 0
        else:
            self.best = max(self.best, float(score))
            self.stale += 1
        if self.growing or self.stale >= self.patience:
            self.growing = True
            self.lam = min(self.lam * self.growth, self.lam_max) if self.lam else self.lam_max
        return self.lam

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly: the parameters and the state."""
        return dataclasses.asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`; any other set of keys is refused."""
        expected = set(self.state_dict())
        if set(state) != expected:
            raise ValueError(f"state must have exactly the keys {sorted(expected)}; got {sorted(state)}")
        restored = AdaptiveLambda(**state)
        for name in expected:
            setattr(self, name, getattr(restored, name))


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
