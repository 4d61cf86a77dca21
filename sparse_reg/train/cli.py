"""Command-line interface of ``python -m sparse_reg.train`` (and its ``sweep`` and ``evaluate`` subcommands).

Every option that sets a hyperparameter defaults to "not given", so the preset's value (or the
``--config`` file's) applies unless the option is on the command line.
"""

from __future__ import annotations

import argparse
import textwrap
import typing
from typing import Any

from sparse_reg.losses import available_losses
from sparse_reg.noise import SPEC_FORMS
from sparse_reg.train.config import (
    LAM_SCHEDULES,
    MODELS,
    SELECTIONS,
    TRAINER_BACKENDS,
    ConfigError,
    check_noise,
    parse_loss,
)
from sparse_reg.train.presets import PRESETS

__all__ = ["build_parser", "overrides_from"]

_PROG = "python -m sparse_reg.train"

#: The measured time of the default run, quoted by --help, the README and the docs.
STARTUP_FIGURE = "about 8.5 s of wall time on a 2-core CPU, 3 s of it training"

_EPILOG = textwrap.dedent(
    """\
    presets:
    {presets}

    losses: any registered base loss ({losses}; alias fl = focal), optionally with a '+sr' suffix
      for sparse regularization, e.g. ce, ce+sr, gce+sr, nce+rce, nce+rce+sr.
    noise specs: {noise}; RATE in [0, 1). asym uses the dataset's class map.

    examples:
      python -m sparse_reg.train                                  # digits, CE+SR, sym:0.6, closed loop
      python -m sparse_reg.train --paper                          # the paper's recipe exactly
      python -m sparse_reg.train --loss ce --out runs/ce-baseline # the baseline to compare with
      python -m sparse_reg.train --preset fashion-mnist --loss gce+sr --noise asym:0.4 --epochs 10
      python -m sparse_reg.train --resume                         # continue an interrupted run
      python -m sparse_reg.train evaluate runs/digits-ce+sr-sym0.6-seed0   # accuracy, confusion matrix
      python -m sparse_reg.train --data mine.npz --preset mnist   # your own data (keys: docs/trainer.md)
      python -m sparse_reg.train sweep --losses ce,ce+sr --noises sym:0.4,sym:0.8 --seeds 0,1,2
      python -m sparse_reg.train tune --loss ce+sr --noise sym:0.8 --jobs 2   # lam0, tau from noisy data
      python -m sparse_reg.train plot runs/sweep-digits           # the timing window, per noise setting
      torchrun --nproc-per-node 2 -m sparse_reg.train --preset cifar10   # DDP, one process per GPU

    Each run directory holds config.json, metrics.csv, metrics.jsonl, curves.png, summary.json,
    summary.md, checkpoint.pt (rewritten atomically every epoch, sealed with its SHA-256) and
    model.pt (the returned weights; model-last.pt the last epoch's when they differ);
    evaluate adds evaluation.json and confusion.png, --tensorboard a tensorboard/ directory.
    Exit status: 0 done, 1 the loss became non-finite (or, for sweep and tune, a run failed), 2 invalid
    input (options, data, run directory), 130 interrupted (Ctrl-C; --resume continues).
    """
)


