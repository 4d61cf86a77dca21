r"""Projection onto the permutation set :math:`\mathcal P_v`, hard and soft.

.. rubric:: Statement

For :math:`x, v \in \mathbb R^K`, the Euclidean projection of :math:`x` onto
:math:`\mathcal P_v = \{\Pi v\}` gives the :math:`r`-th smallest entry of :math:`v` to the
:math:`r`-th smallest entry of :math:`x`. It is idempotent, and for :math:`x` without ties it is
permutation equivariant: :math:`\operatorname{proj}(\Pi x) = \Pi\operatorname{proj}(x)`.

The SoftSort relaxation
:math:`\hat P = \operatorname{softmax}_\text{rows}\bigl(-\lvert\operatorname{sort}_\downarrow(z)\mathbf 1^\top - \mathbf 1 z^\top\rvert/\tau\bigr)`,
output :math:`\hat P^\top v_\downarrow`, satisfies, for :math:`v \in \Delta_{K-1}`:

* the output lies on the simplex (:math:`\hat P` is row stochastic);
* as :math:`\tau \to 0` it tends to the projection of :math:`z` onto :math:`\mathcal P_v`, when
  :math:`z` has no ties;
* after Sinkhorn normalisation, :math:`\hat P` is (nearly) doubly stochastic and the output lies in
  the permutohedron :math:`\operatorname{conv}\mathcal P_v`, i.e. it is majorised by :math:`v`:
  the sum of its :math:`m` largest entries is at most that of :math:`v` for every :math:`m`.
  Without Sinkhorn this can fail.

.. rubric:: Proof

:math:`\lVert x - \Pi v\rVert^2 = \lVert x\rVert^2 + \lVert v\rVert^2 - 2\,x^\top\Pi v`, and
:math:`x^\top \Pi v` is largest when the two vectors are sorted alike (rearrangement inequality).
A point of :math:`\mathcal P_v` is its own projection; relabelling the coordinates relabels the
sorted matching. For SoftSort, rows of :math:`\hat P` are non-negative and sum to one, so
:math:`\mathbf 1^\top\hat P^\top v = \mathbf 1^\top v = 1`; as :math:`\tau \to 0`, row :math:`r`
concentrates on the index of the :math:`r`-th largest logit. A doubly stochastic :math:`\hat P` is a
convex combination of permutation matrices (Birkhoff–von Neumann), and
:math:`\operatorname{conv}\mathcal P_v = \{u : u \prec v\}` (Rado). :math:`\blacksquare`

.. rubric:: What is checked

:func:`sparse_reg.project` against the brute-force nearest point over all :math:`K!` permutations
(:math:`K \le 7`), idempotence, equivariance, and :func:`sparse_reg.is_permutation_of` on the
result; :func:`sparse_reg.soft_project` on the simplex, within :math:`10^{-9}` of the projection at
:math:`\tau = 10^{-3}` for logits separated by at least :math:`0.05`, and majorised by :math:`v`
after 200 Sinkhorn iterations; the counter-example without Sinkhorn is found.
"""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import find, given
from hypothesis import strategies as st

import sparse_reg as sr
from proofs._support import FIND, simplex_points


