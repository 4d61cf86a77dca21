"""What a run directory holds besides the checkpoint.

* ``config.json``: the resolved configuration, the data and noise actually used, library versions;
* ``metrics.csv`` and ``metrics.jsonl``: one row per epoch (:data:`METRIC_FIELDS`);
* ``curves.png``: accuracy, loss terms and :math:`\\lambda` per epoch;
* ``summary.json`` and ``summary.md``: the final numbers, written when the run finishes.

Every file is rewritten whole and atomically, so a killed run never leaves a torn file.
"""

from __future__ import annotations

import csv
import io
import json
import math
import platform
import sys
from pathlib import Path
from typing import Any

from sparse_reg.train.checkpoint import atomic_write_bytes

__all__ = [
    "METRIC_FIELDS",
    "library_versions",
    "plot_curves",
    "write_config",
    "write_json",
    "write_metrics",
    "write_summary",
]

#: Columns of ``metrics.csv``, in order.
METRIC_FIELDS: tuple[str, ...] = (
    "epoch",
    "lr",
    "lam",
    "loss",
    "base",
    "sr_term",
    "penalty",
    "test_acc",
    "holdout_acc",
    "train_acc_clean",
    "train_acc_flipped",
    "memorised",
    "train_acc_noisy",
    "seconds",
)

_DESCRIPTIONS = {
    "epoch": "1-based epoch number",
    "lr": "learning rate used in the epoch",
    "lam": "penalty weight lambda used in the epoch",
    "loss": "mean training objective base + lam * penalty",
    "base": "mean base-loss term on the sharpened output",
    "sr_term": "mean SR term lam * sum_k s_k^p",
    "penalty": "mean unweighted penalty sum_k s_k^p",
    "test_acc": "test accuracy",
    "holdout_acc": "held-out noisy accuracy: accuracy on the held-out split (--holdout) against its "
    "noisy labels, every epoch; never the test set",
    "train_acc_clean": "training accuracy on the samples whose label was kept",
    "train_acc_flipped": "training accuracy on the flipped samples, against their clean labels",
    "memorised": "fraction of flipped samples predicted as their noisy label",
    "train_acc_noisy": "training accuracy against the noisy labels the model was trained on",
    "seconds": "wall-clock seconds of the epoch (training and evaluation)",
}


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def write_json(path: Path, payload: Any) -> None:
    """Atomic JSON file; non-finite floats become ``null``."""
    text = json.dumps(_jsonable(payload), indent=2, sort_keys=False) + "\n"
    atomic_write_bytes(path, text.encode())


def library_versions() -> dict[str, str]:
    """Versions of python and the libraries a run depends on (cupy only when the run loaded it)."""
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in ("sparse_reg", "torch", "numpy", "cupy"):
        module = sys.modules.get(name)
        if module is None and name != "cupy":
            try:
                module = __import__(name)
            except ImportError:
                continue
        if module is not None:
            versions[name] = str(getattr(module, "__version__", "unknown"))
    return versions


def write_config(run_dir: Path, config: dict[str, Any], extra: dict[str, Any]) -> None:
    """``config.json``: the resolved settings plus the data record and library versions."""
    write_json(Path(run_dir) / "config.json", {"config": config, **extra, "versions": library_versions()})


