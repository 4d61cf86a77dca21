"""Exclusive ownership of a run directory by one process, through an OS lock.

The lock is :func:`fcntl.flock` on ``<run_dir>/run.lock``: the kernel releases it when the holding
process exits, however it exits (SIGKILL included), so a dead run never blocks the next one and a
live run can never be shared. The holder's process id is written into the file, for the message
a second run gets.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: runs are not protected from each other
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_FILE", "RunDirInUseError", "RunDirLock", "waiting_lock"]

#: File name of the lock inside the run directory.
LOCK_FILE = "run.lock"


class RunDirInUseError(RuntimeError):
    """Another live process owns the run directory."""


class RunDirLock:
    """Hold the lock of ``run_dir`` from :meth:`acquire` until :meth:`release` (or process exit)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock without waiting.

        Raises
        ------
        RunDirInUseError
            A live process holds it; the message names the directory and that process.
        OSError
            The lock file cannot be created (the directory is missing or not writable).
        """
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise RunDirInUseError(
                    f"run directory {str(self.path.parent)!r} is in use by another run "
                    f"(process {holder}); wait for it to finish, or choose another --out"
                ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def discard_if_unused(self) -> None:
        """Remove the directory if it holds nothing but the lock: a run that failed before writing
        anything (bad data, a model that does not fit) leaves nothing behind."""
        if self._fd is None or [p.name for p in self.path.parent.iterdir()] != [LOCK_FILE]:
            return
        self.path.unlink(missing_ok=True)
        try:
            self.path.parent.rmdir()
        except OSError:  # something appeared in it meanwhile: it stays
            pass

    def release(self) -> None:
        """Give the lock up (closing the file releases it); the file itself stays."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def waiting_lock(path: Path) -> Iterator[None]:
    """Hold ``flock`` on ``path`` for the ``with`` block, waiting for another holder to finish.

    For short writes that several processes may make at once (a sweep's tables): unlike
    :class:`RunDirLock` it waits instead of refusing.
    """
    fd = os.open(Path(path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
