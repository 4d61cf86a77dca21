r"""Theorem 2: class-conditional noise on :math:`\mathcal P_v`, in three versions.

Label noise is class conditional: :math:`P(\tilde y = j \mid y = i, x) = \eta_{ij}`, with
:math:`\eta_i = \sum_{j\ne i}\eta_{ij}` and :math:`\eta_{ii} = 1 - \eta_i`. The noisy risk is
:math:`R^\eta_L(f) = \mathbb E\bigl[\sum_j \eta_{yj} L(f(x), j)\bigr]`. Throughout, :math:`L` is class
symmetric (Assumption A of Lemma 1) and outputs lie in :math:`\mathcal P_v`.

.. rubric:: Statement

**(a) Ghosh's conditions.** Let :math:`\ell_{\min} = \min_j L(v, j)`, :math:`\tilde L = L - \ell_{\min}`
and :math:`\tilde C = C_v - K\ell_{\min}`. If (1) :math:`f^*` is realisable,
:math:`L(f^*(x), y) = \ell_{\min}` almost surely; (2) :math:`0 \le \tilde L(u, j) \le \tilde C/(K-1)`
on :math:`\mathcal P_v`; and (3) :math:`\eta_{ij} < 1 - \eta_i` for all :math:`j \ne i`, then
:math:`f^*` minimises :math:`R^\eta_L` over every class :math:`\mathcal F` of maps into
:math:`\mathcal P_v` that contains it. For :math:`L(u, y) = \ell(u_y)`, conditions (1)–(2) hold
for :math:`v = (a, b, \dots, b)`, :math:`a > b`, but not for a general :math:`v`.

**(b) One-hot** :math:`v = e_1`. :math:`L(e_j, i) = a\,\mathbb 1[i = j] + b\,\mathbb 1[i \ne j]` with
:math:`a = L(e_1, 1)`, :math:`b = L(e_1, 2)`: the loss is an affine function
:math:`a + (b - a)\,\ell_{0\text{-}1}` of the 0-1 loss. With :math:`a < b` and :math:`\mathcal F`
all maps into :math:`\{e_1, \dots, e_K\}`, the noisy minimiser predicts
:math:`\arg\max_j \eta_{yj}` at each :math:`x`: the clean label exactly when
:math:`\eta_{yj} < 1 - \eta_y` for all :math:`j \ne y`.

**(c) Pointwise, any** :math:`v`. If :math:`L(u, y) = \ell(u_y)` on :math:`\mathcal P_v` with
:math:`\ell` strictly decreasing, and :math:`q` has distinct entries, the unique minimiser of
:math:`\sum_j q_j L(u, j)` over :math:`u \in \mathcal P_v` gives the :math:`r`-th largest entry of
:math:`v` to the :math:`r`-th largest entry of :math:`q`: it is the projection of :math:`q` onto
:math:`\mathcal P_v`. With :math:`q = (\eta_{yj})_j` the noisy minimiser predicts :math:`y` if and
only if :math:`\eta_{yj} < 1 - \eta_y` for all :math:`j \ne y`. Every built-in loss has this form on
:math:`\mathcal P_v`: the normalisers of NCE, NFL and NGCE and the term :math:`\lVert u\rVert^2` of
MSE are constant there.

.. rubric:: Proof

*Part (a).* By (1), (2) and Lemma 1, :math:`\tilde L(f^*(x), j) = \tilde C/(K-1)` for :math:`j \ne y`. Hence

.. math:: R^\eta(f) - R^\eta(f^*) = \mathbb E\Bigl[(1-\eta_y)\tilde L(f, y)
   - \sum_{j\ne y}\eta_{yj}\bigl(\tfrac{\tilde C}{K-1} - \tilde L(f, j)\bigr)\Bigr]
   \ge \mathbb E\bigl[(1 - \eta_y - \max_{j\ne y}\eta_{yj})\,\tilde L(f, y)\bigr] \ge 0,

using :math:`\sum_{j\ne y}(\tilde C/(K-1) - \tilde L(f, j)) = \tilde L(f, y)` (Lemma 1 again).

*Part (b).* Assumption A with :math:`\Pi` mapping :math:`e_1` to :math:`e_j` gives :math:`L(e_j, j) = L(e_1, 1)`
and, permuting the other labels among themselves, :math:`L(e_j, i) = L(e_1, 2)` for :math:`i\ne j`.
The noisy risk at :math:`x` of predicting :math:`e_c` is :math:`b - (b - a)\,\eta_{yc}`, smallest at
:math:`c = \arg\max_j \eta_{yj}`.

*Part (c).* The rearrangement inequality: :math:`\sum_j q_j \ell(u_j)` with :math:`\ell` decreasing is
smallest when the largest :math:`u_j` meet the largest :math:`q_j`, uniquely if both are distinct.
The largest entry of :math:`q = (\eta_{yj})_j` is at :math:`y` iff :math:`\eta_{yy} > \eta_{yj}` for
all :math:`j \ne y`. :math:`\blacksquare`

.. rubric:: What is checked

Every registered loss, random transition matrices that satisfy and that violate
:math:`\eta_{ij} < 1 - \eta_i`, values from :func:`sparse_reg.loss`:

* (a) conditions (1)–(2) hold for :math:`v = (a, b, \dots, b)` and one-hot :math:`v`, and
  :math:`f^*` minimises the noisy risk over every map :math:`\mathcal X \to \mathcal P_v`
  (enumerated); with condition (3) violated a counter-example is found; with a general :math:`v`
  a realisable :math:`f^*` that is not a noisy minimiser is found (the caveat).
* (b) the loss table on one-hot outputs is :math:`aI + b(\mathbf 1\mathbf 1^\top - I)` with
  :math:`a < b`, the risk is affine in the 0-1 risk, and the enumerated noisy minimiser is the
  row-wise argmax of :math:`\eta`: the clean classifier exactly when the condition holds.
* (c) the enumerated minimiser over :math:`\mathcal P_v` equals :func:`sparse_reg.project` of
  :math:`q`, and it predicts :math:`y` exactly when the condition holds.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, find, given
from hypothesis import strategies as st

import sparse_reg as sr
from proofs._support import (
    FIND,
    LOSSES,
    all_maps,
    argmin_set,
    loss_table,
    one_hot_logits,
    permutation_outputs,
    risks,
    scaled_examples,
)

RTOL = 1e-12


@st.composite
def transition_matrices(draw: st.DrawFn, k: int, condition: bool | None = None) -> np.ndarray:
    """A row-stochastic :math:`(\\eta_{ij})` with entries on a grid (no near-ties).

    ``condition=True`` forces :math:`\\eta_{ii} > \\eta_{ij}` in every row, ``False`` breaks it in at
    least one row, ``None`` leaves it to chance.
    """
    weights = np.array(draw(st.lists(st.lists(st.integers(0, 20), min_size=k, max_size=k),
                                     min_size=k, max_size=k)), dtype=float)
    if condition is True:
        off = weights * (1 - np.eye(k))
        weights[np.diag_indices(k)] = off.max(axis=1) + 1 + np.diag(weights)
    elif condition is False:
        row = draw(st.integers(0, k - 1))
        other = draw(st.sampled_from([j for j in range(k) if j != row]))
        weights[row, other] = weights[row, row] + draw(st.integers(0, 5))
    weights[weights.sum(axis=1) == 0] = 1.0
    return weights / weights.sum(axis=1, keepdims=True)


def condition_holds(eta: np.ndarray, row: int) -> bool:
    """:math:`\\eta_{ij} < 1 - \\eta_i = \\eta_{ii}` for every :math:`j \\ne i`, at row :math:`i`."""
    return bool(np.all(np.delete(eta[row], row) < eta[row, row]))


def two_level_logits(draw: st.DrawFn, k: int) -> np.ndarray:
    """Logits of :math:`v = (a, b, \\dots, b)` with :math:`a > b`: one-hot, or strictly positive."""
    if draw(st.booleans(), label="one-hot v"):
        return one_hot_logits(k)
    b = draw(st.floats(0.01, 1 / k - 0.01), label="b")
    return np.log(np.array([1 - (k - 1) * b] + [b] * (k - 1)))


def noisy_risks_and_f_star(table: np.ndarray, outputs: np.ndarray, labels: np.ndarray,
                           eta: np.ndarray) -> tuple[np.ndarray, int]:
    """Noisy risk of every map into the output set, and the index of :math:`f^*`.

    :math:`f^*` sends each :math:`x` to the output whose largest entry sits at its clean label (the
    first such output, when several exist).
    """
    maps = all_maps(len(labels), len(outputs))
    hot = np.argmax(outputs, axis=1)
    f_star = [int(np.flatnonzero(hot == y)[0]) for y in labels]
    index = int(np.flatnonzero(np.all(maps == f_star, axis=1))[0])
    return risks(table, maps, eta[labels]), index


@pytest.mark.parametrize("base", LOSSES)
@scaled_examples(0.5)
@given(data=st.data())
def test_a_ghosh_conditions_make_f_star_a_noisy_minimiser(proof_backend, numpy_of, base, data):
    """(a): realisable, bounded, :math:`\\eta_{ij} < 1 - \\eta_i` => :math:`f^*` minimises :math:`R^\\eta`."""
    k = data.draw(st.integers(2, 4), label="K")
    outputs = permutation_outputs(two_level_logits(data.draw, k))
    table = loss_table(proof_backend, outputs, base, numpy_of)
    # Conditions (1) and (2): L takes the value l_min at the label and C~/(K-1) + l_min elsewhere.
    l_min = table.min()
    shifted, c_tilde = table - l_min, table[0].sum() - k * l_min
    hot = np.argmax(outputs, axis=1)
    np.testing.assert_allclose(shifted[np.arange(k), hot], 0.0, atol=RTOL * max(1.0, c_tilde))
    assert np.all(shifted <= c_tilde / (k - 1) * (1 + RTOL) + RTOL)

    n = data.draw(st.integers(1, 3), label="n")
    labels = np.array(data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n), label="y"))
    eta = data.draw(transition_matrices(k, condition=True), label="eta")
    noisy, f_star = noisy_risks_and_f_star(table, outputs, labels, eta)
    assert f_star in argmin_set(noisy)


def test_a_violated_noise_condition_gives_a_counter_example(proof_backend, numpy_of):
    """(a) with :math:`\\eta_{ij} \\ge 1 - \\eta_i` somewhere: a data set where :math:`f^*` is not optimal."""
    k = 3
    outputs = permutation_outputs(one_hot_logits(k))
    table = loss_table(proof_backend, outputs, "ce", numpy_of)

    def f_star_not_optimal(problem: tuple[np.ndarray, list[int]]) -> bool:
        eta, labels = problem
        noisy, f_star = noisy_risks_and_f_star(table, outputs, np.array(labels), eta)
        return f_star not in argmin_set(noisy)

    problems = st.tuples(transition_matrices(k, condition=False),
                         st.lists(st.integers(0, k - 1), min_size=1, max_size=3))
    eta, labels = find(problems, f_star_not_optimal,
                       settings=FIND)
    assert not all(condition_holds(eta, y) for y in labels)


def test_a_general_vector_breaks_the_ghosh_transfer(proof_backend, numpy_of):
    """Caveat of (a): with distinct entries of :math:`v`, a realisable :math:`f^*` can lose to another map
    even under :math:`\\eta_{ij} < 1 - \\eta_i` (condition (2) fails)."""
    k = 3

    @st.composite
    def problems(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
        weights = draw(st.lists(st.integers(1, 9), min_size=k, max_size=k, unique=True))
        outputs = permutation_outputs(np.log(np.array(weights) / sum(weights)))
        label = draw(st.integers(0, k - 1))
        realisable = [i for i, u in enumerate(outputs) if np.argmax(u) == label]
        return outputs, draw(transition_matrices(k, condition=True)), label, np.array(realisable)

    def some_realisable_map_loses(problem: tuple[np.ndarray, np.ndarray, int, np.ndarray]) -> bool:
        outputs, eta, label, realisable = problem
        table = loss_table(proof_backend, outputs, "ce", numpy_of)
        noisy = risks(table, all_maps(1, len(outputs)), eta[[label]])
        return not set(realisable.tolist()) <= argmin_set(noisy)

    problem = find(problems(), some_realisable_map_loses, settings=FIND)
    assert all(condition_holds(problem[1], y) for y in range(k))
    assert some_realisable_map_loses(problem)


@pytest.mark.parametrize("base", LOSSES)
@scaled_examples(0.5)
@given(data=st.data())
def test_b_one_hot_loss_is_affine_in_zero_one_loss(proof_backend, numpy_of, base, data):
    """(b): :math:`L = a + (b-a)\\ell_{0\\text{-}1}` on one-hot outputs; the noisy minimiser is :math:`\\arg\\max_j \\eta_{yj}`."""
    k = data.draw(st.integers(2, 4), label="K")
    outputs = np.stack([one_hot_logits(k, hot=j) for j in range(k)])
    table = loss_table(proof_backend, outputs, base, numpy_of)
    a, b = table[0, 0], table[0, 1]
    assert a < b
    np.testing.assert_allclose(table, a * np.eye(k) + b * (1 - np.eye(k)), rtol=RTOL, atol=0)

    n = data.draw(st.integers(1, 3), label="n")
    labels = np.array(data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n), label="y"))
    maps = all_maps(n, k)
    zero_one = np.mean(maps != labels, axis=1)
    np.testing.assert_allclose(risks(table, maps, np.eye(k)[labels]), a + (b - a) * zero_one,
                               rtol=RTOL, atol=RTOL * b)

    eta = data.draw(transition_matrices(k), label="eta")
    assume(all(np.sum(eta[y] == eta[y].max()) == 1 for y in labels))
    predicted = np.argmax(eta[labels], axis=1)
    minimisers = argmin_set(risks(table, maps, eta[labels]))
    assert minimisers == {int(np.flatnonzero(np.all(maps == predicted, axis=1))[0])}
    # The clean classifier is recovered exactly when the noise condition holds at every label seen.
    assert (predicted.tolist() == labels.tolist()) == all(condition_holds(eta, y) for y in labels)


@pytest.mark.parametrize("base", LOSSES)
@scaled_examples(0.5)
@given(data=st.data())
def test_c_pointwise_minimiser_is_the_projection_of_the_posterior(proof_backend, numpy_of, base, data):
    """(c): :math:`\\arg\\min_{u\\in\\mathcal P_v}\\sum_j q_j L(u, j) = \\operatorname{project}(q, v)`."""
    k = data.draw(st.integers(2, 5), label="K")
    weights = data.draw(st.lists(st.integers(1, 30), min_size=k, max_size=k, unique=True), label="v")
    v = np.array(weights, dtype=float) / sum(weights)
    outputs = permutation_outputs(v)
    table = loss_table(proof_backend, np.log(outputs), base, numpy_of)
    # The hypothesis of (c): L(u, j) is a strictly decreasing function of u_j on P_v.
    for entry in v:
        at_entry = table[outputs == entry]
        np.testing.assert_allclose(at_entry, at_entry[0], rtol=1e-10, atol=1e-12)
    by_entry = [table[outputs == entry][0] for entry in np.sort(v)]
    assert np.all(np.diff(by_entry) < 0)

    eta = data.draw(transition_matrices(k), label="eta")
    label = data.draw(st.integers(0, k - 1), label="y")
    q = eta[label]
    assume(len(set(q.tolist())) == k)
    objective = table @ q
    (best,) = argmin_set(objective)
    np.testing.assert_allclose(outputs[best], numpy_of(sr.project(proof_backend.asarray(q), proof_backend.asarray(v))),
                               rtol=RTOL)
    assert (np.argmax(outputs[best]) == label) == condition_holds(eta, label)
