"""``python -m sparse_reg.train evaluate RUN_DIR [--data PATH.npz]``: score a finished run's model.

The model is rebuilt from the run's ``config.json`` (model family, input shape, classes and the
normalisation constants of its training data) and its weights are read from ``model.pt`` with
``torch.load(weights_only=True)``, which cannot run code. The test set is the run's own (rebuilt
exactly as in training) or the test split of a ``--data`` file. The confusion matrix counts
:math:`C_{ij} = \\#\\{n : y_n = i,\\ \\hat y_n = j\\}` (rows: true class, columns: prediction),
and the accuracy is :math:`\\operatorname{tr} C / \\sum_{ij} C_{ij}`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sparse_reg.train import report, userdata
from sparse_reg.train.config import Config, ConfigError, check_settings, validate
from sparse_reg.train.data import load_dataset, normalise
from sparse_reg.train.dist import choose_device
from sparse_reg.train.models import build_model

__all__ = ["EvaluateError", "confusion_matrix", "evaluate", "format_report", "plot_confusion", "stored_run"]

#: Largest number of classes printed as a table and annotated in the plot.
_PRINTED_CLASSES = 20


class EvaluateError(ValueError):
    """The run directory cannot be evaluated (no finished run, or data that does not fit it)."""


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``C[i, j]`` of samples of class ``i`` predicted as ``j``, int64 of shape ``(K, K)``."""
    flat = np.asarray(y_true, np.int64) * num_classes + np.asarray(y_pred, np.int64)
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def stored_run(run_dir: Path) -> tuple[Config, dict[str, Any]]:
    """The settings and the data record of the finished run in ``run_dir``, validated as the
    trainer validates its own.

    The stored settings are taken as they are: a setting the run predates takes the
    :class:`~sparse_reg.train.config.Config` default, never a preset's, so a run of an older
    version is read as it ran.

    Raises
    ------
    EvaluateError
        ``config.json`` or ``model.pt`` is missing, or the settings or the record are invalid.
    """
    for name in ("config.json", "model.pt"):
        if not (run_dir / name).is_file():
            raise EvaluateError(
                f"{str(run_dir)!r} holds no finished run: {name} is missing (a run writes model.pt "
                "when it finishes)"
            )
    path = run_dir / "config.json"
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        known = {f.name for f in dataclasses.fields(Config)}
        # Checked as the trainer checks its own settings: types, then ranges and choices.
        values = check_settings({k: v for k, v in stored["config"].items() if k in known}, "the run")
        config = Config(**values)
        validate(config)
        record = stored["data"]
        _check_record(record)
    except ConfigError as exc:
        raise EvaluateError(f"{str(path)!r} holds settings the trainer would refuse: {exc}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise EvaluateError(
            f"{str(path)!r} is not a run's config.json this version can read ({exc})"
        ) from None
    return config, record


def _check_record(record: Any) -> None:
    """The data record ``evaluate`` rebuilds the model and its input from: shapes and statistics."""
    shape, classes = record["image_shape"], record["num_classes"]
    mean, std = record["mean"], record["std"]

    def counts(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1

    def finite(values: Any) -> bool:
        return isinstance(values, list) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values
        )

    if not (isinstance(shape, list) and len(shape) == 3 and all(counts(v) for v in shape)):
        raise ConfigError(f"data.image_shape must be three integers >= 1; got {shape!r}")
    if not (counts(classes) and classes >= 2):
        raise ConfigError(f"data.num_classes must be an integer >= 2; got {classes!r}")
    for name, values in (("mean", mean), ("std", std)):
        if not (finite(values) and len(values) == shape[0]):
            raise ConfigError(
                f"data.{name} must be {shape[0]} finite number(s), one per channel; got {values!r}"
            )
    if any(v <= 0 for v in std):
        raise ConfigError(f"data.std must be > 0 in every channel; got {std!r}")


def _test_set(config: Config, data: str | None) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    if data is not None:
        ds = userdata.load_npz(data)
        return ds.x_test, ds.y_test, ds.class_names
    try:
        ds = load_dataset(config)
    except ConfigError as exc:
        raise EvaluateError(str(exc)) from None
    x, y = ds.x_test, ds.y_test
    if config.limit_test is not None:
        x, y = x[: config.limit_test], y[: config.limit_test]
    return x, y, ds.class_names


@torch.no_grad()
def _predict(
    model: torch.nn.Module, x: np.ndarray, record: dict[str, Any], config: Config, device: torch.device
) -> np.ndarray:
    channels = len(record["mean"])
    mean = torch.tensor(record["mean"], dtype=torch.float32, device=device).view(1, channels, 1, 1)
    std = torch.tensor(record["std"], dtype=torch.float32, device=device).view(1, channels, 1, 1)
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    batch, parts = config.eval_batch_size, []
    for start in range(0, x.shape[0], batch):
        chunk = torch.as_tensor(x[start : start + batch]).to(device)
        # As the run's own evaluation: bfloat16 autocast for a model trained with --amp.
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=config.amp):
            parts.append(model(normalise(chunk, mean, std, scale)).argmax(dim=1).cpu())
    return torch.cat(parts).numpy()