def write_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """``metrics.csv`` and ``metrics.jsonl`` from the whole history (rewritten each epoch)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: _format(row.get(k)) for k in METRIC_FIELDS})
    atomic_write_bytes(Path(run_dir) / "metrics.csv", buffer.getvalue().encode())
    lines = "".join(json.dumps(_jsonable({k: row.get(k) for k in METRIC_FIELDS})) + "\n" for row in history)
    atomic_write_bytes(Path(run_dir) / "metrics.jsonl", lines.encode())


def _format(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.8g}"
    return value


def _pct(value: Any) -> str:
    return (
        "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}%"
    )


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    """``summary.json`` and a short ``summary.md``."""
    run_dir = Path(run_dir)
    write_json(run_dir / "summary.json", summary)
    last = summary["final"]
    lines = [
        f"# {summary['run_name']}",
        "",
        f"- loss `{summary['loss']}`, noise `{summary['noise']}` (realised rate "
        f"{summary['realised_rate']:.4f}), seed {summary['seed']}, {summary['epochs']} epochs, "
        f"{summary['seconds']:.1f} s",
        "",
        "| metric | last epoch | best epoch |",
        "|---|---|---|",
        f"| test accuracy | {_pct(last['test_acc'])} | {_pct(summary['best_test_acc'])} "
        f"(epoch {summary['best_epoch']}) |",
        f"| train accuracy, clean part | {_pct(last['train_acc_clean'])} | |",
        f"| train accuracy, flipped part (vs clean labels) | {_pct(last['train_acc_flipped'])} | |",
        f"| flipped samples memorised (noisy label fitted) | {_pct(last['memorised'])} | |",
        "",
        *_selected_lines(summary),
        "Columns of metrics.csv: " + "; ".join(f"`{k}`: {v}" for k, v in _DESCRIPTIONS.items()),
        "",
    ]
    atomic_write_bytes(run_dir / "summary.md", "\n".join(lines).encode())


def _selected_lines(summary: dict[str, Any]) -> list[str]:
    selected = summary.get("selected")
    if not selected:
        return []
    return [
        f"Returned model (`model.pt`): epoch {selected['epoch']}, chosen by the best held-out noisy "
        f"accuracy ({_pct(selected['holdout_acc'])} on {summary['holdout_size']} samples): test accuracy "
        f"{_pct(selected['test_acc'])}, clean part {_pct(selected['train_acc_clean'])}, flipped part "
        f"{_pct(selected['train_acc_flipped'])}. The last epoch's weights are in `model-last.pt`.",
        "",
    ]


def plot_curves(run_dir: Path, history: list[dict[str, Any]], title: str) -> None:
    """``curves.png``: accuracies, loss terms and lambda against the epoch (matplotlib, Agg)."""
    fig = new_figure(figsize=(14, 4))
    axes = fig.subplots(1, 3)
    epochs = [row["epoch"] for row in history]

    def series(key: str) -> list[float]:
        return [math.nan if row.get(key) is None else row[key] for row in history]

    for key, label in (
        ("test_acc", "test"),
        ("holdout_acc", "held-out noisy accuracy"),
        ("train_acc_clean", "train, clean part"),
        ("train_acc_flipped", "train, flipped part (clean labels)"),
        ("memorised", "flipped part fitted to noisy label"),
    ):
        # Only the evaluated epochs (see eval_every), so that the curves stay joined.
        points = [(row["epoch"], row[key]) for row in history if row.get(key) is not None]
        if not points:
            continue
        axes[0].plot([e for e, _ in points], [v for _, v in points], label=label)
    axes[0].set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1), title="accuracy")
    axes[0].legend(fontsize="small")
    axes[1].plot(epochs, series("base"), label="base term")
    axes[1].plot(epochs, series("sr_term"), label="SR term (lam * penalty)")
    axes[1].set(xlabel="epoch", title="training loss terms")
    axes[1].legend(fontsize="small")
    lam_line = axes[2].plot(epochs, series("lam"), label="lambda", color="C3")
    axes[2].set(xlabel="epoch", ylabel="lambda", title="lambda and lr")
    twin = axes[2].twinx()
    lr_line = twin.plot(epochs, series("lr"), label="lr", color="C4", linestyle="--")
    twin.set_ylabel("lr")
    # One legend for both axes of the panel.
    axes[2].legend(lam_line + lr_line, ["lambda", "lr"], fontsize="small")
    fig.suptitle(title)
    save_figure(fig, Path(run_dir) / "curves.png")


def new_figure(figsize: tuple[float, float]) -> Any:
    """A matplotlib figure on the Agg canvas: no pyplot, no GUI backend, no global figure registry."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Any, path: Path) -> None:
    """Write ``fig`` as a PNG, atomically."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    atomic_write_bytes(path, buffer.getvalue())
