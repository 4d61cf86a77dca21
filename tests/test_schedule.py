"""LambdaSchedule on its three clocks, the jittable step rule, and what the trainer builds from a config."""

from __future__ import annotations

import math

import numpy as np
import pytest

import sparse_reg as sr
from sparse_reg.schedule import LambdaSchedule, lambda_at

MNIST_STEPS = 469  # ceil(60000 / 128)


def test_epoch_form_is_the_official_rule():
    schedule = LambdaSchedule(4.0, 2.0, 5)
    assert [schedule(t) for t in (0, 4, 5, 9, 10, 49)] == [4.0, 4.0, 8.0, 8.0, 16.0, 2048.0]
    cifar = LambdaSchedule(1.2, 1.03, 1)
    assert cifar(119) == pytest.approx(1.2 * 1.03**119, rel=1e-15)


def test_progress_on_the_paper_run_is_the_epoch_rule_step_for_step():
    """MNIST: 50 epochs of 469 steps; lambda doubles exactly every 5 x 469 steps."""
    epoch = LambdaSchedule(4.0, 2.0, 5)
    progress = LambdaSchedule(4.0, 2.0, 5, unit="progress", horizon=50, total=50 * MNIST_STEPS)
    steps = np.arange(50 * MNIST_STEPS)
    expected = [epoch(int(t) // MNIST_STEPS) for t in steps]
    assert [progress(int(t)) for t in steps] == expected
    changes = np.flatnonzero(np.diff(expected)) + 1
    assert changes.tolist() == [5 * MNIST_STEPS * k for k in range(1, 10)]


@pytest.mark.parametrize(("epochs", "steps_per_epoch"), [(10, 20), (50, 16), (7, 3), (120, 391)])
def test_progress_keeps_range_and_pace_on_any_run(epochs, steps_per_epoch):
    total = epochs * steps_per_epoch
    schedule = LambdaSchedule(4.0, 2.0, 5, unit="progress", horizon=50, total=total)
    values = np.array([schedule(t) for t in range(total)])
    assert values[0] == 4.0 and values[-1] == 2048.0
    # lambda at a fraction f of the run is the reference run's lambda at epoch floor(50 f).
    for t in range(0, total, max(1, total // 37)):
        assert values[t] == LambdaSchedule(4.0, 2.0, 5)(t * 50 // total)


def test_step_form_and_warmup():
    schedule = LambdaSchedule(2.0, 3.0, 4, unit="step", warmup=2)
    assert [schedule(t) for t in range(8)] == [0.0, 1.0, 2.0, 2.0, 2.0, 2.0, 6.0, 6.0]
    assert schedule.lam == 0.0
    assert schedule.step() == 1.0 and schedule.count == 1 and schedule.epoch == 0


def test_epoch_warmup_ramps_then_grows():
    schedule = LambdaSchedule(4.0, 2.0, 5, warmup=2)
    assert [schedule(t) for t in (0, 1, 2, 6, 7, 12)] == [0.0, 2.0, 4.0, 4.0, 8.0, 16.0]


def test_step_fn_matches_the_schedule_for_every_clock():
    spe = 7
    for schedule in (
        LambdaSchedule(4.0, 2.0, 5, warmup=1),
        LambdaSchedule(3.0, 1.5, 6, unit="step", warmup=4),
        LambdaSchedule(4.0, 2.0, 5, unit="progress", horizon=50, total=10 * spe, warmup=3),
    ):
        fn = schedule.step_fn(spe)
        steps = np.arange(10 * spe)
        per_epoch = schedule.unit == "epoch"
        expected = [schedule(int(t) // spe if per_epoch else int(t)) for t in steps]
        np.testing.assert_array_equal(fn(steps), expected)
        assert [fn(int(t)) for t in steps] == expected


def test_step_fn_under_jax_jit():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    schedule = LambdaSchedule(4.0, 2.0, 5, unit="progress", horizon=50, total=50 * MNIST_STEPS)
    fn = jax.jit(schedule.step_fn())
    steps = np.array([0, 2344, 2345, 4690, 23449])
    np.testing.assert_array_equal(np.asarray(fn(jnp.asarray(steps))), [schedule(int(t)) for t in steps])


def test_step_fn_under_torch_compile():
    torch = pytest.importorskip("torch")
    schedule = LambdaSchedule(4.0, 2.0, 5, warmup=1)
    fn = torch.compile(schedule.step_fn(MNIST_STEPS), fullgraph=True, backend="eager")
    steps = torch.tensor([0, 100, 469, 2345, 2814, 23449])
    np.testing.assert_array_equal(fn(steps).numpy(), [schedule(int(t) // MNIST_STEPS) for t in steps])


def test_optax_equivalents_of_the_step_rule():
    """The docs' optax forms. piecewise_constant_schedule is exact; exponential_decay(staircase=True)
    divides in float32 and can change lambda one step late at an exact period boundary."""
    optax = pytest.importorskip("optax")
    jnp = pytest.importorskip("jax").numpy
    every, total = 5 * MNIST_STEPS, 50 * MNIST_STEPS
    steps = np.arange(0, total, 67)
    expected = np.asarray(lambda_at(steps, 4.0, 2.0, every))
    exact = optax.piecewise_constant_schedule(4.0, {every * k: 2.0 for k in range(1, 10)})
    np.testing.assert_array_equal(np.asarray(exact(jnp.asarray(steps))), expected)
    compact = optax.exponential_decay(4.0, transition_steps=every, decay_rate=2.0, staircase=True)
    late = np.asarray(compact(jnp.asarray(steps)))
    on_boundary = steps % every == 0
    np.testing.assert_array_equal(late[~on_boundary], expected[~on_boundary])
    np.testing.assert_array_equal(np.asarray(compact(jnp.asarray(steps[on_boundary] + 1))), expected[on_boundary])


def test_overflow_is_a_clear_error_or_capped():
    with pytest.raises(ValueError, match=r"lambda at epoch 400 exceeds the float64 range.*lam_max"):
        LambdaSchedule(1.0, 10.0)(400)
    assert LambdaSchedule(1.0, 10.0, lam_max=1e6)(400) == 1e6
    assert LambdaSchedule(1.0, 10.0)(300) == pytest.approx(1e300)
    assert math.isfinite(lambda_at(400, 1.0, 10.0, 1, lam_max=1e9))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"unit": "hours"}, r"unit must be one of epoch, step, progress; got 'hours'"),
        ({"unit": "progress", "total": 10}, r"unit='progress' needs horizon"),
        ({"unit": "progress", "horizon": 50}, r"unit='progress' needs total"),
        ({"unit": "progress", "horizon": 50, "total": 0}, r"total must be None or an int >= 1; got 0"),
        ({"warmup": -1}, r"warmup must be an int >= 0; got -1"),
        ({"warmup": 1.5}, r"warmup must be an int >= 0; got 1.5"),
        ({"every": np.float64(2.0)}, r"every must be an int >= 1"),
        ({"count": True}, r"count must be an int >= 0; got True"),
        ({"lam_max": 1.0}, r"lam_max must be None or a finite number >= lam0; got 1.0"),
    ],
)
def test_bad_parameters_name_themselves(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LambdaSchedule(4.0, 2.0, **{"every": 5, **kwargs})


def test_bad_time_is_refused():
    with pytest.raises(ValueError, match=r"step must be an int >= 0; got -1"):
        LambdaSchedule(1.0, unit="step")(-1)
    with pytest.raises(ValueError, match=r"epoch must be an int >= 0; got 1.0"):
        LambdaSchedule(1.0)(1.0)


def test_state_round_trip_and_the_epoch_only_form():
    schedule = LambdaSchedule(4.0, 2.0, 5, unit="progress", horizon=50, total=1000, count=321, warmup=2)
    copy = LambdaSchedule(1.0)
    copy.load_state_dict(schedule.state_dict())
    assert copy == schedule and copy.lam == schedule.lam
    old = LambdaSchedule(1.0)
    old.load_state_dict({"lam0": 4.0, "rho": 2.0, "every": 5, "epoch": 7})
    assert old == LambdaSchedule(4.0, 2.0, 5, epoch=7)
    with pytest.raises(ValueError, match="state must have exactly the keys"):
        old.load_state_dict({"lam0": 4.0, "rho": 2.0})


def test_public_name():
    assert sr.LambdaSchedule is LambdaSchedule
