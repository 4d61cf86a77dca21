"""Sphinx configuration for the sparse_reg documentation.

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html``; doctests:
``sphinx-build -W --keep-going -b doctest docs docs/_build/doctest``.

Tables, figures and the theory pages are generated at build time into ``docs/_generated/`` by the
local extension ``docs/_ext/sr_docgen``, from the library itself: nothing in them is typed twice.

Formulas render with no network: ``sphinx-mathjax-offline`` copies MathJax into the built site
(``docs/check_offline.py`` checks it in a headless browser with the network off, and that no page
shows raw TeX). ``docs/check_links.py`` checks that every internal link reaches its page and anchor.

Intersphinx works offline: every inventory has a local, empty fallback, so an unreachable site
costs its cross-links but never a warning. ``SPARSE_REG_DOCS_INTERSPHINX=0`` skips the network.
"""

from __future__ import annotations

import os
import sys
import zlib
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# The repository root makes ``sparse_reg`` and ``proofs`` importable without an install.
sys.path[:0] = [str(ROOT), str(DOCS / "_ext")]

import sparse_reg  # noqa: E402

project = "sparse_reg"
author = "sparse_reg developers"
copyright = "sparse_reg developers"
release = version = sparse_reg.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    # Ships MathJax 3 into _static/mathjax and points mathjax_path there: formulas render offline.
    "sphinx-mathjax-offline",
    "sphinx.ext.intersphinx",
    "sphinx.ext.doctest",
    "sphinx.ext.viewcode",
    # viewcode's [docs] links aimed at the name each object is documented under (sparse_reg.sharpen
    # beside sparse_reg.regularizer.sr_terms, one source module): docs/_ext/sr_viewcode.py.
    "sr_viewcode",
    "sphinx_copybutton",
    "sphinxarg.ext",
    "sr_docgen",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_generated/include/**", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []

# --- MyST -------------------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist", "attrs_inline", "substitution"]
myst_heading_anchors = 3
myst_dmath_double_inline = True
# One measured figure for the default run, the same as --help prints: {{ startup_figure }}.
from sparse_reg.train.cli import STARTUP_FIGURE  # noqa: E402

myst_substitutions = {"startup_figure": STARTUP_FIGURE}

# --- autodoc / napoleon (numpydoc-style docstrings) -------------------------------------------
autodoc_default_options = {"show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_mock_imports = ["cupy"]
autosummary_generate = False
napoleon_google_docstring = False
napoleon_numpy_docstring = True
# Attributes as :ivar: fields: dataclass fields would otherwise be documented twice.
napoleon_use_ivar = True
napoleon_use_rtype = False
add_module_names = False
python_maximum_signature_line_length = 88

# --- doctest ----------------------------------------------------------------------------------
doctest_global_setup = """
import numpy as np
import sparse_reg as sr
"""

# --- HTML -------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"sparse_reg {release}"
html_static_path: list[str] = []
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True
copybutton_exclude = ".linenos, .gp, .go"

# --- intersphinx ------------------------------------------------------------------------------
_INVENTORIES = {
    "python": "https://docs.python.org/3",
    "numpy": "https://numpy.org/doc/stable",
    "torch": "https://docs.pytorch.org/docs/stable",
    "cupy": "https://docs.cupy.dev/en/stable",
    "jax": "https://docs.jax.dev/en/latest",
    "array-api": "https://data-apis.org/array-api/latest",
}


def _empty_inventory() -> str:
    """A valid inventory with no objects: the offline fallback for every intersphinx target."""
    path = DOCS / "_generated" / "empty-objects.inv"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        header = (
            b"# Sphinx inventory version 2\n# Project: offline\n# Version: 0\n"
            b"# The remainder of this file is compressed using zlib.\n"
        )
        path.write_bytes(header + zlib.compress(b""))
    return str(path)


if os.environ.get("SPARSE_REG_DOCS_INTERSPHINX", "1") == "0":
    intersphinx_mapping: dict[str, tuple[str, object]] = {}
else:
    _fallback = _empty_inventory()
    intersphinx_mapping = {name: (url, (None, _fallback)) for name, url in _INVENTORIES.items()}
intersphinx_timeout = 10
