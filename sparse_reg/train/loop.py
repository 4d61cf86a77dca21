"""One training run: setup, the epoch loop, evaluation, checkpoints, resume.

Per epoch :math:`t` (0-indexed) the criterion uses
:math:`\\lambda_t = \\lambda_0\\rho^{\\lfloor t/r\\rfloor}` (or, with ``lam_unit`` ``"step"`` or
``"progress"``, the :math:`\\lambda` of each optimizer step; :func:`lambda_schedule`),
SGD runs over the noisy training set once, the cosine schedule steps, and the model is evaluated
on the test set and on the whole training set, split into the samples whose label was kept and
those whose label was flipped (scored against the clean label). Host synchronisation happens once
per epoch, not per step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sparse_reg.errors import DatasetError
from sparse_reg.schedule import AdaptiveLambda, LambdaSchedule
from sparse_reg.train import checkpoint, listeners, report, tblog
from sparse_reg.train.config import RUNTIME_KEYS, Config, ConfigError
from sparse_reg.train.data import DeviceData, prepare
from sparse_reg.train.dist import Context, setup
from sparse_reg.train.lock import RunDirInUseError, RunDirLock
from sparse_reg.train.losses import Criterion
from sparse_reg.train.models import build_model, memory_format
from sparse_reg.train.presets import PRESETS
from sparse_reg.train.progress import Progress

__all__ = ["NonFiniteLossError", "RunDirError", "run"]

#: Files a run writes; ``--overwrite`` removes exactly these and nothing else.
RUN_FILES = (
    "config.json",
    "metrics.csv",
    "metrics.jsonl",
    "curves.png",
    "summary.json",
    "summary.md",
    checkpoint.CHECKPOINT,
    "model.pt",
    # The last epoch's weights when model.pt holds the selected epoch's (--select holdout).
    "model-last.pt",
    # Written by ``evaluate``.
    "evaluation.json",
    "confusion.png",
)
#: Directories a run writes; ``--overwrite`` removes them whole.
RUN_DIRS = (tblog.DIRECTORY,)


class RunDirError(ValueError):
    """The run directory cannot be used as asked (exists, in use, unwritable, or holds a different run)."""


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


def _seed_everything(seed: int, deterministic: bool, compiled: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (third-party code may draw from the global stream)
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = False
    _deterministic_algorithms(deterministic, compiled)
    torch.backends.cudnn.deterministic = deterministic


def _deterministic_algorithms(mode: bool, compiled: bool) -> None:
    """``torch.use_deterministic_algorithms(mode, warn_only=True)``, without the compiler's import.

    The public function also sets ``torch._inductor.config.deterministic``, and importing that
    module loads torch._dynamo and torch._inductor (about 2 s). Only a compiled model reads that
    flag, so an eager run sets the eager switch alone. (torch 2.13's optimizers still import
    torch._dynamo on their first call, so this saves the import only where no optimizer runs.)
    """
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if compiled or setter is None:
        torch.use_deterministic_algorithms(mode, warn_only=True)
    else:
        setter(mode, warn_only=True)


def _build_model(config: Config, image_shape: tuple[int, int, int], num_classes: int) -> torch.nn.Module:
    """The run's model; with ``--data``, checked on one sample, so a misfit is a clear error."""
    try:
        with warnings.catch_warnings():
            # A model too small for the inputs warns of empty layers before it fails: the error says it.
            warnings.simplefilter("ignore", UserWarning)
            model = build_model(config.model, image_shape, num_classes)
        if config.data is not None:
            with torch.no_grad():
                model.eval()
                model(torch.zeros((1, *image_shape)))
                model.train()
    except (ValueError, RuntimeError) as exc:
        raise ConfigError(
            f"the model {config.model!r} cannot take inputs of shape {tuple(image_shape)}: "
            f"{str(exc).splitlines()[0]}; choose another --model (mlp takes any shape)"
        ) from None
    return model


