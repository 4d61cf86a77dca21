"""A run killed with SIGKILL and resumed ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from sparse_reg.train import main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# Small batches make each epoch long enough to be interrupted in the middle of the run.
ARGS = [
    "--epochs",
    "8",
    "--batch-size",
    "8",
    "--limit-train",
    "600",
    "--limit-test",
    "200",
    "--threads",
    "1",
    "--quiet",
]


def _metrics(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        row.pop("seconds")
    return rows


def _command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "sparse_reg.train", "--out", str(out), *ARGS, *extra]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    killed = tmp_path / "killed"
    process = subprocess.Popen(_command(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (killed / "checkpoint.pt").exists():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "summary.json").exists(), "the run finished before it could be interrupted"
    saved = torch.load(killed / "checkpoint.pt", weights_only=False)
    assert 1 <= saved["epoch"] < 8

    resumed = subprocess.run(
        _command(killed, "--resume"), env=env, capture_output=True, text=True, check=False
    )
    assert resumed.returncode == 0, resumed.stderr

    reference = tmp_path / "reference"
    assert main(["--out", str(reference), *ARGS]) == 0
    assert _metrics(killed) == _metrics(reference)
    got = torch.load(killed / "model.pt", weights_only=True)
    want = torch.load(reference / "model.pt", weights_only=True)
    assert got.keys() == want.keys()
    for name in want:
        assert torch.equal(got[name], want[name]), name


def test_resume_of_a_finished_run_changes_nothing(tmp_path):
    out = tmp_path / "run"
    assert (
        main(["--out", str(out), "--epochs", "1", "--limit-train", "100", "--threads", "1", "--quiet"]) == 0
    )
    before = (out / "metrics.jsonl").read_bytes()
    assert (
        main(
            [
                "--out",
                str(out),
                "--epochs",
                "1",
                "--limit-train",
                "100",
                "--threads",
                "1",
                "--quiet",
                "--resume",
            ]
        )
        == 0
    )
    assert (out / "metrics.jsonl").read_bytes() == before
