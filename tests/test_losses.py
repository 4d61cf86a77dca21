"""Every built-in loss: values and gradients on every backend, against an independent reference."""

from __future__ import annotations

import numpy as np
import pytest
from _reference import objective, objective_grad

import sparse_reg as sr
from sparse_reg.losses import BUILTIN_LOSSES

MODES = [
    pytest.param({}, id="exact"),
    pytest.param({"normalize": True, "clamp": 1e-7}, id="paper"),
    pytest.param({"normalize": True}, id="normalized"),
    pytest.param({"clamp": 1e-7}, id="clamped"),
]
PARAMS = {"focal": {"gamma": 2.0}, "gce": {"q": 0.4}, "ngce": {"q": 0.5}, "nfl": {"gamma": 1.0},
          "sce": {"alpha": 0.3, "beta": 0.7}}


def _batch(seed: int = 0, n: int = 7, c: int = 5, scale: float = 2.0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, c)) * scale, rng.integers(0, c, size=n)


@pytest.mark.parametrize("base", BUILTIN_LOSSES)
@pytest.mark.parametrize("mode", MODES)
def test_value_and_gradient_match_reference(backend, numpy_of, base, mode):
    z, y = _batch()
    kwargs = dict(base=base, tau=0.7, p=0.3, lam=1.3, **mode, **PARAMS.get(base, {}))
    value, grad = sr.loss_and_grad(backend.asarray(z), backend.asarray(y), reduction="sum", **kwargs)
    np.testing.assert_allclose(numpy_of(value), objective(z, y, **kwargs).sum(), rtol=1e-10)
    np.testing.assert_allclose(numpy_of(grad), objective_grad(z, y, **kwargs), atol=2e-7)
    per_sample = sr.loss(backend.asarray(z), backend.asarray(y), reduction="none", **kwargs)
    np.testing.assert_allclose(numpy_of(per_sample), objective(z, y, **kwargs), rtol=1e-10)


@pytest.mark.parametrize("base", BUILTIN_LOSSES)
def test_float32_agrees_with_float64(backend, numpy_of, base):
    z, y = _batch(1)
    kwargs = dict(base=base, **PARAMS.get(base, {}))
    v64, g64 = sr.loss_and_grad(backend.asarray(z), backend.asarray(y), **kwargs)
    v32, g32 = sr.loss_and_grad(backend.asarray(z.astype(np.float32)), backend.asarray(y), **kwargs)
    assert numpy_of(g32).dtype == np.float32
    np.testing.assert_allclose(numpy_of(v32), numpy_of(v64), rtol=1e-5)
    np.testing.assert_allclose(numpy_of(g32), numpy_of(g64), atol=1e-5)


@pytest.mark.parametrize("base", BUILTIN_LOSSES)
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "autograd"])
def test_torch_gradcheck(base, fused):
    torch = pytest.importorskip("torch")
    z, y = _batch(2, n=4, c=4)
    logits = torch.tensor(z, requires_grad=True)
    labels = torch.tensor(y)

    def fn(t):
        return sr.loss(t, labels, base=base, tau=0.8, p=0.5, lam=0.7, fused=fused, **PARAMS.get(base, {}))

    assert torch.autograd.gradcheck(fn, (logits,), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("base", BUILTIN_LOSSES)
def test_jax_grad_and_jit_agree_with_closed_form(base):
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    z, y = _batch(3)
    logits, labels = jnp.asarray(z), jnp.asarray(y)
    kwargs = dict(base=base, normalize=True, **PARAMS.get(base, {}))
    value, grad = sr.loss_and_grad(logits, labels, **kwargs)
    autodiff = jax.grad(lambda t: sr.loss(t, labels, **kwargs))(logits)
    jitted = jax.jit(lambda t, target: sr.loss(t, target, **kwargs))(logits, labels)
    np.testing.assert_allclose(np.asarray(autodiff), np.asarray(grad), atol=1e-12)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(value), rtol=1e-12)


