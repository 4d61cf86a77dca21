r"""Sharpening :math:`\sigma_\tau(z) = \operatorname{softmax}(z/\tau)`: what the temperature changes and what it keeps.

.. rubric:: Statement

For logits :math:`z \in \mathbb R^K` with distinct entries, gap :math:`\delta` between the two largest,
and range :math:`\rho = \max_j z_j - \min_j z_j`:

1. the ranking of :math:`\sigma_\tau(z)` is that of :math:`z` for every :math:`\tau > 0` (so is the
   argmax), and :math:`\sigma_\tau(z) = \sigma_1(z/\tau)`;
2. :math:`\tau \to 0^+` gives the one-hot vector at the argmax:
   :math:`1 - \max_j \sigma_\tau(z)_j \le (K-1)\,e^{-\delta/\tau}`; :math:`\tau \to \infty` gives the
   uniform vector: :math:`\lvert \sigma_\tau(z)_j - 1/K\rvert \le (e^{\rho/\tau} - 1)/K`;
3. for :math:`0 < p < 1`, :math:`\tau \mapsto \sum_j \sigma_\tau(z)_j^p` is non-decreasing.

.. rubric:: Proof

For (1), :math:`\exp(\cdot/\tau)` is strictly increasing and the normaliser is common to all entries.
For (2), with :math:`m` the argmax, :math:`1 - \sigma_m = \sum_{j\ne m} e^{(z_j - z_m)/\tau}/Z` and
:math:`Z \ge 1` after dividing by :math:`e^{z_m/\tau}`; each term is at most :math:`e^{-\delta/\tau}`.
Every ratio :math:`\sigma_i/\sigma_j` lies in :math:`[e^{-\rho/\tau}, e^{\rho/\tau}]`, so
:math:`\sigma_j \in [e^{-\rho/\tau}/K, e^{\rho/\tau}/K]`. For (3), with :math:`\beta = 1/\tau`,
:math:`\sigma_\beta` is a Gibbs family and
:math:`\log\sum_j\sigma_j^p = \log Z(p\beta) - p\log Z(\beta)`, so

.. math:: \frac{d}{d\beta}\log\sum_j\sigma_j^p = p\bigl(\mathbb E_{p\beta}[z] - \mathbb E_\beta[z]\bigr) \le 0,

because the mean of :math:`z` under the Gibbs distribution, :math:`(\log Z)'`, is non-decreasing in
the inverse temperature (its derivative is a variance) and :math:`p\beta \le \beta`. Decreasing in
:math:`\beta` is non-decreasing in :math:`\tau`. :math:`\blacksquare`

.. rubric:: What is checked

:func:`sparse_reg.sharpen` and :func:`sparse_reg.lp_penalty` on random logits with distinct
entries, :math:`K \le 10`: the ranking and the absorption of :math:`\tau` for
:math:`\tau \in [0.02, 100]`; both limit bounds along a sequence of temperatures; the monotone
penalty along five sorted temperatures in :math:`[0.05, 5]`.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import sparse_reg as sr

#: Logits on a grid of step 0.01 in [-5, 5] with distinct entries: ratios of probabilities stay far
#: from 1 and from underflow for every temperature drawn.
distinct_logits = st.lists(st.integers(-500, 500), min_size=2, max_size=10, unique=True).map(
    lambda values: np.array(values, dtype=float) / 100
)


def sharpened(backend, to_numpy, z: np.ndarray, tau: float) -> np.ndarray:
    return to_numpy(sr.sharpen(backend.asarray(np.atleast_2d(z)), tau))


@given(z=distinct_logits, tau=st.floats(0.02, 100.0))
def test_ranking_is_invariant_and_tau_is_absorbed(proof_backend, numpy_of, z, tau):
    """The argsort of :math:`\\sigma_\\tau(z)` is that of :math:`z`, and :math:`\\sigma_\\tau(z) = \\sigma_1(z/\\tau)`."""
    s = sharpened(proof_backend, numpy_of, z, tau)[0]
    np.testing.assert_array_equal(np.argsort(s), np.argsort(z))
    assert np.argmax(s) == np.argmax(z)
    np.testing.assert_allclose(s, sharpened(proof_backend, numpy_of, z / tau, 1.0)[0], rtol=1e-12)


@given(z=distinct_logits)
def test_limits_in_tau(proof_backend, numpy_of, z):
    """:math:`\\tau \\to 0`: one-hot at the argmax; :math:`\\tau \\to \\infty`: uniform; with explicit rates."""
    k = z.shape[0]
    top = np.sort(z)[::-1]
    gap, spread = top[0] - top[1], top[0] - top[-1]
    small = np.array([0.5, 0.1, 0.02, 0.005])
    s = np.concatenate([sharpened(proof_backend, numpy_of, z, t) for t in small])
    one_minus_max = 1 - s[:, np.argmax(z)]
    assert np.all(one_minus_max <= (k - 1) * np.exp(-gap / small) * (1 + 1e-9) + 1e-15)
    large = np.array([10.0, 1e2, 1e4, 1e6])
    s = np.concatenate([sharpened(proof_backend, numpy_of, z, t) for t in large])
    bound = np.expm1(spread / large)[:, None] / k
    assert np.all(np.abs(s - 1 / k) <= bound * (1 + 1e-9) + 1e-15)


@given(z=distinct_logits, p=st.floats(0.01, 0.99),
       taus=st.lists(st.floats(0.05, 5.0), min_size=5, max_size=5, unique=True).map(sorted))
def test_penalty_of_sharpened_output_is_non_decreasing_in_tau(proof_backend, numpy_of, z, p, taus):
    """:math:`\\tau \\mapsto \\sum_j \\sigma_\\tau(z)_j^p` is non-decreasing (a Rényi entropy of a Gibbs family)."""
    s = np.concatenate([sharpened(proof_backend, numpy_of, z, t) for t in taus])
    values = numpy_of(sr.lp_penalty(proof_backend.asarray(s), p))
    assert np.all(np.diff(values) >= -1e-12 * values[1:])
