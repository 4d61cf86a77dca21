r"""The closed-form gradient of every base loss and of the sparse-regularized objective.

.. rubric:: Statement

For logits :math:`z`, :math:`\ell = \log\operatorname{softmax}(z/\tau)`, :math:`s = e^\ell` and
:math:`J(z, y) = L(s, y) + \lambda\sum_k s_k^p`, let :math:`g = \partial L/\partial\ell + \lambda p\,s^p`
(the loss registry supplies :math:`\partial L/\partial \ell` in closed form). Then

.. math:: \frac{\partial J}{\partial z} = \frac1\tau\Bigl(g - s\sum_k g_k\Bigr),

followed, with ``normalize=True``, by :math:`(d - n\,(n\cdot d))/\lVert z\rVert` for
:math:`n = z/\lVert z\rVert`. In particular the penalty's own gradient is

.. math:: \frac{\partial}{\partial z_j}\sum_i s_i^p = \frac p\tau\Bigl(s_j^p - s_j\sum_i s_i^p\Bigr),

whose components sum to zero, and which is :math:`\le 0` at the argmax and :math:`\ge 0` at the
argmin: gradient descent raises the largest logit and lowers the smallest, a self-confirming
sharpening whose strength grows with :math:`\lambda`.

.. rubric:: Proof

:math:`\partial\ell_k/\partial u_j = \mathbb 1[k=j] - s_j` for :math:`u = z/\tau`, so
:math:`\partial J/\partial u_j = g_j - s_j\sum_k g_k`; divide by :math:`\tau` for :math:`z`. For the
penalty, :math:`g = p\,s^p`. Its components sum to :math:`\frac p\tau(S - S) = 0` with
:math:`S = \sum_i s_i^p`. Since :math:`S = \sum_i s_i\,s_i^{p-1}` is an :math:`s`-weighted mean of
:math:`s_i^{p-1}`, which is decreasing in :math:`s_i`, the bracket :math:`s_j(s_j^{p-1} - S)` is
:math:`\le 0` at the largest :math:`s_j` and :math:`\ge 0` at the smallest. The normalisation step
is the chain rule through :math:`z \mapsto z/\lVert z\rVert`, whose Jacobian is
:math:`(I - nn^\top)/\lVert z\rVert`. :math:`\blacksquare`

.. rubric:: What is checked

For every registered loss with a closed-form gradient, with random parameters, :math:`\tau`,
:math:`p \in (0, 1]`, :math:`\lambda`, with and without normalisation and the official clamp, and
every reduction: :func:`sparse_reg.loss_and_grad` on each backend equals PyTorch autograd through
the array-API reference (``fused=False``) in float64, and its value equals :func:`sparse_reg.loss`.
The fused PyTorch path's backward equals the same autograd. The penalty gradient, read off as the
difference of two :func:`sparse_reg.loss_and_grad` calls, sums to zero with the stated signs.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import sparse_reg as sr
from proofs._support import LOSSES_WITH_GRAD, base_params

torch = pytest.importorskip("torch")

TORCH_DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@st.composite
def problems(draw: st.DrawFn, base: str) -> dict:
    """Logits, labels and the objective's arguments."""
    n, k = draw(st.integers(1, 4)), draw(st.integers(2, 8))
    # A grid of step 0.01 keeps every row's norm away from the normalisation clamp (1e-12), where
    # the function has a kink and autograd's choice of subgradient is arbitrary.
    logits = np.array(draw(st.lists(st.lists(st.integers(-500, 500), min_size=k, max_size=k),
                                    min_size=n, max_size=n)), dtype=float) / 100
    logits[np.all(logits == 0, axis=1), 0] = 0.5
    return dict(
        logits=logits,
        labels=np.array(draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))),
        args=dict(base=base, tau=draw(st.floats(0.2, 2.0)), p=draw(st.floats(0.05, 1.0)),
                  lam=draw(st.floats(0.0, 3.0)), normalize=draw(st.booleans()),
                  clamp=draw(st.sampled_from([None, 1e-7])), reduction=draw(st.sampled_from(["none", "mean", "sum"])),
                  **draw(base_params(base))),
    )


def autograd_reference(logits: np.ndarray, labels: np.ndarray, args: dict) -> tuple[np.ndarray, np.ndarray]:
    """Value and gradient by PyTorch autograd through the array-API formulas (no closed form)."""
    z = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    value = sr.loss(z, torch.as_tensor(labels), fused=False, **args)
    # With reduction="none" the rows are independent, so the gradient of the sum holds each row's own.
    (grad,) = torch.autograd.grad(value.sum(), z)
    return value.detach().numpy(), grad.numpy()