def _stream_seed(seed: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def _own_run_dir(run_dir: Path, lock: RunDirLock) -> None:
    """Create ``run_dir``, take its lock and remove what interrupted writes left there.

    Raises
    ------
    RunDirError
        ``run_dir`` is a file, cannot be created or written, or another live run holds it.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"run directory {str(run_dir)!r} exists and is not a directory")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except RunDirInUseError as exc:
        raise RunDirError(str(exc)) from None
    except OSError as exc:
        raise RunDirError(
            f"cannot write the run directory {str(run_dir)!r}: {exc.strerror or exc}; "
            "choose another --out"
        ) from None
    # Only the lock's holder may do this: a live writer's temporary file would vanish under it.
    checkpoint.remove_stale_temporaries(run_dir, RUN_FILES)


def _read_json(path: Path) -> Any:
    """A run file's JSON; a file that is unreadable or not JSON is a :class:`RunDirError` naming it."""
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunDirError(
            f"{str(path)!r} cannot be read as JSON ({type(exc).__name__}: {exc}); "
            "use --overwrite to start the run again or --out DIR for a new run"
        ) from None


def settings_of(config: Config) -> dict[str, Any]:
    """The settings that determine what a run computes (all but :data:`RUNTIME_KEYS`), normalised."""
    return {k: _normal(v) for k, v in config.to_dict().items() if k not in RUNTIME_KEYS}


def _differences(stored: dict[str, Any], config: Config) -> str:
    """``"key: stored -> current, ..."`` over the settings that differ, or ``""``.

    A key the stored run lacks (written before the setting existed) takes the :class:`Config`
    default, which is what that run computed with.
    """
    current = settings_of(config)
    before = {**_FIELD_DEFAULTS, **stored}
    changed = sorted(k for k in current if _normal(before.get(k)) != current[k])
    return ", ".join(f"{k}: {before.get(k)!r} -> {config.to_dict()[k]!r}" for k in changed)


_FIELD_DEFAULTS = {
    f.name: f.default for f in dataclasses.fields(Config) if f.default is not dataclasses.MISSING
}


def _check_run_dir(config: Config, resume: bool, overwrite: bool) -> str:
    """Decide what to do with the (owned) run directory: ``"new"``, ``"overwrite"`` (a new run
    whose old files :func:`_remove_run_files` removes once the new run has been validated),
    ``"resume"`` or ``"finished"``."""
    run_dir = config.run_dir
    if not _run_files(run_dir):
        return "new"
    if overwrite:
        return "overwrite"
    if not resume:
        raise RunDirError(
            f"run directory {str(run_dir)!r} already holds a run; pass --resume to continue it, "
            "--overwrite to start it again, or --out DIR to choose another directory"
        )
    stored_path = run_dir / "config.json"
    if stored_path.exists():
        stored = _read_json(stored_path)
        if not isinstance(stored, dict) or not isinstance(stored.get("config"), dict):
            raise RunDirError(
                f"{str(stored_path)!r} holds no 'config' table; use --overwrite to start the run again"
            )
        detail = _differences(stored["config"], config)
        if detail:
            raise RunDirError(
                f"cannot resume {str(run_dir)!r} with different settings ({detail}); "
                "use --overwrite to start again or --out DIR for a new run"
            )
    if (run_dir / "summary.json").exists():
        return "finished"
    return "resume"


def _run_files(run_dir: Path) -> list[str]:
    return [name for name in RUN_FILES + RUN_DIRS if (run_dir / name).exists()]


def _remove_run_files(run_dir: Path) -> None:
    """``--overwrite``: the old run's files, removed only after the new run has passed validation."""
    for name in _run_files(run_dir):
        if name in RUN_DIRS:
            shutil.rmtree(run_dir / name)
        else:
            (run_dir / name).unlink()


def _check_checkpoint(saved: dict[str, Any], config: Config, run_dir: Path) -> None:
    """Refuse a checkpoint of another run, or one whose epoch disagrees with its metrics.

    The checkpoint is written before ``metrics.jsonl`` each epoch, so a kill in between leaves the
    metrics one epoch behind; never ahead, and never further behind.
    """
    path = run_dir / checkpoint.CHECKPOINT
    stored = saved["config"] if isinstance(saved["config"], dict) else None
    # The stored settings decide (a setting added since the checkpoint takes its default); the
    # fingerprint only where the settings cannot be read.
    if stored is not None:
        detail = _differences(stored, config)
    else:
        same = saved["fingerprint"] == checkpoint.fingerprint(settings_of(config))
        detail = "" if same else "settings fingerprint"
    if detail:
        raise checkpoint.CheckpointError(
            f"checkpoint {str(path)!r} belongs to another run ({detail}); "
            "use --overwrite to start again or --out DIR for a new run"
        )
    epoch, history = saved["epoch"], saved["history"]
    rows = history if isinstance(history, list) else []
    epochs = [row.get("epoch") if isinstance(row, dict) else None for row in rows]
    if not isinstance(epoch, int) or epochs != list(range(1, epoch + 1)):
        raise checkpoint.CheckpointError(
            f"checkpoint {str(path)!r} is at epoch {epoch!r} but records "
            f"{len(epochs)} epoch(s) of history; use --overwrite to start the run again"
        )
    metrics_path = run_dir / "metrics.jsonl"
    logged = 0
    if metrics_path.exists():
        try:
            logged = len(metrics_path.read_text(encoding="utf-8").splitlines())
        except (OSError, ValueError) as exc:
            raise RunDirError(f"{str(metrics_path)!r} cannot be read: {exc}") from None
    if not epoch - 1 <= logged <= epoch:
        raise checkpoint.CheckpointError(
            f"checkpoint {str(path)!r} is at epoch {epoch} but {str(metrics_path)!r} records {logged} "
            "epoch(s): they are not from the same run; use --overwrite to start the run again"
        )


def _normal(value: Any) -> Any:
    # JSON turns tuples into lists and ints in float fields stay ints; compare on a common footing.
    if isinstance(value, (list, tuple)):
        return [_normal(v) for v in value]
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


@torch.no_grad()
def predict(model: torch.nn.Module, data: DeviceData, split: str, amp: bool) -> torch.Tensor:
    """The predicted class of every sample of ``split`` (``"train"``, ``"test"``, ``"holdout"``)."""
    parts = []
    for x, _ in data.eval_batches(split):
        with _autocast(data.device, amp):
            parts.append(model(x).argmax(dim=1))
    return torch.cat(parts)


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


#: The metrics of :func:`_evaluate`: ``None`` in the rows of epochs that ``eval_every`` skips.
EVALUATED: tuple[str, ...] = (
    "test_acc", "train_acc_clean", "train_acc_flipped", "memorised", "train_acc_noisy"
)


def _evaluate(model: torch.nn.Module, data: DeviceData, ctx: Context, amp: bool) -> dict[str, float]:
    model.eval()
    test_pred = predict(model, data, "test", amp)
    train_pred = predict(model, data, "train", amp)
    flipped, kept = data.flipped, ~data.flipped
    hit_clean = train_pred == data.y_clean
    hit_noisy = train_pred == data.y_train
    counts = torch.stack(
        [
            (test_pred == data.y_test).sum(),
            torch.tensor(data.y_test.numel(), device=data.device),
            (hit_clean & kept).sum(),
            kept.sum(),
            (hit_clean & flipped).sum(),
            flipped.sum(),
            (hit_noisy & flipped).sum(),
            hit_noisy.sum(),
            torch.tensor(data.y_train.numel(), device=data.device),
        ]
    ).to(torch.float64)
    c = ctx.all_reduce_sum(counts).tolist()

    def ratio(num: float, den: float) -> float:
        return num / den if den else math.nan

    return {
        "test_acc": ratio(c[0], c[1]),
        "train_acc_clean": ratio(c[2], c[3]),
        "train_acc_flipped": ratio(c[4], c[5]),
        "memorised": ratio(c[6], c[5]),
        "train_acc_noisy": ratio(c[7], c[8]),
    }


def run(
    config: Config, *, resume: bool = False, overwrite: bool = False, progress: bool | None = None
) -> dict[str, Any]:
    """Train one model as ``config`` says and return the run's summary.

    Parameters
    ----------
    config
        The resolved configuration.
    resume
        Continue the run in ``config.run_dir`` from its checkpoint (exactly: same weights and
        metrics as an uninterrupted run). A finished run is returned as it is.
    overwrite
        Remove a previous run's files from the run directory first.
    progress
        Show progress (:class:`~sparse_reg.train.progress.Progress`): a bar when stderr is a
        terminal, a line per epoch (at most one every ``config.log_every`` seconds) otherwise;
        default: unless ``config.quiet``.

    Returns
    -------
    dict
        The summary also written to ``summary.json``; for a run that ``config.stop_after`` stopped
        before its last epoch, only ``run_name``, ``run_dir`` and ``stopped_after`` (no summary is
        written, and ``--resume`` continues the run).

    Raises
    ------
    RunDirError
        The run directory holds a run and neither ``resume`` nor ``overwrite`` was given, or the
        stored run has different settings.
    NonFiniteLossError
        The loss became NaN or infinite; the checkpoint of the last good epoch is kept.
    sparse_reg.errors.DatasetNotFoundError
        The dataset files are missing.
    """
    try:
        ctx = setup(config.device)
    except RuntimeError as exc:  # no CUDA, or a device string torch does not know
        reason = (str(exc).strip().splitlines() or [""])[0]
        raise ConfigError(f"device {config.device!r} cannot be used: {reason}") from None
    lock = RunDirLock(config.run_dir)
    fresh = not config.run_dir.exists()
    try:
        summary = _run(config, ctx, lock, resume, overwrite, progress)
        # Rank 0 still writes the plot and summary when the others finish; a rank that tears its
        # gloo group down while a peer is connected can abort the process, so all leave together.
        ctx.barrier()
        return summary
    except BaseException:
        if fresh:
            lock.discard_if_unused()
        raise
    finally:
        lock.release()
        ctx.close()


def _run(
    config: Config, ctx: Context, lock: RunDirLock, resume: bool, overwrite: bool, progress: bool | None
) -> dict[str, Any]:
    run_dir = config.run_dir
    state = _decide(config, ctx, lock, resume, overwrite)
    if state == "finished":
        return ctx.broadcast_object(_read_json(run_dir / "summary.json") if ctx.is_main else None)

    _seed_everything(config.seed, config.deterministic, config.compile)
    small = config.model.startswith("mlp")
    threads = config.threads if config.threads is not None else (1 if small else None)
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        prepared = prepare(config)
    except DatasetError:
        raise
    except ValueError as exc:  # e.g. a noise rate, class map or held-out split that does not fit
        raise ConfigError(str(exc)) from None
    data = DeviceData(
        prepared,
        config,
        ctx.device,
        rank=ctx.rank,
        world_size=ctx.world_size,
        seed=_stream_seed(config.seed, ctx.rank),
    )
    raw_model = _build_model(config, data.image_shape, prepared.num_classes)
    raw_model = raw_model.to(ctx.device, memory_format=memory_format(raw_model, ctx.device))
    schedule = lambda_schedule(config, data.steps_per_epoch, int(prepared.y_clean.size))
    # Everything is validated: only now may --overwrite remove the old run.
    if state == "overwrite" and ctx.is_main:
        _remove_run_files(run_dir)
    ctx.barrier()
    model: torch.nn.Module = raw_model
    if ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(
            raw_model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None
        )
    if config.compile:
        model = torch.compile(model)
    optimizer = torch.optim.SGD(
        raw_model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    if config.lr_schedule == "cosine":
        scheduler: Any = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=config.epochs, eta_min=0.0
        )
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    criterion = Criterion(config, schedule)
    deciders = _deciders(config, data, ctx, criterion)

    start_epoch, history = 0, []
    saved = _load_checkpoint(ctx, config, run_dir) if state == "resume" else None
    if saved is not None:
        if len(saved["rng"]) != ctx.world_size:
            raise RunDirError(
                f"the checkpoint in {str(run_dir)!r} was written by {len(saved['rng'])} process(es); "
                f"resume it with the same number (now {ctx.world_size})"
            )
        raw_model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        criterion.load_schedule(saved["lambda_schedule"])
        data.load_state_dict(saved["rng"][ctx.rank]["data"])
        checkpoint.set_global_rng_state(saved["rng"][ctx.rank]["global"])
        listener_states = saved.get("listeners", {})
        for listener in deciders:
            if listener.key:
                listener.load_state_dict(listener_states[listener.key])
        start_epoch, history = saved["epoch"], saved["history"]

    fingerprint = checkpoint.fingerprint(settings_of(config))
    if ctx.is_main:
        extra = {
            "data": prepared.describe(),
            "world_size": ctx.world_size,
            "device": str(ctx.device),
            "fingerprint": fingerprint,
        }
        report.write_config(run_dir, config.to_dict(), extra)
    reporters = _reporters(config, ctx, run_dir, history, start_epoch, data.steps_per_epoch, progress)
    if saved is not None:
        for listener in reporters:
            listener.resumed(history)
    # Only the listeners that use it are called on every optimizer step (the hot loop).
    steppers = [lst for lst in reporters if type(lst).step is not listeners.Listener.step]
    steps = data.steps_per_epoch
    params = [p for p in raw_model.parameters() if p.requires_grad]
    per_step = isinstance(criterion.schedule, LambdaSchedule) and criterion.schedule.unit != "epoch"
    last_epoch = config.epochs if config.stop_after is None else min(config.epochs, config.stop_after)
    try:
        for epoch in range(start_epoch, last_epoch):
            began = time.perf_counter()
            _follow(criterion, epoch, epoch * steps)
            lam, lr = criterion.lam, optimizer.param_groups[0]["lr"]
            model.train()
            sums = torch.zeros(4, dtype=torch.float64, device=ctx.device)  # loss, base, penalty, samples
            first_bad = torch.full((), -1, dtype=torch.int64, device=ctx.device)
            for step, (x, y) in enumerate(data.train_batches()):
                if per_step:
                    _follow(criterion, epoch, epoch * steps + step)
                with _autocast(ctx.device, config.amp):
                    logits = model(x)
                terms = criterion(logits, y)
                optimizer.zero_grad(set_to_none=True)
                terms.value.backward()
                if config.clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, config.clip)
                optimizer.step()
                n = y.shape[0]
                sums += (
                    torch.stack(
                        [
                            terms.value.detach().double(),
                            terms.base.double(),
                            terms.penalty.double(),
                            torch.ones((), dtype=torch.float64, device=ctx.device),
                        ]
                    )
                    * n
                )
                bad = ~torch.isfinite(terms.value.detach())
                first_bad = torch.where(bad & (first_bad < 0), torch.full_like(first_bad, step), first_bad)
                for listener in steppers:
                    listener.step()
            scheduler.step()
            ctx.all_reduce_sum(sums)
            bad_step = int(first_bad)
            if not bool(torch.isfinite(sums).all()) or bad_step >= 0:
                # A checkpoint exists exactly when an epoch has finished (its history is in it).
                kept = (
                    f"The last good checkpoint (epoch {history[-1]['epoch']}) is kept in {str(run_dir)!r}"
                    if history
                    else f"No checkpoint was written (no epoch finished) in {str(run_dir)!r}"
                )
                raise NonFiniteLossError(
                    f"the training loss became non-finite in epoch {epoch + 1} (first at step "
                    f"{max(bad_step, 0) + 1} of {steps}, lam={lam:g}, lr={lr:g}); stopped. {kept}. "
                    "Try a smaller --lr, --lam0 or --rho, or --clip"
                )
            ctx.sync_buffers(raw_model)
            evaluated = (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs
            metrics = _evaluate(raw_model, data, ctx, config.amp) if evaluated else dict.fromkeys(EVALUATED)
            total = sums[3].item()
            loss, base, penalty = (sums[:3] / total).tolist()
            row = {
                "epoch": epoch + 1,
                "lr": lr,
                "lam": lam,
                "loss": loss,
                "base": base,
                "sr_term": lam * penalty,
                "penalty": penalty,
                **metrics,
            }
            for listener in deciders:
                listener.epoch_end(row, raw_model)
            row["seconds"] = time.perf_counter() - began
            history.append(row)
            rng = ctx.gather_objects({"data": data.state_dict(), "global": checkpoint.global_rng_state()})
            if ctx.is_main:
                checkpoint.save(
                    run_dir,
                    {
                        "epoch": epoch + 1,
                        "model": raw_model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "lambda_schedule": criterion.state_dict_schedule(),
                        "listeners": {lst.key: lst.state_dict() for lst in deciders if lst.key},
                        "rng": rng,
                        "history": history,
                        "config": config.to_dict(),
                        "fingerprint": fingerprint,
                    },
                )
            for listener in reporters:
                listener.epoch_end(row, raw_model)
    finally:
        for listener in (*deciders, *reporters):
            listener.close()
    if last_epoch < config.epochs:
        return {"run_name": config.run_name, "run_dir": str(run_dir.resolve()), "stopped_after": last_epoch}
    selector = next((lst for lst in deciders if isinstance(lst, listeners.Selector)), None)
    selected = _select(selector, raw_model, data, ctx, config, run_dir)
    summary = _summary(config, ctx, prepared, history, selected)
    if ctx.is_main:
        torch.save(raw_model.state_dict(), run_dir / "model.pt")
        summary["model_sha256"] = checkpoint.file_sha256(run_dir / "model.pt")
        report.write_summary(run_dir, summary)
    return summary


def _decide(config: Config, ctx: Context, lock: RunDirLock, resume: bool, overwrite: bool) -> str:
    """Own the run directory and decide, on rank 0 for every rank, what to do with it
    (:func:`_check_run_dir`)."""
    decision: tuple[str, str | None] = ("", None)
    if ctx.is_main:
        try:
            _own_run_dir(config.run_dir, lock)
            decision = (_check_run_dir(config, resume, overwrite), None)
        except RunDirError as exc:
            decision = ("error", str(exc))
    state, message = ctx.broadcast_object(decision)
    if state == "error":
        raise RunDirError(message)
    return state


def _deciders(
    config: Config, data: DeviceData, ctx: Context, criterion: Criterion
) -> list[listeners.Listener]:
    """The listeners whose state the checkpoint keeps: the held-out monitor, the lambda controller
    and the selector, as the configuration asks."""
    chosen: list[listeners.Listener] = []
    if config.holdout is not None:
        chosen.append(listeners.HoldoutMonitor(data, ctx, config.amp))
    if isinstance(criterion.schedule, AdaptiveLambda):
        chosen.append(listeners.LambdaControl(criterion.schedule))
    if config.select == "holdout":
        chosen.append(listeners.Selector(listeners.HOLDOUT_KEY))
    return chosen


def _reporters(
    config: Config,
    ctx: Context,
    run_dir: Path,
    history: list[dict[str, Any]],
    start_epoch: int,
    steps_per_epoch: int,
    progress: bool | None,
) -> list[Any]:
    """The listeners that show or write each epoch, on rank 0 (the others report nothing)."""
    if not ctx.is_main:
        return []
    mode = Progress.choose(progress, config.quiet, sys.stderr.isatty())
    shown = Progress(
        mode,
        config.run_name,
        epochs=config.epochs,
        steps_per_epoch=steps_per_epoch,
        start_epoch=start_epoch,
        every=config.log_every,
    )
    chosen: list[Any] = [listeners.MetricsFiles(run_dir, history), listeners.ProgressLines(shown)]
    if config.tensorboard:
        chosen.append(listeners.TensorBoardScalars(tblog.TensorBoardLog(run_dir, start_epoch)))
    chosen.append(listeners.CurvesPlot(run_dir, history, config.run_name))
    return chosen


def _select(
    selector: listeners.Selector | None,
    raw_model: torch.nn.Module,
    data: DeviceData,
    ctx: Context,
    config: Config,
    run_dir: Path,
) -> dict[str, Any] | None:
    """With a selector, load its epoch's weights into ``raw_model`` (the model the run returns),
    keep the last epoch's as ``model-last.pt``, and score the selected model on every split."""
    if selector is None or selector.weights is None:
        return None
    if ctx.is_main:
        torch.save(raw_model.state_dict(), run_dir / "model-last.pt")
    raw_model.load_state_dict(selector.weights)
    metrics = _evaluate(raw_model, data, ctx, config.amp)
    return {
        "by": selector.metric,
        "epoch": selector.epoch,
        selector.metric: selector.best,
        **metrics,
    }


def _load_checkpoint(ctx: Context, config: Config, run_dir: Path) -> dict[str, Any] | None:
    """The checkpoint to resume from, checked to belong to this run (the same verdict on every rank)."""
    verdict: tuple[str, str | None] = ("ok", None)
    saved = None
    try:
        saved = checkpoint.load(run_dir)
        if saved is not None:
            _check_checkpoint(saved, config, run_dir)
    except (checkpoint.CheckpointError, RunDirError) as exc:
        verdict = ("error", str(exc))
    # Every rank reads the same file; rank 0's verdict decides, so no rank is left waiting alone.
    state, message = ctx.broadcast_object(verdict)
    if state == "error":
        raise checkpoint.CheckpointError(message)
    return saved


def lambda_schedule(
    config: Config, steps_per_epoch: int, train_size: int
) -> LambdaSchedule | AdaptiveLambda:
    r"""The run's :math:`\lambda` schedule: with ``lam_schedule="auto"`` (and SR), an
    :class:`sparse_reg.AdaptiveLambda` that starts at ``lam0`` and saturates at ``lam_max``
    (default: where the open-loop schedule below would end the run); otherwise the open-loop
    schedule on the clock ``config.lam_unit`` (see :class:`sparse_reg.LambdaSchedule`).

    ``"progress"`` stretches the tuple, written for a ``lam_horizon``-epoch run (default: the
    preset's epochs), over this run's ``epochs * steps_per_epoch`` steps, so ``--epochs`` and
    ``--batch-size`` keep the :math:`\lambda` range and pace the preset means. With
    ``lam_reference_size`` :math:`n_0` and a training set of :math:`n < n_0` images, the
    reference range is run through within the first :math:`\sqrt{n/n_0}` of the run and
    :math:`\lambda` then holds at the reference run's last value: a smaller set is memorised in
    fewer epochs, so SR must reach its large weights sooner. On the reference data,
    :math:`n = n_0` and the schedule is the preset's exactly.

    Raises
    ------
    ConfigError
        The schedule does not fit the run: a warm-up as long as the run, or a growth period so long
        that :math:`\lambda` never grows (with ``rho != 1``); the message names the option.
    """
    total = config.epochs * steps_per_epoch
    horizon = config.lam_horizon if config.lam_horizon is not None else PRESETS[config.preset].epochs
    length, unit_name = {
        "epoch": (config.epochs, "epochs"),
        "step": (total, "optimizer steps"),
        "progress": (horizon, f"epochs of the {horizon}-epoch reference run (--lam-horizon)"),
    }[config.lam_unit]
    if config.lam_warmup >= length:
        raise ConfigError(
            f"--lam-warmup {config.lam_warmup} does not fit the run: with --lam-unit {config.lam_unit} "
            f"it must be below {length} ({unit_name})"
        )
    # An epoch run shorter than one period keeps lambda constant, as it always has.
    if config.lam_unit != "epoch" and config.rho != 1 and config.lam_warmup + config.every >= length:
        raise ConfigError(
            f"--every {config.every} does not fit the run: with --lam-unit {config.lam_unit} and "
            f"--lam-warmup {config.lam_warmup}, lambda would never grow within {length} {unit_name}"
        )
    schedule = _clocked_schedule(config, total, horizon, train_size)
    try:
        last = schedule(config.epochs - 1 if config.lam_unit == "epoch" else total - 1)
    except ValueError:
        raise ConfigError(
            f"--rho {config.rho:g} does not fit the run: with --lam0 {config.lam0:g}, --every "
            f"{config.every} and --lam-unit {config.lam_unit}, lambda exceeds the float64 range before "
            "the run ends"
        ) from None
    if config.lam_schedule != "auto" or not config.with_sr:
        return schedule
    return AdaptiveLambda(
        lam0=config.lam0,
        lam_max=last if config.lam_max is None else config.lam_max,
        growth=config.lam_growth,
        patience=config.lam_patience,
    )


def _clocked_schedule(config: Config, total: int, horizon: int, train_size: int) -> LambdaSchedule:
    if config.lam_unit != "progress":
        return LambdaSchedule(
            config.lam0, config.rho, config.every, unit=config.lam_unit, warmup=config.lam_warmup
        )
    reference = config.lam_reference_size
    share = 1.0 if reference is None else min(1.0, math.sqrt(train_size / reference))
    reference_run = LambdaSchedule(
        config.lam0, config.rho, config.every, unit="progress", warmup=config.lam_warmup,
        horizon=horizon, total=horizon,
    )
    return LambdaSchedule(
        config.lam0,
        config.rho,
        config.every,
        unit="progress",
        warmup=config.lam_warmup,
        horizon=horizon,
        total=max(1, round(total * share)),
        lam_max=None if share == 1.0 else reference_run(horizon - 1),
    )


def _follow(criterion: Criterion, epoch: int, step: int) -> None:
    # The module's lam buffer is refreshed from the schedule, whatever its clock (an adaptive
    # schedule gives the weight its last update chose).
    if isinstance(criterion.schedule, LambdaSchedule):
        criterion.schedule.count = step
    criterion.set_epoch(epoch)


def _summary(
    config: Config,
    ctx: Context,
    prepared: Any,
    history: list[dict[str, Any]],
    selected: dict[str, Any] | None,
) -> dict[str, Any]:
    """The run's summary: the last epoch, the best test epoch (for reference: it reads clean
    labels), and with ``select="holdout"`` the selected model, which is the one returned."""
    best = max((row for row in history if row["test_acc"] is not None), key=lambda row: row["test_acc"])
    return {
        "run_name": config.run_name,
        "run_dir": str(Path(config.run_dir).resolve()),
        "preset": config.preset,
        "dataset": config.dataset,
        "loss": config.loss,
        "noise": config.noise,
        "seed": config.seed,
        "realised_rate": prepared.noise.realised_rate,
        "epochs": config.epochs,
        "backend": config.backend,
        "device": str(ctx.device),
        "world_size": ctx.world_size,
        "holdout_size": int(prepared.y_holdout.size),
        "lam_schedule": config.lam_schedule,
        "seconds": sum(row["seconds"] for row in history),
        "final": history[-1],
        "best_test_acc": best["test_acc"],
        "best_epoch": best["epoch"],
        "returned": "last" if selected is None else "selected",
        "selected": selected,
    }