def _loss_type(text: str) -> str:
    try:
        parse_loss(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text.strip().lower()


def _noise_type(text: str) -> str:
    try:
        return check_noise(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _list_of(item_type):
    def parse(text: str) -> list[Any]:
        items = [part.strip() for part in text.split(",") if part.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list; got {text!r}")
        return [item_type(part) for part in items]

    return parse


class _Off:
    """Marks an option explicitly set to none (distinct from an option not given)."""

    def __repr__(self) -> str:
        return "none"


_OFF = _Off()


def _optional_float(text: str) -> float | _Off:
    if text.strip().lower() in ("none", "off"):
        return _OFF
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none'; got {text!r}") from None


def _optional_choice(*choices: str):
    def parse(text: str) -> str | _Off:
        value = text.strip().lower()
        if value in ("none", "off"):
            return _OFF
        if value not in choices:
            raise argparse.ArgumentTypeError(
                f"invalid choice {text!r} (choose from {', '.join(choices)}, none)"
            )
        return value

    return parse


def _choice_of(choices: tuple[str, ...]):
    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"invalid choice {text!r} (choose from {', '.join(choices)})")
        return text

    return parse


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, e.g. q=0.7; got {text!r}")
    value: Any
    lowered = raw.strip().lower()
    if lowered in ("true", "false"):
        value = lowered == "true"
    else:
        try:
            value = int(raw)
        except ValueError:
            try:
                value = float(raw)
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"the value of {key} must be a number or true/false"
                ) from None
    return key.strip(), value


def _add_hyperparameters(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data-dir",
        help="directory of the dataset files (default: the loader's standard "
        "location, e.g. /usr/share/datasets/fashion-mnist); digits needs none",
    )
    data.add_argument("--noise-seed", type=int, help="seed of the label noise (default: --seed)")
    data.add_argument(
        "--lt-profile",
        type=_optional_choice("exp", "step"),
        help="long-tailed training set: exp or step profile, or none",
    )
    data.add_argument(
        "--lt-imbalance", type=float, help="smallest/largest class size for --lt-profile (0.01)"
    )
    data.add_argument(
        "--limit-train",
        type=int,
        metavar="N",
        help="train on a fixed random subset of N training images (CPU-sized runs, tests)",
    )
    data.add_argument("--limit-test", type=int, metavar="N", help="evaluate on the first N test images")
    data.add_argument("--crop-pad", type=int, metavar="PX", help="random-crop padding in pixels (0: no crop)")
    data.add_argument(
        "--flip", action=argparse.BooleanOptionalAction, default=None, help="random horizontal flip"
    )
    data.add_argument(
        "--rotate", type=float, metavar="DEG", help="random rotation range in degrees (0: none)"
    )

    loop = parser.add_argument_group(
        "closed loop (a noisy held-out split, the lambda schedule it drives, the model it returns)"
    )
    loop.add_argument(
        "--holdout",
        type=_optional_float,
        metavar="FRACTION",
        help="hold out this fraction in [0, 0.5) of the noisy training set, stratified by noisy label, "
        "and score it every epoch as 'held-out noisy accuracy' (0 or none: no split; default: the "
        "preset's; tune: 0.2)",
    )
    loop.add_argument(
        "--lam-schedule",
        choices=LAM_SCHEDULES,
        help="paper: lambda grows by the clock (--lam0, --rho, --every, --lam-unit); auto: lambda holds "
        "at --lam0 while the held-out noisy accuracy rises, then grows by --lam-growth per epoch to "
        "--lam-max (needs --holdout; default: the preset's)",
    )
    loop.add_argument(
        "--lam-growth", type=float, help="auto: growth factor per epoch after the plateau (default 4)"
    )
    loop.add_argument(
        "--lam-patience",
        type=int,
        metavar="EPOCHS",
        help="auto: epochs without a better held-out score that mark the plateau (default 2)",
    )
    loop.add_argument(
        "--lam-max",
        type=_optional_float,
        help="auto: saturation lambda (default none: the paper schedule's last lambda)",
    )
    loop.add_argument(
        "--select",
        choices=SELECTIONS,
        help="the model the run returns as model.pt: the last epoch's, or the holdout epoch's (best "
        "held-out noisy accuracy; needs --holdout); the summary reports both (default: the preset's)",
    )
    loop.add_argument(
        "--paper",
        action="store_true",
        default=None,
        help="the paper's recipe exactly: no held-out split, --lam-schedule paper, --select last "
        "(explicit options still win)",
    )

    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--model", choices=MODELS, help="network (default: the preset's)")
    optim.add_argument("--epochs", type=int, help="epochs of training")
    optim.add_argument("--lr", type=float, help="initial learning rate of SGD")
    optim.add_argument(
        "--lr-schedule", choices=("cosine", "constant"), help="cosine annealing to 0 (default)"
    )
    optim.add_argument("--momentum", type=float)
    optim.add_argument("--weight-decay", type=float)
    optim.add_argument("--batch-size", type=int, help="global training batch size (split over DDP ranks)")
    optim.add_argument("--eval-batch-size", type=int)
    optim.add_argument(
        "--eval-every",
        type=int,
        metavar="N",
        help="evaluate every N epochs and at the last one (default 1); evaluating a large test set "
        "can cost more than an epoch of training",
    )
    optim.add_argument(
        "--clip",
        type=_optional_float,
        metavar="NORM",
        help="clip the global gradient norm (none: no clipping)",
    )

    srg = parser.add_argument_group("sparse regularization (used by losses with '+sr')")
    srg.add_argument("--tau", type=float, help="sharpening temperature tau")
    srg.add_argument("--p", type=float, help="exponent p in (0, 1] of the penalty sum_k s_k^p")
    srg.add_argument("--lam0", type=float, help="initial penalty weight lambda_0")
    srg.add_argument("--rho", type=float, help="growth factor: lambda_t = lam0 * rho ** (t // every)")
    srg.add_argument(
        "--every", type=int, help="growth period of lambda, in units of --lam-unit (epochs by default)"
    )
    # --- the clock of the lambda schedule ---
    srg.add_argument(
        "--lam-unit",
        choices=("epoch", "step", "progress"),
        help="what --every and --lam-warmup count: epochs, optimizer steps, or epochs of the "
        "--lam-horizon-epoch reference run stretched over this run (progress, the presets' default: "
        "--epochs, --limit-train and --batch-size keep the preset's lambda range and pace)",
    )
    srg.add_argument(
        "--lam-warmup",
        type=int,
        metavar="T",
        help="linear warm-up of lambda from 0 to lam0 over T units of --lam-unit; growth starts after it",
    )
    srg.add_argument(
        "--lam-horizon",
        type=int,
        metavar="EPOCHS",
        help="--lam-unit progress: epochs of the reference run the tuple is written for "
        "(default: the preset's epochs)",
    )
    # --- end of the lambda clock ---
    srg.add_argument(
        "--normalize",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="L2-normalise the logits before dividing by tau (the official CIFAR code)",
    )
    srg.add_argument(
        "--clamp",
        type=_optional_float,
        help="clamp probabilities at this value before the power, as the official code (1e-7); none: exact",
    )
    srg.add_argument(
        "--loss-param",
        type=_key_value,
        action="append",
        metavar="NAME=VALUE",
        help="base-loss parameter, repeatable, e.g. --loss-param q=0.7 --loss-param gamma=2",
    )

    runtime = parser.add_argument_group("runtime")
    runtime.add_argument("--device", help="auto (default: CUDA if available), cpu, cuda, cuda:1, ...")
    runtime.add_argument(
        "--backend",
        choices=TRAINER_BACKENDS,
        help="library computing the loss and its gradient (numpy: CPU; cupy: CUDA, via "
        "DLPack); default torch",
    )
    runtime.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="CPU threads of torch (default: 1 for the mlp model, else torch's default)",
    )
    runtime.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bfloat16 autocast for the model (the loss stays float32)",
    )
    runtime.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile the model"
    )
    runtime.add_argument(
        "--deterministic",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="deterministic algorithms (default on; needed for an exact --resume)",
    )
    runtime.add_argument(
        "--config",
        metavar="FILE",
        help="JSON or TOML file of settings (keys as the options, with underscores: lam0, "
        "batch_size, loss_params = {q = 0.7}); command-line options win",
    )
    runtime.add_argument("--quiet", action="store_true", default=None, help="no progress bar and no summary")
    runtime.add_argument(
        "--stop-after",
        type=int,
        metavar="EPOCH",
        help="stop after this epoch, leaving a run that --resume continues exactly (default: the end)",
    )
    _add_data_and_logging(parser)
    _say_defaults(parser)


