"""Build-time generation for the sparse_reg docs.

On ``builder-inited`` this writes, under ``docs/_generated/`` (not versioned):

* ``figures/*.png``: plots computed with the library (:mod:`sr_docgen.figures`);
* ``include/*.md``: tables included by the pages (loss registry, backend support, trainer presets,
  metrics columns, the CLI epilog);
* ``theory/*.rst``: one page per ``proofs/`` module, and ``include/theory_toc.md`` listing them.

The directive ``sr-public-data`` documents a module's public constants
(:mod:`sr_docgen.public_data`). After reading, the extension checks that every public name of the
library is documented (:mod:`sr_docgen.coverage`). Files are rewritten only when their content
changes, so incremental builds stay incremental.
"""

from __future__ import annotations

from pathlib import Path

from sphinx.application import Sphinx
from sphinx.util import logging

from sr_docgen import coverage, figures, tables, theory, trainer
from sr_docgen.public_data import PublicData

logger = logging.getLogger(__name__)


def write_if_changed(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def generate(app: Sphinx) -> None:
    docs = Path(app.srcdir)
    root = docs.parent
    out = docs / "_generated"
    include = out / "include"
    logger.info("sr_docgen: generating tables, figures and theory pages in %s", out)
    write_if_changed(include / "loss_table.md", tables.loss_registry_table())
    write_if_changed(include / "backend_table.md", tables.backend_support_table())
    write_if_changed(include / "presets.md", trainer.presets_section())
    write_if_changed(include / "preset_modes.md", trainer.modes_table())
    write_if_changed(include / "metrics_columns.md", trainer.metrics_table())
    write_if_changed(include / "cli_epilog.md", trainer.cli_epilog())
    modules = theory.proof_modules(root / "proofs")
    write_if_changed(include / "theory_toc.md", theory.toctree(modules))
    stale = {p.stem for p in (out / "theory").glob("*.rst")} - set(modules)
    for name in stale:
        (out / "theory" / f"{name}.rst").unlink()
    for module in modules:
        write_if_changed(out / "theory" / f"{module}.rst", theory.page(module, root / "proofs"))
    figures.draw_all(out / "figures")


def setup(app: Sphinx) -> dict[str, object]:
    app.add_directive("sr-public-data", PublicData)
    app.connect("builder-inited", generate)
    app.connect("env-check-consistency", coverage.check_public_api)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
