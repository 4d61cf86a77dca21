"""The trainer's lambda schedule: the clock a preset maps onto a run, per-step lambda, refusals."""

from __future__ import annotations

import csv

import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

from sparse_reg.schedule import LambdaSchedule
from sparse_reg.train import (
    checkpoint,
    main,
)
from sparse_reg.train.config import ConfigError, resolve_config
from sparse_reg.train.loop import lambda_schedule
from sparse_reg.train.presets import PRESETS


def _lambdas(schedule: LambdaSchedule, steps: int) -> list[float]:
    return [schedule(t) for t in range(steps)]


def test_paper_presets_on_their_own_data_are_the_paper_schedule():
    """MNIST, 60,000 images in batches of 128: lambda doubles every 5 x 469 steps, 4 to 2048."""
    config = resolve_config({"paper": True, "preset": "mnist"})
    schedule = lambda_schedule(config, 469, 60000)
    paper = LambdaSchedule(4.0, 2.0, 5)
    assert _lambdas(schedule, 50 * 469) == [paper(t // 469) for t in range(50 * 469)]
    cifar = lambda_schedule(resolve_config({"paper": True, "preset": "cifar10"}), 391, 50000)
    assert [cifar(t) for t in range(0, 120 * 391, 391)] == [LambdaSchedule(1.2, 1.03, 1)(e) for e in range(120)]


@pytest.mark.parametrize("overrides", [{"epochs": 10}, {"batch_size": 256}, {"epochs": 7, "batch_size": 32}])
def test_epochs_and_batch_size_keep_the_range_and_the_pace(overrides):
    config = resolve_config({"paper": True, "preset": "mnist", **overrides})
    steps = -(-60000 // config.batch_size)
    total = config.epochs * steps
    values = _lambdas(lambda_schedule(config, steps, 60000), total)
    assert values[0] == 4.0 and values[-1] == 2048.0
    reference = LambdaSchedule(4.0, 2.0, 5)
    assert all(values[t] == reference(t * 50 // total) for t in range(0, total, 97))


def test_a_smaller_training_set_keeps_the_preset_pace():
    """2,000 of Fashion-MNIST's 60,000 images: the epoch rule of the paper, step for step."""
    config = resolve_config({"paper": True, "preset": "fashion-mnist", "limit_train": 2000})
    assert config.lam_reference_size is None
    values = _lambdas(lambda_schedule(config, 16, 2000), 50 * 16)
    assert values == [LambdaSchedule(4.0, 2.0, 5)(t // 16) for t in range(50 * 16)]


def test_a_reference_size_runs_the_range_sooner_then_holds():
    """With lam_reference_size 60,000 and 2,000 images: the range 4..2048 within sqrt(2000/60000)."""
    config = resolve_config({"paper": True, "preset": "fashion-mnist", "limit_train": 2000, "lam_reference_size": 60000})
    total = 50 * 16
    values = _lambdas(lambda_schedule(config, 16, 2000), total)
    share = (2000 / 60000) ** 0.5
    reached = values.index(2048.0)
    assert values[0] == 4.0 and max(values) == 2048.0 and values[-1] == 2048.0
    assert reached == pytest.approx(0.9 * share * total, abs=2)  # the last doubling, at 90 % of the range
    assert sorted(set(values)) == [4.0 * 2**k for k in range(10)]


def test_the_per_epoch_form_is_still_available():
    config = resolve_config({"paper": True, "preset": "digits", "lam_unit": "epoch", "epochs": 12})
    schedule = lambda_schedule(config, 20, 1257)
    assert schedule.unit == "epoch" and [schedule(e) for e in (0, 4, 5, 10)] == [4.0, 4.0, 8.0, 16.0]


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"lam_unit": "step", "every": 1000}, "--every 1000 does not fit the run"),
        ({"lam_warmup": 50}, "--lam-warmup 50 does not fit the run"),
        ({"lam_unit": "progress", "lam_horizon": 5, "every": 5}, "--every 5 does not fit the run"),
        ({"lam_unit": "step", "lam_warmup": 40}, "--lam-warmup 40 does not fit the run"),
        ({"lam0": 1.0, "rho": 1e38, "every": 1}, "--rho 1e\\+38 does not fit the run"),
    ],
)
def test_a_schedule_that_does_not_fit_the_run_is_refused(overrides, needle):
    config = resolve_config({"paper": True, "preset": "digits", "epochs": 2, **overrides})
    with pytest.raises(ConfigError, match=needle):
        lambda_schedule(config, 20, 1257)


def test_cli_refusal_is_one_line_and_exit_2(tmp_path, capsys):
    argv = ["--paper", "--lam-unit", "step", "--every", "100000", "--out", str(tmp_path / "run"), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--every 100000" in err[0] and "Traceback" not in err[0]


@pytest.mark.parametrize("bad", [{"lam_unit": "minutes"}, {"lam_horizon": 0}, {"lam_reference_size": -3}])
def test_bad_clock_settings_name_the_key(bad):
    (key,) = bad
    with pytest.raises(ConfigError, match=key):
        resolve_config({"paper": True, "preset": "digits", **bad})


def test_a_run_logs_the_lambda_of_each_epoch_and_resumes_exactly(tmp_path):
    """A 3-epoch digits run with the step clock: lambda changes inside the epochs and resumes with its step."""
    out = tmp_path / "run"
    argv = [
        "--paper", "--epochs", "3", "--limit-train", "200", "--limit-test", "60", "--threads", "1", "--quiet",
        "--lam-unit", "step", "--every", "2", "--rho", "1.5", "--out", str(out),
    ]
    assert main(argv) == 0
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    steps = 4  # ceil(200 / 64)
    assert [float(r["lam"]) for r in rows] == [4.0 * 1.5 ** (e * steps // 2) for e in range(3)]

    state = checkpoint.load(out)["lambda_schedule"]
    assert state["unit"] == "step" and state["count"] == 3 * steps - 1


def test_presets_declare_their_clock():
    for preset in PRESETS.values():
        assert preset.lam_unit == "progress" and preset.lam_warmup == 0
    assert PRESETS["digits"].model == "mlp-bn"
    assert all(resolve_config({"paper": True, "preset": name}).lam_reference_size is None for name in PRESETS)
