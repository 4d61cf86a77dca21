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
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sparse_reg.errors import DatasetError
from sparse_reg.schedule import LambdaSchedule
from sparse_reg.train import checkpoint, report
from sparse_reg.train.config import RUNTIME_KEYS, Config, ConfigError
from sparse_reg.train.data import DeviceData, prepare
from sparse_reg.train.dist import Context, setup
from sparse_reg.train.losses import Criterion
from sparse_reg.train.models import build_model
from sparse_reg.train.presets import PRESETS

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
)


class RunDirError(ValueError):
    """The run directory cannot be used as asked (exists, or holds a different run)."""


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


def _seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (third-party code may draw from the global stream)
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.deterministic = deterministic


def _stream_seed(seed: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def _check_run_dir(config: Config, resume: bool, overwrite: bool) -> str:
    """Decide what to do with the run directory: ``"new"``, ``"resume"`` or ``"finished"``."""
    run_dir = config.run_dir
    present = [name for name in RUN_FILES if (run_dir / name).exists()]
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"run directory {str(run_dir)!r} exists and is not a directory")
    if not present:
        return "new"
    if overwrite:
        for name in present:
            (run_dir / name).unlink()
        return "new"
    if not resume:
        raise RunDirError(
            f"run directory {str(run_dir)!r} already holds a run; pass --resume to continue it, "
            "--overwrite to start it again, or --out DIR to choose another directory"
        )
    stored_path = run_dir / "config.json"
    if stored_path.exists():
        import json

        stored = json.loads(stored_path.read_text())["config"]
        current = config.to_dict()
        changed = sorted(
            k for k in current if k not in RUNTIME_KEYS and _normal(stored.get(k)) != _normal(current[k])
        )
        if changed:
            detail = ", ".join(f"{k}: {stored.get(k)!r} -> {current[k]!r}" for k in changed)
            raise RunDirError(
                f"cannot resume {str(run_dir)!r} with different settings ({detail}); "
                "use --overwrite to start again or --out DIR for a new run"
            )
    if (run_dir / "summary.json").exists():
        return "finished"
    return "resume"


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
def _predict(model: torch.nn.Module, data: DeviceData, split: str, amp: bool) -> torch.Tensor:
    parts = []
    for x, _ in data.eval_batches(split):
        with _autocast(data.device, amp):
            parts.append(model(x).argmax(dim=1))
    return torch.cat(parts)


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _evaluate(model: torch.nn.Module, data: DeviceData, ctx: Context, amp: bool) -> dict[str, float]:
    model.eval()
    test_pred = _predict(model, data, "test", amp)
    train_pred = _predict(model, data, "train", amp)
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


