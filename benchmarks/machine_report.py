"""The machine and the versions a GPU check ran with, as plain text.

Usage (from the repository root)::

    python -m benchmarks.machine_report            # versions, the GPU as torch and CuPy see it, nvidia-smi
    python -m benchmarks.machine_report --no-smi   # without nvidia-smi (a machine without a driver)

With ``--require-cuda`` the exit status is 3 when torch sees no CUDA device.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

#: Distributions whose versions matter to the check (missing ones are reported as such).
DISTRIBUTIONS = ("numpy", "array-api-compat", "torch", "triton", "cupy-cuda12x", "cupy-cuda13x", "jax",
                 "jaxlib", "hypothesis", "pytest", "pytest-xdist", "nvidia-cuda-nvrtc-cu12", "scikit-learn")
#: ``nvidia-smi`` invocations: the overview, then the full query (clocks, power, ECC, MIG mode).
SMI_COMMANDS = (["nvidia-smi"], ["nvidia-smi", "-q"])


def versions() -> list[str]:
    """One line per interpreter, library and device fact."""
    lines = [f"python {platform.python_version()} ({sys.executable})", f"platform {platform.platform()}",
             f"cpus {os.cpu_count()}"]
    for name in DISTRIBUTIONS:
        try:
            lines.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            lines.append(f"{name} not installed")
    lines.append(f"git commit {_git_commit()}")
    lines += _torch_lines() + _cupy_lines()
    return lines


def _git_commit() -> str:
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                              cwd=Path(__file__).parent, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    return done.stdout.strip() or f"unknown ({done.stderr.strip()})"


def _torch_lines() -> list[str]:
    try:
        torch = importlib.import_module("torch")
    except ImportError as exc:
        return [f"torch: not importable ({exc})"]
    lines = [f"torch CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"]
    if not torch.cuda.is_available():
        return [*lines, "torch sees no CUDA device"]
    props = torch.cuda.get_device_properties(0)
    return [*lines, f"torch device 0: {props.name}, {props.total_memory / 2**30:.1f} GiB, "
                    f"{props.multi_processor_count} multiprocessors, "
                    f"compute capability {props.major}.{props.minor}"]


def _cupy_lines() -> list[str]:
    try:
        cupy = importlib.import_module("cupy")
        runtime = cupy.cuda.runtime
        return [f"cupy {cupy.__version__}: CUDA runtime {runtime.runtimeGetVersion()}, driver "
                f"{runtime.driverGetVersion()}, {runtime.getDeviceCount()} device(s)"]
    except Exception as exc:  # ImportError, or a CUDA error without a driver
        return [f"cupy: not usable ({type(exc).__name__}: {exc})"]


def nvidia_smi() -> list[str]:
    """The output of each :data:`SMI_COMMANDS` entry (or why it could not run)."""
    lines = []
    for command in SMI_COMMANDS:
        lines.append(f"$ {' '.join(command)}")
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
            lines.append(done.stdout + done.stderr)
        except (OSError, subprocess.TimeoutExpired) as exc:
            lines.append(f"could not run: {exc}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-smi", action="store_true", help="do not run nvidia-smi")
    parser.add_argument("--require-cuda", action="store_true",
                        help="exit with status 3 when torch sees no CUDA device")
    args = parser.parse_args(argv)
    lines = versions()
    print("\n".join(lines))
    if not args.no_smi:
        print("\n".join(nvidia_smi()))
    if args.require_cuda and not any(line.startswith("torch device 0") for line in lines):
        print("no usable CUDA device: torch.cuda.is_available() is False", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
