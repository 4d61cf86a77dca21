"""pytest-benchmark suite for the loss (CPU): one group per shape, the contenders of compare.py.

For regression gating, e.g.::

    python -m pytest benchmarks -p no:cacheprovider --benchmark-only --benchmark-autosave
    python -m pytest benchmarks -p no:cacheprovider --benchmark-only --benchmark-compare \
        --benchmark-compare-fail=median:10%

The one-table comparison with ratios and the float64 accuracy check is ``python -m benchmarks.compare``.
"""

from __future__ import annotations

import pytest

from benchmarks.contenders import CONTENDERS, make_inputs, reference_grad, relative_error

pytest.importorskip("pytest_benchmark")
pytest.importorskip("torch")

SHAPES = [(128, 10), (128, 100), (4096, 100), (4096, 1000)]
#: The CPU contenders that need no compiler warm-up of tens of seconds (B) and no GPU (E).
KEYS = ["A", "C", "D", "D-nn", "F-naive", "F-ours", "G-torch", "G-numpy"]
BY_KEY = {contender.key: contender for contender in CONTENDERS}


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("shape", SHAPES, ids=[f"{n}x{c}" for n, c in SHAPES])
def test_forward_backward_float32(benchmark, shape, key):
    benchmark.group = f"{shape[0]}x{shape[1]} float32"
    inputs = make_inputs(*shape, "float32", seed=0)
    step = BY_KEY[key].make(inputs)
    grad = step()
    if key not in ("C", "G-torch", "G-numpy"):  # the anchors compute another function
        assert relative_error(grad, reference_grad(inputs)) <= 1e-5
    benchmark(step)
