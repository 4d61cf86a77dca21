"""Atomic checkpoints holding everything an exact resume needs, loadable without executing code.

A checkpoint is written to a temporary file in the run directory, flushed to disk and moved over
the previous one with :func:`os.replace`, so a crash at any moment leaves either the old or the new
checkpoint, never a torn one (a temporary file an interrupted write leaves behind is removed by
:func:`remove_stale_temporaries` at the next start). Everything in it is a tensor, a number, a
string or a container of these, so :func:`load` reads it with ``torch.load(weights_only=True)``:
a crafted file cannot run code, it can only fail to load.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "CHECKPOINT",
    "CheckpointError",
    "atomic_write_bytes",
    "file_sha256",
    "fingerprint",
    "global_rng_state",
    "load",
    "remove_stale_temporaries",
    "save",
    "set_global_rng_state",
]

#: File name of the checkpoint inside the run directory.
CHECKPOINT = "checkpoint.pt"

_TMP_SUFFIX = ".tmp"


class CheckpointError(ValueError):
    """A checkpoint cannot be loaded, or belongs to another run; the message names the file."""


def _temporary_prefix(name: str) -> str:
    return f".{name}."


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` atomically (temporary file, fsync, :func:`os.replace`)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temporary_prefix(path.name), suffix=_TMP_SUFFIX)
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


def remove_stale_temporaries(directory: Path, names: Iterable[str]) -> list[Path]:
    """Delete the temporary files that :func:`atomic_write_bytes` of ``names`` left in ``directory``.

    Only a process that owns the directory (holds its lock) may call this: another writer's
    temporary file would be removed under it. Returns the files removed.
    """
    removed = []
    for name in names:
        for path in Path(directory).glob(f"{_temporary_prefix(name)}*{_TMP_SUFFIX}"):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def fingerprint(settings: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``settings`` (sorted keys): equal exactly when they are."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def _umask() -> int:
    # The umask can only be read by setting it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def global_rng_state() -> dict[str, Any]:
    """States of the global python, NumPy and torch (CPU and CUDA) generators, as plain data.

    NumPy's Mersenne Twister key becomes an int64 tensor, so the state pickles without NumPy
    objects and loads under ``weights_only=True``.
    """
    legacy = np.random.get_state(legacy=False)  # noqa: NPY002 (the global stream is saved as it is)
    state = {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": legacy["bit_generator"],
            "key": torch.from_numpy(legacy["state"]["key"].astype(np.int64)),
            "pos": int(legacy["state"]["pos"]),
            "has_gauss": int(legacy["has_gauss"]),
            "gauss": float(legacy["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_global_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators from :func:`global_rng_state`'s record."""
    numpy_state = state["numpy"]
    random.setstate(_as_tuples(state["python"]))
    np.random.set_state(  # noqa: NPY002
        {
            "bit_generator": numpy_state["bit_generator"],
            "state": {"key": numpy_state["key"].numpy().astype(np.uint32), "pos": numpy_state["pos"]},
            "has_gauss": numpy_state["has_gauss"],
            "gauss": numpy_state["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value: Any) -> Any:
    # random.setstate needs tuples; keep them tuples whatever the serialiser made of them.
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


#: The sealed form of a checkpoint: the :func:`torch.save` bytes of the state, as one uint8 tensor,
#: beside their SHA-256, so that a flipped bit anywhere in the state is found before it is used.
SEAL = "sparse_reg.checkpoint.sha256"


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (``model.pt``'s is recorded in the summary, checked by ``evaluate``)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save(run_dir: Path, state: dict[str, Any]) -> None:
    """Serialise ``state`` with :func:`torch.save`, seal it with its SHA-256 (:data:`SEAL`) and
    write it atomically as the run's checkpoint."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    sealed = io.BytesIO()
    torch.save(
        {
            "format": SEAL,
            "sha256": hashlib.sha256(payload).hexdigest(),
            "payload": torch.frombuffer(bytearray(payload), dtype=torch.uint8),
        },
        sealed,
    )
    atomic_write_bytes(Path(run_dir) / CHECKPOINT, sealed.getvalue())


def _unseal(outer: Any, path: Path) -> Any:
    """The state inside a sealed checkpoint, checked against its SHA-256; an unsealed one (written
    before checkpoints were sealed) as it is."""
    if not (isinstance(outer, dict) and outer.get("format") == SEAL):
        return outer
    payload = outer.get("payload")
    if not isinstance(payload, torch.Tensor) or payload.dtype != torch.uint8 or payload.ndim != 1:
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt (its payload is not a byte string)")
    data = payload.numpy().tobytes()
    if hashlib.sha256(data).hexdigest() != outer.get("sha256"):
        raise CheckpointError(
            f"checkpoint {str(path)!r} is corrupt: its contents do not match the SHA-256 written with "
            "them; use --overwrite to start the run again"
        )
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def load(run_dir: Path) -> dict[str, Any] | None:
    """The run's checkpoint (tensors on the CPU), or ``None`` when there is none yet.

    Raises
    ------
    CheckpointError
        The file cannot be read, its contents do not match their SHA-256 (a sealed checkpoint),
        it is not a checkpoint of this trainer, or it holds anything but tensors and plain data
        (``weights_only=True`` refuses any other object, so loading a crafted file never executes
        code).
    """
    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        return None
    try:
        # Generator states must stay CPU byte tensors; load_state_dict moves the rest to the device.
        state = _unseal(torch.load(path, map_location="cpu", weights_only=True), path)
    except CheckpointError:
        raise
    except Exception as exc:  # any failure to unpickle means the file is not a checkpoint we wrote
        reason = (str(exc).strip().splitlines() or [""])[0]
        raise CheckpointError(
            f"checkpoint {str(path)!r} cannot be loaded ({type(exc).__name__}: {reason}); "
            "use --overwrite to start the run again"
        ) from None
    missing = {"epoch", "history", "fingerprint", "config"} - set(state) if isinstance(state, dict) else None
    if missing is None or missing:
        what = f"lacks {', '.join(sorted(missing))}" if missing else f"holds a {type(state).__name__}"
        raise CheckpointError(
            f"checkpoint {str(path)!r} is not a checkpoint of this trainer (it {what}); "
            "use --overwrite to start the run again"
        )
    return state
