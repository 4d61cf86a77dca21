r"""Theorem 3: choosing settings by accuracy on held-out *noisy* labels.

A classifier :math:`h` has, on the clean distribution, the joint confusion
:math:`C_{ij} = P(y = i, h(x) = j)` and the clean accuracy :math:`A(h) = \sum_i C_{ii}`. Its held-out
labels are noisy with the class-conditional transition :math:`T_{ij} = P(\tilde y = j \mid y = i)`,
drawn independently of :math:`h(x)` given :math:`y`, so its *noisy accuracy* is
:math:`N(h) = P(h(x) = \tilde y) = \sum_{i,j} C_{ij} T_{ij}`. This is what ``python -m
sparse_reg.train tune`` maximises.

.. rubric:: Statement

**(a) Symmetric noise.** With :math:`T_{ii} = 1 - \eta` and :math:`T_{ij} = \eta/(K-1)` for
:math:`j \ne i`,

.. math:: N(h) = \frac{\eta}{K-1} + \Bigl(1 - \frac{\eta K}{K-1}\Bigr) A(h)
   \qquad\text{for every } h,

an increasing affine function of :math:`A` exactly when :math:`\eta < (K-1)/K`: then the
classifier of highest noisy accuracy has the highest clean accuracy, and selecting by
:math:`N` is selecting by :math:`A`. At :math:`\eta = (K-1)/K` :math:`N` is constant, above it the
order reverses.

**(b) Class-conditional noise.** Let :math:`m_i = \min_{j\ne i} T_{ij}`, the margins
:math:`s_i = T_{ii} - m_i` with :math:`s_{\min} \le s_i \le s_{\max}`, and the off-diagonal spread
:math:`\varepsilon = \max_i (\max_{j \ne i} T_{ij} - m_i)`. If the classes are balanced
(:math:`P(y = i) = 1/K`) or all :math:`s_i` are equal, and :math:`s_{\max} > \varepsilon`, then
:math:`N(h) \ge N(h')` implies

.. math:: A(h) \ge \frac{s_{\min} A(h') - \varepsilon}{s_{\max} - \varepsilon}
   \quad\text{(balanced classes),}

and for equal margins :math:`s`, :math:`A(h) \ge A(h') - \varepsilon\,(1 - A(h'))/(s - \varepsilon)`.
So the noisy choice loses at most :math:`\varepsilon(1 - A^*)/(s - \varepsilon)` of clean accuracy
against the best :math:`A^*`; it is exact when the off-diagonal of every row is uniform
(:math:`\varepsilon = 0`, symmetric noise). Asymmetric noise, where a class flips into one other
class, has :math:`\varepsilon` equal to the flip rate: the guarantee is then weak and the noisy
choice can be wrong.

.. rubric:: Proof

*(a)* :math:`N(h) = \sum_i C_{ii}(1-\eta) + \sum_{i \ne j} C_{ij}\,\eta/(K-1) = (1-\eta) A +
\eta (1 - A)/(K-1)`, since the off-diagonal of :math:`C` sums to :math:`1 - A`.

*(b)* Write :math:`\pi_i = \sum_j C_{ij}` and :math:`a_i = C_{ii}`. Row :math:`i` contributes
:math:`a_i T_{ii} + \sum_{j\ne i} C_{ij} T_{ij}`, and :math:`m_i (\pi_i - a_i) \le \sum_{j \ne i}
C_{ij} T_{ij} \le (m_i + \varepsilon)(\pi_i - a_i)`. Hence

.. math:: c + \sum_i s_i a_i \;\le\; N(h) \;\le\; c + \sum_i s_i a_i + \varepsilon (1 - A(h)),
   \qquad c = \sum_i m_i \pi_i ,

with :math:`c` the same for every :math:`h` (the class prior is fixed). With
:math:`s_{\min} A \le \sum_i s_i a_i \le s_{\max} A`, :math:`N(h) \ge N(h')` gives
:math:`s_{\max} A(h) + \varepsilon(1 - A(h)) \ge s_{\min} A(h')`, which rearranges to the bound;
with equal margins :math:`s_{\min} = s_{\max} = s`, and
:math:`(sA' - \varepsilon)/(s - \varepsilon) = A' - \varepsilon(1 - A')/(s - \varepsilon)`.
The bound holds for any class prior; balance is not needed for it. :math:`\blacksquare`

.. rubric:: What is checked

* (a) on random confusions, :math:`K \le 10` and :math:`\eta \in [0, 1)`, with the transition
  matrix that :func:`sparse_reg.noise.symmetric` records, to :math:`10^{-12}`; and the
  reversal above :math:`(K-1)/K` on a pair of classifiers.
* (b) on random class-conditional transitions and pairs of random confusions, and on the
  transition that :func:`sparse_reg.noise.asymmetric` records for the MNIST class map.
* Counter-example: under the MNIST asymmetric map at rate 0.4 a pair of classifiers is found whose
  noisy accuracies are in the opposite order to their clean accuracies, so the asymmetric
  guarantee is only the bound.
"""

from __future__ import annotations

import numpy as np
from hypothesis import find, given
from hypothesis import strategies as st

import sparse_reg as sr
from proofs._support import FIND

TOL = 1e-12


