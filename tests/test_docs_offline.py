"""The built documentation: formulas render with no network, no raw TeX shows, every internal link
resolves (docs/check_offline.py, docs/check_links.py and docs/conf.py)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    """The script ``docs/<name>.py`` as a module (docs/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "docs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


check_offline = _load("check_offline")
check_links = _load("check_links")

RENDERED = """<html><head><script src="_static/mathjax/tex-chtml.js"></script></head><body>
<nav><span class="math notranslate"><mjx-container class="MathJax"><mjx-math>p</mjx-math>
<mjx-assistive-mml><math><mi>p</mi></math></mjx-assistive-mml></mjx-container></span></nav>
<div class="math notranslate"><mjx-container display="true"><mjx-math>x</mjx-math></mjx-container></div>
<pre>a regex \\( in code is not a formula</pre></body></html>"""


def test_scan_counts_rendered_formulas_and_ignores_code():
    scan = check_offline.scan_html(RENDERED)
    assert (scan.formulas, scan.rendered, scan.raw, scan.remote) == (2, 2, [], [])


def test_scan_finds_raw_latex_and_remote_scripts():
    page = (
        '<html><head><script defer src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js">'
        '</script><link rel="stylesheet" href="//cdn.example/katex.css"></head><body>'
        '<span class="math notranslate nohighlight">\\(\\lambda_t\\)</span>'
        '<div class="math">$$x$$</div></body></html>'
    )
    scan = check_offline.scan_html(page)
    assert (scan.formulas, scan.rendered) == (2, 0)
    assert scan.raw == ["\\(\\lambda_t\\)", "$$x$$"]
    assert scan.remote == [
        "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js",
        "//cdn.example/katex.css",
    ]


def _sphinx(source: Path, conf: str, page: str, text: str) -> Path:
    """The HTML site Sphinx builds from one page ``page`` holding ``text``, under ``source``."""
    source.mkdir()
    (source / "conf.py").write_text(conf + "html_theme = 'basic'\n")
    (source / page).write_text(text)
    out = source / "_build"
    subprocess.run(
        [sys.executable, "-m", "sphinx", "-q", "-b", "html", str(source), str(out)],
        check=True,
        capture_output=True,
    )
    return out


def _build_site(tmp_path: Path, offline: bool) -> Path:
    pytest.importorskip("sphinx")
    if offline:
        pytest.importorskip("sphinx-mathjax-offline")
    extensions = ["sphinx.ext.mathjax"] + (["sphinx-mathjax-offline"] if offline else [])
    return _sphinx(
        tmp_path / ("offline" if offline else "cdn"),
        f"extensions = {extensions!r}\n",
        "index.rst",
        "Title\n=====\n\nInline :math:`\\lambda_t = \\lambda_0 \\rho^t`.\n\n.. math:: \\sum_k s_k^p\n",
    )


def test_raw_tex_is_found_in_text_lines_but_not_in_prices():
    text = "a $x$ here\ncosts $5 or $10\nuse \\alpha\n\n$$ y $$ shown\nno formula at all"
    assert check_offline.raw_tex(text) == ["a $x$ here", "use \\alpha", "$$ y $$ shown"]
    assert check_offline.raw_tex("x" * 100 + " \\beta " + "y" * 100, context=3) == ["xx \\beta yy"]


def test_scan_reports_raw_tex_outside_code_and_rendered_math():
    page = (
        "<html><head><title>$t$ \\title</title></head><body><p>The weight $x$ grows.</p>"
        "<p>Code: <code>\\alpha</code> <pre>$a$ \\b</pre> <kbd>\\c</kbd> <samp>$d$</samp></p>"
        '<p>Math: <span class="math"><mjx-container><mjx-assistive-mml><math><mi>\\e</mi></math>'
        "</mjx-assistive-mml></mjx-container></span> costs $5 or $10.</p>"
        "<ul><li>$s = (1-\\varepsilon) L +</li><li>\\varepsilon \\sum_c L$ is shown</li></ul>"
        "<p>$one</p><p>two$</p></body></html>"
    )
    scan = check_offline.scan_html(page)
    assert scan.tex == [
        "The weight $x$ grows.",
        "$s = (1-\\varepsilon) L +",
        "\\varepsilon \\sum_c L$ is shown",
    ]


def test_code_alone_shows_no_raw_tex():
    assert check_offline.scan_html(RENDERED).tex == []
    assert check_offline.scan_html("<p>Run <code>$x$ \\alpha</code> or <tt>plain</tt>.</p>").tex == []


# A line of a formula that starts with "+ " makes a nested list, and MyST no longer sees the formula.
_BROKEN_LIST = """# Title

* **Label smoothing keeps it.** $L_\\varepsilon(u, k) = (1-\\varepsilon) L(u, k) +
  \\frac{\\varepsilon}{C}\\sum_c L(u, c)$ has $\\sum_k L_\\varepsilon(u, k) = (1-\\varepsilon)\\sum_k L(u, k)
  + \\varepsilon \\sum_c L(u, c) = \\sum_k L(u, k)$: the same label sum for every output.
"""


@pytest.mark.parametrize("wrapped", ["before the +", "after the +"])
def test_a_formula_broken_into_a_nested_list_shows_raw_tex(tmp_path, wrapped):
    pytest.importorskip("myst_parser")
    text = _BROKEN_LIST
    if wrapped == "after the +":  # as docs/theory.md has it: the + ends the line before
        text = text.replace("L(u, k)\n  + ", "L(u, k) +\n  ")
    conf = "extensions = ['myst_parser', 'sphinx.ext.mathjax']\nmyst_enable_extensions = ['dollarmath']\n"
    site = _sphinx(tmp_path / "myst", conf, "index.md", text)
    tex = [p for p in check_offline.check(site, browser=None) if "raw TeX" in p]
    if wrapped == "before the +":
        assert len(tex) == 2 and "\\varepsilon" in tex[1], tex
    else:
        assert tex == []


def test_a_site_loading_mathjax_from_a_cdn_fails_the_check(tmp_path):
    site = _build_site(tmp_path, offline=False)
    problems = check_offline.check(site, browser=None)
    assert any("loads https://" in p and "from the network" in p for p in problems), problems


def test_the_docs_configuration_ships_mathjax():
    conf = (ROOT / "docs" / "conf.py").read_text()
    assert '"sphinx-mathjax-offline"' in conf and "cdn" not in conf.lower()


@pytest.mark.skipif(check_offline.find_browser() is None, reason="needs Chromium (apt-get install chromium)")
def test_formulas_render_in_a_browser_with_the_network_off(tmp_path):
    site = _build_site(tmp_path, offline=True)
    assert check_offline.check(site, check_offline.find_browser(), tmp_path / "shots") == []
    assert (tmp_path / "shots" / "index.png").stat().st_size > 0
    # The same page without its MathJax files: formulas stay raw, and the check says so.
    shutil.rmtree(site / "_static" / "mathjax")
    problems = check_offline.check(site, check_offline.find_browser())
    assert "index.html: 0 of 2 formulas rendered" in problems
    assert any("raw LaTeX left in a formula" in p for p in problems)


def _write_site(root: Path, pages: dict[str, str]) -> Path:
    for name, body in pages.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"<html><body>{body}</body></html>")
    return root


