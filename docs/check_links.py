"""Check that every internal link of the built HTML documentation reaches a page and an anchor.

Usage (after ``sphinx-build -b html docs docs/_build/html``)::

    python docs/check_links.py [--html docs/_build/html]

Every ``<a href>`` of every page (the highlighted sources under ``_modules/`` included) that points
inside the site must name a file of the site and, with a ``#fragment``, an element of that page
with that ``id`` (or an ``<a name>``). Links to other sites, ``mailto:`` and the like are not
followed: the check reads files only, needs no network and no browser. The script prints each
broken link as ``page: href (why)`` and exits 1 if there is one.

Sphinx's own ``linkcheck`` builder is no substitute: it follows external links over the network
and does not look inside the built pages, where ``[docs]`` links of ``sphinx.ext.viewcode`` live.
"""

from __future__ import annotations

import argparse
import posixpath
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

DOCS = Path(__file__).resolve().parent


@dataclass
class PageLinks:
    """The anchors one HTML page defines and the ``href`` values it links to."""

    ids: set[str] = field(default_factory=set)
    hrefs: list[str] = field(default_factory=list)


class _LinkScanner(HTMLParser):
    """Collects ``id`` (and ``<a name>``) attributes and ``<a href>`` values."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links = PageLinks()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.links.ids.add(values["id"] or "")
        if tag == "a" and values.get("name"):
            self.links.ids.add(values["name"] or "")
        if tag == "a" and values.get("href") is not None:
            self.links.hrefs.append(values["href"] or "")

    # A self-closing tag (``<a id="x"/>``) defines an anchor as well.
    handle_startendtag = handle_starttag


def scan_links(text: str) -> PageLinks:
    """The anchors and link targets of the HTML document ``text``."""
    scanner = _LinkScanner()
    scanner.feed(text)
    scanner.close()
    return scanner.links


def internal_target(page: str, href: str) -> tuple[str, str] | None:
    """The site path and fragment ``href`` on ``page`` points to; ``None`` for another site.

    Parameters
    ----------
    page : str
        The linking page's path inside the site, with ``/`` separators (``api/core.html``).
    href : str
        The link as written in the page.

    Returns
    -------
    tuple of (str, str) or None
        The target's path inside the site (``page`` itself for ``#fragment``; a folder as its
        ``index.html``) and the unquoted fragment (empty if none).
    """
    parts = urlsplit(href)
    # A scheme (http:, mailto:, javascript:) or a host (//cdn...) leaves the site.
    if parts.scheme or parts.netloc:
        return None
    fragment = unquote(parts.fragment)
    if not parts.path:
        return page, fragment
    target = posixpath.normpath(posixpath.join(posixpath.dirname(page), unquote(parts.path)))
    if parts.path.endswith("/"):
        target = "index.html" if target == "." else f"{target}/index.html"
    return target, fragment


def _site_pages(html_dir: Path) -> dict[str, Path]:
    """Every HTML page of the site, by its path inside it; MathJax's own files left out."""
    return {
        page.relative_to(html_dir).as_posix(): page
        for page in sorted(html_dir.rglob("*.html"))
        if "_static" not in page.relative_to(html_dir).parts
    }


def broken_links(pages: dict[str, PageLinks], exists: set[str]) -> list[str]:
    """Each internal link of ``pages`` whose file or anchor is missing, as ``page: href (why)``.

    Parameters
    ----------
    pages : dict of str to PageLinks
        The scanned pages, by their path inside the site.
    exists : set of str
        Every file of the site (pages, images, sources), by its path inside it.
    """
    problems = []
    for name, links in pages.items():
        for href in links.hrefs:
            target = internal_target(name, href)
            if target is None:
                continue
            path, fragment = target
            if path not in exists:
                problems.append(f"{name}: {href} (no file {path})")
            elif fragment and path in pages and fragment not in pages[path].ids:
                problems.append(f"{name}: {href} (no id {fragment!r} in {path})")
    return problems


def check(html_dir: Path) -> list[str]:
    """Every broken internal link of the site at ``html_dir`` (empty: all of them resolve)."""
    files = _site_pages(html_dir)
    if not files:
        return [f"no HTML pages under {html_dir}; build the docs first"]
    pages = {name: scan_links(path.read_text(encoding="utf-8")) for name, path in files.items()}
    exists = {p.relative_to(html_dir).as_posix() for p in html_dir.rglob("*") if p.is_file()}
    return broken_links(pages, exists)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--html", type=Path, default=DOCS / "_build" / "html", help="the built site")
    args = parser.parse_args(argv)
    problems = check(args.html)
    for problem in problems:
        print(problem, file=sys.stderr)
    summary = f"{len(problems)} broken internal link(s)" if problems else "every internal link resolves"
    print(f"link check: {summary}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
