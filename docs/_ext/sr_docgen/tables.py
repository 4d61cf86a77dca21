"""Markdown tables generated from the library's data: the loss registry and backend support."""

from __future__ import annotations

import sparse_reg as sr
from sparse_reg.backends import REGISTRY
from sparse_reg.losses import ALIASES


def _cell(text: str) -> str:
    return text.replace("|", r"\|").replace("\n", " ")


def _math(latex: str) -> str:
    # A pipe would end the table cell, even inside math.
    if not latex:
        return ""
    return "$" + latex.replace("|", r" \vert ") + "$"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


#: :math:`\partial L/\partial \log s` of the built-in losses, used while the registry does not carry
#: a gradient formula itself (``BaseLoss.grad_formula``). Each was checked against
#: :func:`sparse_reg.loss_and_grad` through the chain rule :math:`(g - s\sum_k g_k)/\tau`. Sums
#: (SCE, the active-passive losses) are composed from their parts, found by their value formulas.
def _defaults(loss: sr.BaseLoss) -> str:
    return ", ".join(f"`{k}={v!r}`" for k, v in loss.defaults.items()) or "none"


def loss_registry_table() -> str:
    """One row per registered base loss: value formula, gradient, parameters, aliases."""
    aliases: dict[str, list[str]] = {}
    for alias, target in ALIASES.items():
        aliases.setdefault(target, []).append(alias)
    rows = []
    for name in sr.available_losses():
        loss = sr.get_loss(name)
        grad_formula = loss.grad_formula
        if loss.grad is None:
            gradient = "autograd only (torch, JAX)"
        elif grad_formula:
            gradient = _math(grad_formula)
        else:
            gradient = "closed form"
        names = ", ".join(f'`"{n}"`' for n in [name, *aliases.get(name, [])])
        rows.append([names, _math(loss.formula), gradient, _defaults(loss)])
    header = ["`base=`", r"$L(s, y)$", r"$\partial L/\partial \log s$", "parameters (defaults)"]
    return markdown_table(header, rows)


def _device(row: sr.backends.Backend, test_id: str) -> str:
    variant = test_id.partition(":")[2]
    if test_id in row.gpu_ids:
        return "CUDA GPU"
    return f"CPU (standard {variant})" if variant else "CPU"


def backend_support_table() -> str:
    """Function x backend x device, from the backend registry (one row per test id)."""
    rows = []
    for row in REGISTRY.values():
        loss_impl = f"fused (`{row.hooks}`)" if row.fused else "array-API reference"
        autograd = "autograd" if row.autograd else "raises `NoClosedFormGradientError`"
        module = "yes" if row.name == "torch" else "no"
        rows += [
            [f"`{test_id}`", _device(row, test_id), f"`{row.extra}`", loss_impl,
             "array-API reference", autograd, module]
            for test_id in row.test_ids
        ]
    header = [
        "test id", "device", "install", "`loss`, `loss_and_grad`",
        "`sharpen`, `lp_penalty`, `project`, `soft_project`",
        "gradient of a value-only registered loss", "`nn.SparseRegLoss`",
    ]
    return markdown_table(header, rows)
