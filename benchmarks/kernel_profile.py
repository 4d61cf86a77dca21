"""The compiled CPU kernel's cost per row and per logit, over the number of classes.

``python -m benchmarks.kernel_profile`` times :func:`sparse_reg.backends._cpu_kernel.run` (the
kernel behind ``sr.loss_and_grad`` and the torch CPU path, without the front door) at a fixed
number of logits for each class count C, interleaved call by call with the copy floor
(``np.copyto`` of the logits into a gradient-sized buffer), on one thread. A cost that grows with
the rows rather than the logits shows at small C (ns/row stays put as C shrinks); one that grows
with the logits shows at large C (ns/logit stays put). Run it at a size that stays in cache
(``--logits 131072``) and at one that does not (the default, 16 MB of float32) to see what waiting
on memory adds.

Times are thread CPU times, so a call preempted by other work on a shared machine is not charged
for the wait; the table gives medians and minima over ``--rounds`` interleaved rounds.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from benchmarks.compare import _markdown, _set_kernel_threads
from benchmarks.contenders import SETTING, Inputs, make_copy_numpy
from sparse_reg.backends import _cpu_kernel as cpu_kernel
from sparse_reg.regularizer import Objective

#: A timed call.
Step = Callable[[], Any]

#: The objectives: the loss benchmark's (CE + SR with the official code's normalisation and clamp),
#: the same without the clamp, and without normalisation either.
SETTINGS = {
    "paper": SETTING,
    "exact": {**SETTING, "clamp": None},
    "plain": {**SETTING, "normalize": False, "clamp": None},
}


def _class_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not counts or min(counts) < 2:
        raise argparse.ArgumentTypeError(f"every class count must be at least 2, got {text!r}")
    return counts


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kernel_profile",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--classes", type=_class_counts, default=[10, 16, 64, 100, 128, 1000, 32000],
                        help="comma-separated class counts C (default: 10,16,64,100,128,1000,32000)")
    parser.add_argument("--logits", type=_positive, default=2**22,
                        help="logits per call, N*C (default 4194304: 16 MB of float32)")
    parser.add_argument("--rounds", type=_positive, default=25, help="interleaved rounds (default 25)")
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="paper",
                        help="the objective: paper (normalize + clamp, default), exact (no clamp), plain")
    return parser.parse_args(argv)


def _steps(num_classes: int, num_logits: int, objective: Objective) -> tuple[Step, Step, int]:
    """The kernel call and the loss benchmark's copy floor on the same fresh logits, with every
    output allocated once, and the number of rows."""
    num_rows = max(1, num_logits // num_classes)
    rng = np.random.default_rng(0)
    logits = (3 * rng.standard_normal((num_rows, num_classes))).astype(np.float32)
    labels = rng.integers(0, num_classes, num_rows)
    base, penalty = np.empty(num_rows, np.float32), np.empty(num_rows, np.float32)
    grad = np.empty_like(logits)

    def kernel() -> None:
        cpu_kernel.run(logits, labels, objective, base=base, penalty=penalty, grad=grad,
                       grad_scale=1.0 / num_rows)

    floor = make_copy_numpy(Inputs(None, None, logits, labels, "float32"))
    return kernel, floor, num_rows


def profile(classes: Sequence[int], num_logits: int, rounds: int, setting: str) -> list[str]:
    """The table's lines: per class count, the kernel's ns/row and ns/logit and its floor multiple."""
    objective = Objective.create(**SETTINGS[setting])
    rows = []
    for num_classes in classes:
        kernel, floor, num_rows = _steps(num_classes, num_logits, objective)
        kernel()  # compiles or loads the kernel
        floor()  # touches every page of the copy
        times: dict[str, list[int]] = {"kernel": [], "floor": []}
        for _ in range(rounds):
            for name, step in (("kernel", kernel), ("floor", floor)):
                start = time.thread_time_ns()
                step()
                times[name].append(time.thread_time_ns() - start)
        kernel_ns, floor_ns = float(np.median(times["kernel"])), float(np.median(times["floor"]))
        logits = num_rows * num_classes
        rows.append([
            str(num_classes), str(num_rows), f"{kernel_ns / 1e6:.3f}", f"{kernel_ns / num_rows:.1f}",
            f"{kernel_ns / logits:.3f}", f"{min(times['kernel']) / logits:.3f}", f"{floor_ns / 1e6:.3f}",
            f"{kernel_ns / floor_ns:.2f}×",
        ])
    header = ["C", "N", "kernel ms (median)", "ns/row", "ns/logit", "ns/logit (min)", "floor ms",
              "kernel/floor"]
    return [
        f"Kernel profile, setting {setting!r} {SETTINGS[setting]}, {num_logits} logits per call, "
        f"float32, one thread, {rounds} rounds (thread CPU time)",
        "",
        _markdown(header, rows),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not cpu_kernel.available():
        print("kernel_profile: the compiled CPU kernel needs numba: pip install 'sparse_reg[fast]'",
              file=sys.stderr)
        return 2
    _set_kernel_threads(1)
    print("\n".join(profile(args.classes, args.logits, args.rounds, args.setting)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
