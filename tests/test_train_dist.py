"""torchrun: two processes with the gloo backend on the CPU train one model with DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

from sparse_reg.train import checkpoint

REPO = Path(__file__).resolve().parents[1]


def test_torchrun_two_processes_on_cpu(tmp_path):
    out = tmp_path / "ddp"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "OMP_NUM_THREADS": "1",
    }
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "sparse_reg.train",
        "--device",
        "cpu",
        "--holdout",
        "0.1",
        "--epochs",
        "2",
        "--limit-train",
        "301",
        "--limit-test",
        "101",
        "--threads",
        "1",
        "--out",
        str(out),
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("test accuracy") == 1, "only rank 0 reports"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2]
    for row in rows:
        # All-reduced counts: accuracies are fractions of the whole (unsharded) sets.
        assert round(row["test_acc"] * 101) == pytest.approx(row["test_acc"] * 101, abs=1e-9)
        assert 0.0 <= row["train_acc_clean"] <= 1.0
        # The held-out split is sharded too, and its counts all-reduced: a fraction of its 31 samples.
        assert round(row["holdout_acc"] * 31) == pytest.approx(row["holdout_acc"] * 31, abs=1e-9)
    assert summary["selected"]["epoch"] in (1, 2)
    stored = json.loads((out / "config.json").read_text())
    assert stored["world_size"] == 2 and stored["data"]["train_size"] == 270

    saved = checkpoint.load(out)
    assert len(saved["rng"]) == 2, "every rank's generator state is checkpointed"
