"""One prepared check of a CUDA machine: the GPU tests, the GPU benchmarks and the full Fashion-MNIST sweep.

Usage (from the repository root; ``bash benchmarks/gpu_check.sh`` wraps this)::

    python -m benchmarks.gpu_check --out DIR [--data-dir FASHION_MNIST_DIR]
    python -m benchmarks.gpu_check --dry-run --out DIR     # tiny sizes on the CPU, same code paths

Stages, each a subprocess in its own time box (:mod:`benchmarks.stages`), all within ``--budget``:

1. ``machine``: versions, the GPU as torch and CuPy see it, ``nvidia-smi`` and ``nvidia-smi -q``.
2. ``bench``: :mod:`benchmarks.compare` on the GPU (:data:`benchmarks.compare.GPU_SHAPES`, N·C up to
   256M, float32 and bfloat16) with the official eager formulation, its ``torch.compile``, CE alone,
   ours (torch and CuPy) and the copy floor, alone on the machine, so nothing else competes.
3. ``sweep``: Fashion-MNIST at the full protocol (60,000 images, 50 epochs), CE and CE+SR at
   symmetric noise 0.4 and 0.8, ``--jobs`` runs at once. It starts after the benchmarks and runs in
   the background while the next two stages run.
4. ``tests``: the test suite's CUDA and CuPy parametrisations (``pytest -k`` :data:`TEST_SELECTION`).
5. ``sync``: per-step host synchronisation in the trainer's default path (:mod:`benchmarks.sync_check`).

Everything lands in the output folder, flat and in at most eight files, so that a lent machine's
whole folder comes back: ``summary.md`` (also printed last), ``results.json``, ``machine.txt``,
``bench.md`` (the RESULTS rows), ``sweep.md``, ``sweep-runs.tar.gz`` (every run's config, metrics,
summary and curves), ``tests.log`` and ``stages.log``. The exit status is 0 when every stage ended
well, 1 when one failed or ran out of time, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import importlib.util
import json
import os
import re
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import stages

ROOT = Path(__file__).resolve().parent.parent
#: Seconds per stage unless ``--box NAME=SECONDS`` says otherwise (sized for one H200).
BOXES = {"machine": 60.0, "bench": 230.0, "sweep": 320.0, "tests": 150.0, "sync": 90.0}
#: Seconds kept back from the budget for writing the results.
RESERVE_SECONDS = 10.0
#: The sweep: the paper's protocol on Fashion-MNIST, with and without SR, at two noise rates.
SWEEP = {"preset": "fashion-mnist", "losses": "ce,ce+sr", "noises": "sym:0.4,sym:0.8", "seeds": "0"}
#: The suite's CUDA and CuPy parametrisations and ``gpu`` marks (this script's own test is not one).
TEST_SELECTION = "(cuda or cupy or gpu) and not gpu_check"
#: The eight files of the output folder.
OUTPUT_FILES = ("summary.md", "results.json", "machine.txt", "bench.md", "sweep.md", "sweep-runs.tar.gz",
                "tests.log", "stages.log")
#: Run files worth bringing back (checkpoints and weights stay behind).
_RUN_FILES = ("config.json", "metrics.csv", "summary.json", "summary.md", "curves.png")
#: Modules every stage needs, and the distributions that provide them.
REQUIRED = {"numpy": "numpy", "array_api_compat": "array-api-compat", "torch": "torch", "pytest": "pytest",
            "hypothesis": "hypothesis", "matplotlib": "matplotlib", "tqdm": "tqdm"}
#: Modules whose absence costs one part of the check (said in the summary), not all of it.
OPTIONAL = {"cupy": "no CuPy tests and no contender E", "triton": "no torch.compile on CUDA (contender B)",
            "xdist": "the tests run in one process"}


@dataclass
class Check:
    """One invocation: where things go, the deadline, and what each stage reported."""

    out: Path
    work: Path
    dry_run: bool
    deadline: float
    python: str = sys.executable
    outcomes: dict[str, stages.Outcome] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)

    def box(self, name: str, boxes: dict[str, float]) -> float:
        """The stage's box, cut to what the budget still holds."""
        return max(0.0, min(boxes[name], self.deadline - time.monotonic() - RESERVE_SECONDS))

    def log(self, name: str) -> Path:
        return self.work / f"{name}.log"


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``bash benchmarks/gpu_check.sh`` (less ``--wheels``, which the wrapper takes)."""
    parser = argparse.ArgumentParser(prog="gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder (created; must hold no other files)")
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny sizes on the CPU through the same stages, no nvidia-smi (CI runs this)")
    parser.add_argument("--data-dir", default=None,
                        help="Fashion-MNIST's four IDX files (default: the loader's standard location)")
    parser.add_argument("--jobs", type=int, default=4, help="sweep runs at once (default 4: all of them)")
    parser.add_argument("--test-workers", type=int, default=6, help="pytest-xdist workers for the GPU tests")
    parser.add_argument("--hypothesis-profile", default="dev", choices=["dev", "ci", "thorough"],
                        help="property-test profile of the GPU tests (default dev, to fit the box)")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds for all stages together")
    parser.add_argument("--stages", default=",".join(BOXES),
                        help="comma-separated stages to run (default: all; machine always runs)")
    parser.add_argument("--box", action="append", default=[], metavar="STAGE=SECONDS",
                        help="override one stage's time box (defaults: "
                        + ", ".join(f"{k}={v:g}" for k, v in BOXES.items()) + ")")
    parser.add_argument("--work", default=None, help="scratch folder for run directories and logs")
    return parser


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.boxes = dict(BOXES)
    for item in args.box:
        name, _, seconds = item.partition("=")
        try:
            if name not in BOXES:
                raise ValueError
            args.boxes[name] = float(seconds)
        except ValueError:
            parser.error(f"--box must be STAGE=SECONDS with STAGE one of {', '.join(BOXES)}; got {item!r}")
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1; got {args.jobs}")
    args.stages = {"machine", *args.stages.split(",")}
    unknown = sorted(args.stages - set(BOXES))
    if unknown:
        parser.error(f"--stages takes {', '.join(BOXES)}; got {', '.join(unknown)}")
    return args


def fashion_mnist_present(data_dir: str | None) -> bool:
    """Whether the four Fashion-MNIST files (gzipped or not) are in ``data_dir`` or the default place."""
    from sparse_reg.data.mnist import _STEMS, FASHION_MNIST_DIR

    directory = Path(data_dir) if data_dir else FASHION_MNIST_DIR
    return all((directory / stem).exists() or (directory / f"{stem}.gz").exists() for stem in _STEMS.values())


def missing_modules(names: dict[str, str]) -> dict[str, str]:
    """The entries of ``names`` (module -> what it is for) that cannot be imported here."""
    return {name: what for name, what in names.items() if importlib.util.find_spec(name) is None}


def _commands(args: argparse.Namespace, python: str, out: Path, work: Path) -> dict[str, list[str]]:
    """The command of every stage, full-size or (``--dry-run``) tiny and on the CPU."""
    from benchmarks.compare import GPU_SHAPES  # imports sparse_reg: only after the preflight check
    dry = args.dry_run
    device = "cpu" if dry else "cuda"
    # Without the Fashion-MNIST files the dry run's sweep, and any sync check, train on the embedded digits.
    preset = SWEEP["preset"] if fashion_mnist_present(args.data_dir) else "digits"
    data = ["--data-dir", args.data_dir] if args.data_dir else []
    bench = ["--device", device, "--output", str(out / "bench.md")]
    if dry:  # B needs tens of seconds of C++ compilation on a CPU; E needs CUDA (compare says so)
        bench += ["--shapes", "128x10,256x100", "--contenders", "A,C,D,D-nn,E,G-torch", "--seconds", "0.02",
                  "--min-calls", "3", "--threads", "1"]
    else:
        bench += ["--shapes", GPU_SHAPES, "--dtypes", "float32,bfloat16",
                  "--contenders", "A,B,C,D,D-nn,E,G-torch"]
    sweep = ["sweep", "--preset", preset if dry else SWEEP["preset"], "--losses", SWEEP["losses"],
             "--noises", SWEEP["noises"], "--seeds", SWEEP["seeds"], "--jobs", str(args.jobs),
             "--out", str(work / "sweep"), "--device", device, *data]
    if dry:
        sweep += ["--limit-train", "128", "--limit-test", "64", "--epochs", "1"]
    tests = ["-p", "no:cacheprovider", "-q", "-rfEs", "-k", TEST_SELECTION]
    if dry:
        tests += ["tests/test_api.py"]
    elif "xdist" not in missing_modules(OPTIONAL):
        tests += ["-n", str(args.test_workers)]
    sync = ["--device", device, "--preset", preset, "--report", str(work / "sync.json"), *data]
    sync += ["--limit-train", "64" if dry else "1024", "--batch-size", "32" if dry else "64"]
    return {
        "machine": [python, "-m", "benchmarks.machine_report", "--no-smi" if dry else "--require-cuda"],
        "bench": [python, "-m", "benchmarks.compare", *bench],
        "sweep": [python, "-m", "sparse_reg.train", *sweep],
        "tests": [python, "-m", "pytest", *tests],
        "sync": [python, "-m", "benchmarks.sync_check", *sync],
    }


def _environment(profile: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(PYTHONUNBUFFERED="1", MPLBACKEND="Agg", SPARSE_REG_HYPOTHESIS_PROFILE=profile,
               XLA_PYTHON_CLIENT_PREALLOCATE="false")  # JAX must not take the GPU's memory from the rest
    return env


def run(args: argparse.Namespace) -> int:
    """Run every stage within the budget, collect the results; the exit status."""
    missing = missing_modules(REQUIRED)
    if missing:
        wheels = " ".join(REQUIRED[name] for name in missing)
        print(f"gpu_check: error: cannot import {', '.join(missing)}; install {wheels} (on a machine without "
              "an index, carry their wheels and pass --wheels DIR: see docs/benchmarks.md)", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    foreign = sorted(p.name for p in out.iterdir() if p.name not in OUTPUT_FILES)
    if foreign:
        print(f"gpu_check: error: --out {str(out)!r} holds other files ({', '.join(foreign[:5])}); "
              "give an empty or new folder", file=sys.stderr)
        return 2
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    check = Check(out, work, args.dry_run, time.monotonic() + args.budget)
    check.results.update(dry_run=args.dry_run, started=_now(), budget=args.budget, work=str(work),
                         missing_optional=missing_modules(OPTIONAL))
    commands = _commands(args, check.python, out, work)
    check.results["commands"] = {name: " ".join(command) for name, command in commands.items()}
    env = _environment(args.hypothesis_profile)
    boxes = args.boxes
    data_missing = not args.dry_run and not fashion_mnist_present(args.data_dir)

    def finish(running: stages.Running) -> None:
        outcome = check.outcomes[running.name] = running.wait()
        _collect(check)
        print(f"gpu_check: {outcome.name}: {outcome.status} in {outcome.seconds:.0f} s; {outcome.detail}",
              flush=True)

    def begin(name: str, log: Path | None = None) -> stages.Running:
        return stages.start(name, commands[name], log or check.log(name), check.box(name, boxes), env)

    print(f"gpu_check: {'dry run' if args.dry_run else 'full run'}, budget {args.budget:g} s, output {out}",
          flush=True)
    finish(begin("machine", out / "machine.txt"))
    later = [name for name in ("bench", "sweep", "tests", "sync") if name in args.stages]
    if check.outcomes["machine"].status != "ok":
        for name in later:
            check.outcomes[name] = stages.skipped(name, "the machine stage failed: no usable CUDA device")
        later = []
    if "sweep" in later and data_missing:
        check.outcomes["sweep"] = stages.skipped(
            "sweep", "Fashion-MNIST files not found (give --data-dir; see docs/benchmarks.md)")
        later.remove("sweep")
    if "bench" in later:  # alone on the machine: nothing else competes with the timings
        finish(begin("bench"))
    sweep = begin("sweep") if "sweep" in later else None  # in the background from here on
    for name in ("tests", "sync"):
        if name in later:
            finish(begin(name))
    if sweep is not None:
        finish(sweep)
    _collect(check)
    summary = (out / "summary.md").read_text()
    print("\n" + summary, flush=True)
    return 0 if all(o.status in ("ok", "skipped") for o in check.outcomes.values()) else 1


def _now() -> str:
    return f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M:%S} UTC"


# --- collecting what the stages left ---------------------------------------------------------------


def _collect(check: Check) -> None:
    """Gather every finished stage's results into the output folder (safe to call after each stage)."""
    out, work = check.out, check.work
    for name, outcome in check.outcomes.items():
        reader = _READERS.get(name)
        if reader and outcome.status != "skipped":
            outcome.detail = reader(check, outcome)
    if (work / "tests.log").exists():
        shutil.copyfile(work / "tests.log", out / "tests.log")
    with open(out / "stages.log", "w") as combined:
        for name in ("bench", "sweep", "sync"):
            if check.log(name).exists():
                combined.write(f"===== {name} =====\n{check.log(name).read_text(errors='replace')}\n")
    check.results["stages"] = [o.to_dict() for o in check.outcomes.values()]
    check.results["finished"] = _now()
    (out / "results.json").write_text(json.dumps(check.results, indent=2, default=str) + "\n")
    (out / "summary.md").write_text(_summary(check))


