"""``python -m sparse_reg.train tune``: held-out noisy labels, the grid, the chosen config, bad input."""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

from sparse_reg.train import main
from sparse_reg.train.config import resolve_config

TINY = ["--epochs", "2", "--limit-train", "200", "--threads", "1", "--quiet"]


def test_tune_runs_the_grid_selects_on_held_out_noise_and_writes_a_config(tmp_path, capsys):
    out = tmp_path / "new" / "tune"  # --out need not exist, with --jobs 2 too
    argv = ["tune", "--loss", "ce+sr", "--noise", "sym:0.4", "--lam0s", "0.5,4", "--taus", "0.5",
            "--schedules", "paper,auto", "--holdout", "0.3", "--out", str(out), "--jobs", "2", "--rungs", "1",
            *TINY]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "held-out noisy accuracy" in printed and "sampling error" in printed
    # tune is judged on held-out noisy labels only, and says so (the tmp path has "test" in it).
    assert "test" not in printed.replace(str(tmp_path), "")
    scores, default = {}, (4.0, 0.1, "auto")  # the preset's own point is always scored
    grid = [(lam0, 0.5, schedule) for lam0 in (0.5, 4.0) for schedule in ("paper", "auto")]
    for lam0, tau, schedule in [default, *grid]:
        run = out / f"lam0-{lam0!r}-tau-{tau!r}-{schedule}"
        summary = json.loads((run / "summary.json").read_text())
        recorded = json.loads((run / "config.json").read_text())
        assert recorded["config"]["holdout"] == 0.3 and recorded["config"]["lam_schedule"] == schedule
        assert recorded["data"]["holdout_size"] == summary["holdout_size"] == 61  # round(0.3 * n_c) per class
        assert recorded["data"]["test_size"] == 540  # the test set is kept apart, never the holdout
        scores[(lam0, tau, schedule)] = summary["final"]["holdout_acc"]
    chosen = json.loads((out / "tuned.json").read_text())
    best = max(scores, key=lambda k: scores[k])
    error = math.hypot(*(math.sqrt(scores[k] * (1 - scores[k]) / 61) for k in (best, default)))
    expected = best if scores[best] - scores[default] > error else default
    assert (chosen["lam0"], chosen["tau"], chosen["lam_schedule"]) == expected
    assert ("kept the default" in printed) == (expected == default)
    assert chosen["loss"] == "ce+sr" and chosen["noise"] == "sym:0.4" and chosen["preset"] == "digits"
    assert not {"out", "threads", "quiet", "seed"} & set(chosen)
    config = resolve_config({}, out / "tuned.json")
    assert (config.lam0, config.tau, config.epochs) == (expected[0], expected[1], 2)
    # A second call reuses the finished runs and chooses the same.
    assert main(argv) == 0
    assert json.loads((out / "tuned.json").read_text()) == chosen


def test_successive_halving_stops_the_worse_half_and_keeps_the_default(tmp_path, capsys):
    from sparse_reg.train.tune import rung_epochs

    assert rung_epochs(50, 3) == [13, 25, 50] and rung_epochs(2, 3) == [1, 2] and rung_epochs(7, 1) == [7]
    out = tmp_path / "t"
    argv = ["tune", "--lam0s", "0.5,1,2,8", "--taus", "0.5", "--out", str(out), "--rungs", "2",
            "--epochs", "4", "--limit-train", "200", "--threads", "1", "--quiet"]
    assert main(argv) == 0
    points = [p.name for p in out.iterdir() if p.is_dir()]
    finished = {p.parent.name for p in out.glob("*/summary.json")}
    default = "lam0-4.0-tau-0.1-auto"
    assert len(points) == 5 and default in finished  # the default always runs to the end

    def first_rung(name):  # the score at epoch 2: the best held-out noisy accuracy so far
        rows = [json.loads(line) for line in (out / name / "metrics.jsonl").read_text().splitlines()]
        return max(row["holdout_acc"] for row in rows[:2])

    order = ["lam0-4.0-tau-0.1-auto", *(f"lam0-{v}-tau-0.5-auto" for v in (0.5, 1.0, 2.0, 8.0))]
    ranked = sorted(order, key=lambda name: (-first_rung(name), order.index(name)))
    assert finished == set(ranked[:3]) | {default}  # the better half, rounded up, and the default
    for name in set(points) - finished:
        assert len((out / name / "metrics.jsonl").read_text().splitlines()) == 2  # stopped, resumable
    spent = 5 * 2 + len(finished) * 2
    assert f"budget: {spent} of 20 epochs ({len(finished)} points ran to the end)" in capsys.readouterr().out


def test_the_default_is_kept_unless_beaten_by_more_than_the_sampling_error():
    from sparse_reg.train.tune import _choose

    points = [(4.0, 0.1, "paper"), (2.0, 0.5, "auto")]
    # On 100 labels the error of the difference of 0.40 and 0.45 is about 7 points: kept.
    assert _choose(points, [0.40, 0.45], 100, 0)[0] == 0
    assert "kept the default" in _choose(points, [0.40, 0.45], 100, 0)[1]
    # On 10,000 labels it is about 0.7 points: the better point wins.
    assert _choose(points, [0.40, 0.45], 10_000, 0)[0] == 1


def test_distinct_grid_points_never_share_a_run(tmp_path):
    out = tmp_path / "t"
    assert main(["tune", "--lam0s", "0.1,0.10000001", "--taus", "0.5", "--out", str(out), *TINY]) == 0
    assert {p.name for p in out.iterdir() if p.is_dir()} >= {
        "lam0-0.1-tau-0.5-auto", "lam0-0.10000001-tau-0.5-auto"
    }


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--holdout", "0.6"], "--holdout must be a fraction in [0, 0.5)"),
        (["--holdout", "0"], "tune scores a held-out split: --holdout must be a fraction in (0, 0.5)"),
        (["--holdout", "none"], "tune scores a held-out split"),
        (["--holdout", "-0.2"], "--holdout must be a fraction in [0, 0.5)"),
        (["--lam0s", "1,1"], "--lam0s 1.0,1.0 repeats 1.0"),
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

    with pytest.raises(ConfigError, match=r"holdout must be a fraction in \[0, 0.5\).*got 0.7"):
        resolve_config({"holdout": 0.7})
