"""Check that the built HTML documentation renders every formula with no network.

Usage (after ``sphinx-build -b html docs docs/_build/html``)::

    python docs/check_offline.py [--html docs/_build/html] [--screenshots DIR] [--chromium PATH]

Three checks, and the script exits 1 naming the page if any fails:

1. Every script and stylesheet a page loads is a file of the built site (no ``http://``,
   ``https://`` or ``//`` address).
2. Every page that holds a formula (an element of class ``math``, in the text or in the sidebar's
   titles) is opened in headless Chromium with the network off: inside an empty network namespace
   (``unshare --net``) where the system allows it, and always with every host name resolving to
   nothing. After MathJax has run, the rendered DOM must hold one ``mjx-container`` per formula and
   no formula may still show its raw LaTeX delimiters ``\\(``, ``\\[`` or ``$$``.
3. No page's visible text shows raw TeX: a ``$...$`` or a ``\\command`` outside code (``code``,
   ``pre``, ``kbd``, ``samp``) and outside the formulas of the second check. Markdown that MyST did
   not read as math ends up there: a formula wrapped onto a line starting with ``+ `` becomes a
   nested list and its TeX is shown as typed. Pages with a formula are read as Chromium rendered
   them, the others (and every page, with no browser) as built.

``--screenshots DIR`` also writes a PNG of each page checked, to look at.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

DOCS = Path(__file__).resolve().parent
BROWSERS = ("chromium", "chromium-browser", "chromium-headless-shell", "google-chrome")
_REMOTE = re.compile(r"^(https?:)?//", re.IGNORECASE)
_RAW = ("\\(", "\\[", "$$")
# Raw TeX in prose: $...$ with no space inside either dollar (so "$5 or $10" is no formula), $$...$$,
# or a backslash command.
_TEX = re.compile(r"\$\$.+?\$\$|\$[^\s$](?:[^$\n]*?[^\s$])?\$|\\[A-Za-z]+")
# Text in these is shown as typed on purpose (code), or is not text (MathJax output, MathML, SVG).
_HIDDEN = frozenset({"head", "code", "pre", "kbd", "samp", "textarea", "mjx-container", "math", "svg"})
# Their text does not run on into the next element's: a $ in one never pairs with a $ in the other.
_BLOCKS = frozenset(
    {"p", "div", "li", "dt", "dd", "td", "th", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section"}
    | {"blockquote", "figcaption", "caption", "nav", "aside", "header", "footer", "table", "ul", "ol"}
)


@dataclass
class PageScan:
    """What one HTML document holds: its formulas and the resources it loads."""

    formulas: int = 0
    rendered: int = 0
    raw: list[str] = field(default_factory=list)
    remote: list[str] = field(default_factory=list)
    tex: list[str] = field(default_factory=list)


def raw_tex(text: str, context: int = 40) -> list[str]:
    """Each line of ``text`` that shows raw TeX, cut to the first hit and ``context`` characters around.

    Parameters
    ----------
    text : str
        Visible text of a page, one block (paragraph, list item, cell) a line.
    context : int
        Characters kept on each side of the first ``$...$`` or ``\\command`` of a line.

    Returns
    -------
    list of str
        One excerpt per line with raw TeX, in order.
    """
    hits = []
    for line in text.splitlines():
        found = _TEX.search(line)
        if found:
            start, end = max(found.start() - context, 0), found.end() + context
            hits.append(" ".join(line[start:end].split()))
    return hits


class _Scanner(HTMLParser):
    """Counts ``.math`` elements, the ``mjx-container`` inside them, and text left raw in them.

    It also gathers the page's visible text outside :data:`_HIDDEN` elements and formulas, for
    :func:`raw_tex`.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.scan = PageScan()
        # tag, opens a formula, inside a formula, hidden from the visible text
        self._stack: list[tuple[str, bool, bool, bool]] = []
        self._found_container = False
        self.text: list[str] = []

    def _inside(self) -> bool:
        return bool(self._stack) and self._stack[-1][2]

    def _hidden(self) -> bool:
        return bool(self._stack) and self._stack[-1][3]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "script" and values.get("src") and _REMOTE.match(values["src"] or ""):
            self.scan.remote.append(values["src"] or "")
        if (
            tag == "link"
            and "stylesheet" in (values.get("rel") or "")
            and _REMOTE.match(values.get("href") or "")
        ):
            self.scan.remote.append(values.get("href") or "")
        if tag in ("script", "style", "link", "meta", "img", "br", "hr", "input"):
            if tag in ("script", "style"):
                self._stack.append((tag, False, self._inside(), True))
            elif tag == "br":
                self.text.append("\n")
            return
        if tag in _BLOCKS:
            self.text.append("\n")
        opens = "math" in (values.get("class") or "").split() and not self._inside()
        if opens:
            self.scan.formulas += 1
            self._found_container = False
        if tag == "mjx-container" and self._inside() and not self._found_container:
            self.scan.rendered += 1
            self._found_container = True
        hidden = opens or tag in _HIDDEN or self._hidden()
        self._stack.append((tag, opens, opens or self._inside(), hidden))

    def handle_endtag(self, tag: str) -> None:
        if tag in _BLOCKS:
            self.text.append("\n")
        for depth in range(len(self._stack) - 1, -1, -1):
            if self._stack[depth][0] == tag:
                del self._stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        if self._stack and self._stack[-1][0] in ("script", "style"):
            return
        if self._inside() and any(mark in data for mark in _RAW):
            self.scan.raw.append(data.strip()[:80])
        # A code or formula element stands as a space: a $ before it does not pair with one after.
        self.text.append(" " if self._hidden() else data)


