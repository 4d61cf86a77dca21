r"""Lemma 1: every class-symmetric loss satisfies the symmetric condition on :math:`\mathcal P_v`.

.. rubric:: Statement

Fix :math:`v \in \Delta_{K-1}` and let :math:`\mathcal P_v = \{\Pi v : \Pi \text{ a } K\times K
\text{ permutation matrix}\}`. Suppose the loss :math:`L` is *class symmetric*: for every
permutation :math:`\pi` with matrix :math:`\Pi`, :math:`(\Pi u)_{\pi(i)} = u_i`,

.. math:: L(\Pi u, \pi(j)) = L(u, j) \qquad \text{for all } u \in \Delta_{K-1},\ j \in [K],
   :label: assumption-a

and finite on :math:`\mathcal P_v`. Then for every :math:`u \in \mathcal P_v`

.. math:: \sum_{j=1}^{K} L(u, j) = \sum_{j=1}^{K} L(v, j) =: C_v .

Every loss of the form :math:`L(u, y) = \ell(u_y)` (CE, focal, GCE, MAE, RCE, SCE) is class
symmetric, and so are MSE and the normalised losses (NCE, NFL, NGCE, NMAE and the active-passive
sums), whose normalisers are symmetric functions of :math:`u`. A class-weighted loss such as
:math:`-w_y \log u_y` with unequal weights is not.

.. rubric:: Proof

Write :math:`u = \Pi v`. As :math:`j` runs over :math:`[K]` so does :math:`\pi(i)` as :math:`i`
does, hence

.. math:: \sum_j L(\Pi v, j) = \sum_i L(\Pi v, \pi(i)) = \sum_i L(v, i) = C_v . \qquad\blacksquare

Without :eq:`assumption-a` the middle equality has no reason to hold, and it fails for the
class-weighted cross entropy: :math:`\sum_j L(\Pi v, j) = -\sum_j w_j \log v_{\pi^{-1}(j)}` depends
on how :math:`\pi` pairs the weights with the entries of :math:`v`.

.. rubric:: What is checked

* For every registered loss (random valid parameters), :math:`K \in \{2, \dots, 12\}`, :math:`v`
  strictly positive or one-hot, and random permutations: the row sums :math:`\sum_j L(\Pi v, j)`
  equal :math:`C_v` to a relative :math:`10^{-12}` in float64, and Assumption A holds entrywise.
  The one-hot :math:`v` uses logits :math:`(0, -50, \dots, -50)`: one-hot in float64 while
  :math:`-\log u_j` stays finite, as the official code's clamp keeps it.
* A class-weighted cross entropy, registered with :func:`sparse_reg.register_loss`, is searched for
  a violation with :func:`hypothesis.find`, which must find one.

All values come from :func:`sparse_reg.loss` with ``tau=1``, ``lam=0``, ``reduction="none"`` on
logits :math:`\log u`, on every available backend.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import find, given
from hypothesis import strategies as st

import sparse_reg as sr
from proofs._support import FIND, LOSSES, base_params, loss_table, one_hot_logits, simplex_points

#: Relative tolerance of the exact identities in float64.
RTOL = 1e-12

#: Name of the counter-example loss; registered at run time, so it never joins :data:`LOSSES`.
CLASS_WEIGHTED_CE = "class_weighted_ce_counterexample"


@st.composite
def permuted_logits(draw: st.DrawFn, k_min: int = 2, k_max: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Logits :math:`\\log v` and some permutations of :math:`[K]`, as index rows of shape (P, K)."""
    k = draw(st.integers(k_min, k_max))
    if draw(st.booleans()):
        z = np.log(draw(simplex_points(k)))
    else:
        z = one_hot_logits(k, hot=draw(st.integers(0, k - 1)))
    perms = draw(st.lists(st.permutations(range(k)), min_size=1, max_size=4))
    return z, np.array([list(range(k)), *perms])


def permutation_table(backend: Any, to_numpy: Any, base: str, z: np.ndarray, perms: np.ndarray,
                      **params: Any) -> np.ndarray:
    """Row :math:`r` holds :math:`L(u_r, j)` for :math:`j \\in [K]`, where :math:`u_r` has logits
    ``z[perms[r]]``: class :math:`i` of :math:`u_r` is class ``perms[r, i]`` of :math:`v`."""
    return loss_table(backend, z[perms], base, to_numpy, **params)


def symmetric_condition_gap(table: np.ndarray) -> float:
    """Largest relative deviation of a row sum :math:`\\sum_j L(\\Pi v, j)` from :math:`C_v` (row 0)."""
    sums = table.sum(axis=1)
    return float(np.max(np.abs(sums - sums[0])) / max(1.0, abs(sums[0])))


@pytest.mark.parametrize("base", LOSSES)
@given(data=st.data())
def test_sum_over_labels_is_constant_on_permutations(proof_backend, numpy_of, base, data):
    """:math:`\\sum_j L(u, j) = C_v` for every :math:`u \\in \\mathcal P_v`, and Assumption A holds."""
    z, perms = data.draw(permuted_logits(), label="logits, permutations")
    params = data.draw(base_params(base), label="params")
    table = permutation_table(proof_backend, numpy_of, base, z, perms, **params)
    assert np.all(np.isfinite(table))
    assert symmetric_condition_gap(table) <= RTOL
    # Assumption A entrywise: L(u_r, i) = L(v, perms[r, i]).
    np.testing.assert_allclose(table, table[0][perms], rtol=RTOL, atol=0)


def _class_weighted_ce(log_s: Any, mask: Any, *, xp: Any) -> Any:
    """:math:`-w_y \\log s_y` with :math:`w_k = 1 + k`: a loss that is not class symmetric."""
    weights = xp.astype(xp.arange(1, log_s.shape[-1] + 1), log_s.dtype)
    return -xp.sum(xp.where(mask, weights * log_s, xp.zeros_like(log_s)), axis=-1)


def test_class_weighted_cross_entropy_breaks_the_symmetric_condition(proof_backend, numpy_of):
    """A class-weighted CE violates Assumption A, and a permutation breaking Lemma 1 is found."""
    sr.register_loss(CLASS_WEIGHTED_CE, _class_weighted_ce, overwrite=True,
                     formula=r"-(1 + y) \log s_y")

    def violated(example: tuple[np.ndarray, np.ndarray]) -> bool:
        table = permutation_table(proof_backend, numpy_of, CLASS_WEIGHTED_CE, *example)
        return symmetric_condition_gap(table) > 1e-6

    z, perms = find(permuted_logits(), violated, settings=FIND)
    table = permutation_table(proof_backend, numpy_of, CLASS_WEIGHTED_CE, z, perms)
    assert symmetric_condition_gap(table) > 1e-6
    assert not np.allclose(table, table[0][perms], rtol=RTOL, atol=0)
