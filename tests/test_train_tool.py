"""The trainer as a tool: progress lines, evaluate, --data, --tensorboard, file permissions."""

from __future__ import annotations

import io
import json
import os
import re
import stat
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sparse_reg.data import load_digits  # noqa: E402
from sparse_reg.train import main  # noqa: E402
from sparse_reg.train.evaluate import confusion_matrix  # noqa: E402
from sparse_reg.train.progress import Progress, format_epoch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

TINY = ["--epochs", "2", "--limit-train", "200", "--limit-test", "100", "--threads", "1", "--paper"]


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


# --- progress ----------------------------------------------------------------------------------


def test_without_a_terminal_each_epoch_prints_a_line(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "run"), *TINY, "--epochs", "3", "--log-every", "0"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if " epoch " in line]
    assert [line.split(" epoch ")[1].split(":")[0] for line in lines] == ["1/3", "2/3", "3/3"]
    assert "test " in lines[-1] and "lam " in lines[-1] and "eta " in lines[-1]


def test_progress_lines_are_throttled_but_keep_the_first_and_last_epoch():
    stream = io.StringIO()
    shown = Progress("lines", "run", epochs=5, steps_per_epoch=3, every=3600, stream=stream)
    for epoch in range(1, 6):
        shown.epoch({"epoch": epoch, "loss": 1.0, "test_acc": 0.5, "lam": 4.0, "lr": 0.1, "seconds": 1.0})
    assert [line.split(":")[0] for line in stream.getvalue().splitlines()] == [
        "run epoch 1/5",
        "run epoch 5/5",
    ]


def test_a_terminal_gets_the_bar_and_quiet_gets_nothing():
    assert Progress.choose(None, quiet=False, isatty=True) == "bar"
    assert Progress.choose(None, quiet=False, isatty=False) == "lines"
    assert Progress.choose(None, quiet=True, isatty=True) == "off"
    assert Progress.choose(False, quiet=False, isatty=True) == "off"
    stream = io.StringIO()
    bar = Progress("bar", "run", epochs=2, steps_per_epoch=4, stream=stream)
    for _ in range(8):
        bar.step()
    bar.close()
    assert "8/8" in stream.getvalue()


def test_format_epoch_says_when_test_accuracy_is_unknown():
    row = {"epoch": 2, "loss": 0.25, "test_acc": float("nan"), "lam": 8.0, "lr": 0.01, "seconds": 0.5}
    assert format_epoch("r", row, 4, 1.0) == (
        "r epoch 2/4: loss 0.25, test n/a, lam 8, lr 0.01, 0.50 s/epoch, eta 1 s"
    )


# --- evaluate ----------------------------------------------------------------------------------


def test_evaluate_reproduces_the_run_accuracy_and_saves_the_matrix(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--out", str(out), *TINY, "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    capsys.readouterr()
    assert main(["evaluate", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "evaluation.json").read_text())
    assert result["accuracy"] == pytest.approx(summary["final"]["test_acc"], abs=1e-12)
    matrix = np.array(result["confusion"])
    assert matrix.shape == (10, 10) and matrix.sum() == 100 == result["samples"]
    assert f"{100 * result['accuracy']:.2f}%" in printed and "rows: true class" in printed
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_reads_the_dataset_from_a_new_data_dir(tmp_path, monkeypatch):
    from sparse_reg.train import evaluate as evaluate_module

    out = tmp_path / "run"
    assert main(["--out", str(out), *TINY, "--quiet", "--epochs", "1"]) == 0
    seen = []
    real = evaluate_module.load_dataset

    def spy(config):
        seen.append(config.data_dir)
        return real(config)

    monkeypatch.setattr(evaluate_module, "load_dataset", spy)
    assert main(["evaluate", str(out), "--data-dir", str(tmp_path / "moved")]) == 0
    assert seen == [str(tmp_path / "moved")]


def test_confusion_matrix_counts_true_rows_and_predicted_columns():
    matrix = confusion_matrix(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 2, 0]), 3)
    np.testing.assert_array_equal(matrix, [[1, 1, 0], [0, 1, 0], [1, 0, 1]])


def test_evaluate_refuses_what_it_cannot_score(tmp_path, capsys):
    assert _exit_code(["evaluate", str(tmp_path / "missing")]) == 2
    assert "holds no finished run" in _one_error_line(capsys)
    out = tmp_path / "run"
    assert main(["--out", str(out), *TINY, "--quiet", "--epochs", "1"]) == 0
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x_train=np.zeros((4, 5, 5), np.uint8), y_train=np.array([0, 1, 0, 1]))
    assert _exit_code(["evaluate", str(out), "--data", str(wrong)]) == 2
    assert "shape (1, 5, 5); the run's model takes (1, 8, 8)" in _one_error_line(capsys)


