"""Shared strategies and evaluators for the property tests of ``proofs/``.

The base loss :math:`L(u, j)` at a point :math:`u` of the simplex is read from the library itself:
:func:`sparse_reg.loss` with ``tau=1`` and ``lam=0`` evaluates :math:`L(\\operatorname{softmax}(z), j)`,
so the logits :math:`z = \\log u` give :math:`L(u, j)` exactly (softmax is invariant to the shift
that normalisation would add).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import Phase, settings
from hypothesis import strategies as st

import sparse_reg as sr

#: The losses registered when the proofs are collected: the built-in ones and any a user added
#: before. Counter-example losses are registered later, at run time, so they never enter this list.
LOSSES: tuple[str, ...] = sr.available_losses()

#: Losses with a closed-form gradient (every built-in one).
LOSSES_WITH_GRAD: tuple[str, ...] = tuple(name for name in LOSSES if sr.get_loss(name).grad is not None)

#: Logit gap that makes a row one-hot in float64: :math:`e^{-50} \approx 2\cdot 10^{-22}` vanishes
#: next to 1, while :math:`-\log s` stays finite, as the official code's clamp keeps it.
ONE_HOT_GAP = 50.0


#: Settings of the counter-example searches (:func:`hypothesis.find`): reproducible, and stopping at
#: the first counter-example rather than shrinking it.
FIND = settings(max_examples=500, database=None, derandomize=True, phases=[Phase.generate])


def scaled_examples(fraction: float, minimum: int = 5) -> settings:
    """Settings for an expensive property: a fraction of the active profile's example budget."""
    return settings(max_examples=max(minimum, math.ceil(settings.default.max_examples * fraction)))


def base_params(name: str) -> st.SearchStrategy[dict[str, Any]]:
    """Random valid parameters of the base loss ``name`` (``detach_weight`` stays at its default)."""
    ranges = {
        "gamma": st.floats(0.0, 3.0),
        "q": st.floats(0.05, 1.0),
        "alpha": st.floats(0.0, 2.0),
        "beta": st.floats(0.0, 2.0),
    }
    keys = [key for key in sr.get_loss(name).defaults if key in ranges]
    return st.fixed_dictionaries({key: ranges[key] for key in keys})


@st.composite
def simplex_points(draw: st.DrawFn, k: int, *, positive: bool = True, min_entry: float = 1e-3) -> np.ndarray:
    """A point of the simplex in :math:`\\mathbb R^k`; strictly positive unless ``positive=False``."""
    low = min_entry if positive else 0.0
    weights = np.array(draw(st.lists(st.floats(low, 1.0), min_size=k, max_size=k)))
    if not positive and weights.sum() == 0:
        weights[draw(st.integers(0, k - 1))] = 1.0
    return weights / weights.sum()


def one_hot_logits(k: int, hot: int = 0, gap: float = ONE_HOT_GAP) -> np.ndarray:
    """Logits whose softmax is :math:`e_\\text{hot}` in float64 (see :data:`ONE_HOT_GAP`)."""
    z = np.full(k, -gap)
    z[hot] = 0.0
    return z


def loss_table(
    backend: Any, logits: np.ndarray, base: str, to_numpy: Callable[[Any], np.ndarray], **params: Any
) -> np.ndarray:
    """:math:`T_{nj} = L(\\operatorname{softmax}(z_n), j)` for every row :math:`z_n` and class :math:`j`.

    One batched call to :func:`sparse_reg.loss` on ``backend`` (``tau=1``, ``lam=0``,
    ``reduction="none"``), returned as a float64 NumPy array of shape ``(N, K)``.
    """
    logits = np.atleast_2d(np.asarray(logits, dtype=np.float64))
    n, k = logits.shape
    rows = backend.asarray(np.repeat(logits, k, axis=0))
    labels = np.tile(np.arange(k), n)
    values = sr.loss(rows, labels, base=base, tau=1.0, lam=0.0, reduction="none", **params)
    return to_numpy(values).reshape(n, k)


def permutation_outputs(v: np.ndarray) -> np.ndarray:
    """Every distinct permutation of ``v``: the finite set :math:`\\mathcal P_v`, one per row."""
    return np.array(sorted(set(itertools.permutations(v.tolist()))))


def all_maps(num_points: int, num_outputs: int) -> np.ndarray:
    """Every map from ``num_points`` inputs to ``num_outputs`` outputs, as index arrays (M, n)."""
    grids = np.meshgrid(*[np.arange(num_outputs)] * num_points, indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=1)


def risks(table: np.ndarray, maps: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Risk of every map: :math:`\\frac1n\\sum_i \\sum_j w_{ij} T_{f(x_i) j}`.

    ``table`` is :func:`loss_table` over the output set, ``maps`` from :func:`all_maps`, and
    ``weights[i]`` the label distribution at input :math:`i` (a one-hot clean label, or the noisy
    label distribution :math:`(\\eta_{y_i j})_j`). Returns shape ``(M,)``.
    """
    return np.einsum("mij,ij->mi", table[maps], weights).mean(axis=1)


#: Relative tolerance below which two risks count as tied (rounding, never a real difference).
TIE_RTOL = 1e-9


def _tie_tolerance(values: np.ndarray) -> float:
    return TIE_RTOL * max(1.0, float(np.max(np.abs(values))))


def argmin_set(values: np.ndarray) -> frozenset[int]:
    """Indices tied with the minimum up to :data:`TIE_RTOL` (rounding differences only)."""
    return frozenset(np.flatnonzero(values <= values.min() + _tie_tolerance(values)).tolist())


def is_constant(values: np.ndarray) -> bool:
    """Whether all values tie up to :data:`TIE_RTOL`."""
    return bool(np.ptp(values) <= _tie_tolerance(values))


def symmetric_transition(k: int, eta: float) -> np.ndarray:
    """Symmetric noise: :math:`\\eta_{ii} = 1 - \\eta`, :math:`\\eta_{ij} = \\eta/(k-1)`."""
    return np.full((k, k), eta / (k - 1)) + np.eye(k) * (1 - eta - eta / (k - 1))
