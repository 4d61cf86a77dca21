r"""The penalty weight's schedule :math:`\lambda_t = \lambda_0\,\rho^{\lfloor t / r\rfloor}`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["LambdaSchedule"]


@dataclass
class LambdaSchedule:
    r"""Geometric growth of :math:`\lambda` during training.

    .. math:: \lambda_t = \lambda_0\,\rho^{\lfloor t / r \rfloor}

    with :math:`t` the 0-indexed epoch and :math:`r` = ``every``: exactly the official code's
    "multiply by :math:`\rho` after every :math:`r`-th epoch". The paper's settings: MNIST
    ``(4, 2, 5)`` giving :math:`\lambda_{49} = 2048`; CIFAR-10 ``(1.2, 1.03, 1)`` giving
    :math:`\lambda_{119} \approx 40.4`.

    Parameters
    ----------
    lam0
        Initial weight, >= 0.
    rho
        Growth factor per period, > 0 (1 keeps :math:`\lambda` constant).
    every
        Period :math:`r` in epochs, an int >= 1.
    epoch
        The current epoch, advanced by :meth:`step` (or set directly).

    Examples
    --------
    >>> from sparse_reg import LambdaSchedule
    >>> schedule = LambdaSchedule(lam0=4.0, rho=2.0, every=5)
    >>> schedule(0), schedule(4), schedule(5), schedule(49)
    (4.0, 4.0, 8.0, 2048.0)
    """

    lam0: float
    rho: float = 1.0
    every: int = 1
    epoch: int = 0

    def __post_init__(self) -> None:
        if not _is_real(self.lam0) or self.lam0 < 0:
            raise ValueError(f"lam0 must be a finite number >= 0; got {self.lam0!r}")
        if not _is_real(self.rho) or self.rho <= 0:
            raise ValueError(f"rho must be a finite number > 0; got {self.rho!r}")
        if not _is_count(self.every) or self.every < 1:
            raise ValueError(f"every must be an int >= 1; got {self.every!r}")
        if not _is_count(self.epoch) or self.epoch < 0:
            raise ValueError(f"epoch must be an int >= 0; got {self.epoch!r}")

    def __call__(self, epoch: int | None = None) -> float:
        """:math:`\\lambda` at ``epoch`` (default: the current :attr:`epoch`)."""
        t = self.epoch if epoch is None else epoch
        if not _is_count(t) or t < 0:
            raise ValueError(f"epoch must be an int >= 0; got {t!r}")
        return float(self.lam0 * self.rho ** (t // self.every))

    @property
    def lam(self) -> float:
        """:math:`\\lambda` at the current epoch."""
        return self()

    def step(self) -> float:
        """Advance one epoch and return the new :math:`\\lambda`."""
        self.epoch += 1
        return self.lam

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: the parameters and the current epoch."""
        return {"lam0": self.lam0, "rho": self.rho, "every": self.every, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`; the keys must match exactly."""
        expected = set(self.state_dict())
        if set(state) != expected:
            raise ValueError(
                f"state must have exactly the keys {sorted(expected)}; got {sorted(state)}"
            )
        restored = LambdaSchedule(**state)
        self.lam0, self.rho, self.every, self.epoch = (
            restored.lam0, restored.rho, restored.every, restored.epoch,
        )


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