def test_evaluate_loads_weights_only(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--out", str(out), *TINY, "--quiet", "--epochs", "1"]) == 0
    # A pickle that would run code on load: weights_only refuses it before any call.
    _Executes.target = str(tmp_path / "executed")
    torch.save({"weights": _Executes()}, out / "model.pt")
    assert _exit_code(["evaluate", str(out)]) == 2
    assert "its SHA-256 is not the one its run recorded" in _one_error_line(capsys)
    # A run that recorded no checksum (written before they were): weights_only still refuses it.
    summary = json.loads((out / "summary.json").read_text())
    del summary["model_sha256"]
    (out / "summary.json").write_text(json.dumps(summary))
    assert _exit_code(["evaluate", str(out)]) == 2
    assert "does not hold weights" in _one_error_line(capsys)
    assert not (tmp_path / "executed").exists()


class _Executes:
    target = ""

    def __reduce__(self):
        return (os.mkdir, (self.target,))


# --- --data ------------------------------------------------------------------------------------


def test_own_images_train_and_evaluate_on_their_test_split(tmp_path, capsys):
    digits = load_digits()
    path = tmp_path / "mine.npz"
    np.savez(
        path,
        x_train=digits.x_train[:300, 0],
        y_train=digits.y_train[:300],
        x_test=digits.x_test[:80, 0],
        y_test=digits.y_test[:80],
    )
    out = tmp_path / "run"
    assert (
        main(["--data", str(path), "--out", str(out), "--epochs", "2", "--noise", "sym:0.4", "--paper", "--quiet"])
        == 0
    )
    stored = json.loads((out / "config.json").read_text())
    assert stored["data"]["dataset"] == "npz:mine" and stored["data"]["train_size"] == 300
    assert stored["data"]["noise"].startswith("sym") and 0.3 < stored["data"]["realised_rate"] < 0.5
    assert main(["evaluate", str(out), "--data", str(path)]) == 0
    assert json.loads((out / "evaluation.json").read_text())["samples"] == 80


def test_own_features_hold_out_a_test_set(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6))
    y = (x[:, 0] > 0).astype(np.int64)
    path = tmp_path / "features.npz"
    np.savez(path, x_train=x, y_train=y, class_names=np.array(["neg", "pos"]))
    assert main(["--data", str(path), "--out", str(tmp_path / "run"), "--epochs", "2", "--quiet"]) == 0
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    # 40 for the test set, then 10 % of the other 160, stratified, for the held-out split.
    assert (stored["data"]["train_size"], stored["data"]["holdout_size"], stored["data"]["test_size"]) == (144, 16, 40)
    assert stored["data"]["image_shape"] == [1, 1, 6]
    # Own labels are trained as given: no noise is added unless --noise asks for it.
    assert stored["config"]["noise"] == "none" and stored["data"]["realised_rate"] == 0.0


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x_train": np.zeros((4, 3), np.float32)}, "the key 'y_train' is missing"),
        (
            {"x_train": np.zeros((4, 3)), "y_train": np.zeros(4)},
            "y_train has dtype float64; expected integer",
        ),
        (
            {"x_train": np.zeros((4, 3)), "y_train": np.zeros(5, int)},
            r"y_train has shape \(5,\); expected \(4,\)",
        ),
        ({"x_train": np.zeros((4, 3)), "y_train": np.array([0, 1, -1, 0])}, "negative label -1"),
        ({"x_train": np.zeros((4, 3), np.int32), "y_train": np.zeros(4, int)}, "x_train has dtype int32"),
        (
            {"x_train": np.zeros((4, 2, 2, 2, 2), np.uint8), "y_train": np.zeros(4, int)},
            "expected \\(N, H, W\\)",
        ),
        ({"x_train": np.full((4, 3), np.nan), "y_train": np.zeros(4, int)}, "NaN or infinite"),
        ({"X_train": np.zeros((4, 3)), "y_train": np.zeros(4, int)}, "unknown key\\(s\\) X_train"),
        (
            {"x_train": np.zeros((4, 3)), "y_train": np.zeros(4, int), "x_test": np.zeros((2, 3))},
            "go together",
        ),
        (
            {
                "x_train": np.zeros((4, 3)),
                "y_train": np.zeros(4, int),
                "x_test": np.zeros((2, 4)),
                "y_test": np.zeros(2, int),
            },
            "x_test has samples of shape \\(4,\\)",
        ),
        ({"x_train": np.zeros((4, 3)), "y_train": np.zeros(4, int)}, "at least 2 classes"),
        (
            {
                "x_train": np.zeros((4, 3)),
                "y_train": np.array([0, 1, 2, 1]),
                "class_names": np.array(["a", "b"]),
            },
            "has 2 names",
        ),
    ],
)
def test_bad_data_files_exit_2_naming_the_key(tmp_path, capsys, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    assert _exit_code(["--data", str(path), "--out", str(tmp_path / "run"), "--epochs", "1"]) == 2
    line = _one_error_line(capsys)
    assert "bad.npz" in line
    assert re.search(message, line), line
    assert not (tmp_path / "run").exists()


def test_unloadable_data_files_exit_2(tmp_path, capsys):
    objects = tmp_path / "objects.npz"
    np.savez(objects, x_train=np.array([{"a": 1}], dtype=object), y_train=np.zeros(1, int))
    assert _exit_code(["--data", str(objects), "--epochs", "1"]) == 2
    assert "object arrays" in _one_error_line(capsys)
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    assert _exit_code(["--data", str(tmp_path / "junk.npz"), "--epochs", "1"]) == 2
    assert "not a readable .npz" in _one_error_line(capsys)
    assert _exit_code(["--data", str(tmp_path / "absent.npz"), "--epochs", "1"]) == 2
    assert "does not exist" in _one_error_line(capsys)
    assert _exit_code(["--data", str(tmp_path / "x.csv"), "--epochs", "1"]) == 2
    assert "must be the path of a .npz file" in capsys.readouterr().err


def test_features_refuse_augmentation_and_image_models(tmp_path, capsys):
    path = tmp_path / "f.npz"
    np.savez(path, x_train=np.random.default_rng(0).normal(size=(20, 3)), y_train=np.arange(20) % 2)
    assert _exit_code(["--data", str(path), "--preset", "cifar10", "--epochs", "1"]) == 2
    assert "cannot be cropped, flipped or rotated" in _one_error_line(capsys)
    assert (
        _exit_code(
            ["--data", str(path), "--model", "mnist-cnn", "--epochs", "1", "--out", str(tmp_path / "r")]
        )
        == 2
    )
    assert "cannot take inputs of shape (1, 1, 3)" in _one_error_line(capsys)


# --- tensorboard and permissions ---------------------------------------------------------------


def test_tensorboard_logs_every_epoch_and_overwrite_removes_it(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    assert main(["--out", str(out), *TINY, "--quiet", "--tensorboard"]) == 0
    events = EventAccumulator(str(out / "tensorboard")).Reload()
    assert [s.step for s in events.Scalars("accuracy/test_acc")] == [1, 2]
    assert {"loss/sr_term", "schedule/lam", "accuracy/memorised"} <= set(events.Tags()["scalars"])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert events.Scalars("accuracy/test_acc")[-1].value == pytest.approx(rows[-1]["test_acc"])
    assert main(["--out", str(out), *TINY, "--quiet", "--overwrite"]) == 0
    assert not (out / "tensorboard").exists()


def test_an_epoch_whose_metrics_a_kill_lost_is_written_again_on_resume(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from sparse_reg.train import listeners

    out, whole = tmp_path / "run", tmp_path / "whole"
    argv = [*TINY, "--epochs", "3", "--quiet", "--tensorboard"]
    write = listeners.MetricsFiles.epoch_end

    def killed_at_the_last_epoch(self, row, model):
        if row["epoch"] == 3:  # its checkpoint is written; no reporter has written it yet
            raise KeyboardInterrupt
        write(self, row, model)

    monkeypatch.setattr(listeners.MetricsFiles, "epoch_end", killed_at_the_last_epoch)
    assert main(["--out", str(out), *argv]) == 130
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    monkeypatch.undo()
    assert main(["--out", str(out), *argv, "--resume"]) == 0
    assert main(["--out", str(whole), *argv]) == 0

    def metrics(run):
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                for line in (run / "metrics.jsonl").read_text().splitlines()]

    assert metrics(out) == metrics(whole)
    events = EventAccumulator(str(out / "tensorboard")).Reload()
    assert [s.step for s in events.Scalars("accuracy/test_acc")] == [1, 2, 3]  # each epoch once


def test_run_files_follow_the_umask(tmp_path):
    previous = os.umask(0o027)
    try:
        out = tmp_path / "run"
        assert main(["--out", str(out), *TINY, "--quiet", "--epochs", "1"]) == 0
        assert main(["evaluate", str(out)]) == 0
    finally:
        os.umask(previous)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert set(modes) >= {
        "checkpoint.pt",
        "config.json",
        "metrics.csv",
        "summary.json",
        "curves.png",
        "model.pt",
    }
    assert set(modes.values()) == {0o640}, modes


# --- evaluation every N epochs ---------------------------------------------------------------


def _metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_eval_every_skips_epochs_without_changing_what_is_trained(tmp_path, capsys):
    every_epoch, every_third = tmp_path / "every", tmp_path / "third"
    assert main(["--out", str(every_epoch), *TINY, "--epochs", "5", "--log-every", "0"]) == 0
    assert main(["--out", str(every_third), *TINY, "--epochs", "5", "--eval-every", "3", "--log-every", "0"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "third" not in line and " epoch " in line]
    full, sparse = _metrics(every_epoch), _metrics(every_third)
    assert [row["test_acc"] is not None for row in sparse] == [False, False, True, False, True]
    for kept, row in zip(full, sparse, strict=True):
        assert row["loss"] == kept["loss"] and row["lam"] == kept["lam"]
        if row["test_acc"] is not None:
            assert {k: row[k] for k in row if k != "seconds"} == {k: kept[k] for k in kept if k != "seconds"}
    weights = [torch.load(d / "model.pt", weights_only=True) for d in (every_epoch, every_third)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    summary = json.loads((every_third / "summary.json").read_text())
    evaluated = [row for row in sparse if row["test_acc"] is not None]
    assert summary["best_test_acc"] == max(row["test_acc"] for row in evaluated)
    assert ",,,,," in (every_third / "metrics.csv").read_text().splitlines()[1]
    assert lines  # the runs printed their progress lines


def test_eval_every_may_change_on_resume_and_is_checked(tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    assert main(["--out", run_dir, *TINY, "--eval-every", "2", "--quiet"]) == 0
    assert main(["--out", run_dir, *TINY, "--resume", "--quiet"]) == 0
    assert _exit_code(["--out", str(tmp_path / "bad"), *TINY, "--eval-every", "0"]) == 2
    assert "eval_every must be an integer >= 1; got 0" in _one_error_line(capsys)


def test_the_tabular_script_writes_standardised_data_files(tmp_path):
    import importlib.util

    from sparse_reg.train import userdata

    pytest.importorskip("sklearn")
    spec = importlib.util.spec_from_file_location("make_tabular", REPO / "scripts" / "make_tabular.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    paths = module.write(tmp_path)
    assert [p.name for p in paths] == ["breast_cancer.npz", "wine.npz"]
    wine = userdata.load_npz(str(tmp_path / "wine.npz"))
    assert wine.num_classes == 3 and wine.x_train.shape[0] + wine.x_test.shape[0] == 178
    flat = np.load(tmp_path / "wine.npz")["x_train"]
    np.testing.assert_allclose(flat.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(flat.std(axis=0), 1, atol=1e-5)


@pytest.mark.parametrize(
    ("section", "key", "value", "needle"),
    [
        ("config", "limit_test", -5, "limit_test must be an integer >= 1; got -5"),
        ("config", "lr", "x", "lr must be a number; got 'x'"),
        ("config", "model", "mlp9", "unknown model 'mlp9'"),
        ("data", "std", [0.0], "data.std must be > 0 in every channel"),
        ("data", "mean", [float("nan")], "data.mean must be 1 finite number(s)"),
        ("data", "image_shape", [1, -8, 8], "data.image_shape must be three integers >= 1"),
        ("data", "num_classes", 1, "data.num_classes must be an integer >= 2"),
    ],
)
def test_evaluate_checks_the_stored_settings_as_the_trainer_does(tmp_path, capsys, section, key, value, needle):
    out = tmp_path / "run"
    assert main(["--out", str(out), *TINY, "--epochs", "1", "--quiet"]) == 0
    stored = json.loads((out / "config.json").read_text())
    stored[section][key] = value
    (out / "config.json").write_text(json.dumps(stored))
    capsys.readouterr()
    assert _exit_code(["evaluate", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and "settings the trainer would refuse" in err[0], err
