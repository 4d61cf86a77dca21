"""Inputs no path supports are refused at the front door, with the argument named; the supported
tau range of each dtype (sparse_reg.regularizer.MIN_TAU) is enforced and accurate."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from contextlib import nullcontext

import numpy as np
import pytest

import sparse_reg as sr
from sparse_reg.backends import _cpu_kernel as kernel
from sparse_reg.regularizer import MIN_TAU


def _batch(dtype="float32"):
    rng = np.random.default_rng(0)
    return (rng.normal(size=(8, 5)) * 3).astype(dtype), rng.integers(0, 5, 8)


def test_big_endian_logits_and_labels_are_converted_to_native_byte_order():
    logits, labels = _batch()
    want_value, want_grad = sr.loss_and_grad(logits, labels)
    value, grad = sr.loss_and_grad(logits.astype(">f4"), labels.astype(">i8"))
    np.testing.assert_array_equal(value, want_value)
    np.testing.assert_array_equal(grad, want_grad)
    assert grad.dtype.isnative


@pytest.mark.parametrize("kernel_on", [True, False], ids=["kernel", "fallback"])
def test_long_double_logits_are_refused_naming_logits_and_the_supported_dtypes(kernel_on):
    logits, labels = _batch()
    with (kernel.disabled() if not kernel_on else nullcontext()):
        with pytest.raises(TypeError, match=r"logits must be floating point \(float16, "
                                            r"bfloat16, float32 or float64\); got float128"):
            sr.loss(logits.astype(np.longdouble), labels)


def test_meta_tensors_are_refused_naming_the_device():
    torch = pytest.importorskip("torch")
    logits = torch.zeros(4, 5, device="meta")
    with pytest.raises(ValueError, match=r"logits is on device 'meta'"):
        sr.loss(logits, torch.zeros(4, dtype=torch.long, device="meta"))
    with pytest.raises(ValueError, match=r"labels is on device 'meta'"):
        sr.loss(torch.zeros(4, 5), torch.zeros(4, dtype=torch.long, device="meta"))
    with pytest.raises(ValueError, match=r"logits is on device 'meta'"):
        sr.nn.SparseRegLoss()(logits, torch.zeros(4, dtype=torch.long, device="meta"))


@pytest.mark.parametrize("function", [sr.project, sr.is_permutation_of, sr.soft_project])
def test_a_list_for_v_is_refused(function):
    with pytest.raises(TypeError, match=r"v must be an array .* got list \[1.0, 0.0, 0.0\]"):
        function(np.full((2, 3), 1 / 3), [1.0, 0.0, 0.0])


@pytest.mark.parametrize("shape", [(3,), (2, 3, 3)], ids=["1d", "3d"])
def test_soft_project_needs_2d_logits(shape):
    with pytest.raises(ValueError, match=r"logits must have shape \(N, C\); got shape"):
        sr.soft_project(np.ones(shape), np.array([1.0, 0.0, 0.0]))


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("tau", [lambda t: t / 2, lambda t: np.float64(t / 2), lambda t: np.array(t / 2)],
                         ids=["float", "numpy-scalar", "0d-array"])
def test_tau_below_the_dtype_minimum_is_refused(dtype, tau):
    logits, labels = _batch(dtype)
    minimum = MIN_TAU[dtype]
    message = rf"tau must be >= {minimum:g} for {dtype} logits; got"
    for run in (lambda: sr.loss(logits, labels, tau=tau(minimum)),
                lambda: sr.loss_and_grad(logits, labels, tau=tau(minimum), fused=False),
                lambda: sr.sharpen(logits, tau=tau(minimum))):
        with pytest.raises(ValueError, match=message):
            run()
    sr.loss(logits, labels, tau=minimum)  # the minimum itself is supported


def test_tau_below_the_minimum_is_refused_for_torch_bfloat16():
    torch = pytest.importorskip("torch")
    logits, labels = _batch()
    with pytest.raises(ValueError, match=r"tau must be >= 1e-24 for bfloat16 logits; got 5e-25"):
        sr.loss(torch.from_numpy(logits).bfloat16(), torch.from_numpy(labels), tau=5e-25)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "reference"])
@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_the_module_refuses_tau_below_the_dtype_minimum_at_call_time(dtype, fused):
    """The module is built before the logits' dtype is known, so the check runs on each call,
    with the message of sparse_reg.loss."""
    torch = pytest.importorskip("torch")
    logits, labels = _batch(dtype)
    logits, labels = torch.from_numpy(logits), torch.from_numpy(labels)
    minimum = MIN_TAU[dtype]
    criterion = sr.nn.SparseRegLoss(tau=minimum / 2, fused=fused)
    with pytest.raises(ValueError, match=rf"tau must be >= {minimum:g} for {dtype} logits; got"):
        criterion(logits, labels)
    sr.nn.SparseRegLoss(tau=minimum, fused=fused)(logits, labels)  # the minimum itself is supported


@pytest.mark.parametrize("kernel_on", [True, False], ids=["kernel", "fallback"])
@pytest.mark.parametrize("tau", [1e-6, 1e-9, 1e-12, 1e-20, 1e-24])
def test_small_tau_in_float32_matches_float64(kernel_on, tau):
    """The kernel once shifted by m / tau after scaling: at tau = 1e-6 the gradient was noise of
    order 0.5 / tau, and below 1e-9 rows were NaN."""
    logits, labels = _batch()
    want_value, want_grad = sr.loss_and_grad(logits.astype(np.float64), labels, tau=tau, fused=False,
                                             reduction="none")
    with (kernel.disabled() if not kernel_on else nullcontext()):
        value, grad = sr.loss_and_grad(logits, labels, tau=tau, reduction="none")
    np.testing.assert_allclose(value, want_value, rtol=1e-5)
    np.testing.assert_allclose(grad, want_grad, rtol=0, atol=1e-5 / tau)


def test_python_float_lam_and_tau_under_fullgraph_compile():
    torch = pytest.importorskip("torch")
    logits, labels = (torch.from_numpy(a) for a in _batch())
    compiled = torch.compile(lambda a, b: sr.loss(a, b, lam=0.5, tau=0.5), backend="aot_eager",
                             fullgraph=True)
    torch.testing.assert_close(compiled(logits, labels), sr.loss(logits, labels, lam=0.5, tau=0.5))



_NO_WRITABLE_CACHE = """
import os, sys, warnings

