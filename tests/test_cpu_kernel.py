"""The compiled CPU kernel (:mod:`sparse_reg.backends._cpu_kernel`) and the NumPy fallback beside it.

The kernel re-expresses the core's formulas in one loop per row. It must agree with the array-API
reference :func:`sparse_reg.regularizer.sr_terms` and with float64 autograd on every built-in loss,
in both clamp modes, with and without normalisation, in float32 and float64, at extreme logits, on
one thread and on several; a loss without a kernel entry must reach the reference's definition.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import sparse_reg as sr
from sparse_reg import losses
from sparse_reg.backends import _cpu_kernel as kernel
from sparse_reg.backends import numpy as numpy_path
from sparse_reg.backends.cupy import KERNEL_TERMS
from sparse_reg.losses import BUILTIN_LOSSES, get_loss, register_loss, register_sum
from sparse_reg.regularizer import Objective
from sparse_reg.regularizer import sr_terms as core_sr_terms

numba = pytest.importorskip("numba", reason="the compiled kernel needs the 'fast' extra (numba)")

# The fast-path suite's modes, parameters and inputs (edge rows included), shared so both suites
# check the same cases.
from test_fast_paths import MODE_IDS, MODES, _inputs, _objective  # noqa: E402


def _kernel_terms(logits, labels, objective, grad_scale=1.0, need_grad=True):
    dtype = np.float32 if logits.dtype.itemsize < 4 else logits.dtype
    base, penalty = np.empty(len(labels), dtype), np.empty(len(labels), dtype)
    grad = np.empty(logits.shape, logits.dtype) if need_grad else None
    assert kernel.run(logits, labels, objective, base=base, penalty=penalty, grad=grad,
                      grad_scale=grad_scale)
    return base, penalty, grad


def _assert_close(got, want, rtol: float) -> None:
    base, penalty, grad = got
    scale = max(np.abs(want.grad).max(), 1.0)  # gradient entries are sums of order-one terms
    np.testing.assert_allclose(base, want.base, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(penalty, want.penalty, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(grad, want.grad, rtol=0, atol=rtol * scale)


# --- the kernel table ------------------------------------------------------------------------------


def test_every_builtin_loss_has_a_kernel_entry():
    missing = [name for name in BUILTIN_LOSSES if kernel.kernel_codes(get_loss(name)) is None]
    assert not missing, f"built-in losses without a CPU kernel entry: {missing}"


@pytest.mark.parametrize("name", BUILTIN_LOSSES)
def test_kernel_codes_are_the_losses_own_kernel_terms(name):
    """The codes come from the loss definition's ``kernel`` terms, numbered as the CUDA kernel's."""
    loss = get_loss(name)
    codes = kernel.kernel_codes(loss)
    terms = [KERNEL_TERMS[code] for code in codes]
    assert terms == [*loss.kernel, "NONE"][:2]


def test_a_sum_registered_from_kernel_losses_runs_in_the_kernel(monkeypatch):
    """A loss defined once, from losses with kernel terms, needs no entry anywhere else."""
    monkeypatch.setattr(losses, "_REGISTRY", dict(losses._REGISTRY))  # the registration is undone
    loss = register_sum("gce+mse_kernel_test", "gce", "mse", alpha=0.3, beta=1.7)
    assert kernel.kernel_codes(loss) == (kernel.GCE, kernel.MSE)
    objective = Objective.create(loss.name, tau=0.4, normalize=True, clamp=1e-7, q=0.6)
    logits, labels = _inputs(11, 6, seed=13)
    want = core_sr_terms(logits, labels, objective, need_grad=True)
    _assert_close(_kernel_terms(logits, labels, objective), want, rtol=1e-10)


def test_a_registered_loss_falls_back_to_its_definition():
    def half_ce(log_s, mask, *, xp):
        return -0.5 * xp.sum(xp.where(mask, log_s, xp.zeros_like(log_s)), axis=-1)

    def half_ce_grad(log_s, mask, *, xp):
        return -0.5 * xp.astype(mask, log_s.dtype)

    loss = register_loss("half_ce_kernel_test", half_ce, half_ce_grad, overwrite=True)
    objective = Objective.create(loss.name, tau=0.4, normalize=True, clamp=1e-7)
    logits, labels = _inputs(11, 6, seed=5)
    assert kernel.kernel_codes(loss) is None
    base = np.empty(11)
    assert not kernel.run(logits, labels, objective, base=base, penalty=base.copy(), grad=None,
                          grad_scale=1.0)
    got = numpy_path.sr_terms(logits, labels, objective, need_grad=True)
    want = core_sr_terms(logits, labels, objective, need_grad=True)
    _assert_close(got, want, rtol=1e-12)


# --- agreement with the reference and with autograd -------------------------------------------------


@pytest.mark.parametrize("shape", [(23, 9), (6, 37)], ids=["C=9", "C=37"])
@pytest.mark.parametrize(("normalize", "clamp"), MODES, ids=MODE_IDS)
@pytest.mark.parametrize("base", BUILTIN_LOSSES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_matches_reference(dtype, base, normalize, clamp, shape):
    logits, labels = _inputs(*shape, seed=1)
    if dtype == "float32":
        logits[0] = 0.5  # a zero row's gradient under normalize, of order 1/eps, cancels beyond float32
    objective = _objective(base, normalize, clamp)
    scale = 1 / shape[0]  # the mean's 1/N, folded into the gradient
    got = _kernel_terms(logits.astype(dtype), labels, objective, grad_scale=scale)
    assert all(part.dtype == dtype for part in got)
    want = core_sr_terms(logits, labels, objective, need_grad=True, grad_scale=scale)
    _assert_close(got, want, rtol=1e-10 if dtype == "float64" else 2e-5)


@pytest.mark.parametrize("num_classes", [3, 15, 16, 17, 48, 256, 263, 300])
@pytest.mark.parametrize(("normalize", "clamp"), [(False, None), (True, 1e-7)], ids=["plain", "norm+clamp"])
@pytest.mark.parametrize("base", ["ce", "nce+rce"])
def test_every_row_length_around_the_sweep_windows(base, normalize, clamp, num_classes):
    """The exponential sweep runs whole windows of 16 logits, then the last 16 again (overlapping),
    or plain logits where the row is shorter; blocks of SUM_BLOCK logits split longer rows. Row
    lengths below, at and past each boundary, in float64 against the reference."""
    logits, labels = _inputs(11, num_classes, seed=num_classes)
    objective = _objective(base, normalize, clamp)
    want = core_sr_terms(logits, labels, objective, need_grad=True)
    _assert_close(_kernel_terms(logits, labels, objective), want, rtol=1e-10)


@pytest.mark.parametrize(("normalize", "clamp"), MODES, ids=MODE_IDS)
@pytest.mark.parametrize("base", BUILTIN_LOSSES)
def test_gradient_matches_float64_autograd(base, normalize, clamp):
    torch = pytest.importorskip("torch")
    # No saturated rows: autograd through (1 - s_y)**gamma at s_y == 1 is NaN, the closed form is not.
    logits, labels = _inputs(17, 7, seed=3, edges=False)
    objective = _objective(base, normalize, clamp)
    z = torch.tensor(logits, requires_grad=True)
    terms = core_sr_terms(z, torch.tensor(labels), objective, need_grad=False)
    (terms.base + objective.lam * terms.penalty).sum().backward()
    want = z.grad.numpy()
    grad = _kernel_terms(logits, labels, objective)[2]
    np.testing.assert_allclose(grad, want, rtol=0, atol=1e-9 * np.abs(want).max())


@pytest.mark.parametrize(("normalize", "clamp"), MODES, ids=MODE_IDS)
@pytest.mark.parametrize("base", BUILTIN_LOSSES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_extreme_logits(dtype, base, normalize, clamp):
    """Logits of +-1e4 at tau = 0.01: s underflows almost everywhere; finite, and in float64 equal
    to the reference."""
    rng = np.random.default_rng(4)
    logits = rng.choice([-1e4, 1e4], size=(12, 6)) * rng.uniform(0.5, 1, size=(12, 6))
    labels = rng.integers(0, 6, size=12)
    objective = _objective(base, normalize, clamp, tau=0.01)
    got = _kernel_terms(logits.astype(dtype), labels, objective)
    for part in got:
        assert np.isfinite(part).all()
    if dtype == "float64":
        _assert_close(got, core_sr_terms(logits, labels, objective, need_grad=True), rtol=1e-9)


@pytest.mark.parametrize("base", ["focal", "nfl+rce"])
def test_detached_focal_weight_matches_reference(base):
    """The official code's constant focal weight, in the label-only and in the normalised form."""
    logits, labels = _inputs(23, 9, seed=12)
    objective = _objective(base, True, 1e-7, detach_weight=True)
    want = core_sr_terms(logits, labels, objective, need_grad=True)
    _assert_close(_kernel_terms(logits, labels, objective), want, rtol=1e-10)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_several_threads_give_the_single_thread_result(dtype, monkeypatch):
    """Large batches are split into row chunks over the threads; every row runs the same code."""
    logits, labels = _inputs(301, 23, seed=6)
    objective = _objective("nce+rce", True, 1e-7)
    serial = _kernel_terms(logits.astype(dtype), labels, objective)
    monkeypatch.setattr(kernel, "PARALLEL_MIN_ELEMENTS", 0)
    parallel = _kernel_terms(logits.astype(dtype), labels, objective)
    for one, many in zip(serial, parallel, strict=True):
        np.testing.assert_array_equal(one, many)


