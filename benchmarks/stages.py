"""Time-boxed stages: each one a subprocess whose output goes to its own log file.

A stage runs in a new process session, so when its box runs out the whole group (the sweep's
children too) is stopped: SIGTERM, then SIGKILL five seconds later. One stage that hangs or fails
therefore costs at most its box, and the stages after it still run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["Outcome", "Running", "skipped", "start"]

#: Seconds between SIGTERM and SIGKILL when a box runs out.
GRACE_SECONDS = 5.0


@dataclass
class Outcome:
    """How a stage ended.

    Attributes
    ----------
    name
        The stage's name.
    status
        ``"ok"``, ``"failed"`` (non-zero exit), ``"timed out"`` (stopped at its box) or
        ``"skipped"`` (not run; ``detail`` says why).
    seconds
        Wall time from start to end.
    returncode
        The exit status, or ``None`` when the stage did not end by itself.
    box
        The time box in seconds.
    detail
        One line for the summary (filled in by whoever reads the stage's results).
    """

    name: str
    status: str
    seconds: float
    returncode: int | None
    box: float
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def skipped(name: str, reason: str) -> Outcome:
    """The outcome of a stage that was not run, with the reason."""
    return Outcome(name, "skipped", 0.0, None, 0.0, reason)


class Running:
    """A started stage; :meth:`wait` ends it within its box."""

    def __init__(self, name: str, command: list[str], log: Path, box: float, env: dict[str, str]) -> None:
        self.name, self.command, self.log, self.box = name, command, log, box
        self.started = time.monotonic()
        with open(log, "ab") as out:
            out.write(f"$ {' '.join(command)}\n".encode())
            out.flush()
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=env, start_new_session=True)

    def wait(self) -> Outcome:
        """Wait until the stage ends or its box runs out (then stop its process group)."""
        remaining = self.box - (time.monotonic() - self.started)
        try:
            code: int | None = self.process.wait(timeout=max(remaining, 0.0))
        except subprocess.TimeoutExpired:
            self._stop()
            code = None
        seconds = time.monotonic() - self.started
        status = "timed out" if code is None else "ok" if code == 0 else "failed"
        return Outcome(self.name, status, seconds, code, self.box)

    def _stop(self) -> None:
        for sig, grace in ((signal.SIGTERM, GRACE_SECONDS), (signal.SIGKILL, None)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue
        self.process.wait()


def start(name: str, command: list[str], log: Path, box: float, env: dict[str, str] | None = None) -> Running:
    """Start ``command`` as stage ``name``, appending its output to ``log``, boxed to ``box`` seconds."""
    return Running(name, command, log, box, dict(os.environ if env is None else env))