def scan_html(text: str) -> PageScan:
    """Formulas, rendered formulas, raw LaTeX in and out of formulas, remote resources of ``text``."""
    scanner = _Scanner()
    scanner.feed(text)
    scanner.close()
    scanner.scan.tex = raw_tex("".join(scanner.text))
    return scanner.scan


def _tex_problems(name: str, scan: PageScan) -> list[str]:
    """One problem per excerpt of raw TeX in the visible text of page ``name``."""
    return [f"{name}: raw TeX in the text: {text!r}" for text in scan.tex]


def find_browser(name: str | None = None) -> str | None:
    """The Chromium executable: ``name`` if given, else the first of :data:`BROWSERS` on PATH."""
    if name:
        return shutil.which(name) or (name if Path(name).is_file() else None)
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def _offline_prefix() -> list[str]:
    """``unshare --net`` (no network interface at all) where the system lets this process use it."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "--net", "true"], capture_output=True).returncode == 0:
        return [unshare, "--net"]
    return []


def render(browser: str, page: Path, profile: Path, screenshot: Path | None = None) -> str:
    """The DOM of ``page`` after its scripts ran, in headless Chromium with the network off."""
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        f"--user-data-dir={profile}",
        # No host name resolves: a request for anything but a local file fails.
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--allow-file-access-from-files",
        "--virtual-time-budget=20000",
        "--window-size=1280,1600",
    ]
    url = page.resolve().as_uri()
    command = [*_offline_prefix(), browser, *flags]
    done = subprocess.run([*command, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{browser} failed on {page}: {done.stderr.strip()[-500:]}")
    if screenshot is not None:
        subprocess.run(
            [*command, f"--screenshot={screenshot}", url],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    return done.stdout


def check(html_dir: Path, browser: str | None, screenshots: Path | None = None) -> list[str]:
    """Every problem found in the site at ``html_dir`` (empty: all formulas render offline).

    With ``browser=None`` the second check (formulas render) is skipped, and the third reads every
    page as built.
    """
    problems: list[str] = []
    pages = sorted(p for p in html_dir.rglob("*.html") if "_static" not in p.parts)
    if not pages:
        return [f"no HTML pages under {html_dir}; build the docs first"]
    with_math = []
    for page in pages:
        scan = scan_html(page.read_text(encoding="utf-8"))
        name = page.relative_to(html_dir).as_posix()
        problems += [f"{name}: loads {address} from the network" for address in scan.remote]
        if scan.formulas:
            with_math.append(page)
        # MathJax changes nothing outside formulas: a page it does not run on is read as built.
        if browser is None or not scan.formulas:
            problems += _tex_problems(name, scan)
    if not with_math:
        problems.append(f"no page under {html_dir} holds a formula; nothing was checked")
    if browser is None:
        return problems
    if screenshots is not None:
        screenshots.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        for page in with_math:
            name = page.relative_to(html_dir).as_posix()
            shot = screenshots / (name.replace("/", "__")[: -len(".html")] + ".png") if screenshots else None
            scan = scan_html(render(browser, page, Path(profile), shot))
            if scan.rendered != scan.formulas:
                problems.append(f"{name}: {scan.rendered} of {scan.formulas} formulas rendered")
            problems += [f"{name}: raw LaTeX left in a formula: {text!r}" for text in scan.raw[:3]]
            problems += _tex_problems(name, scan)
            print(f"{name}: {scan.rendered}/{scan.formulas} formulas rendered", file=sys.stderr)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--html", type=Path, default=DOCS / "_build" / "html", help="the built site")
    parser.add_argument("--screenshots", type=Path, help="also write a PNG of each page checked here")
    parser.add_argument("--chromium", help="browser executable (default: chromium on PATH)")
    args = parser.parse_args(argv)
    browser = find_browser(args.chromium)
    if browser is None:
        print(
            "check_offline.py: error: no Chromium found; install it (Debian: apt-get install chromium) "
            "or pass --chromium PATH",
            file=sys.stderr,
        )
        return 2
    problems = check(args.html, browser, args.screenshots)
    for problem in problems:
        print(problem, file=sys.stderr)
    ok = "every formula rendered with no network, no raw TeX in the text"
    print("offline check: " + ("failed" if problems else ok))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