def _read_machine(check: Check, outcome: stages.Outcome) -> str:
    path = check.out / "machine.txt"
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    check.results["machine"] = lines[:40]

    def first(prefix: str | tuple[str, ...], default: str) -> str:
        return next((line for line in lines if line.startswith(prefix)), default)

    device = first("torch device 0: ", "no CUDA device").removeprefix("torch device 0: ")
    return f"{device}; {first('torch ', 'torch ?')}; {first(('cupy ', 'cupy:'), 'cupy ?')}"


def _read_bench(check: Check, outcome: stages.Outcome) -> str:
    path = check.out / "bench.md"
    if not path.exists():
        return "no bench.md (rows printed so far are in stages.log)"
    text = path.read_text()
    targets = [line[2:] for line in _section(text, "## Targets")]
    errors_over = sum(line.count(" ✗") for line in text.splitlines() if line.startswith("|"))
    check.results["bench_targets"] = targets
    met = sum(line.endswith("— met") for line in targets)
    missed = sum("NOT met" in line for line in targets)
    unmeasured = len(targets) - met - missed
    return (f"{met} of {len(targets)} targets met, {missed} missed, {unmeasured} not measured; "
            f"{errors_over} gradient error(s) over tolerance")


def _section(text: str, heading: str) -> list[str]:
    """The bullet lines of the section whose heading starts with ``heading``."""
    lines, inside = [], False
    for line in text.splitlines():
        if line.startswith("## "):
            inside = line.startswith(heading)
        elif inside and line.startswith("- "):
            lines.append(line)
    return lines


