"""Per-epoch listeners: the small objects a training run calls once per epoch.

After each epoch the loop (:func:`sparse_reg.train.loop.run`) builds the epoch's metrics row and
hands it to two lists of listeners, in order:

1. the *deciders*, which may add to the row and hold state that the checkpoint keeps
   (:class:`HoldoutMonitor`, :class:`LambdaControl`, :class:`Selector`);
2. then the checkpoint is written, with every decider's state;
3. then the *reporters*, which only show or write what was decided (:class:`MetricsFiles`,
   :class:`ProgressLines`, :class:`TensorBoardScalars`, and :class:`CurvesPlot` when the run ends).

A decider's state is in the checkpoint before any reporter writes the epoch, so a run killed at
any moment resumes with the same decisions, bit for bit. Each listener is tested on its own.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from sparse_reg.schedule import AdaptiveLambda
from sparse_reg.train import report

__all__ = [
    "CurvesPlot",
    "HoldoutMonitor",
    "LambdaControl",
    "Listener",
    "MetricsFiles",
    "ProgressLines",
    "Selector",
    "TensorBoardScalars",
    "holdout_accuracy",
]

#: The metrics row's key of the held-out noisy accuracy.
HOLDOUT_KEY = "holdout_acc"


class Listener:
    """Called by the loop once per finished epoch; stateless unless it says otherwise.

    ``key`` names its state in the checkpoint (``""``: it keeps none).
    """

    key = ""

    def step(self) -> None:
        """One optimizer step done (a progress bar advances)."""

    def epoch_end(self, row: dict[str, Any], model: torch.nn.Module) -> None:
        """The epoch's metrics ``row`` (a decider may add to it) and the model after the epoch."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the state :meth:`state_dict` gave (a resumed run)."""

    def resumed(self, history: list[dict[str, Any]]) -> None:
        """A resumed run starts with this history; a reporter writes again what a kill between the
        checkpoint and its own write of the last epoch may have lost."""

    def close(self) -> None:
        """The run stopped (finished, failed or interrupted)."""


@torch.no_grad()
def holdout_accuracy(model: torch.nn.Module, data: Any, ctx: Any, amp: bool) -> float:
    """Accuracy of ``model`` on the held-out split against its *noisy* labels, over every rank."""
    from sparse_reg.train.loop import predict

    model.eval()
    pred = predict(model, data, "holdout", amp)
    counts = torch.stack(
        [(pred == data.y_holdout).sum(), torch.tensor(data.y_holdout.numel(), device=data.device)]
    ).to(torch.float64)
    hits, total = ctx.all_reduce_sum(counts).tolist()
    return hits / total if total else math.nan


class HoldoutMonitor(Listener):
    """Scores the held-out split (noisy labels) every epoch, as ``row["holdout_acc"]``.

    It is the run's one signal that needs no clean label: under symmetric noise with
    :math:`\\eta < (K-1)/K` it is an increasing affine function of the clean accuracy
    (``proofs/theorem3_noisy_selection.py``). A forward pass over a small split: cheap next to an
    epoch of training, and independent of ``eval_every``.
    """

    def __init__(self, data: Any, ctx: Any, amp: bool) -> None:
        self.data, self.ctx, self.amp = data, ctx, amp

    def epoch_end(self, row: dict[str, Any], model: torch.nn.Module) -> None:
        row[HOLDOUT_KEY] = holdout_accuracy(model, self.data, self.ctx, self.amp)


class LambdaControl(Listener):
    """Feeds each epoch's held-out score to an :class:`~sparse_reg.AdaptiveLambda`.

    The criterion holds the controller and saves its state (as it does the open-loop schedule's),
    so this listener keeps none of its own; the next epoch trains with the weight chosen here.
    """

    def __init__(self, control: AdaptiveLambda) -> None:
        self.control = control

    def epoch_end(self, row: dict[str, Any], model: torch.nn.Module) -> None:
        score = row[HOLDOUT_KEY]
        # An empty rank's NaN cannot happen (the split is checked to hold every class); a NaN
        # score would mean a broken model, which the loss check has already stopped.
        self.control.update(float(score))


class Selector(Listener):
    """Keeps the weights of the epoch with the best ``metric`` (the earliest among ties).

    Its state (best score, its epoch, and those weights on the CPU) is in the checkpoint, so the
    model a run returns is the same whether or not it was interrupted.
    """

    key = "selector"

    def __init__(self, metric: str = HOLDOUT_KEY) -> None:
        self.metric = metric
        self.best = -math.inf
        self.epoch: int | None = None
        self.weights: dict[str, torch.Tensor] | None = None

    def epoch_end(self, row: dict[str, Any], model: torch.nn.Module) -> None:
        score = row.get(self.metric)
        if score is not None and score > self.best:
            self.best, self.epoch = float(score), int(row["epoch"])
            self.weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    def state_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "best": self.best, "epoch": self.epoch, "weights": self.weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.metric, self.best, self.epoch, self.weights = (
            state["metric"], state["best"], state["epoch"], state["weights"]
        )


class MetricsFiles(Listener):
    """Rewrites ``metrics.csv`` and ``metrics.jsonl`` with the whole history, every epoch."""

    def __init__(self, run_dir: Path, history: list[dict[str, Any]]) -> None:
        self.run_dir, self.history = run_dir, history

    def epoch_end(self, row: dict[str, Any], model: torch.nn.Module) -> None:
        report.write_metrics(self.run_dir, self.history)

    def resumed(self, history: list[dict[str, Any]]) -> None:
        report.write_metrics(self.run_dir, history)  # the checkpoint is written first: it may lead by one


class ProgressLines(Listener):
    """The progress display (:class:`~sparse_reg.train.progress.Progress`): bar or lines."""

    def __init__(self, progress: Any) -> None:
        self.progress = progress

    def step(self) -> None:
        self.progress.step()

    def epoch_end(self, row: dict[str, Any], model: torch.nn.Module) -> None:
        self.progress.epoch(row)

    def close(self) -> None:
        self.progress.close()


class TensorBoardScalars(Listener):
    """Every metric of every epoch for TensorBoard (``--tensorboard``)."""

    def __init__(self, board: Any) -> None:
        self.board = board

    def epoch_end(self, row: dict[str, Any], model: torch.nn.Module) -> None:
        self.board.epoch(row)

    def resumed(self, history: list[dict[str, Any]]) -> None:
        if history:
            self.board.epoch(history[-1])  # purged on opening (TensorBoardLog), logged once again

    def close(self) -> None:
        self.board.close()


class CurvesPlot(Listener):
    """``curves.png`` from the whole history, drawn once when the run stops."""

    def __init__(self, run_dir: Path, history: list[dict[str, Any]], title: str) -> None:
        self.run_dir, self.history, self.title = run_dir, history, title

    def close(self) -> None:
        if self.history:
            report.plot_curves(self.run_dir, self.history, self.title)