@pytest.mark.parametrize("base", ["ce", "mse", "nce+rce"])
@pytest.mark.parametrize("normalize, clamp", [(False, None), (False, 1e-7), (True, 1e-7)])
def test_result_does_not_depend_on_where_the_scratch_rows_lie(base, normalize, clamp):
    """Bit for bit, whatever the heap looks like: a loop that both stored and summed used to add
    in a different order when its per-thread scratch rows happened to lie close together, so one
    training run in four ended with a different model."""
    rng = np.random.default_rng(0)
    logits = (3 * rng.standard_normal((128, 10))).astype(np.float32)
    labels = rng.integers(0, 10, 128)
    objective = Objective.create(base, tau=0.5, p=0.1, lam=4.0, normalize=normalize, clamp=clamp)
    first = _kernel_terms(logits, labels, objective)
    for _ in range(300):
        # Small blocks of assorted sizes, held while the kernel allocates its scratch rows.
        held = [np.empty(int(size)) for size in rng.integers(1, 64, int(rng.integers(1, 40)))]
        again = _kernel_terms(logits, labels, objective)
        del held
        for one, other in zip(first, again, strict=True):
            np.testing.assert_array_equal(one, other)


def test_long_rows_are_summed_accurately_in_float32():
    """At C = 32000 the float32 kernel's row sums stay close to float64: partial sums of a few
    terms per vector lane, added in float64 (one running float32 sum per lane erred 10 times more
    in the penalty and 5 times more in the gradient)."""
    rng = np.random.default_rng(14)
    logits = (3 * rng.standard_normal((8, 32000))).astype(np.float32)
    labels = rng.integers(0, 32000, size=8)
    objective = _objective("ce", True, 1e-7, tau=0.5, p=0.1)
    _, penalty, grad = _kernel_terms(logits, labels, objective, grad_scale=1 / 8)
    want = core_sr_terms(logits.astype(np.float64), labels, objective, need_grad=True, grad_scale=1 / 8)
    assert np.abs(penalty / want.penalty - 1).max() < 3e-7
    assert np.linalg.norm(grad - want.grad) / np.linalg.norm(want.grad) < 1.5e-6


