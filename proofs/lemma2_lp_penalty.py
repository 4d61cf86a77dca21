r"""Lemma 2: on the simplex the :math:`\ell_p` penalty is smallest exactly at one-hot outputs.

.. rubric:: Statement

For :math:`0 < p < 1` and :math:`u \in \Delta_{K-1}`,

.. math:: 1 \;\le\; \lVert u\rVert_p^p = \sum_{j=1}^K u_j^p \;\le\; K^{1-p},

with equality on the left if and only if :math:`u` is one-hot, and on the right if and only if
:math:`u` is uniform. The map :math:`u \mapsto \sum_j u_j^p` is Schur-concave: a Robin Hood
transfer (moving mass :math:`t \in (0, (u_i - u_j)/2]` from an entry :math:`u_i` to a smaller
:math:`u_j`) strictly raises it, so a sharper output is penalised less. As :math:`p \to 0^+` the
penalty tends to :math:`\lVert u\rVert_0`, the number of non-zero entries. For :math:`p = 1` the
penalty is the constant :math:`\sum_j u_j = 1`: no sparsity pressure at all, and its gradient with
respect to the logits vanishes.

.. rubric:: Proof

For :math:`t \in [0, 1]`, :math:`t^p \ge t` with equality iff :math:`t \in \{0, 1\}`; summing over
:math:`j` gives :math:`\sum_j u_j^p \ge \sum_j u_j = 1`, with equality iff every entry is 0 or 1,
i.e. :math:`u` is one-hot. :math:`t \mapsto t^p` is strictly concave, so by Jensen
:math:`\frac1K\sum_j u_j^p \le (\frac1K\sum_j u_j)^p = K^{-p}`, with equality iff all entries are
equal. A sum of a strictly concave function of the entries is strictly Schur-concave; directly, for
the transfer, :math:`(u_j + t)^p - u_j^p > u_i^p - (u_i - t)^p` because the increments of a
strictly concave function decrease. Finally :math:`u_j^p \to \mathbb 1[u_j > 0]` as
:math:`p \to 0^+`. :math:`\blacksquare`

.. rubric:: What is checked

:func:`sparse_reg.lp_penalty` on random simplex points with zeros allowed, :math:`K \le 12`,
:math:`p \in [0.01, 0.99]`: the bounds; exactly 1 at every one-hot point and :math:`K^{1-p}` at the
uniform point; strict inequalities away from them; a strict increase under Robin Hood transfers;
:math:`\lVert u\rVert_0` as :math:`p \to 0`. The counter-example :math:`p = 1`: the penalty is 1
at every point, so the strict lower bound fails, and :func:`sparse_reg.loss_and_grad` returns the
same gradient with and without the penalty.
"""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st

import sparse_reg as sr
from proofs._support import simplex_points

RTOL = 1e-12
exponents = st.floats(0.01, 0.99)


@st.composite
def points(draw: st.DrawFn, k_max: int = 12) -> np.ndarray:
    """A simplex point with zeros allowed, entries either 0 or at least :math:`10^{-6}`."""
    k = draw(st.integers(2, k_max))
    u = draw(simplex_points(k, positive=False))
    u[u < 1e-6] = 0.0
    return u / u.sum()


def penalty(backend, to_numpy, rows: np.ndarray, p: float) -> np.ndarray:
    return to_numpy(sr.lp_penalty(backend.asarray(np.atleast_2d(rows)), p))


@given(u=points(), p=exponents)
def test_bounds_and_strictness(proof_backend, numpy_of, u, p):
    """:math:`1 \\le \\sum_j u_j^p \\le K^{1-p}`, strictly unless one-hot (left) or uniform (right)."""
    k = u.shape[0]
    (value,) = penalty(proof_backend, numpy_of, u, p)
    upper = k ** (1 - p)
    assert 1 - RTOL <= value <= upper * (1 + RTOL)
    if np.count_nonzero(u) >= 2:
        assert value > 1 + RTOL
    if np.ptp(u) > 1e-3:
        assert value < upper * (1 - RTOL)


@given(k=st.integers(2, 12), p=exponents)
def test_equality_at_one_hot_and_uniform(proof_backend, numpy_of, k, p):
    """Exactly 1 at each vertex :math:`e_j`; :math:`K^{1-p}` at :math:`\\mathbf 1/K`."""
    rows = np.vstack([np.eye(k), np.full((1, k), 1 / k)])
    values = penalty(proof_backend, numpy_of, rows, p)
    np.testing.assert_array_equal(values[:k], 1.0)
    np.testing.assert_allclose(values[k], k ** (1 - p), rtol=RTOL)


@given(u=points(), p=exponents, data=st.data())
def test_robin_hood_transfer_raises_the_penalty(proof_backend, numpy_of, u, p, data):
    """Schur-concavity: moving mass from a larger to a smaller entry strictly raises :math:`\\sum_j u_j^p`."""
    k = u.shape[0]
    i, j = data.draw(st.lists(st.integers(0, k - 1), min_size=2, max_size=2, unique=True), label="i, j")
    if u[i] < u[j]:
        i, j = j, i
    assume(u[i] - u[j] > 1e-3)
    t = data.draw(st.floats(0.05, 1.0), label="fraction") * (u[i] - u[j]) / 2
    fairer = u.copy()
    fairer[i] -= t
    fairer[j] += t
    before, after = penalty(proof_backend, numpy_of, np.stack([u, fairer]), p)
    assert after > before * (1 + RTOL)


@given(u=points())
def test_small_p_counts_non_zero_entries(proof_backend, numpy_of, u):
    """:math:`\\sum_j u_j^p \\to \\lVert u\\rVert_0` as :math:`p \\to 0^+`."""
    (value,) = penalty(proof_backend, numpy_of, u, 1e-9)
    np.testing.assert_allclose(value, np.count_nonzero(u), rtol=0, atol=1e-7)


@given(u=points(), p=exponents, logits=st.lists(st.floats(-5, 5), min_size=2, max_size=8),
       tau=st.floats(0.1, 2.0))
def test_p_equal_one_has_no_sparsity_pressure(proof_backend, numpy_of, u, p, logits, tau):
    """Counter-example :math:`p = 1`: the penalty is 1 everywhere, so one-hot outputs are not favoured."""
    k = u.shape[0]
    values = penalty(proof_backend, numpy_of, np.stack([u, np.eye(k)[0]]), 1.0)
    np.testing.assert_allclose(values, 1.0, rtol=1e-14)
    if np.count_nonzero(u) >= 2:
        # The strict lower bound of the lemma, true for p < 1, fails at p = 1.
        assert penalty(proof_backend, numpy_of, u, p)[0] > 1 + RTOL
        assert not values[0] > values[1] * (1 + RTOL)
    z = proof_backend.asarray(np.array([logits]))
    labels = np.array([0])
    _, with_penalty = sr.loss_and_grad(z, labels, tau=tau, p=1.0, lam=5.0)
    _, without = sr.loss_and_grad(z, labels, tau=tau, p=1.0, lam=0.0)
    np.testing.assert_allclose(numpy_of(with_penalty), numpy_of(without), rtol=1e-12, atol=1e-13)
