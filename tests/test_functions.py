"""sharpen, lp_penalty, project, soft_project, is_permutation_of and LambdaSchedule on every backend."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from _reference import softmax

import sparse_reg as sr

RNG = np.random.default_rng(0)
Z = RNG.normal(size=(6, 4)) * 2


@pytest.mark.parametrize("normalize", [False, True])
def test_sharpen_matches_reference(backend, numpy_of, normalize):
    z = Z / np.linalg.norm(Z, axis=1, keepdims=True) if normalize else Z
    out = numpy_of(sr.sharpen(backend.asarray(Z), tau=0.3, normalize=normalize))
    np.testing.assert_allclose(out, softmax(z / 0.3), rtol=1e-12)


def test_sharpen_keeps_16_bit_dtypes():
    torch = pytest.importorskip("torch")
    out = sr.sharpen(torch.tensor(Z).to(torch.bfloat16), tau=0.01)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


@pytest.mark.parametrize("clamp", [None, 1e-7])
def test_lp_penalty_matches_reference(backend, numpy_of, clamp):
    probs = softmax(Z * 5)
    probs[0] = [1.0, 0.0, 0.0, 0.0]
    expected = ((np.clip(probs, clamp, 1) if clamp else probs) ** 0.2).sum(axis=1)
    np.testing.assert_allclose(numpy_of(sr.lp_penalty(backend.asarray(probs), p=0.2, clamp=clamp)), expected, rtol=1e-12)
    assert numpy_of(sr.lp_penalty(backend.asarray(probs), p=0.2))[0] == 1.0


def test_project_is_the_nearest_permutation(backend, numpy_of):
    v = np.array([0.6, 0.25, 0.1, 0.05])
    out = numpy_of(sr.project(backend.asarray(Z), backend.asarray(v)))
    for row, projected in zip(Z, out, strict=True):
        best = min(itertools.permutations(v), key=lambda perm: np.sum((row - np.array(perm)) ** 2))
        np.testing.assert_array_equal(projected, best)
    assert numpy_of(sr.is_permutation_of(backend.asarray(out), backend.asarray(v))).all()
    assert not numpy_of(sr.is_permutation_of(backend.asarray(Z), backend.asarray(v))).any()


def test_project_breaks_ties_by_index(backend, numpy_of):
    out = numpy_of(sr.project(backend.asarray(np.array([[0.5, 0.5, 0.0]])), backend.asarray(np.array([1.0, 0.0, 0.0]))))
    np.testing.assert_array_equal(out, [[0.0, 1.0, 0.0]])


@pytest.mark.parametrize("iterations", [0, 5])
def test_soft_project_is_on_the_simplex_and_tends_to_project(backend, numpy_of, iterations):
    v = np.array([0.7, 0.2, 0.1, 0.0])
    soft = numpy_of(sr.soft_project(backend.asarray(Z), backend.asarray(v), tau=1.0, sinkhorn_iterations=iterations))
    assert (soft >= 0).all()
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-12)
    sharp = numpy_of(sr.soft_project(backend.asarray(Z), backend.asarray(v), tau=1e-3, sinkhorn_iterations=iterations))
    np.testing.assert_allclose(sharp, numpy_of(sr.project(backend.asarray(Z), backend.asarray(v))), atol=1e-6)


def test_soft_project_is_differentiable_in_torch():
    torch = pytest.importorskip("torch")
    logits = torch.tensor(Z, requires_grad=True)
    v = torch.tensor([0.7, 0.2, 0.1, 0.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: sr.soft_project(t, v, tau=0.5, sinkhorn_iterations=2), (logits,))


def test_lambda_schedule_follows_the_paper():
    mnist, cifar10 = sr.LambdaSchedule(4.0, 2.0, 5), sr.LambdaSchedule(1.2, 1.03, 1)
    assert [mnist(t) for t in (0, 4, 5, 49)] == [4.0, 4.0, 8.0, 2048.0]
    assert cifar10(119) == pytest.approx(40.4, abs=0.05)
    assert mnist.step() == 4.0 and mnist.epoch == 1
    restored = sr.LambdaSchedule(0.0)
    restored.load_state_dict(mnist.state_dict())
    assert restored == mnist


def test_sparse_reg_loss_module_follows_the_schedule():
    torch = pytest.importorskip("torch")
    from sparse_reg.nn import SparseRegLoss

    criterion = SparseRegLoss("gce", tau=0.5, p=0.1, schedule=sr.LambdaSchedule(1.0, 2.0, 1), q=0.3)
    logits = torch.tensor(Z, requires_grad=True)
    labels = torch.tensor(RNG.integers(0, 4, 6))
    criterion.set_epoch(3)
    value = criterion(logits, labels)
    value.backward()
    assert float(criterion.lam) == 8.0
    expected, grad = sr.loss_and_grad(Z, labels.numpy(), base="gce", q=0.3, lam=8.0)
    assert float(value.detach()) == pytest.approx(float(expected), rel=1e-12)
    np.testing.assert_allclose(logits.grad.numpy(), grad, atol=1e-12)
    assert float(criterion.last_base + criterion.lam * criterion.last_penalty) == pytest.approx(float(value.detach()))
    assert "base='gce'" in repr(criterion) and "q=0.3" in repr(criterion)

    state = criterion.state_dict()
    fresh = SparseRegLoss("gce", tau=0.5, p=0.1, schedule=sr.LambdaSchedule(1.0, 2.0, 1), q=0.3)
    fresh.load_state_dict(state)
    assert fresh.schedule.epoch == 3 and float(fresh.lam) == 8.0
    moved = fresh.to(torch.float32)
    assert moved.objective.lam is moved.lam


def test_sparse_reg_loss_module_unfused_matches_fused():
    torch = pytest.importorskip("torch")
    from sparse_reg.nn import SparseRegLoss

    grads = []
    for fused in (True, False):
        logits = torch.tensor(Z, requires_grad=True)
        SparseRegLoss("nce+rce", fused=fused, schedule=2.0)(logits, torch.tensor([0, 1, 2, 3, 0, 1])).backward()
        grads.append(logits.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-12)


# --- dtypes and libraries of the projections ----------------------------------------------------


def test_projections_promote_dtypes_as_the_array_api_does(backend, numpy_of):
    xp = backend.xp
    mixed = sr.project(backend.asarray(np.array([[0.1, 0.7]], dtype=np.float32)), backend.asarray(np.array([1.0, 0.0])))
    assert mixed.dtype == xp.result_type(xp.float32, xp.float64)
    scores = backend.asarray(np.array([[3, 1, 2]], dtype=np.int32))
    v = backend.asarray(np.array([0.5, 0.3, 0.2]))
    projected = sr.project(scores, v)
    assert projected.dtype == v.dtype  # integer scores take v's floating dtype
    np.testing.assert_allclose(numpy_of(projected), [[0.5, 0.2, 0.3]])
    assert numpy_of(sr.is_permutation_of(backend.asarray(np.array([[0, 1]])), backend.asarray(np.array([1.0, 0.0])))).all()
    soft = sr.soft_project(scores, backend.asarray(np.array([1, 0, 0])), tau=0.1)
    assert xp.isdtype(soft.dtype, "real floating")
    assert numpy_of(soft)[0, 0] > 0.99


@pytest.mark.parametrize("function", [sr.project, sr.soft_project, sr.is_permutation_of])
def test_projections_refuse_two_device_libraries(function):
    torch = pytest.importorskip("torch")
    jnp = pytest.importorskip("jax.numpy")
    with pytest.raises(sr.errors.BackendMismatchError,
                       match=r"is a torch array but v is a jax array; pass both from one library"):
        function(torch.tensor([[1.0, 0.0]]), jnp.asarray([1.0, 0.0]))


def test_projections_take_numpy_v_for_any_library():
    torch = pytest.importorskip("torch")
    out = sr.project(torch.tensor([[0.1, 0.7, 0.2]]), np.array([1.0, 0.0, 0.0]))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    torch.testing.assert_close(out, torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64))