# --- inputs and outputs ------------------------------------------------------------------------------


def test_16_bit_logits_run_in_float32():
    logits, labels = _inputs(19, 8, seed=2)
    logits[0] = 0.5
    objective = _objective("gce", True, 1e-7)
    half = logits.astype(np.float16)
    base, penalty, grad = _kernel_terms(half, labels, objective)
    assert base.dtype == penalty.dtype == np.float32 and grad.dtype == np.float16
    wide = _kernel_terms(half.astype(np.float32), labels, objective)
    np.testing.assert_array_equal(base, wide[0])
    np.testing.assert_array_equal(grad, wide[2].astype(np.float16))


def test_value_only_call_and_strided_input():
    logits, labels = _inputs(40, 10, seed=7)
    objective = _objective("focal", False, None)
    strided = np.asfortranarray(logits)[::2]
    base, penalty, grad = _kernel_terms(strided, labels[::2], objective, need_grad=False)
    assert grad is None
    want = core_sr_terms(logits[::2], labels[::2], objective, need_grad=False)
    np.testing.assert_allclose(base, want.base, rtol=1e-12)
    np.testing.assert_allclose(penalty, want.penalty, rtol=1e-12)


def test_gradient_cast_into_a_given_buffer_and_zero_d_lam():
    logits, labels = _inputs(9, 5, seed=8, edges=False)
    objective = _objective("ce", True, None, lam=np.array(0.7))
    out = np.empty(logits.shape, np.float64)
    terms = numpy_path.fused_terms(logits.astype(np.float32), labels, objective, need_grad=True, grad_out=out)
    assert terms.grad is out
    want = core_sr_terms(logits, labels, objective, need_grad=True)
    np.testing.assert_allclose(out, want.grad, rtol=0, atol=2e-6 * np.abs(want.grad).max())


