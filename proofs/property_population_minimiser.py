r"""The population minimiser of the sparse-regularized cross entropy keeps the Bayes decision.

.. rubric:: Statement

For a label posterior :math:`q \in \Delta_{K-1}` with distinct entries, :math:`0 < p < 1` and
:math:`\lambda \ge 0`, let :math:`\sigma^*(\lambda)` minimise

.. math:: F_\lambda(\sigma) = -\sum_j q_j \log\sigma_j + \lambda\sum_j \sigma_j^p
   \qquad\text{over } \sigma \in \Delta_{K-1}.

Then :math:`\sigma^*(0) = q`; for every :math:`\lambda` the entries of :math:`\sigma^*(\lambda)` are
in the order of those of :math:`q` (so the argmax, the Bayes decision, is kept); as :math:`\lambda`
grows the penalty :math:`\sum_j\sigma^*_j{}^p` does not increase, the cross entropy does not
decrease, and the largest entry :math:`\max_j\sigma^*_j` grows, towards :math:`e_{\arg\max q}`.
For :math:`K = 5`, :math:`p = 0.1` and :math:`q = (0.4, 0.15, \dots, 0.15)` (symmetric noise
:math:`\eta = 0.6`), :math:`\sigma^* \approx (0.525, 0.119, \dots)` at :math:`\lambda = 1` and
:math:`\approx (0.9998, 10^{-4}, \dots)` at :math:`\lambda = 4`. Sparse regularization removes
hedging, never the decision.

.. rubric:: Proof

:math:`\sigma^*(0) = q` is Gibbs' inequality. *Order:* the penalty is symmetric, so swapping two
entries :math:`\sigma_i < \sigma_j` with :math:`q_i > q_j` leaves it unchanged and changes the cross
entropy by :math:`-(q_i - q_j)(\log\sigma_j - \log\sigma_i) < 0` (rearrangement); a minimiser admits
no such pair. *Monotone terms:* write :math:`F_\lambda = A + \lambda B`. Optimality of
:math:`\sigma^*(\lambda_1)` and of :math:`\sigma^*(\lambda_2)` gives
:math:`A_1 + \lambda_1 B_1 \le A_2 + \lambda_1 B_2` and :math:`A_2 + \lambda_2 B_2 \le A_1 + \lambda_2 B_1`;
adding them, :math:`(\lambda_2 - \lambda_1)(B_2 - B_1) \le 0`, so :math:`B` does not increase with
:math:`\lambda`, and then the first inequality gives :math:`A_2 \ge A_1`. *Sharpening:* the
stationarity conditions give :math:`q_j = \sigma_j\bigl(1 + \lambda p(\sigma_j^{p-1} - S)\bigr)` with
:math:`S = \sum_i\sigma_i\,\sigma_i^{p-1}`, an average of :math:`\sigma_i^{p-1}`; at the largest entry
:math:`\sigma_j^{p-1} \le S`, so :math:`\max_j\sigma^*_j \ge \max_j q_j`. That the largest entry grows
monotonically in :math:`\lambda` is checked numerically. :math:`\blacksquare`

.. rubric:: What is checked

The minimiser is computed with ``scipy.optimize.minimize`` (BFGS) on the logit parametrisation
:math:`\sigma = \operatorname{softmax}(z)`, with value and gradient both from
:func:`sparse_reg.loss_and_grad` (``tau=1``, ``reduction="none"`` on :math:`K` copies of :math:`z`
labelled :math:`0, \dots, K-1`, rows weighted by :math:`q`), on each backend. It is started from the
previous :math:`\lambda`'s solution and from a point near :math:`e_{\arg\max q}`, keeping the better,
and is accepted only where the gradient vanishes. Along an increasing grid of :math:`\lambda`: the
order of :math:`q` is kept, no permutation of :math:`\sigma^*` has a lower objective (the swap
argument), the penalty does not increase, the cross entropy does not decrease, and the largest
entry grows. The published numbers above are reproduced to the digits given (at :math:`\lambda = 4` the small
entries are :math:`5.5\cdot 10^{-5}`, which rounds to the published :math:`10^{-4}`).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import sparse_reg as sr
from proofs._support import permutation_outputs, scaled_examples, simplex_points

optimize = pytest.importorskip("scipy.optimize")

#: The gradient norm below which a point counts as stationary.
GRAD_TOL = 1e-7


class PopulationObjective:
    """:math:`F_\\lambda(\\operatorname{softmax}(z))` and its gradient, from :func:`sparse_reg.loss_and_grad`."""

    def __init__(self, backend, to_numpy, q: np.ndarray, p: float, lam: float) -> None:
        self.backend, self.to_numpy, self.q, self.p, self.lam = backend, to_numpy, q, p, lam
        self.labels = np.arange(q.shape[0])

    def terms(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-label values and gradients of each row of logits: shapes (R, K) and (R, K, K)."""
        r, k = rows.shape
        value, grad = sr.loss_and_grad(self.backend.asarray(np.repeat(rows, k, axis=0)), np.tile(self.labels, r),
                                       tau=1.0, p=self.p, lam=self.lam, reduction="none")
        return self.to_numpy(value).reshape(r, k), self.to_numpy(grad).reshape(r, k, k)

    def __call__(self, z: np.ndarray) -> tuple[float, np.ndarray]:
        values, grads = self.terms(z[None])
        return float(self.q @ values[0]), self.q @ grads[0]

    def minimise(self, starts: list[np.ndarray]) -> np.ndarray:
        """The best stationary point reached by BFGS from the starting logits."""
        best, best_value = None, np.inf
        for start in starts:
            result = optimize.minimize(self, start, jac=True, method="BFGS", options={"gtol": 1e-10})
            value, grad = self(result.x)
            if np.linalg.norm(grad) <= GRAD_TOL and value < best_value:
                best, best_value = result.x, value
        assert best is not None, "BFGS reached no stationary point"
        return best


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


