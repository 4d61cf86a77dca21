"""``python -m sparse_reg.train tune``: held-out noisy labels, the grid, the chosen config, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

from sparse_reg.train import main
from sparse_reg.train.config import resolve_config
from sparse_reg.train.data import holdout_mask, prepare

TINY = ["--epochs", "2", "--limit-train", "200", "--threads", "1", "--quiet"]


def test_holdout_replaces_the_test_set_with_noisy_training_samples():
    full = prepare(resolve_config({"noise": "sym:0.6", "limit_train": 200}))
    held = holdout_mask(200, 0.25)
    tuned = prepare(resolve_config({"noise": "sym:0.6", "limit_train": 200, "holdout": 0.25}))
    assert held.sum() == 50 and tuned.y_test.size == 50 and tuned.y_clean.size == 150
    np.testing.assert_array_equal(tuned.x_test, full.x_train[held])
    np.testing.assert_array_equal(tuned.y_test, full.y_noisy[held])  # the noisy labels, not the clean ones
    assert not np.array_equal(tuned.y_test, full.y_clean[held])
    np.testing.assert_array_equal(tuned.y_noisy, full.y_noisy[~held])
    assert not np.isin(tuned.x_test.reshape(50, -1).sum(1), full.x_test.reshape(len(full.y_test), -1).sum(1)).all()


def test_holdout_is_the_same_for_every_setting():
    np.testing.assert_array_equal(holdout_mask(1257, 0.2), holdout_mask(1257, 0.2))
    assert holdout_mask(1257, 0.2).sum() == round(0.2 * 1257)


def test_tune_runs_the_grid_selects_on_held_out_noise_and_writes_a_config(tmp_path, capsys):
    out = tmp_path / "tune"
    argv = ["tune", "--loss", "ce+sr", "--noise", "sym:0.4", "--lam0s", "0.5,4", "--taus", "0.5",
            "--holdout", "0.3", "--out", str(out), *TINY]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "held-out noisy accuracy" in printed and "chosen: lam0=" in printed
    scores = {}
    for lam0 in (0.5, 4):
        run = out / f"lam0-{lam0:g}-tau-0.5"
        summary = json.loads((run / "summary.json").read_text())
        recorded = json.loads((run / "config.json").read_text())
        assert recorded["config"]["holdout"] == 0.3
        assert recorded["data"]["test_size"] == 60 and recorded["data"]["train_size"] == 140
        scores[lam0] = summary["final"]["test_acc"]
    chosen = json.loads((out / "tuned.json").read_text())
    best = max(scores, key=lambda k: (scores[k], -k))  # ties: the first in grid order
    assert chosen["lam0"] == best and chosen["tau"] == 0.5
    assert chosen["loss"] == "ce+sr" and chosen["noise"] == "sym:0.4" and chosen["preset"] == "digits"
    assert not {"out", "holdout", "threads", "quiet", "seed"} & set(chosen)
    config = resolve_config({}, out / "tuned.json")
    assert (config.lam0, config.tau, config.holdout, config.epochs) == (best, 0.5, None, 2)
    # A second call reuses the finished runs and chooses the same.
    assert main(argv) == 0
    assert json.loads((out / "tuned.json").read_text()) == chosen


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--holdout", "0.6"], "--holdout must be a fraction in (0, 0.5]; got 0.6"),
        (["--holdout", "0"], "--holdout must be a fraction in (0, 0.5]; got 0.0"),
        (["--holdout", "-0.2"], "--holdout must be a fraction in (0, 0.5]"),
        (["--loss", "gce"], "no '+sr'"),
        (["--lam0s", "1,2,3,4,5", "--taus", "0.1,0.2,0.3,0.4"], "20 points, more than --max-runs 16"),
        (["--taus", "0.5,-1"], "tau must be > 0"),
        (["--lam0s", "-1"], "lam"),
        (["--jobs", "0"], "--jobs must be >= 1"),
    ],
)
def test_a_grid_that_cannot_run_exits_2_with_one_line(tmp_path, capsys, extra, needle):
    assert main(["tune", "--out", str(tmp_path / "t"), *TINY, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "t").exists()  # nothing ran


def test_holdout_in_a_config_is_validated(tmp_path):
    from sparse_reg.train.config import ConfigError

    with pytest.raises(ConfigError, match=r"holdout must be a fraction in \(0, 0.5\] or none; got 0.7"):
        resolve_config({"holdout": 0.7})
