r"""Normalised logits cap the softmax: what the official code optimises on CIFAR.

.. rubric:: Statement

With the logits replaced by :math:`n = z/\lVert z\rVert_2` before the temperature (the official
code's setting on CIFAR, ``normalize=True``), for :math:`K \ge 2` and :math:`\tau > 0`

.. math:: \max_{\lVert n\rVert_2 = 1}\ \max_j \operatorname{softmax}(n/\tau)_j
   = \frac{1}{1 + (K-1)\,\exp\!\bigl(-\sqrt{K/(K-1)}\,/\tau\bigr)},

attained at :math:`n \propto (K-1, -1, \dots, -1)`. At :math:`\tau = 0.5` this is :math:`0.4778` for
:math:`K = 10` and :math:`0.0701` for :math:`K = 100`: outputs can never approach one-hot, and the
cross entropy of the sharpened output is bounded below by :math:`-\log` of the cap
(:math:`0.7387` and :math:`2.6577`). The uniform direction :math:`n \propto \mathbf 1` gives the
largest penalty :math:`K^{1-p}` (:math:`7.9433` for :math:`K=10, p=0.1`).

.. rubric:: Proof

Let the top entry be the first. :math:`\sigma_1 = 1/\bigl(1 + \sum_{j>1} e^{(n_j - n_1)/\tau}\bigr)`.
By convexity of :math:`\exp`, :math:`\sum_{j>1} e^{(n_j - n_1)/\tau} \ge (K-1)\,e^{-w^\top n/\tau}` with
:math:`w = (1, -\tfrac1{K-1}, \dots, -\tfrac1{K-1})`, with equality when :math:`n_2 = \dots = n_K`. By
Cauchy–Schwarz :math:`w^\top n \le \lVert w\rVert = \sqrt{K/(K-1)}`, with equality at
:math:`n = w/\lVert w\rVert \propto (K-1, -1, \dots, -1)`, where the first equality also holds.
:math:`\blacksquare`

.. rubric:: What is checked

:func:`sparse_reg.sharpen` with ``normalize=True`` at the maximiser reproduces the closed form and
the published values :math:`0.4778` and :math:`0.0701` to four decimals, and :func:`sparse_reg.loss`
reproduces the bounds :math:`0.7387`, :math:`2.6577` and :math:`7.9433`. Random logits (any scale)
never exceed the cap (Gaussian directions and perturbations of the maximiser), for
:math:`K \in \{2, 10, 100\}` and :math:`\tau \in [0.1, 2]`. These shapes
are fixed, so the properties run on JAX too.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import sparse_reg as sr


def softmax_cap(k: int, tau: float) -> float:
    """The closed form of the statement."""
    return 1 / (1 + (k - 1) * math.exp(-math.sqrt(k / (k - 1)) / tau))


def maximiser(k: int, scale: float = 1.0) -> np.ndarray:
    """:math:`(K-1, -1, \\dots, -1)`, times ``scale`` (normalisation removes the scale)."""
    return scale * np.array([[k - 1.0] + [-1.0] * (k - 1)])


@pytest.mark.parametrize(("k", "published_cap", "published_ce"), [(10, 0.4778, 0.7387), (100, 0.0701, 2.6577)])
def test_cap_reproduces_the_published_values(fast_backend, numpy_of, k, published_cap, published_ce):
    """The maximum softmax entry at :math:`\\tau = 0.5` and its cross entropy match the published numbers."""
    s = numpy_of(sr.sharpen(fast_backend.asarray(maximiser(k, scale=3.7)), 0.5, normalize=True))[0]
    assert s.max() == pytest.approx(softmax_cap(k, 0.5), rel=1e-12)
    assert round(float(s.max()), 4) == published_cap
    ce = numpy_of(sr.loss(fast_backend.asarray(maximiser(k)), np.array([0]), tau=0.5, lam=0.0,
                          normalize=True, reduction="none"))[0]
    assert ce == pytest.approx(-math.log(softmax_cap(k, 0.5)), rel=1e-12)
    assert round(float(ce), 4) == published_ce


def test_uniform_direction_gives_the_largest_penalty(fast_backend, numpy_of):
    """:math:`n \\propto \\mathbf 1` makes the output uniform: penalty :math:`10^{0.9} = 7.9433` for :math:`K = 10`."""
    z = fast_backend.asarray(np.full((1, 10), 2.5))
    with_penalty = sr.loss(z, np.array([0]), tau=0.5, p=0.1, lam=1.0, normalize=True, reduction="none")
    without = sr.loss(z, np.array([0]), tau=0.5, p=0.1, lam=0.0, normalize=True, reduction="none")
    penalty = float(numpy_of(with_penalty)[0] - numpy_of(without)[0])
    assert penalty == pytest.approx(10**0.9, rel=1e-12)
    assert round(penalty, 4) == 7.9433


@pytest.mark.parametrize("k", [2, 10, 100])
@given(seed=st.integers(0, 2**32 - 1), scale=st.floats(1e-3, 1e3), noise=st.floats(0.0, 2.0),
       tau=st.floats(0.1, 2.0))
def test_random_logits_never_exceed_the_cap(fast_backend, numpy_of, k, seed, scale, noise, tau):
    """:math:`\\max_j \\operatorname{softmax}(z/(\\lVert z\\rVert\\tau))_j \\le` the cap, for logits of any scale.

    Half the rows are Gaussian directions, half are perturbations of the maximiser (of relative size
    ``noise``, in a random class): those probe the cap from close by.
    """
    rng = np.random.default_rng(seed)
    gaussian = rng.standard_normal((8, k))
    near = np.roll(maximiser(k) / k, rng.integers(k), axis=1) + noise * rng.standard_normal((8, k)) / k
    z = scale * np.concatenate([gaussian, near])
    s = numpy_of(sr.sharpen(fast_backend.asarray(z), tau, normalize=True))
    assert np.all(s.max(axis=1) <= softmax_cap(k, tau) * (1 + 1e-12))
