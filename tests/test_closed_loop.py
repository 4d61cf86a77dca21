"""The closed loop: the noisy held-out split, AdaptiveLambda, the per-epoch listeners, the selected model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

import sparse_reg as sr  # noqa: E402
from sparse_reg.nn import SparseRegLoss  # noqa: E402
from sparse_reg.train import (  # noqa: E402
    checkpoint,
    listeners,
    main,
)
from sparse_reg.train.config import ConfigError, resolve_config  # noqa: E402
from sparse_reg.train.data import holdout_mask, prepare  # noqa: E402

TINY = ["--epochs", "6", "--limit-train", "400", "--limit-test", "100", "--threads", "1", "--quiet"]
LOOP = ["--holdout", "0.2", "--lam-schedule", "auto", "--select", "holdout"]


# --- AdaptiveLambda ---------------------------------------------------------------------------


def test_adaptive_lambda_holds_while_the_score_rises_then_grows_to_saturation():
    control = sr.AdaptiveLambda(lam0=4.0, lam_max=100.0, growth=4.0, patience=2)
    lams = [control.update(score) for score in (0.2, 0.3, 0.4, 0.39, 0.38, 0.5, 0.1, 0.1)]
    # Two epochs without a new best (0.39, 0.38) mark the plateau; growth then never stops.
    assert lams == [4.0, 4.0, 4.0, 4.0, 16.0, 64.0, 100.0, 100.0]
    assert control.growing and control.best == 0.5 and control.epoch == 8


def test_adaptive_lambda_min_delta_counts_small_gains_as_a_plateau():
    control = sr.AdaptiveLambda(lam0=1.0, lam_max=8.0, growth=2.0, patience=1, min_delta=0.01)
    assert [control.update(s) for s in (0.50, 0.505, 0.6)] == [1.0, 2.0, 4.0]


def test_adaptive_lambda_from_zero_jumps_to_saturation():
    control = sr.AdaptiveLambda(lam0=0.0, lam_max=5.0, patience=1)
    assert [control.update(s) for s in (0.5, 0.4)] == [0.0, 5.0]


def test_adaptive_lambda_state_round_trips_exactly():
    control = sr.AdaptiveLambda(lam0=2.0, lam_max=50.0, growth=3.0, patience=1)
    for score in (0.3, 0.2, 0.25):
        control.update(score)
    copy = sr.AdaptiveLambda(lam0=2.0, lam_max=50.0)
    copy.load_state_dict(control.state_dict())
    assert copy == control
    assert [copy.update(0.1), copy.update(0.1)] == [control.update(0.1), control.update(0.1)]
    with pytest.raises(ValueError, match="state must have exactly the keys"):
        copy.load_state_dict({"lam0": 1.0})


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"lam0": -1.0, "lam_max": 2.0}, "lam0 must be a finite number >= 0; got -1.0"),
        ({"lam0": 4.0, "lam_max": 2.0}, "lam_max must be a finite number >= lam0"),
        ({"lam0": 1.0, "lam_max": 2.0, "growth": 1.0}, "growth must be a finite number > 1; got 1.0"),
        ({"lam0": 1.0, "lam_max": 2.0, "patience": 0}, "patience must be an int >= 1; got 0"),
        ({"lam0": 1.0, "lam_max": 2.0, "patience": 1.5}, "patience must be an int >= 1; got 1.5"),
        ({"lam0": 1.0, "lam_max": 2.0, "min_delta": -0.1}, "min_delta must be a finite number >= 0"),
        ({"lam0": np.float64("nan"), "lam_max": 2.0}, "lam0 must be a finite number"),
    ],
)
def test_adaptive_lambda_refuses_bad_parameters_by_name(kwargs, needle):
    with pytest.raises(ValueError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        sr.AdaptiveLambda(**kwargs)


@pytest.mark.parametrize("score", [math.nan, math.inf, "0.5", None, True])
def test_adaptive_lambda_refuses_a_score_that_is_not_a_finite_number(score):
    with pytest.raises(ValueError, match="score must be a finite number"):
        sr.AdaptiveLambda(lam0=1.0, lam_max=2.0).update(score)


def test_sparse_reg_loss_follows_an_adaptive_lambda_and_saves_its_state():
    control = sr.AdaptiveLambda(lam0=2.0, lam_max=32.0, growth=4.0, patience=1)
    criterion = SparseRegLoss("ce", tau=0.5, p=0.5, schedule=control)
    logits, labels = torch.randn(8, 5, dtype=torch.float64), torch.arange(8) % 5
    before = criterion(logits, labels)
    control.update(0.5)
    control.update(0.4)  # plateau: lambda 2 -> 8
    criterion.set_epoch(2)
    assert float(criterion.lam) == 8.0
    terms = sr.loss(logits.numpy(), labels.numpy(), tau=0.5, p=0.5, lam=8.0)
    assert float(criterion(logits, labels)) == pytest.approx(float(terms), rel=1e-12)
    assert float(criterion(logits, labels)) > float(before)
    restored = SparseRegLoss("ce", tau=0.5, p=0.5, schedule=sr.AdaptiveLambda(lam0=2.0, lam_max=32.0))
    restored.load_state_dict(criterion.state_dict())
    assert restored.schedule == control and float(restored.lam) == 8.0


# --- the held-out split -----------------------------------------------------------------------


def test_holdout_is_stratified_by_noisy_label_seeded_and_disjoint():
    labels = np.repeat(np.arange(4), [10, 20, 40, 3])
    held = holdout_mask(labels, 0.25, seed=0)
    counts = [int(held[labels == c].sum()) for c in range(4)]
    assert counts == [2, 5, 10, 1]  # round(0.25 * n_c), at least 1 (and n_c - 1 at most)
    np.testing.assert_array_equal(held, holdout_mask(labels, 0.25, seed=0))
    assert not np.array_equal(held, holdout_mask(labels, 0.25, seed=1))


def test_a_class_with_one_sample_cannot_be_split():
    with pytest.raises(ValueError, match=r"--holdout 0.1 cannot hold out a sample of class 2: it has 1"):
        holdout_mask(np.array([0, 0, 1, 1, 2]), 0.1)


def test_prepare_holds_out_noisy_training_samples_and_keeps_the_test_set():
    full = prepare(resolve_config({"noise": "sym:0.6", "limit_train": 300, "paper": True}))
    split = prepare(resolve_config({"noise": "sym:0.6", "limit_train": 300, "paper": True, "holdout": 0.2}))
    held = holdout_mask(full.y_noisy, 0.2, seed=0)
    assert split.y_holdout.size == held.sum() and split.y_clean.size == 300 - held.sum()
    np.testing.assert_array_equal(split.x_holdout, full.x_train[held])
    np.testing.assert_array_equal(split.y_holdout, full.y_noisy[held])  # noisy labels, not clean
    assert not np.array_equal(split.y_holdout, full.y_clean[held])
    np.testing.assert_array_equal(split.y_noisy, full.y_noisy[~held])
    np.testing.assert_array_equal(split.x_test, full.x_test)
    assert split.describe()["holdout_size"] == held.sum()


# --- the listeners, each on its own --------------------------------------------------------------


class _Data:
    """The slice of DeviceData the held-out monitor reads."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x_holdout, self.y_holdout, self.device = x, y, x.device

    def eval_batches(self, split):
        assert split == "holdout"
        for start in range(0, len(self.x_holdout), 3):
            yield self.x_holdout[start : start + 3], slice(start, start + 3)


