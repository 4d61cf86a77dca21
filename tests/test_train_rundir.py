"""Run directories: checkpoints that load without running code and belong to their run, stale
temporary files, the non-finite stop's message, and one process per directory."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from sparse_reg.train import checkpoint, main  # noqa: E402
from sparse_reg.train.checkpoint import CHECKPOINT  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TINY = ["--epochs", "1", "--limit-train", "100", "--limit-test", "50", "--threads", "1", "--quiet"]


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> dict[str, Path]:
    """Finished one-epoch runs: the default loss, another loss and another seed."""
    root = tmp_path_factory.mktemp("runs")
    runs = {"run": [], "ce": ["--loss", "ce"], "seed1": ["--seed", "1"]}
    for name, extra in runs.items():
        assert main(["--out", str(root / name), *TINY, *extra]) == 0
    return {name: root / name for name in runs}


def _interrupted(finished: dict[str, Path], tmp_path: Path, name: str = "run") -> Path:
    """A copy of a finished run without its summary: ``--resume`` loads its checkpoint."""
    out = tmp_path / name
    shutil.copytree(finished[name], out)
    (out / "summary.json").unlink()
    return out


def _resume(out: Path, *extra: str) -> list[str]:
    return ["--out", str(out), *TINY, "--resume", *extra]


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_checkpoint_is_refused_without_running_its_code(finished, tmp_path, capsys):
    out = _interrupted(finished, tmp_path)
    marker = tmp_path / "code-ran"
    torch.save({"epoch": 1, "payload": _RunsCode(marker)}, out / CHECKPOINT)
    assert _exit_code(_resume(out)) == 2
    err = capsys.readouterr().err
    assert f"checkpoint '{out / CHECKPOINT}' cannot be loaded" in err and "Traceback" not in err
    assert not marker.exists()
    assert not (out / "summary.json").exists()


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (b"not a checkpoint at all", "cannot be loaded"),
        (None, "cannot be loaded"),  # truncated: half of a real checkpoint
        ({"epoch": 1}, "is not a checkpoint of this trainer (it lacks config, fingerprint, history)"),
    ],
)
def test_a_checkpoint_that_fails_to_load_is_refused_naming_the_file(finished, tmp_path, capsys, payload, needle):
    out = _interrupted(finished, tmp_path)
    path = out / CHECKPOINT
    if payload is None:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif isinstance(payload, bytes):
        path.write_bytes(payload)
    else:
        torch.save(payload, path)
    assert _exit_code(_resume(out)) == 2
    err = capsys.readouterr().err
    assert str(path) in err and needle in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("other", "difference"), [("ce", "loss: 'ce' -> 'ce+sr'"), ("seed1", "seed: 1 -> 0")])
def test_a_checkpoint_of_another_run_is_refused(finished, tmp_path, capsys, other, difference):
    out = _interrupted(finished, tmp_path)
    shutil.copy(finished[other] / CHECKPOINT, out / CHECKPOINT)
    assert _exit_code(_resume(out)) == 2
    err = capsys.readouterr().err
    assert "belongs to another run" in err and difference in err and str(out / CHECKPOINT) in err


def test_a_checkpoint_whose_epoch_disagrees_with_the_metrics_is_refused(finished, tmp_path, capsys):
    out = _interrupted(finished, tmp_path)
    rows = (out / "metrics.jsonl").read_text()
    (out / "metrics.jsonl").write_text(rows + rows.replace('"epoch": 1', '"epoch": 2'))
    assert _exit_code(_resume(out)) == 2
    assert "is at epoch 1 but" in capsys.readouterr().err
    saved = checkpoint.load(out)
    saved["epoch"] = 3
    torch.save(saved, out / CHECKPOINT)
    assert _exit_code(_resume(out)) == 2
    assert "is at epoch 3 but records 1 epoch(s) of history" in capsys.readouterr().err


def test_the_checkpoint_records_a_fingerprint_of_the_settings(finished):
    saved = checkpoint.load(finished["run"])
    stored = json.loads((finished["run"] / "config.json").read_text())
    assert len(saved["fingerprint"]) == 64 and stored["fingerprint"] == saved["fingerprint"]
    other = checkpoint.load(finished["seed1"])
    assert other["fingerprint"] != saved["fingerprint"]


def test_a_resumed_checkpoint_of_this_run_is_accepted(finished, tmp_path):
    out = _interrupted(finished, tmp_path)
    assert main(_resume(out)) == 0
    assert json.loads((out / "summary.json").read_text())["final"]["epoch"] == 1


@pytest.mark.parametrize("name", ["config.json", "summary.json"])
def test_a_corrupt_run_file_on_resume_is_one_line_naming_it(finished, tmp_path, capsys, name):
    out = tmp_path / "run"
    shutil.copytree(finished["run"], out)
    (out / name).write_text('{"config": ')
    assert _exit_code(_resume(out)) == 2
    err = capsys.readouterr().err
    assert f"'{out / name}' cannot be read as JSON" in err and len(err.strip().splitlines()) == 1


def test_temporary_files_of_interrupted_writes_are_removed_at_the_next_start(finished, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished["run"], out)
    stale = [out / ".checkpoint.pt.abc123.tmp", out / ".metrics.csv.x9.tmp"]
    for path in stale:
        path.write_bytes(b"torn")
    keep = out / ".notes.tmp"  # not a temporary file of the run's own files
    keep.write_bytes(b"mine")
    assert main(_resume(out)) == 0
    assert not any(path.exists() for path in stale) and keep.exists()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_the_non_finite_stop_never_claims_a_checkpoint_that_does_not_exist(tmp_path, capsys):
    out = tmp_path / "run"
    # lam0 = 1e38 overflows the float32 objective in the first epoch: no epoch finishes.
    assert _exit_code(["--out", str(out), "--lam0", "1e38", *TINY]) == 1
    err = capsys.readouterr().err
    assert "non-finite in epoch 1" in err and "No checkpoint was written" in err
    assert "last good checkpoint" not in err and not (out / CHECKPOINT).exists()


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


@pytest.mark.skipif(sys.platform == "win32", reason="the run-directory lock is fcntl.flock")
def test_a_second_run_on_a_live_run_directory_is_refused_then_takes_over_after_it_died(tmp_path):
    out = tmp_path / "run"
    long_run = ["--epochs", "50", "--batch-size", "8", "--limit-train", "600", "--threads", "1", "--quiet"]
    first = subprocess.Popen(
        [sys.executable, "-m", "sparse_reg.train", "--out", str(out), *long_run],
        env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (out / "config.json").exists():
            assert first.poll() is None, first.stderr.read().decode()
            assert time.monotonic() < deadline, "the first run never started"
            time.sleep(0.05)
        second = subprocess.run(
            [sys.executable, "-m", "sparse_reg.train", "--out", str(out), *TINY, "--overwrite"],
            env=_env(), capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert second.returncode == 2, second.stderr
        assert f"run directory '{out}' is in use by another run (process {first.pid})" in second.stderr
        assert "Traceback" not in second.stderr
        stored = json.loads((out / "config.json").read_text())
        assert stored["config"]["epochs"] == 50, "the refused run changed the live run's files"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # The kernel released the dead run's lock: the next run takes the directory over.
    assert main(["--out", str(out), *TINY, "--overwrite"]) == 0
    assert json.loads((out / "summary.json").read_text())["epochs"] == 1