@scaled_examples(0.25)
@given(q=st.integers(3, 5).flatmap(lambda k: simplex_points(k, min_entry=0.05)), p=st.floats(0.05, 0.9),
       lams=st.lists(st.floats(0.05, 6.0), min_size=3, max_size=3, unique=True).map(sorted))
def test_minimiser_keeps_the_order_and_sharpens_with_lambda(proof_backend, numpy_of, q, p, lams):
    """Order of :math:`q` kept, penalty down, cross entropy up, largest entry up, as :math:`\\lambda` grows."""
    assume(np.min(np.diff(np.sort(q))) > 1e-3)
    k = q.shape[0]
    sharp = np.log(np.where(np.arange(k) == np.argmax(q), 1.0, 1e-3))
    z = PopulationObjective(proof_backend, numpy_of, q, p, 0.0).minimise([np.zeros(k)])
    np.testing.assert_allclose(softmax(z), q, atol=1e-6)  # sigma*(0) = q (Gibbs)
    previous = None
    for lam in [0.0, *lams]:
        objective = PopulationObjective(proof_backend, numpy_of, q, p, lam)
        z = objective.minimise([z, sharp])
        sigma = softmax(z)
        # The order of q is kept (weakly: tiny entries may round to equal values).
        assert np.all(np.diff(sigma[np.argsort(q)]) >= -1e-9)
        assert np.argmax(sigma) == np.argmax(q)
        # No rearrangement of sigma* does better: the swap argument.
        candidates = np.log(np.maximum(permutation_outputs(sigma), 1e-300))
        values, _ = objective.terms(candidates)
        assert np.all(values @ q >= objective(z)[0] - 1e-9)
        ce = float(-q @ np.log(sigma))
        penalty = float(np.sum(sigma**p))
        if previous is not None:
            assert penalty <= previous[1] + 1e-7
            assert ce >= previous[0] - 1e-7
            assert sigma.max() >= previous[2] - 1e-7
        assert sigma.max() >= q.max() - 1e-7
        previous = (ce, penalty, sigma.max())


def test_reproduces_the_published_minimisers(proof_backend, numpy_of):
    """:math:`K = 5, p = 0.1, q = (0.4, 0.15, \\dots)`: :math:`(0.525, 0.119, \\dots)` at :math:`\\lambda = 1`, :math:`(0.9998, 10^{-4}, \\dots)` at 4."""
    q = np.array([0.4, 0.15, 0.15, 0.15, 0.15])
    z = np.log(q)
    published = {1.0: (0.525, 0.119, 3), 4.0: (0.9998, 1e-4, 4)}
    for lam, (top, rest, digits) in published.items():
        z = PopulationObjective(proof_backend, numpy_of, q, 0.1, lam).minimise([z])
        sigma = softmax(z)
        assert round(float(sigma[0]), digits) == top
        assert all(round(float(entry), digits) == rest for entry in sigma[1:])