class _Context:
    @staticmethod
    def all_reduce_sum(tensor):
        return tensor


def test_holdout_monitor_scores_the_noisy_labels():
    model = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 1, 1, 1])  # the model predicts 0, 1, 0, 1: three of four
    row: dict = {}
    listeners.HoldoutMonitor(_Data(x, y), _Context(), amp=False).epoch_end(row, model)
    assert row["holdout_acc"] == 0.75
    assert model.training is False


def test_selector_keeps_the_earliest_best_epoch_and_a_copy_of_its_weights():
    model = torch.nn.Linear(2, 2)
    selector = listeners.Selector()
    for epoch, score in enumerate((0.3, 0.5, 0.5, 0.4), start=1):
        with torch.no_grad():
            model.weight.fill_(epoch)
        selector.epoch_end({"epoch": epoch, "holdout_acc": score}, model)
    assert (selector.epoch, selector.best) == (2, 0.5)
    assert torch.equal(selector.weights["weight"], torch.full((2, 2), 2.0))  # not the live tensor
    other = listeners.Selector()
    other.load_state_dict(selector.state_dict())
    assert (other.epoch, other.best) == (2, 0.5) and torch.equal(other.weights["weight"], selector.weights["weight"])


def test_lambda_control_feeds_the_score_to_the_controller():
    control = sr.AdaptiveLambda(lam0=1.0, lam_max=4.0, growth=2.0, patience=1)
    listener = listeners.LambdaControl(control)
    for score in (0.5, 0.4):
        listener.epoch_end({"holdout_acc": score}, torch.nn.Linear(1, 1))
    assert control.lam == 2.0 and control.epoch == 2


