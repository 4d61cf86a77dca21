"""Atomic checkpoints holding everything an exact resume needs.

A checkpoint is written to a temporary file in the run directory, flushed to disk and moved over
the previous one with :func:`os.replace`, so a crash at any moment leaves either the old or the new
checkpoint, never a torn one.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["CHECKPOINT", "atomic_write_bytes", "global_rng_state", "load", "save", "set_global_rng_state"]

#: File name of the checkpoint inside the run directory.
CHECKPOINT = "checkpoint.pt"


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` atomically (temporary file, fsync, :func:`os.replace`)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates the file private (0600); a run's files get what open() would give them.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    # The umask can only be read by setting it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def global_rng_state() -> dict[str, Any]:
    """States of the global python, NumPy and torch (CPU and CUDA) generators."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002 (the global stream is saved as it is)
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_global_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(run_dir: Path, state: dict[str, Any]) -> None:
    """Serialise ``state`` with :func:`torch.save` and write it atomically as the run's checkpoint."""
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(Path(run_dir) / CHECKPOINT, buffer.getvalue())


def load(run_dir: Path) -> dict[str, Any] | None:
    """The run's checkpoint (tensors on the CPU), or ``None`` when there is none yet."""
    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        return None
    # weights_only=False: the checkpoint holds python and NumPy RNG states; it is our own file.
    # Generator states must stay CPU byte tensors; load_state_dict moves the rest to the device.
    return torch.load(path, map_location="cpu", weights_only=False)
