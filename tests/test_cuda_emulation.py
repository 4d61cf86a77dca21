"""The CuPy path's CUDA kernel, run on the CPU with one thread per lane, against the array-API core.

:mod:`_cuda_host` compiles the kernel's own source for the host and runs every lane of a warp as
its own thread, meeting at each shuffle; the launch code of :mod:`sparse_reg.backends.cupy` runs
unchanged on NumPy arrays. This checks the kernel's arithmetic where no GPU is present: every
built-in loss, both normalisation and clamp modes, the shared-memory row cache and the global-memory
fallback for wide rows, rows that do not fill the last block, and each launch dtype.
"""

from __future__ import annotations

import numpy as np
import pytest
from _cuda_host import compiler, emulated_cupy
from test_fast_paths import MODE_IDS, MODES, _assert_terms_close, _inputs, _objective

from sparse_reg.backends import cupy as cupy_path
from sparse_reg.losses import BUILTIN_LOSSES
from sparse_reg.regularizer import sr_terms as core_sr_terms

pytestmark = pytest.mark.skipif(compiler() is None, reason="no host C++ compiler (g++ or clang++) to build "
                                "the kernel's source for the CPU")


def _emulated(monkeypatch, logits, labels, objective, **kw):
    with emulated_cupy(monkeypatch):
        return cupy_path.fused_terms(logits, labels, objective, need_grad=True, **kw)


@pytest.mark.parametrize(("normalize", "clamp"), MODES, ids=MODE_IDS)
@pytest.mark.parametrize("base", BUILTIN_LOSSES)
def test_every_loss_and_mode_matches_the_core_in_float64(monkeypatch, base, normalize, clamp):
    logits, labels = _inputs(n=6, c=37)  # 37 classes: two sweeps per lane, the last one partial
    objective = _objective(base, normalize, clamp)
    got = _emulated(monkeypatch, logits, labels, objective)
    _assert_terms_close(got, core_sr_terms(logits, labels, objective, need_grad=True), rtol=1e-10)


@pytest.mark.parametrize(("dtype", "rtol"), [("float32", 2e-5), ("float16", 2e-2)])
def test_narrow_dtypes_match_the_core(monkeypatch, dtype, rtol):
    logits, labels = _inputs(n=5, c=9, seed=1, edges=False)  # a zero row's 1/eps gradient overflows float16
    logits = logits.astype(dtype)
    objective = _objective("ce", True, 1e-7)
    got = _emulated(monkeypatch, logits, labels, objective)
    assert got.base.dtype == np.float32 and got.grad.dtype == np.dtype(dtype)
    want = core_sr_terms(logits.astype(np.float64), labels, objective, need_grad=True)
    _assert_terms_close(got, want, rtol=rtol)


def test_rows_too_wide_for_shared_memory_are_read_from_global_memory(monkeypatch):
    c = cupy_path.SHARED_BYTES // (cupy_path.WARPS_PER_BLOCK * 8) + 1  # float64 rows just past the cache
    logits, labels = _inputs(n=3, c=c, seed=2, edges=False)
    objective = _objective("gce", True, None)
    got = _emulated(monkeypatch, logits, labels, objective, grad_scale=0.25)
    want = core_sr_terms(logits, labels, objective, need_grad=True, grad_scale=0.25)
    _assert_terms_close(got, want, rtol=1e-10)