@st.composite
def confusions(draw: st.DrawFn, k: int, prior: np.ndarray | None = None) -> np.ndarray:
    """A joint confusion :math:`C_{ij} = P(y=i, h=j)`; with ``prior`` its rows sum to the prior."""
    weights = np.array(
        draw(st.lists(st.integers(0, 20), min_size=k * k, max_size=k * k), label="confusion"), dtype=float
    ).reshape(k, k)
    weights[np.arange(k), np.arange(k)] += 1e-3  # no empty row
    if prior is None:
        return weights / weights.sum()
    return weights / weights.sum(axis=1, keepdims=True) * prior[:, None]


@st.composite
def transitions(draw: st.DrawFn, k: int) -> np.ndarray:
    """A row-stochastic class-conditional transition with a dominant diagonal."""
    off = np.array(
        draw(st.lists(st.integers(0, 10), min_size=k * k, max_size=k * k), label="off-diagonal"), dtype=float
    ).reshape(k, k)
    np.fill_diagonal(off, 0.0)
    keep = np.array(draw(st.lists(st.floats(0.3, 1.0), min_size=k, max_size=k), label="T_ii"))
    rows = off / np.maximum(off.sum(axis=1, keepdims=True), 1.0) * (1 - keep)[:, None]
    rows[np.arange(k), np.arange(k)] = 1 - rows.sum(axis=1)
    return rows


def noisy_accuracy(confusion: np.ndarray, transition: np.ndarray) -> float:
    """:math:`N(h) = \\sum_{ij} C_{ij} T_{ij}`."""
    return float(np.sum(confusion * transition))


def clean_accuracy(confusion: np.ndarray) -> float:
    return float(np.trace(confusion))


def margins(transition: np.ndarray) -> tuple[np.ndarray, float]:
    """The margins :math:`s_i = T_{ii} - \\min_{j\\ne i} T_{ij}` and the spread :math:`\\varepsilon`."""
    k = transition.shape[0]
    off = transition[~np.eye(k, dtype=bool)].reshape(k, k - 1)
    low = off.min(axis=1)
    return np.diag(transition) - low, float(np.max(off.max(axis=1) - low))


def library_symmetric(k: int, eta: float) -> np.ndarray:
    labels = np.repeat(np.arange(k), 3)
    return np.asarray(sr.noise.symmetric(labels, eta, k, seed=0).transition)


def mnist_asymmetric(rate: float) -> np.ndarray:
    labels = np.repeat(np.arange(10), 5)
    return np.asarray(sr.noise.asymmetric(labels, rate, preset="mnist", seed=0).transition)


@given(data=st.data())
def test_symmetric_noisy_accuracy_is_affine_in_clean_accuracy(data):
    """(a): :math:`N = \\eta/(K-1) + (1 - \\eta K/(K-1)) A` for the library's symmetric transition."""
    k = data.draw(st.integers(2, 10), label="K")
    eta = data.draw(st.floats(0.0, 0.99), label="eta")
    confusion = data.draw(confusions(k))
    predicted = eta / (k - 1) + (1 - eta * k / (k - 1)) * clean_accuracy(confusion)
    np.testing.assert_allclose(noisy_accuracy(confusion, library_symmetric(k, eta)), predicted, atol=TOL)


@given(data=st.data())
def test_symmetric_order_is_kept_below_and_reversed_above_the_threshold(data):
    """(a): below :math:`(K-1)/K` the noisy order of two classifiers is the clean one, above it reversed."""
    k = data.draw(st.integers(2, 10), label="K")
    first, second = data.draw(confusions(k)), data.draw(confusions(k))
    gap = clean_accuracy(first) - clean_accuracy(second)
    if abs(gap) < 1e-6:
        return
    threshold = (k - 1) / k
    below = data.draw(st.floats(0.0, threshold - 1e-3), label="eta below")
    above = data.draw(st.floats(threshold + 1e-3, 0.99), label="eta above")
    for eta, sign in ((below, 1), (above, -1)):
        t = library_symmetric(k, eta)
        assert sign * gap * (noisy_accuracy(first, t) - noisy_accuracy(second, t)) > 0


@given(data=st.data())
def test_class_conditional_selection_bound(data):
    """(b): :math:`N(h) \\ge N(h')` implies :math:`A(h) \\ge (s_{\\min} A(h') - \\varepsilon)/(s_{\\max} - \\varepsilon)`."""
    k = data.draw(st.integers(2, 8), label="K")
    transition = data.draw(transitions(k))
    prior = np.full(k, 1.0 / k)
    if data.draw(st.booleans(), label="library MNIST asymmetric map"):
        k, prior = 10, np.full(10, 0.1)
        transition = mnist_asymmetric(data.draw(st.floats(0.0, 0.45), label="rate"))
    first, second = data.draw(confusions(k, prior)), data.draw(confusions(k, prior))
    s, eps = margins(transition)
    if s.max() <= eps:
        return
    if noisy_accuracy(first, transition) < noisy_accuracy(second, transition):
        first, second = second, first
    bound = (s.min() * clean_accuracy(second) - eps) / (s.max() - eps)
    assert clean_accuracy(first) >= bound - TOL


def test_asymmetric_noise_can_reverse_the_order():
    """Counter-example: under the MNIST map at rate 0.4 the noisy order can contradict the clean one."""
    transition = mnist_asymmetric(0.4)
    prior = np.full(10, 0.1)

    def reversed_pair(pair: tuple[np.ndarray, np.ndarray]) -> bool:
        first, second = pair
        return clean_accuracy(first) > clean_accuracy(second) + 1e-3 and (
            noisy_accuracy(first, transition) < noisy_accuracy(second, transition) - 1e-3
        )

    find(st.tuples(confusions(10, prior), confusions(10, prior)), reversed_pair, settings=FIND)
