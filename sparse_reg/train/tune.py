r"""``python -m sparse_reg.train tune``: :math:`\lambda_0`, :math:`\tau`, schedule chosen on noisy labels.

A stratified fraction ``holdout`` of the *noisy* training set is held out with its noisy labels
(:func:`sparse_reg.train.data.holdout_mask`, the same split for every grid point of one seed).
Every point of the grid ``lam0s x taus x schedules`` is one full run on the rest; its score is the
held-out noisy accuracy of the model it returns (the selected epoch's with ``--select holdout``,
else the last epoch's). The clean test set plays no part in the choice. Under symmetric noise with
:math:`\eta < (K-1)/K` the noisy held-out accuracy is an increasing affine function of the clean
accuracy, so the ranking is the one the clean labels would give (``proofs/theorem3_noisy_selection.py``).

A score measured on :math:`n` held-out labels has the sampling error
:math:`\mathrm{se}(a) = \sqrt{a(1-a)/n}`. The preset's own point (its :math:`\lambda_0`,
:math:`\tau` and schedule) is always in the grid; another point is chosen only when it beats it by
more than the standard error of the difference, :math:`\sqrt{\mathrm{se}(a)^2 + \mathrm{se}(b)^2}`.
Otherwise the default is kept, and the report says why.

Budget, by successive halving on the same signal: with ``--rungs R`` (default 3) every point
trains to epoch :math:`\lceil E/2^{R-1}\rceil` of the :math:`E`, the better half by held-out
score (and the default, always) goes on to :math:`\lceil E/2^{R-2}\rceil`, and so on, until the
survivors finish. Stopped runs are kept and resume exactly (``stop_after``), so a rung costs only
its new epochs; a grid of :math:`n` points costs about :math:`n E (1/4 + 1/4 + 1/4)` epochs at
three rungs instead of :math:`n E`. ``--rungs 1`` runs every point to the end. A grid of more than
``--max-runs`` points is refused before anything runs. A shorter proxy (``--epochs``) keeps the
preset's :math:`\lambda` range and pace through the progress clock.

The chosen settings are printed and written to ``<out>/tuned.json``, a file ``--config`` takes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from itertools import product
from pathlib import Path
from typing import Any

from sparse_reg.train.checkpoint import atomic_write_bytes
from sparse_reg.train.cli import overrides_from
from sparse_reg.train.config import RUNTIME_KEYS, ConfigError, noise_tag, resolve_config
from sparse_reg.train.sweep import execute, make_out_dir, refuse_repeats, share_threads

__all__ = [
    "DEFAULT_HOLDOUT",
    "DEFAULT_LAM0S",
    "DEFAULT_MAX_RUNS",
    "DEFAULT_TAUS",
    "TUNED_FILE",
    "run_tune",
    "rung_epochs",
    "sampling_error",
]

DEFAULT_LAM0S = (1.0, 2.0, 4.0, 8.0)
DEFAULT_TAUS = (0.1, 0.3, 0.5)
DEFAULT_HOLDOUT = 0.2
DEFAULT_MAX_RUNS = 16
TUNED_FILE = "tuned.json"


def sampling_error(accuracy: float, n: int) -> float:
    r"""Standard error :math:`\sqrt{a(1-a)/n}` of an accuracy :math:`a` measured on ``n`` labels."""
    return math.sqrt(max(accuracy * (1 - accuracy), 0.0) / n) if n else math.inf


def run_tune(args: argparse.Namespace) -> int:
    """Run (or complete) the tuning grid of the parsed ``tune`` options; returns the exit status.

    Raises
    ------
    ConfigError
        The grid cannot run (a loss without ``+sr``, a repeating or too large grid, an invalid
        value, no held-out split, an unwritable ``--out``).
    """
    overrides = overrides_from(args)
    overrides.setdefault("holdout", DEFAULT_HOLDOUT)
    if overrides["holdout"] is None or overrides["holdout"] == 0:
        raise ConfigError("tune scores a held-out split: --holdout must be a fraction in (0, 0.5)")
    quiet = overrides.pop("quiet", False)
    share_threads(overrides, args.jobs)
    base = resolve_config(overrides, args.config)
    if not base.with_sr:
        raise ConfigError(
            f"tune chooses lam0 and tau of a sparse-regularized loss; --loss {base.loss!r} has no '+sr'"
        )
    lam0s, taus = list(args.lam0s or DEFAULT_LAM0S), list(args.taus or DEFAULT_TAUS)
    schedules = list(args.schedules or [base.lam_schedule])
    for flag, items in (("--lam0s", lam0s), ("--taus", taus), ("--schedules", schedules)):
        refuse_repeats(flag, items)
    default = (base.lam0, base.tau, base.lam_schedule)
    points = list(product(lam0s, taus, schedules))
    if default not in points:
        points.insert(0, default)  # a choice must beat the default, so the default is scored too
    if args.rungs < 1:
        raise ConfigError(f"--rungs must be an integer >= 1; got {args.rungs}")
    if len(points) > args.max_runs:
        raise ConfigError(
            f"the grid --lam0s x --taus x --schedules (with the preset's own point) has {len(points)} "
            f"points, more than --max-runs {args.max_runs}; shrink the grid or raise --max-runs"
        )
    out = Path(
        overrides.pop("out", None)
        or f"runs/tune-{base.preset}-{base.loss}-{noise_tag(base.noise)}-seed{base.seed}"
    )
    runs = []
    for lam0, tau, schedule in points:
        # repr keeps distinct numbers apart (0.1 and 0.10000001 print alike with :g).
        run_dir = out / f"lam0-{lam0!r}-tau-{tau!r}-{schedule}"
        settings = {**overrides, "lam0": lam0, "tau": tau, "lam_schedule": schedule}
        settings.update(out=str(run_dir), quiet=True)
        resolve_config(settings, args.config)  # every point is checked before any runs
        label = f"[{len(runs) + 1}/{len(points)}] lam0={lam0:g} tau={tau:g} {schedule}"
        runs.append((label, run_dir, settings))
    make_out_dir(out, "tune")

    def say(message: str) -> None:
        if not quiet:
            print(message, flush=True)

    holdout = overrides["holdout"]
    say(
        f"tune: {len(points)} runs of {base.loss} on {100 * (1 - holdout):g}% of the noisy training set, "
        f"scored by held-out noisy accuracy on the other {100 * holdout:g}%, in {out}"
    )
    finishers, failures, spent = _halve(runs, home=points.index(default), base=base, args=args, say=say)
    if failures:
        print(f"{len(failures)} run(s) failed:\n" + "\n".join(failures), file=sys.stderr)
        return 1
    budget = f"budget: {spent} of {len(points) * base.epochs} epochs ({len(finishers)} points ran to the end)"
    runs = [runs[i] for i in finishers]
    points = [points[i] for i in finishers]
    scores = [_held_out_score(run_dir) for _, run_dir, _ in runs]
    accuracy = [score[0] for score in scores]  # type: ignore[index]
    n = scores[0][1]  # type: ignore[index]
    home = points.index(default)
    chosen, verdict = _choose(points, accuracy, n, home)
    lam0, tau, schedule = points[chosen]
    tuned = _tuned_settings(overrides, base.to_dict(), lam0, tau, schedule)
    path = out / TUNED_FILE
    atomic_write_bytes(path, (json.dumps(tuned, indent=2) + "\n").encode())
    table = _table(points, accuracy, n, home, chosen)
    atomic_write_bytes(out / "tune.md", (table + "\n" + budget + "\n\n" + verdict + "\n").encode())
    print(table)
    print(budget)
    print(f"{verdict}\nsettings: {path}  (train with: python -m sparse_reg.train --config {path})")
    return 0


def rung_epochs(epochs: int, rungs: int) -> list[int]:
    """The epochs at which successive halving scores the grid: ``ceil(epochs / 2**k)``, k = R-1..0."""
    return sorted({max(1, math.ceil(epochs / 2**k)) for k in range(rungs)})


def _halve(
    runs: list[tuple[str, Path, dict[str, Any]]],
    *,
    home: int,
    base: Any,
    args: argparse.Namespace,
    say: Any,
) -> tuple[list[int], list[str], int]:
    """Successive halving: the indices of the points that ran to the end, the failures, and the
    epochs spent. After each rung but the last, the better half by held-out score goes on (ties:
    grid order), with the default point always among them."""
    alive = list(range(len(runs)))
    spent, done = 0, 0
    for epoch in rung_epochs(base.epochs, args.rungs):
        final = epoch == base.epochs
        stage = [(label, run_dir, {**settings, "stop_after": None if final else epoch})
                 for label, run_dir, settings in (runs[i] for i in alive)]
        say(f"rung: {len(alive)} point(s) to epoch {epoch} of {base.epochs}")
        failures = execute(stage, args.jobs, args.config, say, describe=_held_out_line)
        spent += len(alive) * (epoch - done)
        done = epoch
        if failures or final:
            return alive, failures, spent
        scores = {i: _rung_score(runs[i][1], base.select, epoch) for i in alive}
        ranked = sorted(alive, key=lambda i: (-scores[i], i))
        keep = set(ranked[: math.ceil(len(alive) / 2)]) | {home}
        for i in alive:
            if i not in keep:
                score = f"held-out noisy accuracy {100 * scores[i]:.2f}%"
                say(f"{runs[i][0]}: stopped at epoch {epoch} ({score})")
        alive = [i for i in alive if i in keep]
    return alive, [], spent


def _returned_held_out(summary: dict[str, Any]) -> float:
    """The held-out noisy accuracy of the model a run returned (the selected epoch's, else the last)."""
    return (summary.get("selected") or summary["final"])["holdout_acc"]


def _held_out_line(summary: dict[str, Any]) -> str:
    # tune never reports the test set: its runs are judged on the held-out noisy labels only.
    return f"held-out noisy accuracy {100 * _returned_held_out(summary):.2f}%"


def _rung_score(run_dir: Path, select: str, epoch: int) -> float:
    """The held-out noisy accuracy of the model a run would return if stopped at ``epoch`` (a run
    that went further before, in an earlier call, is read up to ``epoch`` only)."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    held = [row["holdout_acc"] for row in rows[:epoch]]
    return max(held) if select == "holdout" else held[-1]


def _point(point: tuple[float, float, str]) -> str:
    return f"lam0={point[0]:g} tau={point[1]:g} {point[2]}"


def _choose(
    points: list[tuple[float, float, str]], accuracy: list[float], n: int, home: int
) -> tuple[int, str]:
    """The chosen point (the best, unless within the sampling error of the default) and why."""
    best = max(range(len(points)), key=lambda i: (accuracy[i], -i))  # ties: the first in grid order
    error = math.hypot(sampling_error(accuracy[best], n), sampling_error(accuracy[home], n))
    gap = accuracy[best] - accuracy[home]
    if gap > error:
        return best, (
            f"chosen: {_point(points[best])} (held-out noisy accuracy {100 * accuracy[best]:.2f}%, "
            f"{100 * gap:.2f} points above the default {_point(points[home])}, more than the "
            f"{100 * error:.2f}-point sampling error of the difference on {n} held-out labels)"
        )
    return home, (
        f"kept the default: {_point(points[home])} ({100 * accuracy[home]:.2f}%); the best point, "
        f"{_point(points[best])} ({100 * accuracy[best]:.2f}%), is not above it by more than the "
        f"{100 * error:.2f}-point sampling error of the difference on {n} held-out labels"
    )


def _held_out_score(run_dir: Path) -> tuple[float, int] | None:
    """The held-out noisy accuracy of the model the run returned, and the held-out size."""
    path = run_dir / "summary.json"
    if not path.exists():
        return None
    summary = json.loads(path.read_text())
    return _returned_held_out(summary), summary["holdout_size"]


def _tuned_settings(
    overrides: dict[str, Any], resolved: dict[str, Any], lam0: float, tau: float, schedule: str
) -> dict[str, Any]:
    """The run to train: what was given (without where and how it ran), the loss, noise and preset
    it was tuned for, and the chosen lam0, tau and schedule. The held-out split stays only where
    the chosen schedule or the selection reads it."""
    given = {k: v for k, v in overrides.items() if k not in RUNTIME_KEYS and k not in ("out", "seed")}
    if schedule != "auto" and resolved["select"] != "holdout":
        given.pop("holdout", None)
    return {
        **given,
        "preset": resolved["preset"],
        "loss": resolved["loss"],
        "noise": resolved["noise"],
        "lam0": lam0,
        "tau": tau,
        "lam_schedule": schedule,
    }


def _table(
    points: list[tuple[float, float, str]], accuracy: list[float], n: int, home: int, chosen: int
) -> str:
    """Markdown: one row per grid point, its held-out noisy accuracy and that score's sampling error."""
    lines = [
        f"**held-out noisy accuracy (%)** of each run's returned model, ± its sampling error on {n} labels",
        "",
        "| lam0 | tau | schedule | held-out noisy accuracy | |",
        "|---|---|---|---|---|",
    ]
    for i, (lam0, tau, schedule) in enumerate(points):
        note = ", ".join(word for word, on in (("default", i == home), ("chosen", i == chosen)) if on)
        score = f"{100 * accuracy[i]:.2f} ± {100 * sampling_error(accuracy[i], n):.2f}"
        lines.append(
            f"| {lam0:g} | {tau:g} | {schedule} | {f'**{score}**' if i == chosen else score} | {note} |"
        )
    return "\n".join(lines) + "\n"
