"""Entry point: ``python -m sparse_reg.train [options]``, ``... sweep`` and ``... evaluate RUN_DIR``."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

# cuBLAS is deterministic only with a fixed workspace; it must be set before CUDA initialises.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

__all__ = ["main"]


def _is_main_rank() -> bool:
    rank = os.environ.get("RANK", "0").strip()
    # A RANK that is not a count is reported (by dist.setup) by the process that has it.
    return rank == "0" or not rank.isdigit()


def _error(message: str) -> None:
    if _is_main_rank():
        print(f"python -m sparse_reg.train: error: {message}", file=sys.stderr)


def _pct(value: Any) -> str:
    return "n/a" if value is None or value != value else f"{100 * value:.2f}%"


def print_summary(summary: dict[str, Any]) -> None:
    """The short closing report of one run."""
    last = summary["final"]
    print(
        f"{summary['run_name']}: {summary['epochs']} epochs in {summary['seconds']:.1f} s "
        f"(noise {summary['noise']}, realised rate {summary['realised_rate']:.3f})\n"
        f"  test accuracy                   {_pct(last['test_acc'])}  (best {_pct(summary['best_test_acc'])} "
        f"at epoch {summary['best_epoch']})\n"
        f"  train accuracy, clean part      {_pct(last['train_acc_clean'])}\n"
        f"  train accuracy, flipped part    {_pct(last['train_acc_flipped'])}  (against the clean labels; "
        f"{_pct(last['memorised'])} fit their noisy label)\n"
        f"  run directory                   {summary['run_dir']}"
    )
    selected = summary.get("selected")
    if selected:
        print(
            f"  returned model (model.pt)       epoch {selected['epoch']}, best held-out noisy accuracy "
            f"{_pct(selected['holdout_acc'])} of {summary['holdout_size']}: "
            f"test {_pct(selected['test_acc'])}, clean part {_pct(selected['train_acc_clean'])}, "
            f"flipped part {_pct(selected['train_acc_flipped'])}"
        )


def _evaluate(args: Any) -> int:
    from sparse_reg.errors import DatasetError
    from sparse_reg.train.evaluate import EvaluateError, evaluate, format_report

    try:
        result = evaluate(
            args.run_dir, data=args.data, data_dir=args.data_dir, device=args.device, plot=args.plot
        )
    except (EvaluateError, DatasetError) as exc:
        _error(str(exc))
        return 2
    print(format_report(result))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 done, 1 non-finite loss, 2 invalid input)."""
    from sparse_reg.errors import BackendUnavailableError, DatasetError
    from sparse_reg.train.cli import build_parser, overrides_from
    from sparse_reg.train.config import ConfigError, resolve_config

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "evaluate":
        return _evaluate(args)
    if args.command == "plot":
        from sparse_reg.train.plot import plot_windows

        try:
            written = plot_windows(args.paths, args.out)
        except ConfigError as exc:
            _error(str(exc))
            return 2
        print("\n".join(str(path) for path in written))
        return 0
    if args.command == "sweep":
        from sparse_reg.train.sweep import run_sweep

        try:
            return run_sweep(args)
        except ConfigError as exc:
            parser.error(str(exc))
    if args.command == "tune":
        from sparse_reg.train.tune import run_tune

        try:
            return run_tune(args)
        except ConfigError as exc:
            _error(str(exc))
            return 2
    try:
        config = resolve_config(overrides_from(args), args.config)
    except ConfigError as exc:
        if not _is_main_rank():
            sys.exit(2)
        parser.error(str(exc))
    from sparse_reg.train.checkpoint import CheckpointError
    from sparse_reg.train.loop import NonFiniteLossError, RunDirError, run

    try:
        summary = run(config, resume=args.resume, overwrite=args.overwrite)
    except KeyboardInterrupt:
        # The checkpoint of the last finished epoch is whole (written atomically): say how to go on.
        _error(f"interrupted; continue with the same command and --resume (in {str(config.run_dir)!r})")
        return 130
    except (RunDirError, CheckpointError, DatasetError, ConfigError, BackendUnavailableError) as exc:
        _error(str(exc))
        return 2
    except NonFiniteLossError as exc:
        _error(str(exc))
        return 1
    if _is_main_rank() and not config.quiet:
        if "stopped_after" in summary:
            print(
                f"{summary['run_name']}: stopped after epoch {summary['stopped_after']} of {config.epochs} "
                f"(--stop-after); continue with the same command and --resume"
            )
        else:
            print_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
