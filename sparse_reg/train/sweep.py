"""``python -m sparse_reg.train sweep``: a grid of losses x noise specs x seeds, as the paper's tables.

Each run has its own directory ``<out>/<loss>-<noise>-seed<k>``. A finished run (one with a
``summary.json``) is reused and an interrupted one resumed, so the sweep command can simply be run
again; either only when its stored settings are the ones asked for (a run of other settings is
refused, naming what differs, and the sweep ends with status 1). With ``--jobs 1`` the runs
execute one after another in this process; with ``--jobs J`` each run is a subprocess, ``J`` at a
time (on a CPU each gets ``cores // J`` threads). The sweep ends by
writing ``sweep.md`` and ``sweep.csv``: the test accuracy of the last epoch, of the returned model
where the runs select one (``--select holdout``), and of the best epoch for reference, as mean +-
sample standard deviation over the seeds.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sparse_reg.train.checkpoint import atomic_write_bytes
from sparse_reg.train.cli import overrides_from
from sparse_reg.train.config import ConfigError, noise_tag, resolve_config
from sparse_reg.train.lock import waiting_lock

__all__ = [
    "DEFAULT_LOSSES",
    "DEFAULT_NOISES",
    "DEFAULT_SEEDS",
    "execute",
    "make_out_dir",
    "refuse_repeats",
    "run_sweep",
    "share_threads",
    "tabulate",
]

DEFAULT_LOSSES = ("ce", "ce+sr", "fl", "fl+sr", "gce", "gce+sr")
DEFAULT_NOISES = ("sym:0.2", "sym:0.4", "sym:0.6", "sym:0.8", "asym:0.4")
DEFAULT_SEEDS = (0, 1, 2)
SETTINGS_FILE = "sweep-settings.json"
#: The lock file under which the tables are written.
TABLES_LOCK = "sweep.lock"


def run_sweep(args: argparse.Namespace) -> int:
    """Run (or complete) the grid described by the parsed ``sweep`` options; returns the exit status."""
    overrides = overrides_from(args)
    preset = overrides.pop("preset", "digits")
    out = Path(overrides.pop("out", f"runs/sweep-{preset}"))
    quiet = overrides.pop("quiet", False)
    losses = list(args.losses or DEFAULT_LOSSES)
    noises = list(args.noises or DEFAULT_NOISES)
    seeds = list(args.seeds or DEFAULT_SEEDS)
    for flag, items in (("--losses", losses), ("--noises", noises), ("--seeds", seeds)):
        refuse_repeats(flag, items)
    jobs = args.jobs
    share_threads(overrides, jobs)
    grid = []
    for loss in losses:
        for noise in noises:
            for seed in seeds:
                run_dir = out / f"{loss}-{noise_tag(noise)}-seed{seed}"
                settings = {
                    **overrides,
                    "preset": preset,
                    "loss": loss,
                    "noise": noise,
                    "seed": seed,
                    "out": str(run_dir),
                    "quiet": True,
                }
                resolve_config(settings, args.config)  # every run's settings are checked before any starts
                grid.append((loss, noise, seed, run_dir, settings))
    make_out_dir(out, "sweep")
    settings_path = out / SETTINGS_FILE
    settings_text = (json.dumps(overrides, indent=2) + "\n").encode()
    if not settings_path.exists():
        atomic_write_bytes(settings_path, settings_text)

    def say(message: str) -> None:
        if not quiet:
            print(message, flush=True)

    total = len(grid)
    say(
        f"sweep: {total} runs ({len(losses)} losses x {len(noises)} noise specs x {len(seeds)} seeds) "
        f"in {out}"
    )
    labelled = [
        (f"[{index + 1}/{total}] {loss} {noise} seed {seed}", run_dir, settings)
        for index, (loss, noise, seed, run_dir, settings) in enumerate(grid)
    ]
    failures = execute(labelled, jobs, args.config, say)
    if not failures:
        # Every run now holds these settings (a run of others is refused, never reused).
        atomic_write_bytes(settings_path, settings_text)
    # Two sweeps on one --out may finish together: each reads every run and writes both tables
    # under one lock, so the tables always come from one reading.
    with waiting_lock(out / TABLES_LOCK):
        markdown, table_csv = tabulate(grid, losses, noises, title=f"{preset}: test accuracy (%)")
        atomic_write_bytes(out / "sweep.md", markdown.encode())
        atomic_write_bytes(out / "sweep.csv", table_csv.encode())
    say("")
    say(markdown)
    say(f"tables: {out / 'sweep.md'}, {out / 'sweep.csv'}")
    if failures:
        print(f"{len(failures)} run(s) failed:\n" + "\n".join(failures), file=sys.stderr)
        return 1
    return 0


def refuse_repeats(flag: str, items: list[Any]) -> None:
    """A grid option must list each value once: a repeat would count one run twice."""
    repeated = sorted({str(item) for item in items if items.count(item) > 1})
    if repeated:
        raise ConfigError(
            f"{flag} {','.join(map(str, items))} repeats {', '.join(repeated)}; "
            "each value must appear once (a repeat would count one run twice)"
        )


def make_out_dir(out: Path, what: str) -> None:
    """Create the grid's ``--out`` (and its parents), or say why it cannot be."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"--out {str(out)!r}: cannot create the {what} directory ({exc.strerror or exc}); "
            "choose another --out"
        ) from None


