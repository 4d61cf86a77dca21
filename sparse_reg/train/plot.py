"""``python -m sparse_reg.train plot RUN_OR_SWEEP...``: the timing window of SR, drawn from run files.

SR helps inside a window: :math:`\\lambda` must be large after the clean signal is learned and
before the flipped labels are memorised. One figure per noise setting puts the runs found under the
given directories side by side, epochs on the x-axis, in four panels: test accuracy, held-out noisy
accuracy (runs with ``--holdout``), the share of flipped training labels fitted (``memorised``), and
:math:`\\lambda` on a log axis. Everything is read from each run's ``config.json`` and
``metrics.jsonl``, so any run a user has can be drawn, finished or not.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sparse_reg.train import report
from sparse_reg.train.config import ConfigError, noise_tag

__all__ = ["PANELS", "find_runs", "plot_windows"]

#: The panels of a window figure: (metrics column, title, y-axis label).
PANELS: tuple[tuple[str, str, str], ...] = (
    ("test_acc", "test accuracy", "accuracy"),
    ("holdout_acc", "held-out noisy accuracy", "accuracy"),
    ("memorised", "flipped training labels fitted", "share of the flipped samples"),
    ("lam", "lambda", "lambda (log scale)"),
)


def _is_run(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "metrics.jsonl").exists()


def find_runs(paths: Sequence[str | Path]) -> list[Path]:
    """The run directories named by ``paths``: each a run, or a sweep (or tune) directory whose
    subdirectories are runs.

    Raises
    ------
    ConfigError
        A path is neither, or a run in it has no metrics yet; the message names it.
    """
    runs: list[Path] = []
    for given in paths:
        path = Path(given)
        if not path.is_dir():
            raise ConfigError(f"{str(path)!r} is not a directory; give run or sweep directories")
        if (path / "config.json").is_file():
            if not (path / "metrics.jsonl").exists():
                raise ConfigError(f"the run {str(path)!r} has no metrics.jsonl yet: no epoch has finished")
            runs.append(path)
            continue
        found = sorted(child for child in path.iterdir() if child.is_dir() and _is_run(child))
        if not found:
            raise ConfigError(
                f"{str(path)!r} is neither a run directory (config.json and metrics.jsonl) nor a sweep "
                "directory holding runs"
            )
        runs.extend(found)
    return runs


def _read(run: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    try:
        config = json.loads((run / "config.json").read_text(encoding="utf-8"))["config"]
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"the run {str(run)!r} cannot be read: {type(exc).__name__}: {exc}") from None
    if not isinstance(config, dict) or not rows:
        raise ConfigError(f"the run {str(run)!r} has no epochs in metrics.jsonl")
    return config, rows


def _schedule(config: dict[str, Any]) -> str:
    # A run written before the closed loop existed ran the paper's schedule.
    return str(config.get("lam_schedule", "paper"))


def _label(config: dict[str, Any], run: Path, varies: dict[str, bool]) -> str:
    """The loss, with what else tells the figure's runs apart: schedule, seed, directory."""
    label = str(config.get("loss"))
    if varies["schedule"] and config.get("lam0"):
        label += f", lambda {_schedule(config)}"
    if varies["seed"]:
        label += f", seed {config.get('seed')}"
    if varies["source"]:
        label += f" ({run.parent.name})"
    return label


def plot_windows(paths: Sequence[str | Path], out: str | Path | None = None) -> list[Path]:
    """Draw one window figure per noise setting of the runs under ``paths``; returns the files.

    Parameters
    ----------
    paths
        Run or sweep directories.
    out
        Directory of the figures, ``window-<noise>.png`` each (default: the first path).

    Raises
    ------
    ConfigError
        A path is not a run or sweep, a run cannot be read, or ``out`` cannot be written.
    """
    runs = find_runs(paths)
    read = [(run, *_read(run)) for run in runs]
    target = Path(out) if out is not None else Path(paths[0])
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot write the figures to {str(target)!r}: {exc.strerror or exc}") from None
    by_noise: dict[str, list[tuple[Path, dict[str, Any], list[dict[str, Any]]]]] = {}
    for run, config, rows in read:
        by_noise.setdefault(str(config.get("noise")), []).append((run, config, rows))
    written = []
    for noise, group in by_noise.items():
        varies = {
            "schedule": len({_schedule(config) for _, config, _ in group if config.get("lam0")}) > 1,
            "seed": len({config.get("seed") for _, config, _ in group}) > 1,
            "source": len({run.parent for run, _, _ in group}) > 1,
        }
        fig = report.new_figure(figsize=(18, 4.2))
        axes = fig.subplots(1, len(PANELS))
        for run, config, rows in group:
            label = _label(config, run, varies)
            for ax, (key, _, _) in zip(axes, PANELS, strict=True):
                points = [(row["epoch"], row[key]) for row in rows if _finite(row.get(key))]
                if points:
                    ax.plot([e for e, _ in points], [v for _, v in points], label=label)
        for ax, (key, title, ylabel) in zip(axes, PANELS, strict=True):
            ax.set(xlabel="epoch", ylabel=ylabel, title=title)
            if key == "lam":
                ax.set_yscale("symlog", linthresh=1.0)
            else:
                ax.set_ylim(0, 1)
            if ax.get_lines():
                ax.legend(fontsize="small")
            else:
                ax.text(0.5, 0.5, "not recorded by these runs", ha="center", va="center",
                        transform=ax.transAxes, color="grey")
        fig.suptitle(f"noise {noise}: {len(group)} run(s)")
        path = target / f"window-{noise_tag(noise)}.png"
        try:
            report.save_figure(fig, path)
        except OSError as exc:
            raise ConfigError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
        written.append(path)
    return written


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
