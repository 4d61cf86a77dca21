"""Trainer tables generated from :mod:`sparse_reg.train`: presets, their SR modes, the metrics."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from sr_docgen.tables import markdown_table

#: Preset fields shown in their own tables rather than in the settings table.
_NESTED = ("name", "description", "sr", "sr_asym", "loss_params")


def _presets() -> Mapping[str, Any]:
    from sparse_reg.train.presets import PRESETS

    return PRESETS


def _value(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v!r}" for k, v in value.items()) or "—"
    if value is None:
        return "—"
    return f"`{value}`" if isinstance(value, str) else f"{value}"


def mode(normalize: bool, clamp: float | None) -> str:
    """How an SR tuple computes the objective: the paper's formula or the official code's variant."""
    logits = "L2-normalised logits" if normalize else "raw logits"
    penalty = f"clamped penalty ({clamp:g})" if clamp is not None else "exact penalty"
    return f"{logits}, {penalty}"


def settings_table() -> str:
    """Every scalar setting of every preset: one column per preset."""
    presets = _presets()
    fields = [f.name for f in dataclasses.fields(next(iter(presets.values()))) if f.name not in _NESTED]
    rows = [[f"`{name}`", *(_value(getattr(p, name)) for p in presets.values())] for name in fields]
    return markdown_table(["setting", *(f"`{n}`" for n in presets)], rows)


def sr_table() -> str:
    """Each preset's SR tuples, per base loss (``*``: every other loss), and their mode."""
    rows = []
    for name, preset in _presets().items():
        for noise, table in (("any", preset.sr), ("asymmetric", preset.sr_asym)):
            for loss, sr in table.items():
                loss_name = "every other loss" if loss == "*" else f"`{loss}`"
                rows.append([
                    f"`{name}`", loss_name, noise, f"{sr.tau:g}", f"{sr.p:g}", f"{sr.lam0:g}",
                    f"{sr.rho:g}", f"{sr.every}", mode(sr.normalize, sr.clamp),
                    _value(sr.loss_params),
                ])
    header = [
        "preset", "loss + SR", "noise", r"$\tau$", "$p$", r"$\lambda_0$", r"$\rho$", "$r$ (`every`)",
        "mode", "base-loss parameters under SR",
    ]
    return markdown_table(header, rows)


def modes_table() -> str:
    """One line per preset: which mode (paper formula or official code) its SR runs use."""
    rows = []
    for name, preset in _presets().items():
        tuples = [*preset.sr.values(), *preset.sr_asym.values()]
        modes = sorted({mode(sr.normalize, sr.clamp) for sr in tuples})
        rows.append([f"`{name}`", "; ".join(modes)])
    return markdown_table(["preset", "SR mode"], rows)


def baselines_table() -> str:
    """Base-loss parameters of the baselines (a loss without ``+sr``), one row per preset."""
    rows = [
        [f"`{name}`", "; ".join(f"`{loss}`: {_value(params)}" for loss, params in preset.loss_params.items())]
        for name, preset in _presets().items()
    ]
    return markdown_table(["preset", "baseline loss parameters"], rows)


def presets_section() -> str:
    descriptions = "\n".join(f"`{name}`\n: {p.description}\n" for name, p in _presets().items())
    return (
        f"{descriptions}\n### Settings\n\n{settings_table()}\n"
        f"### Sparse regularization per preset\n\n{sr_table()}\n"
        f"### Baseline parameters\n\n{baselines_table()}"
    )


def metrics_table() -> str:
    """Columns of ``metrics.csv`` / ``metrics.jsonl``, with their descriptions."""
    from sparse_reg.train import report

    descriptions = getattr(report, "METRIC_DESCRIPTIONS", None) or getattr(report, "_DESCRIPTIONS", {})
    rows = [[f"`{name}`", descriptions.get(name, "")] for name in report.METRIC_FIELDS]
    return markdown_table(["column", "meaning"], rows)


def cli_epilog() -> str:
    """The ``--help`` epilog of the trainer (presets, losses, examples), as a literal block."""
    from sparse_reg.train.cli import build_parser

    return f"```text\n{build_parser().epilog.rstrip()}\n```\n"