def share_threads(overrides: dict[str, Any], jobs: int) -> None:
    """Check ``--jobs`` and, unless ``threads`` is given, split the CPU cores among the jobs."""
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1; got {jobs}")
    if jobs > 1 and "threads" not in overrides:
        overrides["threads"] = max(1, (os.cpu_count() or 1) // jobs)


def test_accuracy_line(summary: dict[str, Any]) -> str:
    """What a sweep says of a finished run: its last-epoch test accuracy."""
    return f"test {100 * summary['final']['test_acc']:.2f}%"


def execute(
    runs: list[tuple[str, Path, dict[str, Any]]],
    jobs: int,
    config_file: str | None,
    say: Callable[[str], None],
    describe: Callable[[dict[str, Any]], str] = test_accuracy_line,
) -> list[str]:
    """Run (or complete) each ``(label, run_dir, settings)``; returns the failures' messages.

    ``describe`` turns a finished run's summary into the words said of it.

    A run with a ``summary.json`` is reused and an interrupted one resumed, each only when its
    stored settings are those asked for. With ``jobs == 1`` the
    runs execute one after another in this process, otherwise each is a subprocess, ``jobs`` at a time.
    """
    failures: list[str] = []

    def one(item: tuple[str, Path, dict[str, Any]]) -> None:
        label, run_dir, settings = item
        finished = (run_dir / "summary.json").exists()
        began = time.perf_counter()
        run = _run_in_process if jobs == 1 else _run_subprocess
        # A finished run is reused only through the run's own check that its stored settings are
        # the ones asked for; a run of other settings is refused with the settings that differ.
        error = run(settings, config_file)
        if error:
            failures.append(f"{label}: {error}")
            say(f"{label}: FAILED: {error}")
            return
        if not (run_dir / "summary.json").exists():  # stopped early (stop_after): no summary yet
            elapsed = time.perf_counter() - began
            say(f"{label}: stopped after epoch {settings.get('stop_after')} ({elapsed:.1f} s)")
            return
        summary = json.loads((run_dir / "summary.json").read_text())
        if finished:
            say(f"{label}: finished before with these settings, reused")
            return
        say(f"{label}: {describe(summary)} ({time.perf_counter() - began:.1f} s)")

    if jobs == 1:
        for item in runs:
            one(item)
    else:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(one, runs))
    return failures


def _run_in_process(settings: dict[str, Any], config_file: str | None) -> str | None:
    from sparse_reg.errors import DatasetError
    from sparse_reg.train.checkpoint import CheckpointError
    from sparse_reg.train.loop import NonFiniteLossError, RunDirError, run

    try:
        run(resolve_config(settings, config_file), resume=True, progress=False)
    except (NonFiniteLossError, RunDirError, CheckpointError, DatasetError, ConfigError) as exc:
        return str(exc)
    return None


