"""Point each ``[docs]`` link of the highlighted sources at the name its object is documented under.

``sphinx.ext.viewcode`` writes every ``[docs]`` link of a module's source page as
``<prefix>.<name>`` with one prefix for the whole page: the module name of the first object of that
module it met (sphinx-doc/sphinx#6651). These docs document the public names under ``sparse_reg``
(``sparse_reg.sharpen`` on ``api/core``) and the other objects of the same modules under their own
module (``sparse_reg.regularizer.sr_terms`` on ``api/internals``), so the links of one of the two
groups named an anchor that no page has (``api/internals.html#sparse_reg.sr_terms``).

On each source page this replaces a link whose anchor is not a documented object by the page and
id the Python domain holds for ``<module>.<name>``: the object itself, or the alias autodoc records
for an object documented under another name. ``docs/check_links.py`` checks the result.

viewcode rewrites a source page only when its module is newer than the page, so a build into a
folder that holds pages from before this extension keeps their old links: build into a fresh one.
"""

from __future__ import annotations

import re
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx

# The markup viewcode's collect_pages writes in front of each documented object's source lines.
_BACKLINK = re.compile(
    r'(?P<head><div class="viewcode-block" id="(?P<name>[^"]+)">\s*<a class="viewcode-back" href=")'
    r'(?P<href>[^"]*)"'
)
_SOURCES = "_modules/"


def fix_backlinks(app: Sphinx, pagename: str, body: str) -> str:
    """``body`` of the source page ``pagename`` with each broken ``[docs]`` link re-aimed.

    Parameters
    ----------
    app : Sphinx
        The application, for the Python domain's objects and the builder's relative URIs.
    pagename : str
        ``_modules/<module path>``, the page viewcode wrote.
    body : str
        The page's HTML body.

    Returns
    -------
    str
        The body, links that already name a documented object left as they are.
    """
    objects = app.env.get_domain("py").objects
    modname = pagename[len(_SOURCES) :].replace("/", ".")

    def relink(match: re.Match[str]) -> str:
        anchor = match["href"].rpartition("#")[2]
        entry = objects.get(f"{modname}.{match['name']}")
        if anchor in objects or entry is None:
            return match[0]
        href = app.builder.get_relative_uri(pagename, entry.docname) + "#" + entry.node_id
        return f'{match["head"]}{href}"'

    return _BACKLINK.sub(relink, body)


def _on_page(
    app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: nodes.document | None
) -> None:
    if pagename.startswith(_SOURCES) and "body" in context:
        context["body"] = fix_backlinks(app, pagename, context["body"])


def setup(app: Sphinx) -> dict[str, object]:
    app.connect("html-page-context", _on_page)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