def test_metrics_files_write_the_held_out_column(tmp_path):
    history = [{"epoch": 1, "lr": 0.1, "lam": 4.0, "loss": 1.0, "base": 1.0, "sr_term": 0.0, "penalty": 1.0,
                "test_acc": None, "holdout_acc": 0.4, "seconds": 1.0}]
    listeners.MetricsFiles(tmp_path, history).epoch_end(history[0], torch.nn.Linear(1, 1))
    assert json.loads((tmp_path / "metrics.jsonl").read_text())["holdout_acc"] == 0.4
    assert "holdout_acc" in (tmp_path / "metrics.csv").read_text().splitlines()[0]


def test_progress_lines_forward_steps_epochs_and_close():
    calls = []

    class _Progress:
        def step(self):
            calls.append("step")

        def epoch(self, row):
            calls.append(("epoch", row["epoch"]))

        def close(self):
            calls.append("close")

    listener = listeners.ProgressLines(_Progress())
    listener.step()
    listener.epoch_end({"epoch": 1}, torch.nn.Linear(1, 1))
    listener.close()
    assert calls == ["step", ("epoch", 1), "close"]


def test_tensorboard_scalars_log_each_epoch_and_close():
    logged = []

    class _Board:
        def epoch(self, row):
            logged.append(row["epoch"])

        def close(self):
            logged.append("closed")

    listener = listeners.TensorBoardScalars(_Board())
    for epoch in (1, 2):
        listener.epoch_end({"epoch": epoch}, torch.nn.Linear(1, 1))
    listener.close()
    assert logged == [1, 2, "closed"]


def test_curves_plot_draws_once_at_close_and_not_for_an_empty_history(tmp_path):
    pytest.importorskip("matplotlib")
    history: list = []
    listeners.CurvesPlot(tmp_path, history, "empty").close()
    assert not (tmp_path / "curves.png").exists()
    history.append({"epoch": 1, "lr": 0.1, "lam": 4.0, "loss": 1.0, "base": 1.0, "sr_term": 0.5, "penalty": 0.1,
                    "test_acc": 0.5, "holdout_acc": 0.3, "train_acc_clean": 0.6, "train_acc_flipped": 0.2,
                    "memorised": 0.1, "seconds": 1.0})
    plot = listeners.CurvesPlot(tmp_path, history, "one epoch")
    plot.epoch_end(history[0], torch.nn.Linear(1, 1))
    assert not (tmp_path / "curves.png").exists()  # drawn when the run stops, not every epoch
    plot.close()
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- the trainer --------------------------------------------------------------------------------


