"""The trainer's command line: defaults, bad input, run directories, config files, sweeps."""

from __future__ import annotations

import csv
import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

from sparse_reg.train import (
    checkpoint,
    main,
)
from sparse_reg.train.cli import build_parser
from sparse_reg.train.config import ConfigError, parse_loss, resolve_config
from sparse_reg.train.presets import PRESETS
from sparse_reg.train.report import METRIC_FIELDS

# The paper's recipe: these tests are of its artefacts and errors (the closed loop: test_closed_loop.py).
TINY = ["--epochs", "2", "--limit-train", "200", "--limit-test", "100", "--threads", "1", "--paper", "--quiet"]


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


def test_help_documents_presets_losses_noise_and_sweep():
    text = build_parser().format_help()
    for word in (*PRESETS, "sweep", "--loss-param", "--limit-train", "+sr", "sym:RATE", "--resume"):
        assert word in text


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--preset", "imagenet"], "choose from 'digits'"),
        (["--loss", "hinge+sr"], "Valid base losses: ce, focal"),
        (["--noise", "gaussian:0.3"], "valid forms: none, sym:RATE"),
        (["--noise", "sym:1.2"], "RATE in [0, 1)"),
        (["--model", "vgg"], "invalid choice"),
        (["--loss-param", "q"], "NAME=VALUE"),
    ],
)
def test_bad_input_lists_the_valid_choices(argv, needle, capsys):
    assert _exit_code(argv) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert "Traceback" not in err


def test_loss_suffix_is_parsed_only_at_the_end():
    assert parse_loss("nce+rce") == ("nce+rce", False)
    assert parse_loss("nce+rce+sr") == ("nce+rce", True)
    assert parse_loss("FL+SR") == ("focal", True)
    with pytest.raises(ConfigError, match="sr"):
        parse_loss("sr")


def test_baseline_and_sr_settings_come_from_the_preset():
    base = resolve_config({"preset": "mnist", "loss": "gce"})
    assert (base.tau, base.lam0, base.loss_params["q"]) == (1.0, 0.0, 0.7)
    sr = resolve_config({"preset": "mnist", "loss": "gce+sr"})
    assert (sr.tau, sr.p, sr.lam0, sr.rho, sr.every, sr.loss_params["q"]) == (0.5, 0.1, 3.0, 2.0, 5, 0.01)
    sym = resolve_config({"preset": "cifar100", "loss": "ce+sr", "noise": "sym:0.4"})
    asym = resolve_config({"preset": "cifar100", "loss": "ce+sr", "noise": "asym:0.4"})
    assert (sym.lam0, asym.lam0, sym.normalize, sym.p) == (4.0, 10.0, True, 0.01)
    assert resolve_config({"preset": "cifar10"}).epochs == 120


_SR_FIELDS = ("tau", "p", "lam0", "rho", "every", "normalize", "loss_params", "lam_unit", "lam_warmup")


@pytest.mark.parametrize("noise", ["sym:0.6", "asym:0.4"])
@pytest.mark.parametrize("loss", ["ce", "fl", "gce", "sce", "nce+rce", "ce+sr", "fl+sr", "gce+sr", "sce+sr"])
def test_digits_runs_the_mnist_settings_exactly(loss, noise):
    """The digits grids in docs/reproduction.md are the MNIST tuples, computed without the clamp."""
    digits = resolve_config({"preset": "digits", "loss": loss, "noise": noise})
    mnist = resolve_config({"preset": "mnist", "loss": loss, "noise": noise})
    assert [getattr(digits, f) for f in _SR_FIELDS] == [getattr(mnist, f) for f in _SR_FIELDS]
    assert digits.clamp is None


def test_config_file_is_layered_between_preset_and_options(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('loss = "gce+sr"\nepochs = 7\nclip = 1.5\n[loss_params]\nq = 0.2\n')
    config = resolve_config({"epochs": 3, "clip": None}, toml)
    assert (config.loss, config.epochs, config.clip, config.loss_params["q"]) == ("gce+sr", 3, None, 0.2)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"learning_rate": 0.1}))
    with pytest.raises(ConfigError, match=r"unknown key.*learning_rate"):
        resolve_config({}, bad)


def test_missing_data_dir_says_how_to_get_the_data(tmp_path, capsys):
    code = _exit_code(
        [
            "--preset",
            "fashion-mnist",
            "--data-dir",
            str(tmp_path / "nowhere"),
            "--out",
            str(tmp_path / "run"),
            *TINY,
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "Expected layout" in err and "train-images-idx3-ubyte" in err and "Traceback" not in err


def test_run_writes_every_artefact_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--out", str(out), *TINY[:-1]]) == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "flipped part" in printed and str(out) in printed
    for name in (
        "config.json",
        "metrics.csv",
        "metrics.jsonl",
        "curves.png",
        "summary.json",
        "summary.md",
        "checkpoint.pt",
        "model.pt",
    ):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert tuple(rows[0]) == METRIC_FIELDS
    stored = json.loads((out / "config.json").read_text())
    assert stored["config"]["loss"] == "ce+sr" and "torch" in stored["versions"]
    assert stored["data"]["train_size"] == 200
    assert _exit_code(["--out", str(out), *TINY]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["--out", str(out), "--overwrite", "--epochs", "1", *TINY[2:]]) == 0
    assert len(list(csv.DictReader((out / "metrics.csv").open()))) == 1


def test_resume_refuses_different_settings(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--out", str(out), *TINY]) == 0
    assert _exit_code(["--out", str(out), "--resume", "--lr", "0.5", *TINY]) == 2
    assert "lr" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow is the point of the test
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    import torch

    out = tmp_path / "run"
    # lambda jumps from 1 to 1e38 in the second epoch: the float32 objective overflows.
    code = _exit_code(
        ["--out", str(out), "--lam0", "1", "--rho", "1e38", "--every", "1", "--lam-unit", "epoch", *TINY]
    )
    assert code == 1
    assert "non-finite in epoch 2" in capsys.readouterr().err
    saved = checkpoint.load(out)
    assert saved["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in saved["model"].values() if v.is_floating_point())


def test_sweep_tabulates_and_skips_finished_runs(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = [
        "sweep",
        "--losses",
        "ce,ce+sr",
        "--noises",
        "sym:0.4",
        "--seeds",
        "0,1",
        "--out",
        str(out),
        "--epochs",
        "1",
        "--limit-train",
        "150",
        "--limit-test",
        "100",
        "--threads",
        "1",
    ]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert first.count("test ") >= 4
    table = (out / "sweep.md").read_text()
    assert "| CE+SR |" in table and "±" in table
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert [(r["loss"], r["noise"], r["seeds"]) for r in rows] == [
        ("ce", "sym:0.4", "2"),
        ("ce+sr", "sym:0.4", "2"),
    ]
    assert main(argv) == 0
    assert capsys.readouterr().out.count("finished before with these settings, reused") == 4
