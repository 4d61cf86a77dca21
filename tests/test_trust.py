"""Inputs that used to be read by their truth value or crash, and help that did not say its defaults."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import sparse_reg as sr

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("flag", ["no", "False", 0, 1, None, np.array([True])])
def test_fused_must_be_a_bool(flag):
    logits, labels = np.zeros((2, 3)), np.array([0, 1])
    with pytest.raises(TypeError, match=r"fused must be True or False; got .* \("):
        sr.loss(logits, labels, fused=flag)


def test_fused_takes_numpy_bools():
    logits, labels = np.zeros((2, 3)), np.array([0, 1])
    assert float(sr.loss(logits, labels, fused=np.False_)) == float(sr.loss(logits, labels, fused=True))


def test_the_torch_criterion_refuses_a_string_fused():
    pytest.importorskip("torch")
    from sparse_reg.nn import SparseRegLoss

    with pytest.raises(TypeError, match="fused must be True or False; got 'no' \\(str\\)"):
        SparseRegLoss("ce", fused="no")


@pytest.mark.parametrize(("name", "value"), [("RANK", "abc"), ("LOCAL_RANK", "-1"), ("WORLD_SIZE", "0")])
def test_a_torchrun_variable_that_is_not_a_count_exits_2_with_one_line(monkeypatch, capsys, tmp_path, name, value):
    pytest.importorskip("torch")
    from sparse_reg.train import main

    monkeypatch.setenv(name, value)
    assert main(["--out", str(tmp_path / "r"), "--epochs", "1", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"python -m sparse_reg.train: error: the environment variable {name}={value!r} must be an integer "
        f">= {1 if name == 'WORLD_SIZE' else 0} (torchrun sets it)"
    ]


def test_help_says_every_settings_default(capsys):
    pytest.importorskip("torch")
    from sparse_reg.train.cli import build_parser

    text = " ".join(build_parser().format_help().split())
    for option in ("--epochs EPOCHS", "--lr LR", "--tau TAU", "--lam0 LAM0", "--batch-size BATCH_SIZE"):
        assert re.search(re.escape(option) + r" [^-]*?\(?default: the preset's\)?", text), option
    assert "--amp, --no-amp bfloat16 autocast for the model (the loss stays float32) (default: off)" in text


def test_no_markdown_line_of_a_formula_starts_a_nested_list():
    # A continuation line that starts with "+ " becomes a list item and leaves its TeX raw.
    for page in (REPO / "docs").glob("*.md"):
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
            assert not re.match(r"\s+[+*-] \\", line), f"{page.name}:{number}: {line}"


def test_a_flipped_bit_anywhere_in_a_checkpoint_is_refused_with_one_line(tmp_path, capsys):
    pytest.importorskip("torch")
    from sparse_reg.train import main

    out = tmp_path / "run"
    argv = ["--out", str(out), "--epochs", "3", "--limit-train", "200", "--threads", "1", "--quiet"]
    assert main([*argv, "--stop-after", "2"]) == 0
    pristine = (out / "checkpoint.pt").read_bytes()
    # Positions spread over the file: the archive's records, the state's tensors, its metadata.
    for position in np.linspace(64, len(pristine) - 64, 11).astype(int):
        corrupt = bytearray(pristine)
        corrupt[position] ^= 0x10
        (out / "checkpoint.pt").write_bytes(bytes(corrupt))
        capsys.readouterr()
        assert main([*argv, "--resume"]) == 2, position
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "checkpoint" in err[0] and ("corrupt" in err[0] or "cannot" in err[0]), err
    (out / "checkpoint.pt").write_bytes(pristine)
    assert main([*argv, "--resume"]) == 0


def test_evaluate_refuses_a_model_that_is_not_the_one_the_run_wrote(tmp_path, capsys):
    pytest.importorskip("torch")
    from sparse_reg.train import main

    out = tmp_path / "run"
    assert main(["--out", str(out), "--epochs", "1", "--limit-train", "200", "--threads", "1", "--quiet"]) == 0
    data = bytearray((out / "model.pt").read_bytes())
    data[len(data) // 2] ^= 0x01
    (out / "model.pt").write_bytes(bytes(data))
    assert main(["evaluate", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "its SHA-256 is not the one its run recorded" in err[0]


def test_a_pickled_criterion_loads_with_weights_only_and_no_allowlist_of_ours(tmp_path):
    torch = pytest.importorskip("torch")
    import subprocess
    import sys

    from sparse_reg.nn import SparseRegLoss

    model = torch.nn.Sequential(torch.nn.Linear(3, 3))
    model.criterion = SparseRegLoss("gce", q=0.7, weight=torch.ones(3), schedule=sr.AdaptiveLambda(1.0, 8.0))
    path = tmp_path / "model.pt"
    torch.save(model, path)
    # A fresh process, where only torch's own module classes are allowlisted by the user.
    code = (
        "import torch, sparse_reg.nn\n"
        "with torch.serialization.safe_globals([torch.nn.Sequential, torch.nn.Linear]):\n"
        f"    model = torch.load({str(path)!r}, weights_only=True)\n"
        "x, y = torch.zeros(4, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 0])\n"
        "print(float(model.criterion(x, y)), type(model.criterion.schedule).__name__)\n"
    )
    env = {**__import__("os").environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    value, schedule = result.stdout.split()
    x, y = torch.zeros(4, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 0])
    assert float(value) == pytest.approx(float(model.criterion(x, y))) and schedule == "AdaptiveLambda"