_COUNT = re.compile(r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed)")
_PROGRESS = re.compile(r"[.sFExX]+( +\[ *\d+%\])?")


def _read_tests(check: Check, outcome: stages.Outcome) -> str:
    log = check.log("tests")
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    closing = [line for line in lines if _COUNT.search(line) and re.search(r" in [\d.]+s", line)]
    final = closing[-1] if closing else None
    if final is not None:
        counts = {kind: int(n) for n, kind in _COUNT.findall(final)}
    else:  # stopped before pytest's closing line: count the progress marks printed so far
        marks = "".join(line.split(" ")[0] for line in lines if _PROGRESS.fullmatch(line))
        counts = {"passed": marks.count("."), "failed": marks.count("F"), "skipped": marks.count("s")}
    reasons = sorted({re.sub(r"^SKIPPED \[\d+\] ", "", line) for line in lines if line.startswith("SKIPPED")})
    failures = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    check.results["tests"] = {"counts": counts, "complete": final is not None, "skip_reasons": reasons,
                              "failures": failures[:50]}
    return ", ".join(f"{n} {kind}" for kind, n in counts.items()) + ("" if final else " (stopped early)")


def _read_sweep(check: Check, outcome: stages.Outcome) -> str:
    sweep = check.work / "sweep"
    runs = [_run_row(d) for d in sorted(sweep.iterdir()) if d.is_dir()] if sweep.exists() else []
    check.results["sweep_runs"] = runs
    table = (sweep / "sweep.md").read_text() if (sweep / "sweep.md").exists() else \
        "(the sweep did not finish: no table; the runs so far are below)\n"
    columns = ("run", "epochs", "test", "best", "epoch_seconds", "seconds", "projected")
    lines = ["# Fashion-MNIST sweep", "", table,
             "| run | epochs | last test % | best test % | s per epoch | s | s for all epochs |",
             "|---|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in runs]
    if (sweep / "sweep.csv").exists():
        lines += ["", "```", (sweep / "sweep.csv").read_text().rstrip(), "```"]
    (check.out / "sweep.md").write_text("\n".join(lines) + "\n")
    with tarfile.open(check.out / "sweep-runs.tar.gz", "w:gz") as tar:
        for path in sorted(sweep.rglob("*")) if sweep.exists() else []:
            if path.is_file() and (path.name in _RUN_FILES or path.parent == sweep):
                tar.add(path, arcname=str(path.relative_to(sweep.parent)))
    done = sum(1 for r in runs if r["finished"])
    return f"{done} of {len(runs)} runs finished; " + ", ".join(f"{r['run']} {r['test']}%" for r in runs)


def _run_row(run_dir: Path) -> dict[str, Any]:
    rows = []
    if (run_dir / "metrics.csv").exists():
        with open(run_dir / "metrics.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
    seconds = [float(r["seconds"]) for r in rows]
    summary = _json(run_dir / "summary.json")
    planned = _json(run_dir / "config.json").get("config", {}).get("epochs", "?")
    return {
        "run": run_dir.name,
        "finished": bool(summary),
        "epochs": f"{len(rows)}/{planned}",
        "test": f"{100 * float(rows[-1]['test_acc']):.2f}" if rows else "–",
        "best": f"{100 * max(float(r['test_acc']) for r in rows):.2f}" if rows else "–",
        "epoch_seconds": f"{statistics.median(seconds):.2f}" if seconds else "–",
        "seconds": f"{sum(seconds):.1f}" if seconds else "–",
        "projected": f"{statistics.median(seconds) * planned:.0f}" if seconds and planned != "?" else "–",
    }


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def _read_sync(check: Check, outcome: stages.Outcome) -> str:
    from benchmarks.sync_check import describe

    path = check.work / "sync.json"
    if not path.exists():
        return "no report (see stages.log)"
    report = json.loads(path.read_text())
    check.results["sync"] = report
    check.results["sync_lines"] = describe(report)
    return describe(report)[0]


_READERS = {"machine": _read_machine, "bench": _read_bench, "tests": _read_tests, "sweep": _read_sweep,
            "sync": _read_sync}


def _summary(check: Check) -> str:
    """Details first, then the stage table: the table is what a reader of the output's tail sees."""
    kind = "dry run, CPU" if check.dry_run else "full run"
    lines = [f"# GPU check ({kind}), {check.results['started']}", ""]
    if (check.out / "sweep.md").exists():
        lines.append((check.out / "sweep.md").read_text().replace("# Fashion-MNIST", "## Fashion-MNIST", 1))
    failures = check.results.get("tests", {}).get("failures")
    if failures:
        lines += ["## Failed tests", "", *(f"- {f}" for f in failures[:20]), ""]
    if check.results.get("sync_lines"):
        lines += ["## Host synchronisation in the training step", "", "```", *check.results["sync_lines"],
                  "```", ""]
    missing = check.results.get("missing_optional", {})
    if missing:
        lines += ["## Not installed here", "", *(f"- {name}: {what}" for name, what in missing.items()), ""]
    if check.results.get("bench_targets"):
        lines += ["## Benchmark targets", "", *(f"- {t}" for t in check.results["bench_targets"]), ""]
    lines += ["## Stages", "", "| stage | status | seconds (box) | result |", "|---|---|---|---|"]
    lines += [f"| {o.name} | {o.status} | {o.seconds:.0f} ({o.box:.0f}) | {o.detail} |"
              for o in check.outcomes.values()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    return run(_parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
