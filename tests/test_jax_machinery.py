"""sr.loss with JAX's transformations: jit with traced tau and lam, grad with respect to them,
vmap over a batch, and the jittable lambda schedule inside a jitted loss."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402

import sparse_reg as sr  # noqa: E402
from sparse_reg import _api  # noqa: E402


def _batch(shape=(6, 4), seed=0):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.normal(size=shape) * 2), jnp.asarray(rng.integers(0, shape[-1], shape[:-1]))


@pytest.mark.parametrize("base", ["ce", "nfl+rce"])
def test_jit_with_tau_and_lam_as_arguments_matches_eager(base):
    logits, labels = _batch()
    traces = []

    def fn(z, y, tau, lam):
        traces.append(None)
        return sr.loss_and_grad(z, y, base=base, tau=tau, lam=lam, normalize=True)

    jitted = jax.jit(fn)
    for tau, lam in ((0.5, 2.0), (0.1, 0.0), (1.7, 8.0)):
        value, grad = jitted(logits, labels, tau, lam)
        want_value, want_grad = sr.loss_and_grad(np.asarray(logits), np.asarray(labels), base=base,
                                                 tau=tau, lam=lam, normalize=True)
        np.testing.assert_allclose(value, want_value, rtol=1e-12)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-10, atol=1e-14)
    assert len(traces) == 1  # tau and lam are traced, not static


def test_grad_with_respect_to_lam_and_tau():
    logits, labels = _batch()
    d_lam = jax.grad(lambda lam: sr.loss(logits, labels, lam=lam))(3.0)
    penalty = sr.loss(logits, labels, lam=1.0) - sr.loss(logits, labels, lam=0.0)
    np.testing.assert_allclose(d_lam, penalty, rtol=1e-12)
    d_tau = jax.grad(lambda tau: sr.loss(logits, labels, tau=tau))(0.5)
    step = 1e-6
    central = (sr.loss(logits, labels, tau=0.5 + step) - sr.loss(logits, labels, tau=0.5 - step)) / (2 * step)
    np.testing.assert_allclose(d_tau, central, rtol=1e-6)


def test_concrete_values_keep_their_errors_and_the_cache_holds_no_tracer():
    logits, labels = _batch()
    with pytest.raises(ValueError, match=r"tau must be > 0; got -1\.0"):
        sr.loss(logits, labels, tau=-1.0)
    with pytest.raises(ValueError, match="lam must be a finite number >= 0"):
        sr.loss(logits, labels, lam=-1.0)
    jax.jit(lambda t, lam: sr.loss(logits, labels, tau=t, lam=lam))(0.25, 2.0)
    jax.grad(lambda t: sr.loss(logits, labels, tau=t))(0.25)
    for objective in _api._OBJECTIVES.values():
        assert not isinstance(objective.tau, jax.core.Tracer)
        assert not isinstance(objective.lam, jax.core.Tracer)


def test_a_traced_tau_is_not_range_checked():
    # tau = -1 is softmax(-z): the formula is evaluated as written, without an error.
    logits, labels = _batch()
    value = jax.jit(lambda t: sr.loss(logits, labels, tau=t))(-1.0)
    np.testing.assert_allclose(value, sr.loss(-logits, labels, tau=1.0), rtol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_vmap_over_a_batch_of_calls(reduction):
    logits, labels = _batch((3, 5, 4))
    got = jax.vmap(lambda z, y: sr.loss(z, y, base="gce", reduction=reduction))(logits, labels)
    want = np.stack([np.asarray(sr.loss(np.asarray(logits[i]), np.asarray(labels[i]), base="gce",
                                        reduction=reduction)) for i in range(3)])
    np.testing.assert_allclose(got, want, rtol=1e-12)
    grads = jax.vmap(jax.grad(lambda z, y: sr.loss(z, y, base="gce", reduction="sum")))(logits, labels)
    _, want_grad = sr.loss_and_grad(np.asarray(logits).reshape(15, 4), np.asarray(labels).reshape(15),
                                    base="gce", reduction="none")
    np.testing.assert_allclose(np.asarray(grads).reshape(15, 4), want_grad, rtol=1e-10, atol=1e-14)


def test_vmap_marks_an_out_of_range_label_with_nan():
    logits, labels = _batch((3, 5, 4))
    labels = labels.at[1, 2].set(4)
    values = jax.vmap(lambda z, y: sr.loss(z, y, reduction="none"))(logits, labels)
    assert np.isnan(values[1, 2]) and np.isfinite(np.delete(np.asarray(values).ravel(), 7)).all()


def test_vmap_over_single_rows():
    logits, labels = _batch((6, 4))
    got = jax.vmap(lambda z, y: sr.loss(z, y))(logits, labels)
    np.testing.assert_allclose(got, sr.loss(logits, labels, reduction="none"), rtol=1e-12)


def test_the_jittable_schedule_drives_lambda_inside_a_jitted_loss():
    schedule = sr.LambdaSchedule(4.0, 2.0, 5, unit="progress", horizon=50, total=50 * 20)
    lam_at = schedule.step_fn()
    logits, labels = _batch()
    traces = []

    def step_loss(z, y, step):
        traces.append(None)
        return sr.loss(z, y, lam=lam_at(step))

    jitted = jax.jit(step_loss)
    for step in (0, 99, 100, 999):
        want = sr.loss(np.asarray(logits), np.asarray(labels), lam=schedule(step))
        np.testing.assert_allclose(jitted(logits, labels, jnp.asarray(step)), want, rtol=1e-12)
    assert len(traces) == 1
