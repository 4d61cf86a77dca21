"""Find host synchronisations per training step in the trainer's default path.

Usage (from the repository root)::

    python -m benchmarks.sync_check --device cuda --preset fashion-mnist --report sync.json

The trainer (:func:`sparse_reg.train.loop.run`, default options: torch backend, no AMP, no compile)
runs in this process under ``torch.cuda.set_sync_debug_mode("warn")``, which makes every
synchronising CUDA call (``.item()``, ``bool(tensor)``, a device-to-host copy, ...) warn. Each warning
is recorded with the Python line that caused it. The same epoch is trained twice on the same
images: with batch ``B`` and with ``B / 2``, which doubles the optimiser steps and leaves everything
once per epoch (evaluation, the epoch's loss read-back, the checkpoint) unchanged. A call site whose
count grows with the steps synchronises per step; the design allows only per-epoch ones. A warm-up
epoch first keeps one-time initialisation out of the counts.

The exit status is 1 when a per-step synchronisation is found, 0 otherwise. On a machine without
CUDA the sync debug mode does not exist: the runs still happen (the same code path), and the
report says that nothing could be checked, and why.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import traceback
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: Start of the warning torch gives for a synchronising call in sync debug mode "warn".
SYNC_WARNING = "called a synchronizing CUDA operation"
#: Frames of these files are skipped when naming a call site: the site is the caller's line.
_INTERNAL = ("/torch/", "/warnings.py", "sync_check.py")


def _site(stack: list[traceback.FrameSummary]) -> tuple[str, list[str]]:
    """The innermost frame outside torch, and up to four project frames around it, as text."""
    frames = [f for f in stack if not any(part in f.filename for part in _INTERNAL)]
    named = [f"{_short(f.filename)}:{f.lineno} ({f.name})" for f in frames]
    return (named[-1] if named else "unknown"), named[-4:]


def _short(filename: str) -> str:
    marker = "/sparse_reg/"
    return "sparse_reg/" + filename.rsplit(marker, 1)[1] if marker in filename else Path(filename).name


@contextmanager
def record_syncs() -> Iterator[tuple[Counter, dict[str, list[str]]]]:
    """Count synchronisation warnings per call site while the block runs.

    Yields the counter (site -> count) and, per site, the innermost project frames of its stack.
    """
    counts: Counter = Counter()
    stacks: dict[str, list[str]] = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("always", message=f".*{SYNC_WARNING}")
        shown = warnings.showwarning

        def hook(message, category, filename, lineno, file=None, line=None):
            if SYNC_WARNING not in str(message):
                return shown(message, category, filename, lineno, file, line)
            site, frames = _site(traceback.extract_stack()[:-1])
            counts[site] += 1
            stacks.setdefault(site, frames)
            return None

        warnings.showwarning = hook
        yield counts, stacks


def per_step_sites(few: Counter, many: Counter) -> list[str]:
    """Call sites whose count grows from the run with fewer steps to the run with more."""
    return sorted(site for site in many if many[site] > few.get(site, 0))


def _train(settings: dict[str, Any], run_dir: Path) -> None:
    """One run of the trainer with ``settings`` in ``run_dir``."""
    from sparse_reg.train.config import resolve_config
    from sparse_reg.train.loop import run

    run(resolve_config({**settings, "out": str(run_dir), "quiet": True}), overwrite=True, progress=False)


def check(settings: dict[str, Any], batch_size: int) -> dict[str, Any]:
    """Train a warm-up epoch, then one epoch at ``batch_size`` and one at half of it; the report.

    ``settings`` are trainer settings (``--config`` keys) with ``limit_train`` and ``epochs`` = 1.
    """
    import torch

    from sparse_reg.train.dist import choose_device

    cuda = choose_device(settings["device"], 0).type == "cuda"
    sizes = [batch_size, batch_size // 2]
    report: dict[str, Any] = {
        "settings": settings,
        "batch_sizes": sizes,
        "steps": [math.ceil(settings["limit_train"] / size) for size in sizes],
        "checked": cuda,
        "reason": None if cuda else (
            "torch.cuda.set_sync_debug_mode needs CUDA: the runs took the same code path, but a CPU "
            "has no host synchronisation to observe"),
    }
    counts: list[Counter] = []
    stacks: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="sync-check-") as scratch:
        _train({**settings, "batch_size": batch_size}, Path(scratch, "warm-up"))
        if cuda:
            torch.cuda.set_sync_debug_mode("warn")
        try:
            for size in sizes:
                with record_syncs() as (counted, where):
                    _train({**settings, "batch_size": size}, Path(scratch, f"batch-{size}"))
                counts.append(counted)
                stacks.update(where)
        finally:
            if cuda:
                torch.cuda.set_sync_debug_mode("default")
    growing = per_step_sites(*counts)
    report["sites"] = [
        {"site": site, "counts": [c.get(site, 0) for c in counts], "per_step": site in growing,
         "stack": stacks.get(site, [])}
        for site in sorted(set(counts[0]) | set(counts[1]))
    ]
    report["per_step"] = growing
    return report


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="trainer device (default cuda)")
    parser.add_argument("--preset", default="fashion-mnist")
    parser.add_argument("--loss", default="ce+sr")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--limit-train", type=int, default=2048, help="training images per epoch")
    parser.add_argument("--batch-size", type=int, default=128, help="the larger of the two batch sizes")
    parser.add_argument("--report", default=None, help="JSON file for the report (default: none)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    settings = {"preset": args.preset, "loss": args.loss, "device": args.device, "epochs": 1,
                "limit_train": args.limit_train, "limit_test": 256, "data_dir": args.data_dir}
    report = check(settings, args.batch_size)
    for line in describe(report):
        print(line)
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
    return 1 if report["per_step"] else 0


def describe(report: dict[str, Any]) -> list[str]:
    """The report as a few lines of text: the verdict, then each synchronising call site."""
    few, many = report["steps"]
    if not report["checked"]:
        lines = [f"not checked: {report['reason']}"]
    elif report["per_step"]:
        lines = [f"FAILED: {len(report['per_step'])} call site(s) synchronise per step "
                 f"(counts at {few} and {many} steps):"]
    else:
        lines = [f"no per-step synchronisation ({few} and {many} steps per epoch)"]
    for site in report["sites"]:
        mark = "per step" if site["per_step"] else "per epoch or run"
        lines.append(f"  {site['site']}: {site['counts'][0]} / {site['counts'][1]} ({mark}); "
                     f"via {' <- '.join(reversed(site['stack'][:-1])) or '-'}")
    return lines


if __name__ == "__main__":
    sys.exit(main())