def test_closed_loop_run_scores_every_epoch_grows_after_the_plateau_and_returns_the_best(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--out", str(out), *TINY, *LOOP, "--eval-every", "3", "--lam-patience", "1"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    held = [row["holdout_acc"] for row in rows]
    assert all(isinstance(v, float) for v in held)  # every epoch, whatever eval_every
    assert rows[0]["test_acc"] is None and rows[2]["test_acc"] is not None
    # lambda of epoch t+1 is the controller's answer to the scores up to epoch t.
    control = sr.AdaptiveLambda(lam0=rows[0]["lam"], lam_max=2048.0, patience=1)
    assert [row["lam"] for row in rows[1:]] == [control.update(v) for v in held[:-1]]
    summary = json.loads((out / "summary.json").read_text())
    selected = summary["selected"]
    assert selected["epoch"] == 1 + held.index(max(held)) and selected["holdout_acc"] == max(held)
    assert summary["returned"] == "selected" and summary["holdout_size"] == 81  # per class round(0.2 * n_c)
    returned = torch.load(out / "model.pt", weights_only=True)
    last = torch.load(out / "model-last.pt", weights_only=True)
    assert returned.keys() == last.keys()
    if selected["epoch"] != len(rows):
        assert any(not torch.equal(returned[k], last[k]) for k in returned)
    assert "Returned model (`model.pt`): epoch" in (out / "summary.md").read_text()
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 0
    assert f"model: epoch {selected['epoch']} of 6, chosen by the best held-out noisy accuracy" in (
        capsys.readouterr().out
    )
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["accuracy"] == pytest.approx(selected["test_acc"])


def test_the_paper_switch_gives_the_paper_recipe(tmp_path):
    config = resolve_config({"paper": True, "preset": "fashion-mnist"})
    assert (config.holdout, config.lam_schedule, config.select) == (None, "paper", "last")
    explicit = resolve_config({"paper": True, "holdout": 0.1})
    assert explicit.holdout == 0.1  # an explicit option still wins
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"paper": "yes"}))
    with pytest.raises(ConfigError, match="paper must be true or false; got 'yes'"):
        resolve_config({}, path)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--holdout", "0.5"], "--holdout must be a fraction in [0, 0.5)"),
        (["--holdout", "-0.1"], "--holdout must be a fraction in [0, 0.5)"),
        (["--paper", "--lam-schedule", "auto"], "--lam-schedule auto needs a held-out split to read: add --holdout"),
        (["--paper", "--select", "holdout"], "--select holdout needs a held-out split to read: add --holdout"),
        (["--holdout", "none", "--lam-schedule", "auto"], "--lam-schedule auto needs a held-out split"),
        (["--holdout", "0.1", "--lam-growth", "1"], "--lam-growth must be a finite number > 1"),
        (["--holdout", "0.1", "--lam-patience", "0"], "--lam-patience must be an integer >= 1"),
        (["--holdout", "0.1", "--lam-max", "1"], "--lam-max must be a finite number >= --lam0"),
        (["--limit-train", "12", "--holdout", "0.1"], "--holdout 0.1 cannot hold out a sample of class"),
    ],
)
def test_bad_closed_loop_settings_exit_2_with_one_line(tmp_path, capsys, extra, needle):
    try:
        status = main(["--out", str(tmp_path / "r"), *TINY, *extra])
    except SystemExit as exc:  # argparse's error(): a settings error found while parsing
        status = exc.code
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


