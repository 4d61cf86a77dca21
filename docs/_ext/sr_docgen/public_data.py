"""``.. sr-public-data:: module``: document every public constant of a module's ``__all__``.

autodoc's ``:members:`` documents a module-level constant only when the module itself holds its
doc comment, so constants re-exported from a submodule (``sparse_reg.noise.PRESETS`` is defined in
``sparse_reg.noise.presets``) would be silently left out. This directive, placed after the
``automodule``, documents the constants that are still missing: it finds the module that
defines each constant, takes its ``#:`` doc comment and annotation from there, and writes a
``py:data`` entry under the public name.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType
from typing import Any

from sphinx.pycode import ModuleAnalyzer
from sphinx.util.docutils import SphinxDirective

#: Values whose repr is longer than this are shown by their type only.
MAX_VALUE_REPR = 80


def is_constant(value: Any) -> bool:
    return not (inspect.ismodule(value) or inspect.isclass(value) or callable(value))


def _candidate_modules(module: ModuleType) -> list[ModuleType]:
    found = [module]
    for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
        name = f"{module.__name__}.{info.name}"
        try:
            found.append(importlib.import_module(name))
        except ImportError:
            continue
    return found


def defining_module(module: ModuleType, name: str) -> tuple[ModuleType, list[str]]:
    """The module whose source assigns ``name`` (and has a doc comment for it), and that comment."""
    value = getattr(module, name)
    for candidate in _candidate_modules(module):
        if getattr(candidate, name, None) is not value:
            continue
        docs = ModuleAnalyzer.for_module(candidate.__name__).find_attr_docs()
        if ("", name) in docs:
            return candidate, list(docs[("", name)])
    return module, []


class PublicData(SphinxDirective):
    required_arguments = 1

    def run(self):
        module = importlib.import_module(self.arguments[0])
        documented = self.env.get_domain("py").objects
        lines: list[str] = []
        for name in getattr(module, "__all__", ()):
            value = getattr(module, name)
            if name.startswith("__") or not is_constant(value) or f"{module.__name__}.{name}" in documented:
                continue
            source, doc = defining_module(module, name)
            lines += [f".. py:data:: {name}", f"   :module: {module.__name__}"]
            annotation = getattr(source, "__annotations__", {}).get(name)
            if annotation:
                lines.append(f"   :type: {annotation}")
            shown = repr(value)
            if len(shown) <= MAX_VALUE_REPR:
                lines.append(f"   :value: {shown}")
            lines.append("")
            lines += [f"   {line}" for line in doc] or [f"   Defined in :mod:`{source.__name__}`."]
            lines.append("")
        return self.parse_text_to_nodes("\n".join(lines))
