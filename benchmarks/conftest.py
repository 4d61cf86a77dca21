"""pytest-benchmark configuration for ``benchmarks/`` (outside the default test run).

The repository's ``testpaths`` are ``tests`` and ``proofs``, so nothing here runs unless asked for::

    python -m pytest benchmarks -p no:cacheprovider --benchmark-only

Files are named ``bench_*.py``; this hook collects them, since the project-wide ``python_files``
pattern does not match that name.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    if file_path.suffix == ".py" and file_path.name.startswith("bench_"):
        return pytest.Module.from_parent(parent, path=file_path)
    return None
