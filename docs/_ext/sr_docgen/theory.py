"""One page per module of ``proofs/``: its statement and proof, then the property tests that check it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

#: Reading order: the lemmas and theorems in the order they build on each other, then the
#: properties. Modules not listed follow alphabetically, so a new proof appears on its own.
ORDER = (
    "lemma1_symmetric_condition",
    "theorem1_symmetric_noise",
    "theorem2_class_conditional",
    "theorem3_noisy_selection",
    "lemma2_lp_penalty",
    "property_sharpening",
    "property_gradients",
    "property_population_minimiser",
    "property_projection",
    "property_normalised_logits",
)


def proof_modules(proofs_dir: Path) -> list[str]:
    """Module names in ``proofs/``, in reading order (private modules, starting with ``_``, are skipped)."""
    found = {p.stem for p in proofs_dir.glob("*.py") if not p.stem.startswith("_") and p.stem != "conftest"}
    return [m for m in ORDER if m in found] + sorted(found - set(ORDER))


def title(module: str) -> str:
    """``lemma1_symmetric_condition`` -> ``Lemma 1: symmetric condition``."""
    numbered = re.fullmatch(r"(lemma|theorem)(\d+)_(.+)", module)
    if numbered:
        kind, number, rest = numbered.groups()
        return f"{kind.capitalize()} {number}: {rest.replace('_', ' ')}"
    if module.startswith("property_"):
        return f"Property: {module.removeprefix('property_').replace('_', ' ')}"
    return module.replace("_", " ").capitalize()


def test_names(path: Path) -> list[str]:
    """Test functions (``test_*``) and test methods (``Test*.test_*``) of a module, in file order."""
    names: list[str] = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            names.append(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            names += [
                f"{node.name}.{item.name}"
                for item in node.body
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name.startswith("test")
            ]
    return names


def _underline(text: str, char: str) -> str:
    return f"{text}\n{char * len(text)}\n"


def page(module: str, proofs_dir: Path) -> str:
    """The reST page of one proof module (written to ``_generated/theory/<module>.rst``)."""
    path = proofs_dir / f"{module}.py"
    relative = f"proofs/{module}.py"
    source = f"../../../{relative}"
    parts = [
        f".. _proof-{module}:\n",
        _underline(title(module), "="),
        f".. automodule:: proofs.{module}\n",
        _underline("Property tests", "-"),
        f"The statement above is checked by the property tests of ``{relative}``. Run them with\n",
        ".. code-block:: console\n",
        f"   $ pytest {relative} --hypothesis-show-statistics\n",
        "and set ``SPARSE_REG_HYPOTHESIS_PROFILE=thorough`` for 1000 examples per property.\n",
    ]
    for name in test_names(path):
        directive = "automethod" if "." in name else "autofunction"
        parts += [
            _underline(f"``{name}``", "~"),
            f"``pytest {relative}::{name.replace('.', '::')}``\n",
            f".. {directive}:: proofs.{module}.{name}\n",
            f".. literalinclude:: {source}\n   :pyobject: {name}\n   :caption: {relative}\n",
        ]
    return "\n".join(parts)


def toctree(modules: list[str]) -> str:
    """The theory page's toctree (MyST), included from ``theory.md``."""
    entries = "\n".join(f"_generated/theory/{m}" for m in modules)
    return f"```{{toctree}}\n:maxdepth: 1\n\n{entries}\n```\n"
