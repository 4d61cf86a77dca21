r"""``python -m sparse_reg.train tune``: :math:`\lambda_0` and :math:`\tau` chosen from noisy labels alone.

A fixed fraction ``holdout`` of the *noisy* training set is held out, with its noisy labels, and
replaces the test set (:func:`sparse_reg.train.data.prepare`), so the clean test set is never
read. Every point of the grid ``lam0s x taus`` is one full run (the same epochs, seed and other
settings) on the rest of the training set; the point with the highest last-epoch accuracy on the
held-out noisy labels wins (ties: the first in grid order). Under symmetric noise with
:math:`\eta < (K-1)/K` the noisy held-out accuracy is an increasing affine function of the clean
accuracy, so the choice is the one the clean labels would make (``proofs/theorem3_noisy_selection.py``).

Budget: the grid costs ``len(lam0s) * len(taus)`` runs, ``--jobs`` at a time; a grid of more than
``--max-runs`` points is refused before anything runs. A shorter proxy (``--epochs``) keeps the
preset's :math:`\lambda` range and pace through the progress clock.

The chosen settings are printed and written to ``<out>/tuned.json``, a file ``--config`` takes.
"""

from __future__ import annotations

import argparse
import json
import sys
from itertools import product
from pathlib import Path
from typing import Any

from sparse_reg.train.checkpoint import atomic_write_bytes
from sparse_reg.train.cli import overrides_from
from sparse_reg.train.config import RUNTIME_KEYS, ConfigError, noise_tag, resolve_config
from sparse_reg.train.sweep import execute, share_threads

__all__ = ["DEFAULT_HOLDOUT", "DEFAULT_LAM0S", "DEFAULT_MAX_RUNS", "DEFAULT_TAUS", "TUNED_FILE", "run_tune"]

DEFAULT_LAM0S = (1.0, 2.0, 4.0, 8.0)
DEFAULT_TAUS = (0.1, 0.3, 0.5)
DEFAULT_HOLDOUT = 0.2
DEFAULT_MAX_RUNS = 16
TUNED_FILE = "tuned.json"


def run_tune(args: argparse.Namespace) -> int:
    """Run (or complete) the tuning grid of the parsed ``tune`` options; returns the exit status.

    Raises
    ------
    ConfigError
        The grid cannot run (a loss without ``+sr``, an empty or too large grid, an invalid value)
        or the held-out fraction is outside (0, 0.5].
    """
    overrides = overrides_from(args)
    holdout = overrides.pop("holdout", DEFAULT_HOLDOUT)
    if not 0 < holdout <= 0.5:
        raise ConfigError(f"--holdout must be a fraction in (0, 0.5]; got {holdout!r}")
    lam0s, taus = list(args.lam0s or DEFAULT_LAM0S), list(args.taus or DEFAULT_TAUS)
    points = list(product(lam0s, taus))
    if len(points) > args.max_runs:
        raise ConfigError(
            f"the grid --lam0s x --taus has {len(points)} points, more than --max-runs {args.max_runs}; "
            "shrink the grid or raise --max-runs"
        )
    quiet = overrides.pop("quiet", False)
    share_threads(overrides, args.jobs)
    base = resolve_config(overrides, args.config)
    if not base.with_sr:
        raise ConfigError(
            f"tune chooses lam0 and tau of a sparse-regularized loss; --loss {base.loss!r} has no '+sr'"
        )
    out = Path(
        overrides.pop("out", None)
        or f"runs/tune-{base.preset}-{base.loss}-{noise_tag(base.noise)}-seed{base.seed}"
    )
    runs = []
    for lam0, tau in points:
        run_dir = out / f"lam0-{lam0:g}-tau-{tau:g}"
        settings = {
            **overrides, "lam0": lam0, "tau": tau, "holdout": holdout, "out": str(run_dir), "quiet": True
        }
        resolve_config(settings, args.config)  # every point is checked before any runs
        runs.append((f"[{len(runs) + 1}/{len(points)}] lam0={lam0:g} tau={tau:g}", run_dir, settings))

    def say(message: str) -> None:
        if not quiet:
            print(message, flush=True)

    say(
        f"tune: {len(points)} runs ({len(lam0s)} lam0 x {len(taus)} tau) of {base.loss} on "
        f"{100 * (1 - holdout):g}% of the noisy training set, scored on the other {100 * holdout:g}% "
        f"(noisy labels), in {out}"
    )
    failures = execute(runs, args.jobs, args.config, say)
    scores = [_held_out_accuracy(run_dir) for _, run_dir, _ in runs]
    if failures or any(score is None for score in scores):
        print(f"{len(failures)} run(s) failed:\n" + "\n".join(failures), file=sys.stderr)
        return 1
    best = max(range(len(points)), key=lambda i: (scores[i], -i))
    lam0, tau = points[best]
    chosen = _tuned_settings(overrides, base.to_dict(), lam0, tau)
    path = out / TUNED_FILE
    atomic_write_bytes(path, (json.dumps(chosen, indent=2) + "\n").encode())
    table = _table(lam0s, taus, scores)
    atomic_write_bytes(out / "tune.md", table.encode())
    print(table)
    print(
        f"chosen: lam0={lam0:g} tau={tau:g} (held-out noisy accuracy {100 * scores[best]:.2f}%)\n"
        f"settings: {path}  (train with: python -m sparse_reg.train --config {path})"
    )
    return 0


def _held_out_accuracy(run_dir: Path) -> float | None:
    path = run_dir / "summary.json"
    return json.loads(path.read_text())["final"]["test_acc"] if path.exists() else None


def _tuned_settings(
    overrides: dict[str, Any], resolved: dict[str, Any], lam0: float, tau: float
) -> dict[str, Any]:
    """The run to train: what was given (without where and how it ran), the loss, noise and preset
    it was tuned for, and the chosen lam0 and tau."""
    given = {k: v for k, v in overrides.items() if k not in RUNTIME_KEYS and k not in ("out", "seed")}
    return {
        **given,
        "preset": resolved["preset"],
        "loss": resolved["loss"],
        "noise": resolved["noise"],
        "lam0": lam0,
        "tau": tau,
    }


def _table(lam0s: list[float], taus: list[float], scores: list[float | None]) -> str:
    """Markdown: held-out noisy accuracy (%) per lam0 (rows) and tau (columns), the best in bold."""
    best = max(s for s in scores if s is not None)
    lines = [
        "**held-out noisy accuracy (%)**, last epoch",
        "",
        "| lam0 \\ tau | " + " | ".join(f"{t:g}" for t in taus) + " |",
        "|---|" + "---|" * len(taus),
    ]
    for i, lam0 in enumerate(lam0s):
        cells = []
        for j in range(len(taus)):
            score = scores[i * len(taus) + j]
            text = "–" if score is None else f"{100 * score:.2f}"
            cells.append(f"**{text}**" if score == best else text)
        lines.append(f"| {lam0:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
