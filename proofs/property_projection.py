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
after 200 Sinkhorn iterations up to the bound the remaining column error allows; the
counter-example without Sinkhorn is found.

After finitely many iterations (rows normalised last) :math:`\hat P` has unit row sums and column
sums :math:`c_j`, which converge to 1 only linearly, slowly when :math:`\hat P` has entries near
:math:`e^{-30}` (small :math:`\tau`, spread logits). For a top-:math:`m` set :math:`S` of the output,
:math:`\sum_{j\in S} u_j = \sum_r w_r v_{(r)}` with :math:`w_r = \sum_{j\in S}\hat P_{rj} \in [0,1]`
and :math:`\sum_r w_r = \sum_{j\in S} c_j \le m + \delta`, :math:`\delta = \sum_j (c_j - 1)^+`, so
for :math:`v \ge 0` the majorisation gap is at most :math:`\delta\max_k v_k`. The column sums are
read from the public function itself: with :math:`v = \mathbf 1/K` the output is :math:`c/K`.
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


#: Float64 rounding allowed on top of the bound (K <= 8 terms, each within a few ulps of its value).
ROUNDING = 1e-12

SINKHORN_ITERATIONS = 200


def sinkhorn_gap_bound(backend, numpy_of, z: np.ndarray, v: np.ndarray, tau: float) -> float:
    """:math:`\\delta \\max_k v_k` (module docstring): the largest majorisation gap that the column
    error :math:`\\delta` left after :data:`SINKHORN_ITERATIONS` allows, plus float64 rounding."""
    k = len(v)
    uniform = backend.asarray(np.full(k, 1.0 / k))
    columns = k * numpy_of(sr.soft_project(backend.asarray(z[None]), uniform, tau,
                                           sinkhorn_iterations=SINKHORN_ITERATIONS))[0]
    return float(np.max(v) * np.sum(np.clip(columns - 1.0, 0.0, None))) + ROUNDING


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
                                   sinkhorn_iterations=SINKHORN_ITERATIONS))[0]
    assert majorisation_gap(out, v) <= sinkhorn_gap_bound(proof_backend, numpy_of, z, v, tau)


def test_a_slowly_converging_sinkhorn_is_majorised_within_its_column_error(proof_backend, numpy_of):
    """Entries near :math:`e^{-20}` leave a column error after 200 iterations: the gap (4e-5) is far
    above a fixed :math:`10^{-6}`, yet within :math:`\\delta\\max_k v_k`."""
    z = np.array([-1.58, 0.25, 1.78, -1.76, -2.33, 1.81])
    v = np.array([0.3106229503757563, 0.008005797356396286, 0.0, 0.2858898160963793, 0.395481436171468, 0.0])
    tau = 0.2001
    out = numpy_of(sr.soft_project(proof_backend.asarray(z[None]), proof_backend.asarray(v), tau,
                                   sinkhorn_iterations=SINKHORN_ITERATIONS))[0]
    gap = majorisation_gap(out, v)
    assert 1e-5 < gap <= sinkhorn_gap_bound(proof_backend, numpy_of, z, v, tau)


def test_soft_project_without_sinkhorn_can_leave_the_permutohedron(proof_backend, numpy_of):
    """Counter-example: without Sinkhorn, an output not majorised by :math:`v` is found."""

    def leaves(problem: tuple[tuple[np.ndarray, np.ndarray], float]) -> bool:
        (z, v), tau = problem
        out = numpy_of(sr.soft_project(proof_backend.asarray(z[None]), proof_backend.asarray(v), tau))[0]
        return majorisation_gap(out, v) > 1e-3

    (z, v), tau = find(st.tuples(point_and_vector(k_max=6), st.floats(0.2, 2.0)), leaves,
                       settings=FIND)
    out = numpy_of(sr.soft_project(proof_backend.asarray(z[None]), proof_backend.asarray(v), tau,
                                   sinkhorn_iterations=SINKHORN_ITERATIONS))[0]
    # The same input, with Sinkhorn, is back inside (up to what the column error allows).
    assert majorisation_gap(out, v) <= sinkhorn_gap_bound(proof_backend, numpy_of, z, v, tau)
