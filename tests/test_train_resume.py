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

from sparse_reg.train import checkpoint, main  # noqa: E402

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


#: The closed loop: its controller's and selector's states must resume exactly too.
CLOSED_LOOP = ("--holdout", "0.1", "--lam-schedule", "auto", "--select", "holdout", "--lam-patience", "1")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
@pytest.mark.parametrize("loop", [(), CLOSED_LOOP], ids=["paper", "closed-loop"])
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path, loop):
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        _command(killed, *loop), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while not (killed / "checkpoint.pt").exists():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "summary.json").exists(), "the run finished before it could be interrupted"
    saved = checkpoint.load(killed)
    assert 1 <= saved["epoch"] < 8

    resumed = subprocess.run(
        _command(killed, *loop, "--resume"), env=env, capture_output=True, text=True, check=False
    )
    assert resumed.returncode == 0, resumed.stderr

    reference = tmp_path / "reference"
    assert main(["--out", str(reference), *ARGS, *loop]) == 0
    assert _metrics(killed) == _metrics(reference)
    summaries = [json.loads((run / "summary.json").read_text()) for run in (killed, reference)]
    assert summaries[0]["selected"] == summaries[1]["selected"]
    for name in ("model.pt", "model-last.pt") if loop else ("model.pt",):
        got = torch.load(killed / name, weights_only=True)
        want = torch.load(reference / name, weights_only=True)
        assert got.keys() == want.keys()
        for key in want:
            assert torch.equal(got[key], want[key]), (name, key)


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