def test_a_link_to_a_missing_anchor_or_page_is_reported(tmp_path):
    site = _write_site(
        tmp_path,
        {
            "index.html": '<a href="api/core.html#sparse_reg.loss">ok</a> <a href="#top">ok</a>'
            '<span id="top"></span> <a href="api/core.html#sparse_reg.lambda_at">broken</a>'
            '<a href="gone.html">missing</a> <a href="https://example.org/#x">external</a>',
            "api/core.html": '<dt id="sparse_reg.loss">loss</dt><a href="../index.html#top">ok</a>'
            '<a href="../_images/plot.png">ok</a><a href="./">missing</a><a name="old"></a>'
            '<a href="#old">ok</a>',
            "_images/plot.png": "",
        },
    )
    assert check_links.check(site) == [
        "api/core.html: ./ (no file api/index.html)",
        "index.html: api/core.html#sparse_reg.lambda_at (no id 'sparse_reg.lambda_at' in api/core.html)",
        "index.html: gone.html (no file gone.html)",
    ]
    assert check_links.main(["--html", str(site)]) == 1


def test_links_that_resolve_are_not_reported(tmp_path):
    site = _write_site(
        tmp_path,
        {
            "index.html": '<a href="api/internals.html#sparse_reg.regularizer.Parameter">x</a>'
            '<a href="mailto:a@b.c">mail</a><a href="api/internals.html#sparse_reg.regularizer%2EParameter">y</a>',
            "api/internals.html": '<dt id="sparse_reg.regularizer.Parameter"></dt><a href="../">up</a>',
        },
    )
    assert check_links.check(site) == []
    assert check_links.main(["--html", str(site)]) == 0


@pytest.mark.parametrize("fixed", [False, True])
def test_viewcode_links_reach_objects_documented_under_two_module_names(tmp_path, fixed):
    # One source module, one object documented under the package, one under the module itself:
    # viewcode alone aims both [docs] links with the same prefix (sphinx-doc/sphinx#6651).
    pytest.importorskip("sphinx")
    package = tmp_path / "code" / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("from pkg.mod import public\n")
    (package / "mod.py").write_text('def public():\n    """Public."""\n\n\ndef inner():\n    """Inner."""\n')
    extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode"] + (["sr_viewcode"] if fixed else [])
    conf = (
        f"import sys\nsys.path[:0] = [{str(tmp_path / 'code')!r}, {str(ROOT / 'docs' / '_ext')!r}]\n"
        f"extensions = {extensions!r}\n"
    )
    page = "Title\n=====\n\n.. currentmodule:: pkg\n\n.. autofunction:: public\n.. autofunction:: pkg.mod.inner\n"
    site = _sphinx(tmp_path / "site", conf, "index.rst", page)
    problems = check_links.check(site)
    if fixed:
        assert problems == []
    else:
        assert problems == [
            "_modules/pkg/mod.html: ../../index.html#pkg.inner (no id 'pkg.inner' in index.html)"
        ]
