"""``python -m sparse_reg.train plot``: the timing window drawn from the files runs write."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from sparse_reg.train import main
from sparse_reg.train.plot import find_runs

TINY = ["--epochs", "2", "--limit-train", "200", "--limit-test", "60", "--threads", "1", "--quiet"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("plot") / "sweep"
    argv = ["sweep", "--losses", "ce,ce+sr", "--noises", "sym:0.4,sym:0.8", "--seeds", "0", "--out", str(out), *TINY]
    assert main(argv) == 0
    return out


def test_one_figure_per_noise_setting_from_a_sweep(sweep, tmp_path, capsys):
    assert main(["plot", str(sweep), "--out", str(tmp_path / "figs")]) == 0
    written = capsys.readouterr().out.split()
    assert sorted(written) == [str(tmp_path / "figs" / f"window-sym0.{k}.png") for k in (4, 8)]
    for path in written:
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert len(find_runs([sweep])) == 4 and find_runs([sweep / "ce-sym0.4-seed0"]) == [sweep / "ce-sym0.4-seed0"]


def test_a_run_directory_plots_next_to_itself(sweep, capsys):
    run = sweep / "ce+sr-sym0.8-seed0"
    assert main(["plot", str(run)]) == 0
    assert (run / "window-sym0.8.png").exists()


def test_bad_paths_and_outputs_exit_2_with_one_line(sweep, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    no_metrics = tmp_path / "fresh"
    no_metrics.mkdir()
    (no_metrics / "config.json").write_text('{"config": {}}')
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cases = [
        (["plot", str(tmp_path / "absent")], "is not a directory"),
        (["plot", str(empty)], "is neither a run directory"),
        (["plot", str(no_metrics)], "has no metrics.jsonl yet"),
        (["plot", str(sweep), "--out", str(blocker)], "cannot write the figures to"),
    ]
    for argv, needle in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0] and "Traceback" not in err[0], err
