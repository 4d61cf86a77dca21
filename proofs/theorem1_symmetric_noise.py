r"""Theorem 1: under symmetric noise, any class-symmetric loss is noise tolerant on :math:`\mathcal P_v`.

.. rubric:: Statement

Let every :math:`f \in \mathcal F` map into :math:`\mathcal P_v`, and let :math:`L` be class
symmetric (Assumption A of Lemma 1) and finite on :math:`\mathcal P_v`. Under symmetric label noise
of rate :math:`\eta` (:math:`\eta_{yy} = 1 - \eta`, :math:`\eta_{yj} = \eta/(K-1)` for
:math:`j \ne y`) the noisy risk
:math:`R^\eta_L(f) = \mathbb E\bigl[(1-\eta) L(f(x), y) + \tfrac{\eta}{K-1}\sum_{j\ne y} L(f(x), j)\bigr]`
is an affine function of the clean risk :math:`R_L(f) = \mathbb E[L(f(x), y)]`:

.. math:: R^\eta_L(f) = \Bigl(1 - \frac{\eta K}{K-1}\Bigr) R_L(f) + \frac{\eta\, C_v}{K-1}
   \qquad \text{for every } f \in \mathcal F .

Hence, over any class :math:`\mathcal F`,

* for :math:`\eta < \frac{K-1}{K}` the minimisers of :math:`R^\eta_L` and :math:`R_L` coincide (noise
  tolerance);
* at :math:`\eta = \frac{K-1}{K}` the noisy risk is constant: the labels carry no information;
* for :math:`\eta > \frac{K-1}{K}` the order reverses: the minimisers of :math:`R^\eta_L` are the
  maximisers of :math:`R_L`.

.. rubric:: Proof

By Lemma 1, :math:`\sum_{j \ne y} L(f(x), j) = C_v - L(f(x), y)` pointwise, so

.. math:: R^\eta_L(f) = (1-\eta) R_L(f) + \frac{\eta}{K-1}\bigl(C_v - R_L(f)\bigr)
   = \Bigl(1 - \frac{\eta K}{K-1}\Bigr) R_L(f) + \frac{\eta C_v}{K-1} .

The slope is positive, zero or negative as :math:`\eta` is below, at or above
:math:`\frac{K-1}{K}`, which gives the three regimes. :math:`\blacksquare`

The restriction to :math:`\mathcal P_v` is essential: over outputs that are not permutations of
one vector, :math:`\sum_j L(f(x), j)` varies with :math:`f` and the noisy minimiser can differ from
the clean one for any :math:`\eta > 0`.

.. rubric:: What is checked

* The identity, for every registered loss, on random finite data sets (clean labels, any map into
  :math:`\mathcal P_v`), :math:`K \le 6` and :math:`\eta \in [0, 1]`, to a relative
  :math:`10^{-12}`; the noisy risk is computed from its definition, as the expectation over the
  noisy label.
* The three regimes, for every registered loss, by enumerating **every** map
  :math:`\mathcal X \to \mathcal P_v` for :math:`|\mathcal X| \le 3` and :math:`K = 3`: equal argmin
  sets below the threshold, a constant noisy risk at it, and argmin of :math:`R^\eta_L` = argmax of
  :math:`R_L` (disjoint from argmin of :math:`R_L`) above it. The loss table is first divided by
  its largest magnitude: argmin sets and constancy are invariant under a positive scaling of
  :math:`L`, and the tie tolerance (:data:`~proofs._support.TIE_RTOL`, absolute below unit scale) then
  applies to the loss's own scale. Without it a draw such as SCE with :math:`\alpha = 0`,
  :math:`\beta = 10^{-9}` has every risk difference below the tolerance, and distinct risks tie.
* Counter-example: for cross entropy over outputs that are *not* a permutation set, a finite class
  whose noisy minimiser differs from the clean one at :math:`\eta < \frac{K-1}{K}` is found.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import find, given
from hypothesis import strategies as st

from proofs._support import (
    FIND,
    LOSSES,
    all_maps,
    argmin_set,
    base_params,
    is_constant,
    loss_table,
    one_hot_logits,
    permutation_outputs,
    risks,
    scaled_examples,
    simplex_points,
    symmetric_transition,
)

RTOL = 1e-12


def fixed_vector_logits(draw: st.DrawFn, k: int) -> np.ndarray:
    """Logits of :math:`v`: strictly positive with entries from a coarse grid (exact ties, or gaps
    far above rounding), or one-hot."""
    if draw(st.booleans(), label="one-hot v"):
        return one_hot_logits(k)
    weights = np.array(draw(st.lists(st.integers(1, 9), min_size=k, max_size=k), label="v weights"))
    return np.log(weights / weights.sum())


@pytest.mark.parametrize("base", LOSSES)
@given(data=st.data())
def test_noisy_risk_is_affine_in_clean_risk(proof_backend, numpy_of, base, data):
    """:math:`R^\\eta_L(f) = (1 - \\eta K/(K-1)) R_L(f) + \\eta C_v/(K-1)` for every :math:`f` into :math:`\\mathcal P_v`."""
    k = data.draw(st.integers(2, 6), label="K")
    n = data.draw(st.integers(1, 6), label="n")
    if data.draw(st.booleans(), label="one-hot v"):
        z = one_hot_logits(k)
    else:
        z = np.log(data.draw(simplex_points(k), label="v"))
    perms = data.draw(st.lists(st.permutations(range(k)), min_size=n, max_size=n), label="f")
    labels = np.array(data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n), label="y"))
    eta = data.draw(st.floats(0.0, 1.0), label="eta")
    params = data.draw(base_params(base), label="params")

    table = loss_table(proof_backend, np.stack([z] + [z[list(p)] for p in perms]), base, numpy_of, **params)
    c_v, outputs = table[0].sum(), table[1:]
    clean = np.mean(outputs[np.arange(n), labels])
    noisy = np.mean(np.sum(symmetric_transition(k, eta)[labels] * outputs, axis=1))
    predicted = (1 - eta * k / (k - 1)) * clean + eta * c_v / (k - 1)
    np.testing.assert_allclose(noisy, predicted, rtol=RTOL, atol=RTOL * max(1.0, c_v))


def unit_scale(table: np.ndarray) -> np.ndarray:
    """``table`` divided by its largest magnitude (unchanged when it is all zero): the same argmin
    sets and constancy, on the scale the tie tolerance is made for."""
    largest = float(np.max(np.abs(table)))
    return table / largest if largest > 0 else table


def test_a_loss_scaled_far_below_one_keeps_its_regimes(proof_backend, numpy_of):
    """SCE with :math:`\\alpha = 0`, :math:`\\beta = 10^{-9}` (a draw of the property): at unit scale
    the clean minimiser is unique, and the noisy order follows it below and reverses above."""
    k = 3
    outputs = permutation_outputs(np.log(np.array([9.0, 9.0, 6.0]) / 24))
    table = loss_table(proof_backend, outputs, "sce", numpy_of, alpha=0.0, beta=1e-9)
    labels = np.array([2, 1, 0])
    maps = all_maps(len(labels), len(outputs))
    scaled = unit_scale(table)
    clean = risks(scaled, maps, np.eye(k)[labels])
    assert not is_constant(clean)
    # Unscaled, the noisy risks above the threshold all tie, though the clean ones differ.
    assert is_constant(risks(table, maps, symmetric_transition(k, 0.9)[labels]))
    assert argmin_set(risks(scaled, maps, symmetric_transition(k, 0.3)[labels])) == argmin_set(clean)
    assert argmin_set(risks(scaled, maps, symmetric_transition(k, 0.9)[labels])) == argmin_set(-clean)


@pytest.mark.parametrize("base", LOSSES)
@scaled_examples(0.5)
@given(data=st.data())
def test_three_regimes_by_enumerating_every_map(proof_backend, numpy_of, base, data):
    """Below, at and above :math:`\\eta = (K-1)/K`: same minimisers, constant risk, reversed order."""
    k = 3
    outputs = permutation_outputs(fixed_vector_logits(data.draw, k))
    table = unit_scale(loss_table(proof_backend, outputs, base, numpy_of,
                                  **data.draw(base_params(base), label="params")))
    n = data.draw(st.integers(1, 3), label="n")
    labels = np.array(data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n), label="y"))
    maps = all_maps(n, len(outputs))
    clean = risks(table, maps, np.eye(k)[labels])

    def noisy(eta: float) -> np.ndarray:
        return risks(table, maps, symmetric_transition(k, eta)[labels])

    threshold = (k - 1) / k
    below = data.draw(st.floats(0.0, threshold - 0.01), label="eta below")
    above = data.draw(st.floats(threshold + 0.01, 1.0), label="eta above")
    assert argmin_set(noisy(below)) == argmin_set(clean)
    at = noisy(threshold)
    assert np.ptp(at) <= RTOL * max(1.0, float(np.max(np.abs(at))))
    assert argmin_set(noisy(above)) == argmin_set(-clean)
    if not is_constant(clean):
        # Above the threshold the noisy minimiser is never a clean minimiser: tolerance is lost.
        assert not argmin_set(noisy(above)) & argmin_set(clean)


@st.composite
def unconstrained_problem(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, float]:
    """Cross entropy over 2-3 arbitrary simplex outputs (no permutation structure), :math:`K = 3`."""
    outputs = np.stack(draw(st.lists(simplex_points(3, min_entry=0.01), min_size=2, max_size=3)))
    labels = np.array(draw(st.lists(st.integers(0, 2), min_size=1, max_size=2)))
    eta = draw(st.floats(0.05, 0.6))
    return outputs, labels, eta


def test_outputs_outside_a_permutation_set_lose_tolerance(proof_backend, numpy_of):
    """Without the :math:`\\mathcal P_v` constraint, CE's noisy minimiser differs from the clean one."""

    def not_tolerant(problem: tuple[np.ndarray, np.ndarray, float]) -> bool:
        outputs, labels, eta = problem
        table = loss_table(proof_backend, np.log(outputs), "ce", numpy_of)
        maps = all_maps(len(labels), len(outputs))
        clean = risks(table, maps, np.eye(3)[labels])
        noisy = risks(table, maps, symmetric_transition(3, eta)[labels])
        return argmin_set(noisy) != argmin_set(clean)

    outputs, labels, eta = find(unconstrained_problem(), not_tolerant,
                                settings=FIND)
    assert eta < 2 / 3
    assert not_tolerant((outputs, labels, eta))
