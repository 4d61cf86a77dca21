"""Fail the build when a public name of the library is not documented anywhere."""

from __future__ import annotations

import importlib
import inspect

from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging

logger = logging.getLogger(__name__)

#: Modules whose ``__all__`` must be documented in full.
PUBLIC_MODULES = (
    "sparse_reg",
    "sparse_reg.nn",
    "sparse_reg.noise",
    "sparse_reg.data",
    "sparse_reg.backends",
    "sparse_reg.errors",
)


def expected_objects() -> tuple[set[str], set[str]]:
    """Full names of every public object, and of every public module."""
    objects: set[str] = set()
    modules: set[str] = set(PUBLIC_MODULES)
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            if name.startswith("__"):
                continue
            if inspect.ismodule(getattr(module, name)):
                modules.add(f"{module_name}.{name}")
            else:
                objects.add(f"{module_name}.{name}")
    return objects, modules


def check_public_api(app: Sphinx, env: BuildEnvironment) -> None:
    domain = env.get_domain("py")
    documented = set(domain.objects)
    objects, modules = expected_objects()
    for name in sorted(objects - documented):
        logger.warning("public name %s is not documented in the API reference", name,
                       type="sr_docgen", subtype="undocumented")
    for name in sorted(modules - set(domain.modules)):
        logger.warning("public module %s is not documented in the API reference", name,
                       type="sr_docgen", subtype="undocumented")