@pytest.mark.parametrize("base", LOSSES_WITH_GRAD)
@given(data=st.data())
def test_closed_form_gradient_equals_autograd(proof_backend, numpy_of, base, data):
    """:func:`sparse_reg.loss_and_grad` = autograd of the reference, value and gradient, in float64."""
    problem = data.draw(problems(base))
    expected_value, expected_grad = autograd_reference(**problem)
    z = proof_backend.asarray(problem["logits"])
    value, grad = sr.loss_and_grad(z, problem["labels"], **problem["args"])
    np.testing.assert_allclose(numpy_of(value), expected_value, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(numpy_of(sr.loss(z, problem["labels"], **problem["args"])), expected_value,
                               rtol=1e-10, atol=1e-12)
    scale = max(1.0, float(np.max(np.abs(expected_grad))))
    np.testing.assert_allclose(numpy_of(grad), expected_grad, rtol=1e-9, atol=1e-11 * scale)


@pytest.mark.parametrize("device", TORCH_DEVICES)
@pytest.mark.parametrize("base", LOSSES_WITH_GRAD)
@given(data=st.data())
def test_fused_torch_backward_equals_autograd(device, base, data):
    """The fused ``autograd.Function`` (closed-form backward) = autograd of the reference."""
    problem = data.draw(problems(base))
    expected_value, expected_grad = autograd_reference(**problem)
    z = torch.tensor(problem["logits"], dtype=torch.float64, device=device, requires_grad=True)
    value = sr.loss(z, torch.as_tensor(problem["labels"], device=device), **problem["args"])
    (grad,) = torch.autograd.grad(value.sum(), z)
    np.testing.assert_allclose(value.detach().cpu().numpy(), expected_value, rtol=1e-10, atol=1e-12)
    scale = max(1.0, float(np.max(np.abs(expected_grad))))
    np.testing.assert_allclose(grad.cpu().numpy(), expected_grad, rtol=1e-9, atol=1e-11 * scale)


@given(logits=st.lists(st.integers(-400, 400), min_size=2, max_size=10, unique=True),
       tau=st.floats(0.2, 2.0), p=st.floats(0.05, 0.95), lam=st.floats(0.1, 5.0))
def test_penalty_gradient_sharpens_towards_the_argmax(proof_backend, numpy_of, logits, tau, p, lam):
    """:math:`\\lambda\\nabla_z\\sum_i s_i^p` sums to 0, is :math:`\\le 0` at the argmax and :math:`\\ge 0` at the argmin."""
    z = np.array([logits], dtype=float) / 100
    labels = np.array([0])
    _, with_penalty = sr.loss_and_grad(proof_backend.asarray(z), labels, tau=tau, p=p, lam=lam)
    _, without = sr.loss_and_grad(proof_backend.asarray(z), labels, tau=tau, p=p, lam=0.0)
    penalty_grad = (numpy_of(with_penalty) - numpy_of(without))[0]
    assert abs(penalty_grad.sum()) <= 1e-12 * max(1.0, float(np.abs(penalty_grad).max()))
    assert penalty_grad[np.argmax(z)] <= 1e-15
    assert penalty_grad[np.argmin(z)] >= -1e-15


def _autograd_gradients(base: str, logits: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Autograd through the array-API reference: PyTorch (``fused=False``) and JAX, where installed."""
    out = {}
    z = torch.tensor(logits, requires_grad=True)
    sr.loss(z, torch.as_tensor(labels), base=base, tau=0.5, lam=1.0, fused=False).backward()
    out["torch"] = z.grad.numpy()
    try:
        import jax
    except ImportError:
        return out
    jax.config.update("jax_enable_x64", True)
    grad = jax.grad(lambda t: sr.loss(t, labels, base=base, tau=0.5, lam=1.0))(jax.numpy.asarray(logits))
    out["jax"] = np.asarray(grad)
    return out


@pytest.mark.parametrize("base", LOSSES_WITH_GRAD)
def test_autograd_is_finite_and_exact_at_a_saturated_output(base):
    """A confidently right sample (:math:`s_y = 1` in float64) has a finite autograd gradient equal to the closed form.

    The logit gap 20 at :math:`\\tau = 0.5` makes :math:`\\log s_y` round to exactly 0: a point every
    long training run reaches, where a weight :math:`(1 - s_y)^\\gamma` with :math:`\\gamma < 1` has an
    infinite derivative unless the formula guards it.
    """
    logits, labels = np.array([[20.0, 0.0, 0.0], [0.0, 20.0, 0.0]]), np.array([0, 0])
    _, expected = sr.loss_and_grad(logits, labels, base=base, tau=0.5, lam=1.0)
    for library, grad in _autograd_gradients(base, logits, labels).items():
        assert np.all(np.isfinite(grad)), f"{library} autograd of {base!r} is not finite: {grad}"
        np.testing.assert_allclose(grad, expected, rtol=1e-9, atol=1e-15, err_msg=library)