if os.environ["SPARSE_REG_CPU_KERNEL"] != "0":
    import numba.core.caching as caching

    def read_only(self):  # what os.makedirs or the probe file meet in a read-only directory
        raise PermissionError(13, "Permission denied", self.get_cache_path())

    # Permissions do not bind root, so a read-only directory alone would not show the failure
    # there: every cache location Numba tries reports what a read-only one reports.
    caching._CacheLocator.ensure_cache_path = read_only
import numpy as np
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import sparse_reg as sr
    from sparse_reg.backends import _cpu_kernel
    value = sr.loss(np.ones((4, 3), np.float32), np.array([0, 1, 2, 0]))
ours = [w for w in caught if "sparse_reg" in str(w.message)]
print(_cpu_kernel.available(), "numba" in sys.modules, len(ours), float(value))
"""


@pytest.mark.parametrize("switch", ["1", "0"], ids=["kernel", "kernel-off"])
def test_no_writable_numba_cache_directory(tmp_path, switch):
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o555)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "SPARSE_REG_CPU_KERNEL": switch}
    out = subprocess.run([sys.executable, "-c", _NO_WRITABLE_CACHE], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    available, imported, warned, value = out.stdout.split()
    want = float(sr.loss(np.ones((4, 3), np.float32), np.array([0, 1, 2, 0])))
    assert float(value) == pytest.approx(want, rel=1e-6)
    if switch == "1":
        assert (available, imported, warned) == ("True", "True", "1")
    else:  # switched off, Numba is never imported, so no cache is looked for
        assert (available, imported, warned) == ("False", "False", "0")


def test_the_tau_minimum_of_one_library_never_compares_dtypes_of_another() -> None:
    """NumPy and array-api-strict calls in one process look their dtypes up without comparing
    them across libraries, which array-api-strict answers with a UserWarning."""
    xps = pytest.importorskip("array_api_strict")
    logits = np.random.default_rng(0).normal(size=(4, 3))
    labels = np.array([0, 1, 2, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expected = float(sr.loss(logits, labels))
        strict = sr.loss(xps.asarray(logits), xps.asarray(labels))
        with pytest.raises(ValueError, match="tau must be >= 1e-24 for float32 logits"):
            sr.loss(xps.asarray(logits.astype(np.float32)), xps.asarray(labels), tau=1e-30)
    assert float(strict) == pytest.approx(expected, rel=1e-12)
