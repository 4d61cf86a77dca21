"""The GPU check script (benchmarks/gpu_check.sh): its dry run end to end, its time boxes, its parts.

The dry run takes every stage's code path with tiny sizes on the CPU, so the first run on a GPU
machine is not the script's first run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
import warnings
from pathlib import Path

import pytest

from benchmarks import gpu_check, stages
from benchmarks.compare import GPU_TARGETS, _targets
from benchmarks.sync_check import SYNC_WARNING, per_step_sites, record_syncs

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("gpu-check")
    env = {**os.environ, "PYTHON": sys.executable}
    # Generous boxes: a loaded CI machine is slower than the GPU machine the defaults are sized for.
    boxes = [f"--box={name}=300" for name in gpu_check.BOXES]
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run", "--out",
                           str(base / "out"), "--work", str(base / "work"), "--budget", "900", *boxes],
                          capture_output=True, text=True, env=env, timeout=600, check=False)
    return done, base / "out"


def test_dry_run_passes_every_stage(dry_run):
    done, out = dry_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["dry_run"] is True
    statuses = {stage["name"]: stage["status"] for stage in results["stages"]}
    assert statuses == dict.fromkeys(("machine", "bench", "tests", "sync", "sweep"), "ok")


def test_dry_run_output_comes_back_from_a_lent_machine(dry_run):
    """At most eight plain files and no folder: what the device tool brings back whole."""
    _, out = dry_run
    assert sorted(p.name for p in out.iterdir()) == sorted(gpu_check.OUTPUT_FILES)
    assert len(gpu_check.OUTPUT_FILES) <= 8
    assert all(p.is_file() and p.stat().st_size < 16 * 2**20 for p in out.iterdir())


def test_dry_run_prints_the_stage_table_last(dry_run):
    done, out = dry_run
    tail = done.stdout.rstrip().splitlines()[-5:]
    assert [line.split(" | ")[0] for line in tail] == ["| machine", "| bench", "| tests", "| sync", "| sweep"]
    assert done.stdout.rstrip().endswith((out / "summary.md").read_text().rstrip())


def test_dry_run_results_hold_every_stage_s_numbers(dry_run):
    _, out = dry_run
    bench = (out / "bench.md").read_text()
    assert "| 128×10 | float32 |" in bench and "| 256×100 | bfloat16 |" in bench
    assert "E: needs CuPy and a CUDA device" in bench  # the CuPy contender says why it did not run
    sweep = (out / "sweep.md").read_text()
    assert "| sym:0.4 | sym:0.8 |" in sweep and "| CE |" in sweep and "| CE+SR |" in sweep
    with tarfile.open(out / "sweep-runs.tar.gz") as tar:
        names = tar.getnames()
    assert sum(name.endswith("/metrics.csv") for name in names) == 4
    assert not any(name.endswith(("checkpoint.pt", "model.pt")) for name in names)
    results = json.loads((out / "results.json").read_text())
    assert results["tests"]["counts"]["skipped"] > 0 and "failed" not in results["tests"]["counts"]
    assert any("torch:cuda needs a CUDA device" in r for r in results["tests"]["skip_reasons"])
    assert results["sync"]["checked"] is False and "needs CUDA" in results["sync"]["reason"]
    assert results["sync"]["steps"] == [2, 4]
    assert "python " in (out / "machine.txt").read_text()


def test_a_stage_past_its_box_is_stopped_with_its_children(tmp_path):
    child_pid = tmp_path / "child.pid"
    script = ("import subprocess, sys, time; "
              "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
              f"open({str(child_pid)!r}, 'w').write(str(p.pid)); time.sleep(120)")
    running = stages.start("slow", [sys.executable, "-c", script], tmp_path / "slow.log", box=2.0)
    for _ in range(600):  # however slowly the interpreter starts, its child exists before the box is enforced
        if child_pid.exists() and child_pid.read_text():
            break
        time.sleep(0.1)
    began = time.monotonic()
    outcome = running.wait()
    assert outcome.status == "timed out" and outcome.returncode is None
    assert time.monotonic() - began < 2.0 + stages.GRACE_SECONDS + 5
    assert _ends(Path(f"/proc/{child_pid.read_text()}/stat")), "the stage's child outlived its box"


def _ends(stat: Path, seconds: float = 30.0) -> bool:
    """Whether the process of ``/proc/PID/stat`` ends (is gone, or a zombie) within ``seconds``.

    A signalled process still shows as running until the scheduler lets it exit.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if stat.read_text().split(") ")[1][0] in "ZX":
                return True
        except (FileNotFoundError, ProcessLookupError):
            return True
        time.sleep(0.1)
    return False


