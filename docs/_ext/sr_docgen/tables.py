"""Markdown tables generated from the library's data: the loss registry and backend support."""

from __future__ import annotations

import ast
from pathlib import Path

import sparse_reg as sr
from sparse_reg import backends
from sparse_reg._api import _AUTOGRAD
from sparse_reg.losses import _ALIASES


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
    for alias, target in _ALIASES.items():
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


def read_all_backends(conftest: Path) -> tuple[str, ...]:
    """The test suite's backend ids: the literal ``ALL_BACKENDS`` tuple of the root conftest.py.

    Read with :mod:`ast` rather than imported, so that the docs need neither pytest nor hypothesis.
    """
    for node in ast.parse(conftest.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "ALL_BACKENDS" for t in node.targets
        ):
            return tuple(ast.literal_eval(node.value))
    raise LookupError(f"no ALL_BACKENDS tuple in {conftest}")


def _device(test_id: str) -> str:
    library, _, variant = test_id.partition(":")
    if variant == "cuda" or library == "cupy":
        return "CUDA GPU"
    if library == "array_api_strict" and variant:
        return f"CPU (standard {variant})"
    return "CPU"


def backend_support_table(conftest: Path) -> str:
    """Function x backend x device, from ``ALL_BACKENDS`` and the dispatch tables themselves."""
    rows = []
    for test_id in read_all_backends(conftest):
        library = test_id.partition(":")[0]
        fused = backends._FAST_PATHS.get(library)
        loss_impl = f"fused (`{fused}`)" if fused else "array-API reference"
        autograd = "autograd" if library in _AUTOGRAD else "raises `NoClosedFormGradientError`"
        module = "yes" if library == "torch" else "no"
        extra = backends._LIBRARIES[library][1] if library in backends._LIBRARIES else "?"
        rows.append([
            f"`{test_id}`", _device(test_id), f"`{extra}`", loss_impl, "array-API reference",
            autograd, module,
        ])
    header = [
        "test id", "device", "install", "`loss`, `loss_and_grad`",
        "`sharpen`, `lp_penalty`, `project`, `soft_project`",
        "gradient of a value-only registered loss", "`nn.SparseRegLoss`",
    ]
    return markdown_table(header, rows)
