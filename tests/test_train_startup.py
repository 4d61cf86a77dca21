"""What the default run imports: no scikit-learn, no pyplot, no compiler stack for determinism."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("torch")


def _run_python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_a_run_imports_neither_scikit_learn_nor_pyplot(tmp_path):
    code = (
        "import sys\n"
        "from sparse_reg.train import main\n"
        f"assert main(['--epochs', '1', '--quiet', '--out', {str(tmp_path / 'run')!r}]) == 0\n"
        # scipy is not listed: Numba, behind the compiled CPU kernel, imports it when installed.
        "print(sorted(m for m in ('sklearn', 'matplotlib.pyplot') if m in sys.modules))\n"
        "print('matplotlib.figure' in sys.modules)\n"
    )
    imported, plotted = _run_python(code).splitlines()
    assert imported == "[]"
    assert plotted == "True" and (tmp_path / "run" / "curves.png").stat().st_size > 0


def test_determinism_is_set_without_importing_the_compiler():
    code = (
        "import sys, torch\n"
        "from sparse_reg.train.loop import _seed_everything\n"
        "_seed_everything(0, True)\n"
        "print(torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),"
        " 'torch._dynamo' in sys.modules, 'torch._inductor.config' in sys.modules)\n"
        "_seed_everything(0, False)\n"
        "print(torch.are_deterministic_algorithms_enabled())\n"
    )
    assert _run_python(code).split() == ["True", "True", "False", "False", "False"]


def test_a_compiled_run_still_sets_the_compiler_flag():
    code = (
        "import torch\n"
        "from sparse_reg.train.loop import _seed_everything\n"
        "_seed_everything(0, True, compiled=True)\n"
        "import torch._inductor.config as c\n"
        "print(c.deterministic, torch.are_deterministic_algorithms_enabled())\n"
    )
    assert _run_python(code).split() == ["True", "True"]


def test_help_readme_and_docs_quote_the_same_measured_figure():
    from pathlib import Path

    from sparse_reg.train.cli import STARTUP_FIGURE, build_parser

    root = Path(__file__).resolve().parents[1]

    def flat(text: str) -> str:
        return " ".join(text.split())

    assert "s of wall time" in STARTUP_FIGURE
    assert STARTUP_FIGURE in flat(build_parser().format_help())
    assert STARTUP_FIGURE in flat((root / "README.md").read_text())
    for page in ("trainer.md", "getting-started.md", "reproduction.md"):
        assert "{{ startup_figure }}" in (root / "docs" / page).read_text(), page