def test_a_failing_stage_reports_its_status_and_output(tmp_path):
    log = tmp_path / "fail.log"
    outcome = stages.start("fail", [sys.executable, "-c", "print('boom'); raise SystemExit(3)"], log, 30).wait()
    assert (outcome.status, outcome.returncode) == ("failed", 3)
    assert "boom" in log.read_text()


@pytest.mark.parametrize(("argv", "message"), [
    (["--out", "x", "--box", "nope=3"], "--box must be STAGE=SECONDS with STAGE one of machine"),
    (["--out", "x", "--box", "bench=soon"], "got 'bench=soon'"),
    (["--out", "x", "--jobs", "0"], "--jobs must be >= 1; got 0"),
])
def test_usage_errors_exit_2_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        gpu_check.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_an_output_folder_with_other_files_is_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path)]) == 2
    assert "holds other files (notes.txt)" in capsys.readouterr().err


def _sync_in_step() -> None:
    warnings.warn(f"x {SYNC_WARNING}", UserWarning, stacklevel=1)


def _sync_per_epoch() -> None:
    warnings.warn(f"y {SYNC_WARNING}", UserWarning, stacklevel=1)


def _epoch(steps: int) -> None:
    for _ in range(steps):
        _sync_in_step()
    _sync_per_epoch()


def test_sync_sites_that_grow_with_the_steps_are_per_step():
    counts = []
    for steps in (3, 6):
        with pytest.warns(UserWarning, match="an unrelated warning") as passed_on:
            with record_syncs() as (counted, stacks):
                _epoch(steps)
                warnings.warn("an unrelated warning", UserWarning, stacklevel=1)
        assert len(passed_on) == 1  # the synchronisation warnings were counted, not shown
        counts.append(counted)
    growing = per_step_sites(*counts)
    assert len(growing) == 1 and growing[0].startswith("test_gpu_check.py:") and "(_sync_in_step)" in growing[0]
    assert sorted(counts[1].values()) == [1, 6]
    assert any("(_epoch)" in frame for frame in stacks[growing[0]])


def test_gpu_targets_read_the_medians():
    big = ((8192, 32768), "float32")
    medians = {big: {"A": 20.0, "D": 1.2, "E": 1.3, "G-torch": 1.0}}
    lines = [line for line in _targets(medians, GPU_TARGETS) if "8192×32768 float32" in line]
    assert "- D vs A at 8192×32768 float32: wanted ≥ 10×; reached 16.67× — met" in lines
    assert "- D vs G-torch at 8192×32768 float32: wanted ≥ 0.8×; reached 0.83× — met" in lines  # 1.2× the copy
    assert "- E vs D at 8192×32768 float32: wanted ≥ 0.833×; reached 0.92× — met" in lines
    medians[big]["D"] = 1.3
    assert any("D vs G-torch" in line and "NOT met" in line for line in _targets(medians, GPU_TARGETS))


def test_a_missing_package_is_named_before_anything_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(gpu_check.REQUIRED, "no_such_module_for_the_check", "no-such-distribution")
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "cannot import no_such_module_for_the_check; install no-such-distribution" in err
    assert not (tmp_path / "out").exists()


def test_a_sweep_run_stopped_at_its_box_reports_its_epochs_and_pace(tmp_path):
    run_dir = tmp_path / "ce-sym0.4-seed0"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"config": {"epochs": 50}}))
    (run_dir / "metrics.csv").write_text("epoch,test_acc,seconds\n1,0.5,2.0\n2,0.75,3.0\n3,0.7,2.5\n")
    row = gpu_check._run_row(run_dir)
    assert row == {"run": "ce-sym0.4-seed0", "finished": False, "epochs": "3/50", "test": "70.00",
                   "best": "75.00", "epoch_seconds": "2.50", "seconds": "7.5", "projected": "125"}
