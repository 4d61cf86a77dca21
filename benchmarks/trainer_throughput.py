r"""Training throughput of ``python -m sparse_reg.train`` against a plain loop and the CPU's limit.

For one model (``--model mnist-cnn`` on Fashion-MNIST images, or ``mlp-bn`` on the digits) and one
thread count, each contender trains ``--epochs`` epochs of the same ``--images`` images, with the
same batch size, SGD settings and CE+SR criterion (:class:`sparse_reg.nn.SparseRegLoss` with the
preset's :math:`\tau`, :math:`p`, :math:`\lambda_0`):

``plain``
    what a user writes by hand: a :class:`torch.utils.data.DataLoader` over a
    :class:`~torch.utils.data.TensorDataset` of normalised float images, shuffled, and the
    ``zero_grad / backward / step`` loop;
``plain+compile``
    the same loop with the model under ``torch.compile`` (inductor; its compilation, in the first
    round, is left out of the timed epochs);
``plain+channels_last``
    the same loop with the model and each batch in ``torch.channels_last`` memory format;
``trainer``
    :func:`sparse_reg.train.loop.run` on the preset (the closed loop: a 10 % noisy held-out split
    scored every epoch), scoring the test set and the whole training set every ``--eval-every``
    epochs, as a run does; ``--limit-test`` keeps the test set in the full protocol's proportion
    (10,000 test images to 60,000 training images);
``trainer+compile``
    the same with ``--compile``.

Contenders run interleaved, in rounds, and each row is the median over rounds of the median epoch.
Two numbers per row: images/s of *training* (the epochs without test scoring, over the images
actually trained on: the trainer holds 10 % out) and the *amortised* epoch time (the mean epoch,
scoring included), relative to the plain loop's epoch on the same data set. The CPU's limit is
the FLOPs of one training step (forward and backward, counted by
:class:`torch.utils.flop_counter.FlopCounterMode`) per image, set against the rate of a large
float32 matrix product (the GEMM peak) and of the model's
widest convolution, both measured here on the same threads.

Run::

    python benchmarks/trainer_throughput.py --threads 1 --rounds 3
    python benchmarks/trainer_throughput.py --threads 2 --rounds 3
    python benchmarks/trainer_throughput.py --model mlp-bn --threads 1
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from sparse_reg.nn import SparseRegLoss
from sparse_reg.train.config import Config, resolve_config
from sparse_reg.train.data import DeviceData, prepare
from sparse_reg.train.loop import run
from sparse_reg.train.models import build_model

#: Per model: the preset it trains, and how many test images go with ``--images`` training images.
SETUPS = {
    "mnist-cnn": {"preset": "fashion-mnist", "test_per_train": 10_000 / 60_000},
    "mlp-bn": {"preset": "digits", "test_per_train": 540 / 1_257},
}


def _config(args: argparse.Namespace, out: Path, **extra: Any) -> Config:
    setup = SETUPS[args.model]
    return resolve_config({
        "preset": setup["preset"],
        "loss": "ce+sr",
        "noise": "sym:0.8",
        "limit_train": args.images,
        "limit_test": max(1, round(args.images * setup["test_per_train"])),
        "epochs": args.epochs,
        "eval_every": args.eval_every,
        "threads": args.threads,
        "out": str(out),
        "quiet": True,
        **extra,
    })


def _plain_epochs(config: Config, epochs: int, *, compiled: bool, channels_last: bool) -> list[float]:
    """Seconds of each epoch of the hand-written loop (the first epoch of a compiled model, which
    holds its compilation, is dropped)."""
    prepared = prepare(config)
    data = DeviceData(prepared, config, torch.device("cpu"))
    images = data.normalise(data.x_train)  # what a TensorDataset of float images holds
    loader = DataLoader(
        TensorDataset(images, data.y_train), batch_size=config.batch_size, shuffle=True,
        generator=torch.Generator().manual_seed(config.seed),
    )
    model: torch.nn.Module = build_model(config.model, data.image_shape, prepared.num_classes)
    memory = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    arguments = config.objective_arguments()
    lam = arguments.pop("lam")
    criterion = SparseRegLoss(**arguments, schedule=lam)
    step_model = torch.compile(model) if compiled else model
    seconds = []
    for _ in range(epochs + compiled):
        began = time.perf_counter()
        model.train()
        for x, y in loader:
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            loss = criterion(step_model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - began)
    return seconds[compiled:]


def _trainer_epochs(config: Config) -> tuple[list[float], list[float], int]:
    """The trainer's epoch times (``metrics.jsonl``): those without test scoring, all of them, and
    the number of images trained on per epoch."""
    summary_lines = io.StringIO()
    with contextlib.redirect_stdout(summary_lines):
        run(config)
    rows = [json.loads(line) for line in (config.run_dir / "metrics.jsonl").read_text().splitlines()]
    train_only = [row["seconds"] for row in rows if row.get("test_acc") is None]
    # The data record's train_size is what is trained on: the held-out split is not in it.
    trained = json.loads((config.run_dir / "config.json").read_text())["data"]["train_size"]
    return train_only, [row["seconds"] for row in rows], trained


def _rate(operation: Callable[[], Any], flops: float, repeats: int = 5) -> float:
    """FLOP/s of ``operation`` (median of ``repeats`` timed calls after one warm-up)."""
    operation()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        operation()
        times.append(time.perf_counter() - began)
    return flops / statistics.median(times)


def limits(config: Config) -> dict[str, float]:
    """FLOPs per trained image of one step, and the GEMM and widest-convolution peaks (FLOP/s)."""
    prepared = prepare(config)
    data = DeviceData(prepared, config, torch.device("cpu"))
    model = build_model(config.model, data.image_shape, prepared.num_classes).train()
    x, y = next(iter(data.train_batches()))
    counter = FlopCounterMode(display=False)
    with counter:
        F.cross_entropy(model(x), y).backward()
    per_image = counter.get_total_flops() / x.shape[0]
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    gemm = _rate(lambda: a @ b, 2 * 2048**3)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    peak: dict[str, float] = {"flops_per_image": per_image, "gemm_flops": gemm}
    if convs:
        widest = max(convs, key=lambda m: m.in_channels * m.out_channels)
        side = data.image_shape[1]
        fmap = torch.randn(config.batch_size, widest.in_channels, side, side)
        conv_counter = FlopCounterMode(display=False)
        with conv_counter, torch.no_grad():
            widest(fmap)
        with torch.no_grad():
            peak["conv_flops"] = _rate(lambda: widest(fmap), conv_counter.get_total_flops())
    return peak


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Interleaved rounds of every contender; per contender, the per-round median epochs."""
    torch.set_num_threads(args.threads)
    contenders = ["plain", "plain+channels_last", "trainer"]
    if args.model == "mnist-cnn":
        contenders.insert(1, "plain+compile")
        contenders.append("trainer+compile")
    if args.no_compile:
        contenders = [name for name in contenders if "compile" not in name]
    results: dict[str, dict[str, list[float]]] = {name: {"train": [], "all": []} for name in contenders}
    trained = args.images
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(args.rounds):
            for name in contenders:
                out = Path(scratch) / f"{name}-{round_}"
                if name.startswith("plain"):
                    config = _config(args, out, holdout=0.0, lam_schedule="paper", select="last")
                    epochs = _plain_epochs(
                        config, args.epochs, compiled="compile" in name,
                        channels_last="channels_last" in name,
                    )
                    train_only = every = epochs
                else:
                    config = _config(args, out, compile="compile" in name)
                    train_only, every, trained = _trainer_epochs(config)
                results[name]["train"].append(statistics.median(train_only))
                results[name]["all"].append(statistics.mean(every))
                print(f"round {round_ + 1}: {name:20s} {statistics.median(train_only):7.2f} s/epoch",
                      flush=True)
        peak = limits(_config(args, Path(scratch) / "limits"))
    batch = _config(args, Path(scratch)).batch_size
    return {"results": results, "limits": peak, "trained_images": trained, "batch_size": batch}


