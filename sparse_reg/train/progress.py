"""What a run shows while it goes: a tqdm bar on a terminal, progress lines in a log.

On a terminal (stderr is a TTY) the bar advances per step. Anywhere else (``nohup``, a CI log, a
notebook cell, a pipe) a bar would print nothing useful until the end, so one line per epoch goes
to stderr instead, at most one every ``every`` seconds, and always for the first and the last epoch:

.. code-block:: text

    digits-ce+sr-sym0.6-seed0 epoch 25/50: loss 0.5124, test 93.70%, lam 16, lr 0.005, 0.05 s/epoch, eta 1 s
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["Progress", "format_epoch"]


def _test_text(row: dict[str, Any]) -> str:
    # None: an epoch that eval_every skipped; NaN: an empty test set.
    test = row.get("test_acc")
    return "n/a" if test is None or test != test else f"{100 * test:.2f}%"


def format_epoch(name: str, row: dict[str, Any], epochs: int, eta_s: float) -> str:
    """One progress line for the metrics ``row`` of an epoch (columns as in ``metrics.csv``)."""
    test_text = _test_text(row)
    held = row.get("holdout_acc")
    held_text = "" if held is None else f"held-out noisy {100 * held:.2f}%, "
    return (
        f"{name} epoch {row['epoch']}/{epochs}: loss {row['loss']:.4g}, test {test_text}, {held_text}"
        f"lam {row['lam']:.3g}, lr {row['lr']:.3g}, {row['seconds']:.2f} s/epoch, eta {eta_s:.0f} s"
    )


class Progress:
    """The progress display of one run.

    Parameters
    ----------
    mode : {"bar", "lines", "off"}
        ``"bar"``: tqdm, updated per step; ``"lines"``: :func:`format_epoch` lines; ``"off"``.
    name
        The run's name, at the start of every line.
    epochs, steps_per_epoch, start_epoch
        Size of the run and where it starts (a resumed run starts past 0).
    every
        Least number of seconds between two progress lines (0: every epoch).
    stream
        Where the bar or the lines go (default: stderr).
    """

    def __init__(
        self,
        mode: str,
        name: str,
        *,
        epochs: int,
        steps_per_epoch: int,
        start_epoch: int = 0,
        every: float = 10.0,
        stream: TextIO | None = None,
    ) -> None:
        if mode not in ("bar", "lines", "off"):
            raise ValueError(f"mode must be 'bar', 'lines' or 'off'; got {mode!r}")
        self.mode, self.name, self.epochs, self.every = mode, name, epochs, every
        self.stream = sys.stderr if stream is None else stream
        self._start_epoch = start_epoch
        self._last_line = -float("inf")
        self._seconds = 0.0
        self.bar = None
        if mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=epochs * steps_per_epoch,
                initial=start_epoch * steps_per_epoch,
                desc=name,
                unit="step",
                file=self.stream,
                dynamic_ncols=True,
            )

    @staticmethod
    def choose(show: bool | None, quiet: bool, isatty: bool) -> str:
        """The mode for an explicit ``show`` (``None``: decide by ``isatty``) and ``quiet``."""
        if show is False or (show is None and quiet):
            return "off"
        return "bar" if isatty else "lines"

    def step(self) -> None:
        """One optimisation step done."""
        if self.bar is not None:
            self.bar.update(1)

    def epoch(self, row: dict[str, Any]) -> None:
        """An epoch done, with its metrics row."""
        self._seconds += row["seconds"]
        if self.bar is not None:
            self.bar.set_postfix(test=_test_text(row), lam=f"{row['lam']:.3g}", refresh=False)
            return
        if self.mode != "lines":
            return
        now = time.monotonic()
        done = row["epoch"]
        boundary = done == self._start_epoch + 1 or done == self.epochs
        if boundary or now - self._last_line >= self.every:
            remaining = (self.epochs - done) * self._seconds / max(done - self._start_epoch, 1)
            print(format_epoch(self.name, row, self.epochs, remaining), file=self.stream, flush=True)
            self._last_line = now

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