def _say_defaults(parser: argparse.ArgumentParser) -> None:
    """Every setting's help says its default: the preset's where the preset sets it (the presets'
    values are listed below the options), else the configuration's own."""
    from dataclasses import MISSING, fields

    from sparse_reg.train.config import Config
    from sparse_reg.train.presets import preset_values

    by_preset = set(preset_values(PRESETS["digits"], "ce", True, "sym:0.4"))
    defaults = {f.name: f.default for f in fields(Config) if f.default is not MISSING}
    for action in parser._actions:
        if action.dest not in defaults or "default" in (action.help or ""):
            continue
        said = "the preset's" if action.dest in by_preset else _default_text(defaults[action.dest])
        action.help = f"{action.help} (default: {said})" if action.help else f"default: {said}"


def _default_text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


# --- the user's own data, progress lines and TensorBoard ---------------------------------------
def _add_data_and_logging(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("own data and logging")
    group.add_argument(
        "--data",
        metavar="PATH.npz",
        help="train on your own data instead of the preset's dataset: a .npz with x_train (uint8 "
        "images (N,H,W) or (N,C,H,W), or float features (N,D)), y_train (N,) and optionally x_test, "
        "y_test, class_names; the preset still sets the model and hyperparameters",
    )
    group.add_argument(
        "--log-every",
        type=float,
        metavar="SECONDS",
        help="when stderr is not a terminal, a progress line per epoch, at most one every SECONDS "
        "(default 10; 0: every epoch)",
    )
    group.add_argument(
        "--tensorboard",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also log the metrics for TensorBoard in <run dir>/tensorboard (pip install "
        "'sparse_reg[tensorboard]')",
    )


def _add_evaluate(commands: Any) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="test accuracy and confusion matrix of a finished run's model.pt",
        description="Load RUN_DIR/model.pt with the run's settings, predict the test set (the run's "
        "own, or the test split of --data) and print the accuracy and the confusion matrix; write "
        "them to RUN_DIR/evaluation.json and plot the matrix in RUN_DIR/confusion.png.",
    )
    evaluate.add_argument("run_dir", metavar="RUN_DIR", help="directory of a finished run")
    evaluate.add_argument(
        "--data",
        metavar="PATH.npz",
        help="evaluate on this file's test split instead of the run's test set: x_test/y_test, or "
        "without them the same 20%% of x_train that training holds out",
    )
    evaluate.add_argument(
        "--data-dir", help="where the run's dataset files are now (default: where the run read them)"
    )
    evaluate.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1, ...")
    evaluate.add_argument(
        "--plot", metavar="FILE", help="where to write the plot (default RUN_DIR/confusion.png)"
    )


def _add_plot(commands: Any) -> None:
    plot = commands.add_parser(
        "plot",
        help="the timing window of runs or sweeps: test and held-out accuracy, flipped labels fitted, lambda",
        description="Draw one figure per noise setting of the runs in RUN_OR_SWEEP (run directories, or "
        "sweep and tune directories holding runs): test accuracy, held-out noisy accuracy, the share "
        "of flipped training labels fitted, and lambda on a log axis, per epoch, read from each run's "
        "config.json and metrics.jsonl.",
    )
    plot.add_argument("paths", nargs="+", metavar="RUN_OR_SWEEP", help="run or sweep directories")
    plot.add_argument(
        "--out", metavar="DIR", help="where to write window-<noise>.png (default: the first directory)"
    )


# -----------------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Reports a usage error on one line (exit status 2), pointing at ``--help`` for the rest."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m sparse_reg.train``, with the ``sweep`` subcommand."""
    presets = "\n".join(f"  {name:<14} {preset.description}" for name, preset in PRESETS.items())
    epilog = _EPILOG.format(
        presets=presets, losses=", ".join(available_losses()), noise=", ".join(SPEC_FORMS)
    )
    parser = _Parser(
        prog=_PROG,
        description="Train a classifier on noisy labels with a robust loss, optionally with sparse "
        "regularization (Zhou et al., ICCV 2021). Without options: the digits preset with 60% "
        f"symmetric noise and CE+SR, in {STARTUP_FIGURE}.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run = parser.add_argument_group("run")
    run.add_argument("--preset", choices=list(PRESETS), help="experiment preset (default: digits)")
    run.add_argument("--loss", type=_loss_type, help="base loss with an optional +sr suffix (default: ce+sr)")
    run.add_argument(
        "--noise",
        type=_noise_type,
        help="label noise spec, e.g. sym:0.4, asym:0.3, none (default: the preset's)",
    )
    run.add_argument("--seed", type=int, help="seed of the initialisation, data order and noise (default 0)")
    run.add_argument(
        "--out", metavar="DIR", help="run directory (default: runs/<preset>-<loss>-<noise>-seed<k>)"
    )
    existing = run.add_mutually_exclusive_group()
    existing.add_argument(
        "--resume", action="store_true", help="continue the run in the run directory exactly"
    )
    existing.add_argument("--overwrite", action="store_true", help="replace the run in the run directory")
    _add_hyperparameters(parser)

    commands = parser.add_subparsers(
        dest="command", metavar="{sweep,tune,evaluate,plot}", title="subcommands"
    )
    sweep = commands.add_parser(
        "sweep",
        help="grid of losses x noise specs x seeds, resumable, ending in a mean +- std table",
        description="Run every combination of --losses, --noises and --seeds (finished runs with the "
        "same settings are reused, interrupted ones resumed, runs of other settings refused) and write "
        "sweep.md and sweep.csv with the test accuracy of the last epoch, the returned model and the "
        "best epoch as mean +- std over the seeds. Every other option applies to all runs.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    grid = sweep.add_argument_group("grid")
    grid.add_argument("--preset", choices=list(PRESETS), help="experiment preset (default: digits)")
    grid.add_argument(
        "--losses",
        type=_list_of(_loss_type),
        default=None,
        help="comma-separated losses (default: ce,ce+sr,fl,fl+sr,gce,gce+sr)",
    )
    grid.add_argument(
        "--noises",
        type=_list_of(_noise_type),
        default=None,
        help="comma-separated noise specs (default: sym:0.2,sym:0.4,sym:0.6,sym:0.8,asym:0.4)",
    )
    grid.add_argument(
        "--seeds", type=_list_of(int), default=None, help="comma-separated seeds (default: 0,1,2)"
    )
    grid.add_argument("--out", metavar="DIR", help="sweep directory (default: runs/sweep-<preset>)")
    grid.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs at once, each in its own process (default 1: one after another in this "
        "process); on a CPU with N cores each of J jobs gets N/J threads",
    )
    _add_hyperparameters(sweep)
    _add_tune(commands)
    _add_evaluate(commands)
    _add_plot(commands)
    return parser


def _add_tune(commands: Any) -> None:
    """The ``tune`` subcommand: lam0 x tau chosen on a held-out part of the noisy training set."""
    tune = commands.add_parser(
        "tune",
        help="choose lam0 and tau on a held-out part of the noisy training set (never the test set)",
        description="Hold out --holdout (default 0.2) of the noisy training set, train one run per "
        "point of --lam0s x --taus x --schedules (and the preset's own point) on the rest, and pick "
        "the point whose returned model has the best accuracy on the held-out noisy labels, unless it "
        "is within the sampling error of the preset's own point, which is then kept. The clean test "
        "set plays no part in the choice. Prints the grid and writes the chosen settings to "
        "<out>/tuned.json, for --config.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    grid = tune.add_argument_group("grid")
    grid.add_argument("--preset", choices=list(PRESETS), help="experiment preset (default: digits)")
    grid.add_argument("--loss", type=_loss_type, help="a '+sr' loss (default: ce+sr)")
    grid.add_argument("--noise", type=_noise_type, help="label noise spec (default: the preset's)")
    grid.add_argument("--seed", type=int, help="seed of every run (default 0)")
    grid.add_argument(
        "--lam0s",
        type=_list_of(float),
        default=None,
        help="comma-separated lambda_0 values (default 1,2,4,8)",
    )
    grid.add_argument(
        "--taus", type=_list_of(float), default=None, help="comma-separated tau values (default: 0.1,0.3,0.5)"
    )
    grid.add_argument(
        "--schedules",
        type=_list_of(_choice_of(LAM_SCHEDULES)),
        default=None,
        help="comma-separated lambda schedule forms to search, of paper and auto (default: the run's, "
        "--lam-schedule)",
    )
    grid.add_argument(
        "--rungs",
        type=int,
        default=3,
        help="successive halving: score every point at epoch E/2**(R-1), keep the better half (and the "
        "default), and so on to the end; 1 runs every point to the end (default 3)",
    )
    grid.add_argument(
        "--max-runs",
        type=int,
        default=16,
        help="refuse a grid of more points than this; each point is one full run (default 16)",
    )
    grid.add_argument(
        "--out", metavar="DIR", help="tune directory (default: runs/tune-<preset>-<loss>-<noise>-seed<k>)"
    )
    grid.add_argument("--jobs", type=int, default=1, help="runs at once, each in its own process (default 1)")
    _add_hyperparameters(tune)


#: Option destinations that are not :class:`~sparse_reg.train.config.Config` fields.
_NOT_CONFIG = {"command", "config", "resume", "overwrite", "losses", "noises", "seeds", "jobs"}
_NOT_CONFIG |= {"run_dir", "plot", "paths"}  # evaluate's and plot's arguments
_NOT_CONFIG |= {"lam0s", "taus", "schedules", "rungs", "max_runs"}  # tune's grid


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`~sparse_reg.train.config.Config` values given on the command line."""
    values = {k: v for k, v in vars(args).items() if k not in _NOT_CONFIG and v is not None}
    values = {k: None if v is _OFF else v for k, v in values.items()}
    if "loss_param" in values:
        values["loss_params"] = dict(values.pop("loss_param"))
    return values