@pytest.mark.parametrize("bad", [-1, 5])
def test_a_label_out_of_range_is_refused(bad):
    logits, labels = _inputs(4, 5, seed=9)
    labels[2] = bad
    with pytest.raises(ValueError, match=rf"labels must lie in \[0, 5\).*got {bad}"):
        _kernel_terms(logits, labels, _objective("ce", False, None))


def test_torch_cpu_tensors_run_the_kernel(monkeypatch):
    torch = pytest.importorskip("torch")
    calls = []
    run = kernel.run
    monkeypatch.setattr(kernel, "run", lambda *a, **k: calls.append(1) or run(*a, **k))
    logits, labels = _inputs(13, 6, seed=10, edges=False)
    z = torch.tensor(logits, requires_grad=True)
    sr.loss(z, torch.tensor(labels), base="sce", normalize=True, clamp=1e-7).backward()
    assert calls
    want = sr.loss_and_grad(logits, labels, base="sce", normalize=True, clamp=1e-7, fused=False)[1]
    np.testing.assert_allclose(z.grad.numpy(), want, rtol=0, atol=1e-12)


# --- the exponential -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_exponential_within_one_ulp(dtype):
    @numba.njit
    def exp_all(x, out):
        for i in range(x.size):
            out[i] = kernel.vexp(x[i])

    tiny = np.log(np.finfo(dtype).tiny)  # below: flushed to zero
    x = np.concatenate([np.linspace(tiny + 1e-3, 0, 200_001), -np.geomspace(1e-12, 1, 1001), [0.0, 1e-7]])
    x = x.astype(dtype)
    out = np.empty_like(x)
    exp_all(x, out)
    want = np.exp(x.astype(np.float64))
    ulps = np.abs(out - want) / np.spacing(want.astype(dtype))
    assert ulps.max() <= 1.0
    special = np.array([-np.inf, np.nan, tiny - 1, -1e30], dtype=dtype)
    exp_all(special, out[:4])
    np.testing.assert_array_equal(out[:4], [0.0, np.nan, 0.0, 0.0])


# --- the NumPy fallback ------------------------------------------------------------------------------


@pytest.mark.parametrize(("normalize", "clamp"), MODES, ids=MODE_IDS)
@pytest.mark.parametrize("base", BUILTIN_LOSSES)
def test_fallback_matches_the_kernel(base, normalize, clamp):
    """With the kernel switched off, the row-blocked NumPy path gives the kernel's result."""
    logits, labels = _inputs(23, 9, seed=11)
    objective = _objective(base, normalize, clamp)
    with_kernel = numpy_path.sr_terms(logits, labels, objective, need_grad=True, grad_scale=0.25)
    with kernel.disabled():
        assert not kernel.available()
        fallback = numpy_path.sr_terms(logits, labels, objective, need_grad=True, grad_scale=0.25)
    assert kernel.available()
    want = core_sr_terms(logits, labels, objective, need_grad=True, grad_scale=0.25)
    _assert_close(fallback, want, rtol=1e-10)
    _assert_close(with_kernel, want, rtol=1e-10)


def test_environment_switches_the_kernel_off():
    code = "from sparse_reg.backends import _cpu_kernel as k; print(k.available())"
    env = {**os.environ, "SPARSE_REG_CPU_KERNEL": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_starting_the_thread_pool_keeps_the_callers_openmp_thread_count():
    # Numba's OpenMP layer sets the OpenMP thread count when its pool starts; torch shares that
    # runtime, so a torch.set_num_threads made before the first kernel call must survive it. A
    # fresh process: the pool starts once per process.
    pytest.importorskip("torch")
    code = (
        "import numpy as np, torch\n"
        "torch.set_num_threads(1)\n"
        "assert torch.get_num_threads() == 1\n"  # torch applies the count on first use
        "from sparse_reg.backends import _cpu_kernel, numpy as fast\n"
        "from sparse_reg.regularizer import Objective\n"
        "assert _cpu_kernel.available()\n"
        "fast.fused_terms(np.ones((4, 3), np.float32), np.zeros(4, np.int64), Objective.create(),\n"
        "                 need_grad=True)\n"
        "import numba\n"
        "print(torch.get_num_threads(), numba.get_num_threads())\n"
    )
    env = {**os.environ, "NUMBA_NUM_THREADS": "2"}
    env.pop("SPARSE_REG_CPU_KERNEL", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "2"]