@st.composite
def point_and_vector(draw: st.DrawFn, k_max: int = 7, distinct: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A point :math:`x` (on a grid of step 0.01, so ties occur unless ``distinct``) and :math:`v \\in \\Delta`."""
    k = draw(st.integers(2, k_max))
    x = np.array(draw(st.lists(st.integers(-300, 300), min_size=k, max_size=k, unique=distinct)), dtype=float) / 100
    return x, draw(simplex_points(k, positive=False))


def majorisation_gap(u: np.ndarray, v: np.ndarray) -> float:
    """:math:`\\max_m` of (sum of the :math:`m` largest of :math:`u`) minus (same for :math:`v`)."""
    return float(np.max(np.cumsum(np.sort(u)[::-1]) - np.cumsum(np.sort(v)[::-1])))


@given(problem=point_and_vector())
def test_project_is_the_nearest_permutation(proof_backend, numpy_of, problem):
    """:func:`sparse_reg.project` attains the brute-force minimum distance over all :math:`K!` permutations."""
    x, v = problem
    projected = numpy_of(sr.project(proof_backend.asarray(x[None]), proof_backend.asarray(v)))[0]
    assert numpy_of(sr.is_permutation_of(proof_backend.asarray(projected[None]), proof_backend.asarray(v)))[0]
    brute = min(np.sum((x - v[list(perm)]) ** 2) for perm in itertools.permutations(range(len(v))))
    assert np.sum((x - projected) ** 2) <= brute + 1e-12


@given(problem=point_and_vector(), perm=st.data())
def test_project_is_idempotent_and_equivariant(proof_backend, numpy_of, problem, perm):
    """:math:`\\operatorname{proj}\\circ\\operatorname{proj} = \\operatorname{proj}`; :math:`\\operatorname{proj}(\\Pi x) = \\Pi\\operatorname{proj}(x)` without ties."""
    x, v = problem
    vb = proof_backend.asarray(v)
    once = sr.project(proof_backend.asarray(x[None]), vb)
    np.testing.assert_array_equal(numpy_of(sr.project(once, vb)), numpy_of(once))
    order = np.array(perm.draw(st.permutations(range(len(x))), label="permutation"))
    if len(set(x.tolist())) == len(x):
        permuted = numpy_of(sr.project(proof_backend.asarray(x[order][None]), vb))[0]
        np.testing.assert_array_equal(permuted, numpy_of(once)[0][order])


@given(problem=point_and_vector(k_max=8), tau=st.floats(1e-3, 10.0))
def test_soft_project_stays_on_the_simplex(proof_backend, numpy_of, problem, tau):
    """Every row of :func:`sparse_reg.soft_project` is non-negative and sums to 1 when :math:`v \\in \\Delta`."""
    z, v = problem
    out = numpy_of(sr.soft_project(proof_backend.asarray(z[None]), proof_backend.asarray(v), tau))[0]
    assert np.all(out >= 0)
    np.testing.assert_allclose(out.sum(), 1.0, rtol=1e-12)


@given(problem=point_and_vector(k_max=8, distinct=True))
def test_soft_project_tends_to_project(proof_backend, numpy_of, problem):
    """At :math:`\\tau = 10^{-3}` and logits separated by :math:`\\ge 0.05` the soft output is the projection."""
    z, v = problem
    z = z * 5  # grid step 0.05: each off-rank weight is at most exp(-50)
    zb, vb = proof_backend.asarray(z[None]), proof_backend.asarray(v)
    soft = numpy_of(sr.soft_project(zb, vb, 1e-3))
    np.testing.assert_allclose(soft, numpy_of(sr.project(zb, vb)), rtol=0, atol=1e-9)


@given(problem=point_and_vector(k_max=6), tau=st.floats(0.2, 2.0))
def test_soft_project_with_sinkhorn_is_majorised_by_v(proof_backend, numpy_of, problem, tau):
    """With Sinkhorn the output lies in :math:`\\operatorname{conv}\\mathcal P_v`: :math:`\\hat P^\\top v \\prec v`."""
    z, v = problem
    out = numpy_of(sr.soft_project(proof_backend.asarray(z[None]), proof_backend.asarray(v), tau,
                                   sinkhorn_iterations=200))[0]
    assert majorisation_gap(out, v) <= 1e-6


def test_soft_project_without_sinkhorn_can_leave_the_permutohedron(proof_backend, numpy_of):
    """Counter-example: without Sinkhorn, an output not majorised by :math:`v` is found."""

    def leaves(problem: tuple[tuple[np.ndarray, np.ndarray], float]) -> bool:
        (z, v), tau = problem
        out = numpy_of(sr.soft_project(proof_backend.asarray(z[None]), proof_backend.asarray(v), tau))[0]
        return majorisation_gap(out, v) > 1e-3

    (z, v), tau = find(st.tuples(point_and_vector(k_max=6), st.floats(0.2, 2.0)), leaves,
                       settings=FIND)
    out = numpy_of(sr.soft_project(proof_backend.asarray(z[None]), proof_backend.asarray(v), tau,
                                   sinkhorn_iterations=200))[0]
    assert majorisation_gap(out, v) <= 1e-6  # the same input, with Sinkhorn, is back inside