def _run_subprocess(settings: dict[str, Any], config_file: str | None) -> str | None:
    # The run's settings reach the child as one config file, the --config file's values first.
    merged: dict[str, Any] = {}
    if config_file is not None:
        from sparse_reg.train.config import load_config_file

        merged = load_config_file(config_file)
    params = {**merged.get("loss_params", {}), **settings.get("loss_params", {})}
    merged.update(settings)
    if params:
        merged["loss_params"] = params
    run_dir = Path(settings["out"])
    child_settings = run_dir.with_name(run_dir.name + ".settings.json")
    atomic_write_bytes(child_settings, (json.dumps(merged) + "\n").encode())
    command = [sys.executable, "-m", "sparse_reg.train", "--config", str(child_settings), "--resume"]
    env = dict(os.environ)
    if "threads" in settings:
        env["OMP_NUM_THREADS"] = str(settings["threads"])
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    child_settings.unlink(missing_ok=True)
    if result.returncode != 0:
        return (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
    return None


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else 0.0


#: The tables of a sweep: (title, what each run contributes). "selected" appears only where runs
#: returned a selected model (``--select holdout``).
_VIEWS: tuple[tuple[str, str], ...] = (
    ("last epoch", "last"),
    ("returned model, chosen by the best held-out noisy accuracy (--select holdout)", "selected"),
    ("best epoch, for reference only (it is chosen on the clean test labels)", "best"),
)


def _test_accuracy(summary: dict[str, Any], view: str) -> float | None:
    if view == "last":
        return summary["final"]["test_acc"]
    if view == "best":
        return summary["best_test_acc"]
    selected = summary.get("selected")
    return selected["test_acc"] if selected else None


def _cells(
    results: dict[tuple[str, str], list[dict[str, Any]]], view: str
) -> dict[tuple[str, str], tuple[float, float, int]]:
    """(mean, std, seeds) of the test accuracy (%) per (loss, noise), over the runs that have it."""
    cells = {}
    for key, summaries in results.items():
        values = [v for v in (_test_accuracy(s, view) for s in summaries) if v is not None]
        if values:
            cells[key] = (*_mean_std([100 * v for v in values]), len(values))
    return cells


def _markdown(
    cells: dict[tuple[str, str], tuple[float, float, int]], losses: list[str], noises: list[str], title: str
) -> list[str]:
    best = {
        noise: max((cells[(loss, noise)][0] for loss in losses if (loss, noise) in cells), default=None)
        for noise in noises
    }
    most = max(c[2] for c in cells.values())
    lines = [
        f"**{title}**" + (", mean ± std over seeds" if len(set(c[2] for c in cells.values()) - {1}) else ""),
        "",
        "| loss | " + " | ".join(noises) + " |",
        "|---|" + "---|" * len(noises),
    ]
    for loss in losses:
        row = []
        for noise in noises:
            if (loss, noise) not in cells:
                row.append("–")
                continue
            mean, std, n = cells[(loss, noise)]
            text = f"{mean:.2f}" if n == 1 else f"{mean:.2f} ± {std:.2f}"
            text += "" if n == most else f" (n={n})"
            row.append(f"**{text}**" if mean == best[noise] else text)
        lines.append(f"| {loss.upper()} | " + " | ".join(row) + " |")
    return lines


def tabulate(grid: list[tuple], losses: list[str], noises: list[str], *, title: str) -> tuple[str, str]:
    """Markdown and CSV tables of the finished runs: test accuracy, mean +- std over seeds, of the
    last epoch, of the returned (selected) model where runs selected one, and of the best epoch.

    The best mean of each noise column is set in bold. The CSV has one row per (loss, noise) with
    the number of seeds and the means of the other end-of-run metrics too.
    """
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for loss, noise, _seed, run_dir, _settings in grid:
        path = Path(run_dir) / "summary.json"
        if path.exists():
            results.setdefault((loss, noise), []).append(json.loads(path.read_text()))
    views = {view: _cells(results, view) for _, view in _VIEWS}
    lines: list[str] = []
    for heading, view in _VIEWS:
        if views[view]:
            table = _markdown(views[view], losses, noises, f"{title}, {heading}")
            lines += [*([""] if lines else []), *table]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    fields = ("train_acc_clean", "train_acc_flipped", "memorised")
    writer.writerow(
        [
            "loss", "noise", "seeds", "test_mean", "test_std", "selected_test_mean", "selected_test_std",
            "best_test_mean", *(f"{f}_mean" for f in fields),
        ]
    )
    for loss in losses:
        for noise in noises:
            summaries = results.get((loss, noise))
            if not summaries:
                continue
            mean, std, n = views["last"][(loss, noise)]
            selected = views["selected"].get((loss, noise))
            others = [
                statistics.fmean(
                    100 * (s["final"][f] if s["final"][f] is not None else float("nan")) for s in summaries
                )
                for f in fields
            ]
            writer.writerow(
                [
                    loss, noise, n, f"{mean:.2f}", f"{std:.2f}",
                    *(("", "") if selected is None else (f"{m:.2f}" for m in selected[:2])),
                    f"{views['best'][(loss, noise)][0]:.2f}", *(f"{v:.2f}" for v in others),
                ]
            )
    return "\n".join(lines) + "\n", buffer.getvalue()