def _progress_bar(enabled: bool, total: int, initial: int, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", file=sys.stderr, dynamic_ncols=True)


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
        Show a progress bar; default: when stderr is a terminal and ``config.quiet`` is false.

    Returns
    -------
    dict
        The summary also written to ``summary.json``.

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
    ctx = setup(config.device)
    try:
        summary = _run(config, ctx, resume, overwrite, progress)
        # Rank 0 still writes the plot and summary when the others finish; a rank that tears its
        # gloo group down while a peer is connected can abort the process, so all leave together.
        ctx.barrier()
        return summary
    finally:
        ctx.close()


def _run(
    config: Config, ctx: Context, resume: bool, overwrite: bool, progress: bool | None
) -> dict[str, Any]:
    run_dir = config.run_dir
    decision: tuple[str, str | None]
    if ctx.is_main:
        try:
            decision = (_check_run_dir(config, resume, overwrite), None)
        except RunDirError as exc:
            decision = ("error", str(exc))
    else:
        decision = ("", None)
    state, message = ctx.broadcast_object(decision)
    if state == "error":
        raise RunDirError(message)
    if state == "finished":
        import json

        return json.loads((run_dir / "summary.json").read_text())

    _seed_everything(config.seed, config.deterministic)
    small = config.model.startswith("mlp")
    threads = config.threads if config.threads is not None else (1 if small else None)
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        prepared = prepare(config)
    except DatasetError:
        raise
    except ValueError as exc:  # e.g. a noise rate or class map that does not fit the dataset
        raise ConfigError(str(exc)) from None
    data = DeviceData(
        prepared,
        config,
        ctx.device,
        rank=ctx.rank,
        world_size=ctx.world_size,
        seed=_stream_seed(config.seed, ctx.rank),
    )
    raw_model = build_model(config.model, data.image_shape, prepared.num_classes).to(ctx.device)
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
    criterion = Criterion(config)
    schedule = lambda_schedule(config, data.steps_per_epoch, int(prepared.y_clean.size))
    criterion.load_schedule(schedule.state_dict())

    start_epoch, history = 0, []
    saved = checkpoint.load(run_dir) if state == "resume" else None
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
        start_epoch, history = saved["epoch"], saved["history"]

    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        extra = {"data": prepared.describe(), "world_size": ctx.world_size, "device": str(ctx.device)}
        report.write_config(run_dir, config.to_dict(), extra)
    show = ctx.is_main and (sys.stderr.isatty() and not config.quiet if progress is None else progress)
    steps = data.steps_per_epoch
    bar = _progress_bar(show, config.epochs * steps, start_epoch * steps, config.run_name)
    params = [p for p in raw_model.parameters() if p.requires_grad]
    per_step = criterion.schedule.unit != "epoch"
    try:
        for epoch in range(start_epoch, config.epochs):
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
                if bar is not None:
                    bar.update(1)
            scheduler.step()
            ctx.all_reduce_sum(sums)
            bad_step = int(first_bad)
            if not bool(torch.isfinite(sums).all()) or bad_step >= 0:
                raise NonFiniteLossError(
                    f"the training loss became non-finite in epoch {epoch + 1} (first at step "
                    f"{max(bad_step, 0) + 1} of {steps}, lam={lam:g}, lr={lr:g}); stopped. The last good "
                    f"checkpoint (epoch {start_epoch if not history else history[-1]['epoch']}) is kept in "
                    f"{str(run_dir)!r}. Try a smaller --lr, --lam0 or --rho, or --clip"
                )
            ctx.sync_buffers(raw_model)
            metrics = _evaluate(raw_model, data, ctx, config.amp)
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
                "seconds": time.perf_counter() - began,
            }
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
                        "rng": rng,
                        "history": history,
                        "config": config.to_dict(),
                    },
                )
                report.write_metrics(run_dir, history)
            if bar is not None:
                bar.set_postfix(test=f"{metrics['test_acc']:.3f}", lam=f"{lam:.3g}", refresh=False)
    finally:
        if bar is not None:
            bar.close()
        if ctx.is_main and history:
            report.plot_curves(run_dir, history, config.run_name)
    summary = _summary(config, ctx, prepared.noise.realised_rate, history)
    if ctx.is_main:
        torch.save(raw_model.state_dict(), run_dir / "model.pt")
        report.write_summary(run_dir, summary)
    return summary


def lambda_schedule(config: Config, steps_per_epoch: int, train_size: int) -> LambdaSchedule:
    r"""The run's :math:`\lambda` schedule on the clock ``config.lam_unit`` (see
    :class:`sparse_reg.LambdaSchedule`).

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
        schedule(config.epochs - 1 if config.lam_unit == "epoch" else total - 1)
    except ValueError:
        raise ConfigError(
            f"--rho {config.rho:g} does not fit the run: with --lam0 {config.lam0:g}, --every "
            f"{config.every} and --lam-unit {config.lam_unit}, lambda exceeds the float64 range before "
            "the run ends"
        ) from None
    return schedule


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
    # The module's lam buffer is refreshed from the schedule, whatever its clock.
    criterion.schedule.count = step
    criterion.set_epoch(epoch)


def _summary(
    config: Config, ctx: Context, realised_rate: float, history: list[dict[str, Any]]
) -> dict[str, Any]:
    best = max(history, key=lambda row: row["test_acc"])
    return {
        "run_name": config.run_name,
        "run_dir": str(Path(config.run_dir).resolve()),
        "preset": config.preset,
        "dataset": config.dataset,
        "loss": config.loss,
        "noise": config.noise,
        "seed": config.seed,
        "realised_rate": realised_rate,
        "epochs": config.epochs,
        "backend": config.backend,
        "device": str(ctx.device),
        "world_size": ctx.world_size,
        "seconds": sum(row["seconds"] for row in history),
        "final": history[-1],
        "best_test_acc": best["test_acc"],
        "best_epoch": best["epoch"],
    }
