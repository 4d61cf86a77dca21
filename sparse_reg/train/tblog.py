"""Optional TensorBoard logging of a run (``--tensorboard``): every metric of every epoch.

The event files go to ``<run dir>/tensorboard``; open them with ``tensorboard --logdir runs``.
Each scalar is tagged by its metrics column (:data:`~sparse_reg.train.report.METRIC_FIELDS`) under
a group, e.g. ``accuracy/test_acc``, with the epoch as the step.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from sparse_reg.train.config import ConfigError

__all__ = ["DIRECTORY", "TensorBoardLog"]

#: Directory of the event files inside the run directory.
DIRECTORY = "tensorboard"

_GROUPS = {
    "test_acc": "accuracy",
    "holdout_acc": "accuracy",
    "train_acc_clean": "accuracy",
    "train_acc_flipped": "accuracy",
    "memorised": "accuracy",
    "train_acc_noisy": "accuracy",
    "loss": "loss",
    "base": "loss",
    "sr_term": "loss",
    "penalty": "loss",
    "lam": "schedule",
    "lr": "schedule",
    "seconds": "time",
}


class TensorBoardLog:
    """A TensorBoard writer for one run.

    Parameters
    ----------
    run_dir
        The run directory.
    start_epoch
        Epochs already done (a resumed run): events a crashed run logged at or past its last
        epoch are purged, and the run logs that epoch again (a kill between the checkpoint and the
        events of an epoch would otherwise lose it).

    Raises
    ------
    ConfigError
        TensorBoard is not installed.
    """

    def __init__(self, run_dir: Path, start_epoch: int = 0) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(
                "--tensorboard needs the tensorboard package: pip install 'sparse_reg[tensorboard]'"
            ) from None
        self.writer = SummaryWriter(
            log_dir=str(Path(run_dir) / DIRECTORY), purge_step=start_epoch if start_epoch else None
        )

    def epoch(self, row: dict[str, Any]) -> None:
        """Log the metrics ``row`` of one epoch (non-finite values are left out)."""
        for key, group in _GROUPS.items():
            value = row.get(key)
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(f"{group}/{key}", value, global_step=row["epoch"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