def test_paper_parity_with_official_formulation():
    """normalize=True, clamp=1e-7 is exactly the official code's objective, value and gradient."""
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    z, y = _batch(4, n=16, c=10, scale=3.0)
    tau, p, lam = 0.5, 0.1, 1.2
    logits = torch.tensor(z, requires_grad=True)
    unit = functional.normalize(logits, dim=1)
    probs = functional.softmax(unit / tau, dim=1).clamp(min=1e-7, max=1)
    official = functional.cross_entropy(unit / tau, torch.tensor(y)) + lam * (probs**p).sum(1).mean()
    official.backward()
    value, grad = sr.loss_and_grad(z, y, tau=tau, p=p, lam=lam, normalize=True, clamp=1e-7)
    assert abs(float(value) - official.item()) < 1e-6
    np.testing.assert_allclose(grad, logits.grad.numpy(), atol=1e-6)
    # the comparison can fail: the exact penalty differs from the clamped one at these logits
    exact = sr.loss(z * 50, y, tau=tau, p=p, lam=lam, normalize=False)
    clamped = sr.loss(z * 50, y, tau=tau, p=p, lam=lam, normalize=False, clamp=1e-7)
    assert abs(float(exact) - float(clamped)) > 1e-3


@pytest.mark.parametrize("base", BUILTIN_LOSSES)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_extreme_logits_stay_finite_in_torch(base, dtype):
    torch = pytest.importorskip("torch")
    # a tied row too; not an all-zero one: with normalize its true gradient 1/(tau |z|) overflows float16
    z = torch.tensor([[1e4, -1e4, 0.0, 5.0], [-1e4, -1e4, 1e4, 1e4], [3.0, 3.0, 3.0, 3.0]])
    logits = z.to(getattr(torch, dtype)).requires_grad_()
    labels = torch.tensor([1, 0, 3])
    for tau, normalize in [(0.01, False), (0.01, True), (1.0, False)]:
        value = sr.loss(logits, labels, base=base, tau=tau, normalize=normalize, **PARAMS.get(base, {}))
        (grad,) = torch.autograd.grad(value, logits)
        assert torch.isfinite(value), (tau, normalize, value)
        assert torch.isfinite(grad.float()).all(), (tau, normalize, grad)
        assert grad.dtype == logits.dtype


@pytest.mark.parametrize("base", BUILTIN_LOSSES)
def test_extreme_logits_stay_finite_on_every_backend(backend, numpy_of, base):
    z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]], dtype=np.float32)
    value, grad = sr.loss_and_grad(backend.asarray(z), backend.asarray(np.array([1, 0])), base=base, tau=0.01)
    assert np.isfinite(numpy_of(value)).all() and np.isfinite(numpy_of(grad)).all()


def test_float16_value_is_float32_and_gradient_keeps_dtype(backend, numpy_of):
    if backend.name.startswith("array_api_strict"):
        pytest.skip("array-api-strict has no float16")
    z = backend.asarray(np.array([[1.0, 2.0, 3.0]], dtype=np.float16))
    value, grad = sr.loss_and_grad(z, backend.asarray(np.array([0])))
    assert numpy_of(value).dtype == np.float32
    assert numpy_of(grad).dtype == np.float16


def test_focal_detach_weight_matches_official_gradient():
    """detach_weight=True treats (1 - s_y)^gamma as a constant, like the official FocalLoss."""
    torch = pytest.importorskip("torch")
    z, y = _batch(5)
    logits = torch.tensor(z, requires_grad=True)
    log_pt = torch.log_softmax(logits / 0.5, dim=1).gather(1, torch.tensor(y)[:, None])[:, 0]
    official = (-((1 - log_pt.detach().exp()) ** 0.5) * log_pt).mean()
    official.backward()
    _, grad = sr.loss_and_grad(z, y, base="focal", gamma=0.5, detach_weight=True, tau=0.5, lam=0.0)
    np.testing.assert_allclose(grad, logits.grad.numpy(), atol=1e-12)
    _, true_grad = sr.loss_and_grad(z, y, base="focal", gamma=0.5, tau=0.5, lam=0.0)
    assert np.abs(true_grad - grad).max() > 1e-3


def test_alias_fl_is_focal():
    z, y = _batch(6)
    assert float(sr.loss(z, y, base="fl")) == float(sr.loss(z, y, base="focal"))