def table(args: argparse.Namespace, measured: dict[str, Any]) -> str:
    """The Markdown table of :func:`measure`'s results."""
    results, peak = measured["results"], measured["limits"]
    plain = statistics.median(results["plain"]["train"])
    lines = [
        f"{args.model}, {args.images} training images, batch {measured['batch_size']}, "
        f"{args.threads} thread(s), median of {args.rounds} rounds",
        "",
        "| contender | images/s (training) | vs plain | amortised epoch / plain training epoch "
        "| share of GEMM peak |",
        "|---|---|---|---|---|",
    ]
    for name, times in results.items():
        images = args.images if name.startswith("plain") else measured["trained_images"]
        per_second = images / statistics.median(times["train"])
        plain_rate = args.images / plain
        # Both loops get the same data set; the trainer trains on all of it but the held-out split.
        epoch_ratio = statistics.median(times["all"]) / plain
        share = per_second * peak["flops_per_image"] / peak["gemm_flops"]
        lines.append(
            f"| {name} | {per_second:,.0f} | {per_second / plain_rate:.2f}x | {epoch_ratio:.2f} "
            f"| {share:.1%} |"
        )
    lines.append("")
    lines.append(
        f"FLOPs per trained image (forward + backward): {peak['flops_per_image'] / 1e6:.1f} M; "
        f"GEMM peak {peak['gemm_flops'] / 1e9:.1f} GFLOP/s"
        + (f"; widest convolution {peak['conv_flops'] / 1e9:.1f} GFLOP/s" if "conv_flops" in peak else "")
        + f"; the peak allows {peak['gemm_flops'] / peak['flops_per_image']:,.0f} images/s."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(SETUPS), default="mnist-cnn")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--images", type=int, default=3000, help="training images per epoch")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true", help="leave out the compiled contenders")
    parser.add_argument("--json", type=Path, help="also write the raw times here")
    parser.add_argument("--table-from", type=Path, help="print the table of an earlier --json file")
    args = parser.parse_args(argv)
    if args.table_from:
        measured = json.loads(args.table_from.read_text())
    else:
        measured = measure(args)
    if args.json:
        args.json.write_text(json.dumps(measured, indent=2))
    print(table(args, measured))


if __name__ == "__main__":
    main()