def evaluate(
    run_dir: str | Path,
    data: str | None = None,
    *,
    data_dir: str | None = None,
    device: str = "auto",
    plot: str | Path | None = None,
) -> dict[str, Any]:
    """Score the model of a finished run; write ``evaluation.json`` and the confusion plot.

    Parameters
    ----------
    run_dir
        The run directory (``config.json`` and ``model.pt``).
    data
        A ``--data`` file whose test split to use instead of the run's test set.
    data_dir
        Where the run's dataset files are now, if they moved since training.
    device
        Where to run the model (``"auto"``: CUDA if available).
    plot
        The plot's path (default ``run_dir/confusion.png``).

    Returns
    -------
    dict
        ``accuracy``, ``confusion`` (list of rows), ``class_names``, ``samples``, ``data``.

    Raises
    ------
    EvaluateError
        No finished run in ``run_dir``, weights that do not fit its model, or test data whose shape
        or labels do not fit it.
    sparse_reg.errors.DatasetError
        The data files are missing or invalid.
    """
    run_dir = Path(run_dir)
    config, record = stored_run(run_dir)
    if data_dir is not None:
        config = dataclasses.replace(config, data_dir=data_dir)
    x, y, class_names = _test_set(config, data)
    image_shape, num_classes = tuple(record["image_shape"]), int(record["num_classes"])
    source = data if data is not None else "the run's test set"
    if tuple(x.shape[1:]) != image_shape:
        raise EvaluateError(
            f"{source} has samples of shape {tuple(x.shape[1:])}; the run's model takes {image_shape}"
        )
    if y.size == 0 or int(y.max()) >= num_classes:
        raise EvaluateError(
            f"{source} has labels up to {int(y.max()) if y.size else 'none'}; the run's model has "
            f"{num_classes} classes"
        )
    if len(class_names) != num_classes:
        class_names = tuple(str(k) for k in range(num_classes))
    target = choose_device(device)
    model = build_model(config.model, image_shape, num_classes)
    _check_model_checksum(run_dir)
    try:
        weights = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(weights)
    except Exception as exc:  # unpickling refusals and shape mismatches come as several types
        raise EvaluateError(
            f"{str(run_dir / 'model.pt')!r} does not hold weights of the run's {config.model!r} model: "
            f"{str(exc).splitlines()[0]}"
        ) from None
    model.to(target).eval()
    pred = _predict(model, x, record, config, target)
    matrix = confusion_matrix(y, pred, num_classes)
    result = {
        "run_dir": str(run_dir.resolve()),
        "model": _which_model(run_dir),
        "data": data,
        "samples": int(y.size),
        "accuracy": float(np.trace(matrix) / matrix.sum()),
        "class_names": list(class_names),
        "confusion": matrix.tolist(),
    }
    report.write_json(run_dir / "evaluation.json", result)
    plot_confusion(matrix, class_names, Path(plot) if plot else run_dir / "confusion.png", config.run_name)
    return result


def _check_model_checksum(run_dir: Path) -> None:
    """``model.pt`` against the SHA-256 its run recorded in ``summary.json`` (runs that recorded
    none are read unchecked)."""
    from sparse_reg.train.checkpoint import file_sha256

    try:
        recorded = json.loads((run_dir / "summary.json").read_text(encoding="utf-8")).get("model_sha256")
    except (OSError, ValueError, AttributeError):
        return
    if isinstance(recorded, str) and file_sha256(run_dir / "model.pt") != recorded:
        raise EvaluateError(
            f"{str(run_dir / 'model.pt')!r} is corrupt or was replaced: its SHA-256 is not the one its run "
            "recorded in summary.json"
        )


def _which_model(run_dir: Path) -> str:
    """Which epoch's weights ``model.pt`` holds, as the run's summary records it."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
        selected = summary.get("selected")
        if isinstance(selected, dict) and isinstance(selected.get("epoch"), int):
            chosen = "chosen by the best held-out noisy accuracy"
            return f"epoch {selected['epoch']} of {summary['epochs']}, {chosen}"
        return f"the last epoch ({summary['epochs']})"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "model.pt (the run has no readable summary.json)"


def format_report(result: dict[str, Any]) -> str:
    """The printed form: accuracy, the model it scores, then the matrix as a table (up to 20 classes)."""
    source = result["data"] or "the run's test set"
    lines = [
        f"{result['run_dir']}: test accuracy {100 * result['accuracy']:.2f}% on {result['samples']} "
        f"samples ({source})",
        f"model: {result.get('model', 'model.pt')}",
    ]
    names, matrix = result["class_names"], result["confusion"]
    if len(names) > _PRINTED_CLASSES:
        lines.append(f"confusion matrix ({len(names)} classes): see evaluation.json and the plot")
        return "\n".join(lines)
    width = max(5, *(len(n) for n in names), *(len(str(v)) for row in matrix for v in row))
    lines.append("confusion matrix (rows: true class, columns: predicted class)")
    lines.append(" " * width + " " + " ".join(f"{n:>{width}}" for n in names))
    for name, row in zip(names, matrix, strict=True):
        lines.append(f"{name:>{width}} " + " ".join(f"{v:>{width}}" for v in row))
    return "\n".join(lines)


def plot_confusion(matrix: np.ndarray, class_names: tuple[str, ...], path: Path, title: str) -> None:
    """The confusion matrix as an image, rows normalised to the share of each true class."""
    k = matrix.shape[0]
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = min(4 + 0.45 * k, 16)
    fig = report.new_figure(figsize=(size + 1.5, size))
    ax = fig.subplots()
    image = ax.imshow(shares, vmin=0, vmax=1, cmap="Blues")
    fig.colorbar(image, ax=ax, label="share of the true class")
    if k <= _PRINTED_CLASSES:
        ax.set_xticks(range(k), class_names, rotation=90)
        ax.set_yticks(range(k), class_names)
        for i in range(k):
            for j in range(k):
                color = "white" if shares[i, j] > 0.5 else "black"
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize="small", color=color)
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    ax.set(xlabel="predicted class", ylabel="true class", title=f"{title}: accuracy {100 * accuracy:.2f}%")
    report.save_figure(fig, path)