def test_resume_with_another_split_or_schedule_is_refused_and_overwrite_validates_first(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--out", str(out), *TINY, "--holdout", "0.2"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    for extra in (["--holdout", "0.3"], ["--holdout", "0.2", "--lam-schedule", "paper"], ["--paper"]):
        assert main(["--out", str(out), *TINY, *extra, "--resume"]) == 2
        assert "cannot resume" in capsys.readouterr().err
    # A refused --overwrite (its split cannot be drawn) leaves the finished run as it was.
    assert main(["--out", str(out), *TINY, "--limit-train", "12", "--holdout", "0.1", "--overwrite"]) == 2
    assert "cannot hold out a sample" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_stop_after_then_resume_is_the_uninterrupted_run(tmp_path, capsys):
    stopped, whole = tmp_path / "stopped", tmp_path / "whole"
    assert main(["--out", str(stopped), *TINY[:-1], *LOOP, "--stop-after", "3"]) == 0
    assert "stopped after epoch 3 of 6 (--stop-after)" in capsys.readouterr().out
    assert not (stopped / "summary.json").exists() and (stopped / "checkpoint.pt").exists()
    assert main(["--out", str(stopped), *TINY, *LOOP, "--resume"]) == 0
    assert main(["--out", str(whole), *TINY, *LOOP]) == 0

    def rows(run):
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                for line in (run / "metrics.jsonl").read_text().splitlines()]

    assert rows(stopped) == rows(whole)
    summaries = [json.loads((run / "summary.json").read_text()) for run in (stopped, whole)]
    assert summaries[0]["selected"] == summaries[1]["selected"]


def test_ctrl_c_exits_130_with_one_line(tmp_path, capsys, monkeypatch):
    import sparse_reg.train.loop as loop

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "run", interrupted)
    assert main(["--out", str(tmp_path / "r"), *TINY]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "interrupted; continue with the same command and --resume" in err[0]


def test_a_final_batch_of_one_sample_joins_the_batch_before(tmp_path):
    # 321 training samples in batches of 64: five batches, the last of 65 (BatchNorm needs two).
    assert main(["--out", str(tmp_path / "r"), *TINY, "--noise", "sym:0.4", "--holdout", "0.2"]) == 0
    assert json.loads((tmp_path / "r" / "config.json").read_text())["data"]["train_size"] == 321


def test_a_run_written_before_the_closed_loop_settings_resumes_with_the_paper_switch(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--out", str(out), *TINY, "--paper", "--stop-after", "2"]) == 0
    # As the trainer wrote it before these settings existed: they are missing from the record.
    for name in ("config.json",):
        stored = json.loads((out / name).read_text())
        for key in ("lam_schedule", "lam_growth", "lam_patience", "lam_max", "select", "stop_after"):
            del stored["config"][key]
        (out / name).write_text(json.dumps(stored))
    saved = checkpoint.load(out)
    for key in ("lam_schedule", "lam_growth", "lam_patience", "lam_max", "select", "stop_after"):
        del saved["config"][key]
    del saved["listeners"]
    torch.save(saved, out / "checkpoint.pt")
    assert main(["--out", str(out), *TINY, "--paper", "--resume"]) == 0
    # Without the switch the presets' closed loop is asked for, which that run did not compute.
    assert main(["--out", str(out), *TINY, "--resume"]) == 2
    assert "lam_schedule: 'paper' -> 'auto'" in capsys.readouterr().err


def test_sweep_tables_the_returned_model_beside_the_last_epoch(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["sweep", "--losses", "ce+sr", "--noises", "sym:0.4", "--seeds", "0", "--out", str(out),
            *TINY, *LOOP]
    assert main(argv) == 0
    table = (out / "sweep.md").read_text()
    assert "last epoch" in table and "returned model, chosen by the best held-out noisy accuracy" in table
    assert "best epoch, for reference only" in table
    assert (out / "sweep.csv").read_text().splitlines()[0].split(",")[5] == "selected_test_mean"
    # The same grid with other settings is not reused: the run refuses, naming what differs.
    capsys.readouterr()
    settings = (out / "sweep-settings.json").read_text()
    assert main([*argv, "--lr", "0.05"]) == 1
    assert "lr: 0.01 -> 0.05" in capsys.readouterr().err
    assert (out / "sweep-settings.json").read_text() == settings  # it claims only what the runs hold
