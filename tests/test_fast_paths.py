"""Every fused path against the array-API core and against float64 autograd.

The fused paths (``sparse_reg.backends.numpy``, ``.torch``, ``.cupy``) re-express the core's
formulas for speed; they must give the same per-sample base loss, penalty and gradient on every
built-in loss, in both ``normalize`` and ``clamp`` modes, in every dtype they accept.
"""

from __future__ import annotations

import importlib
import itertools

import numpy as np
import pytest

import sparse_reg as sr
from sparse_reg.backends import fast_path
from sparse_reg.backends import numpy as numpy_path
from sparse_reg.losses import BUILTIN_LOSSES
from sparse_reg.regularizer import Objective
from sparse_reg.regularizer import sr_terms as core_sr_terms

torch = pytest.importorskip("torch")
from sparse_reg.backends import torch as torch_path  # noqa: E402

MODES = list(itertools.product([False, True], [None, 1e-7]))
MODE_IDS = [f"normalize={n}-clamp={c}" for n, c in MODES]

# Parameters away from the defaults, so a kernel that ignores one is caught.
PARAMS = {"focal": {"gamma": 1.5}, "nfl": {"gamma": 0.7}, "nfl+rce": {"gamma": 2.0},
          "gce": {"q": 0.4}, "ngce": {"q": 0.3}, "sce": {"alpha": 0.3, "beta": 0.8}}


def _objective(base: str, normalize: bool, clamp: float | None, **extra) -> Objective:
    args = dict(tau=0.3, p=0.2, lam=1.7, normalize=normalize, clamp=clamp)
    args.update(extra)
    return Objective.create(base, **PARAMS.get(base, {}), **args)


def _inputs(n: int = 23, c: int = 9, seed: int = 0, edges: bool = True) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=(n, c))
    labels = rng.integers(0, c, size=n)
    if edges:
        logits[0] = 0.0  # uniform row, and a zero norm under normalize
        logits[1, 2] = 40.0  # a row whose clamp binds (s below 1e-7) and whose label ...
        labels[1] = 2  # ... holds the max logit, with s_y == 1 exactly
    return logits, labels


def _cuda_torch():
    if not torch.cuda.is_available():
        pytest.skip("torch:cuda needs a CUDA device; torch.cuda.is_available() is False")
    return torch.device("cuda")


def _cupy():
    from sparse_reg.backends import cupy as cupy_path

    if not cupy_path.available():
        pytest.skip("the CuPy kernel needs an installed CuPy and a CUDA device")
    return importlib.import_module("cupy"), cupy_path


# --- a uniform view of the fast paths: numpy in, numpy out --------------------------------------


def _run_numpy(logits, labels, objective, need_grad=True):
    return numpy_path.sr_terms(logits, labels, objective, need_grad=need_grad)


def _run_torch(logits, labels, objective, need_grad=True, device="cpu", dtype=None):
    z = torch.as_tensor(logits, device=device)
    if dtype is not None:
        z = z.to(dtype)
    return torch_path.sr_terms(z, torch.as_tensor(labels, device=device), objective, need_grad=need_grad)


def _run_torch_cuda(logits, labels, objective, need_grad=True, dtype=None):
    return _run_torch(logits, labels, objective, need_grad, device=_cuda_torch(), dtype=dtype)


def _run_cupy(logits, labels, objective, need_grad=True):
    cupy, cupy_path = _cupy()
    return cupy_path.sr_terms(cupy.asarray(logits), cupy.asarray(labels), objective, need_grad=need_grad)


PATHS = {"numpy": _run_numpy, "torch": _run_torch, "torch:cuda": _run_torch_cuda, "cupy": _run_cupy}


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        return (x.float() if x.dtype == torch.bfloat16 else x).numpy()
    return x.get() if hasattr(x, "get") else np.asarray(x)


def _assert_terms_close(got, want, rtol: float, grad_rtol: float | None = None) -> None:
    base, penalty, grad = (_np(t) for t in got)
    # Gradient entries are sums of terms of order one that may cancel: compare on that scale.
    scale = max(np.abs(want.grad).max(), 1.0)
    np.testing.assert_allclose(base, want.base, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(penalty, want.penalty, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(grad, want.grad, rtol=0, atol=(grad_rtol or rtol) * scale)


# --- agreement with the core ---------------------------------------------------------------------


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize(("normalize", "clamp"), MODES, ids=MODE_IDS)
@pytest.mark.parametrize("base", BUILTIN_LOSSES)
def test_matches_core_float64(path, base, normalize, clamp):
    logits, labels = _inputs()
    objective = _objective(base, normalize, clamp)
    want = core_sr_terms(logits, labels, objective, need_grad=True)
    got = PATHS[path](logits, labels, objective)
    _assert_terms_close(got, want, rtol=1e-10)
    assert _np(got.grad).dtype == np.float64


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize(("normalize", "clamp"), MODES, ids=MODE_IDS)
@pytest.mark.parametrize("base", BUILTIN_LOSSES)
def test_matches_core_float32(path, base, normalize, clamp):
    logits, labels = _inputs(seed=1)
    logits = logits.astype(np.float32)
    objective = _objective(base, normalize, clamp)
    want = core_sr_terms(logits.astype(np.float64), labels, objective, need_grad=True)
    got = PATHS[path](logits, labels, objective)
    assert _np(got.base).dtype == np.float32 and _np(got.grad).dtype == np.float32
    _assert_terms_close(got, want, rtol=2e-5)


@pytest.mark.parametrize(("path", "dtype"), [("numpy", "float16"), ("torch", "float16"),
                                             ("torch", "bfloat16"), ("torch:cuda", "float16"),
                                             ("torch:cuda", "bfloat16"), ("cupy", "float16")])
@pytest.mark.parametrize(("normalize", "clamp"), MODES, ids=MODE_IDS)
@pytest.mark.parametrize("base", ["ce", "focal", "gce", "nce+rce", "ngce", "mse"])
def test_16_bit_values_in_float32(path, dtype, base, normalize, clamp):
    """16-bit logits: computed in float32 (value float32), gradient returned in the 16-bit dtype."""
    logits, labels = _inputs(seed=2)
    logits[0] = 0.5  # a zero row under normalize has a gradient of 1/eps, beyond 16-bit range
    objective = _objective(base, normalize, clamp)
    if path.startswith("torch"):
        device = _cuda_torch() if path == "torch:cuda" else "cpu"
        z = torch.as_tensor(logits, device=device).to(getattr(torch, dtype))
        exact = z.double().cpu().numpy()
        got = torch_path.sr_terms(z, torch.as_tensor(labels, device=device), objective, need_grad=True)
        assert got.grad.dtype == z.dtype
    else:
        z = logits.astype(dtype)
        exact = z.astype(np.float64)
        got = PATHS[path](z, labels, objective)
        assert _np(got.grad).dtype == np.float16
    assert _np(got.base).dtype == np.float32
    want = core_sr_terms(exact, labels, objective, need_grad=True)
    _assert_terms_close(got, want, rtol=1e-4, grad_rtol=1e-2)


# --- agreement with float64 autograd -------------------------------------------------------------


def _autograd_reference(logits, labels, objective):
    """Gradient of sum(base + lam * penalty) by torch autograd through the core's formula."""
    z = torch.as_tensor(logits, dtype=torch.float64).requires_grad_(True)
    terms = core_sr_terms(z, torch.as_tensor(labels), objective, need_grad=False)
    (terms.base + objective.lam * terms.penalty).sum().backward()
    return z.grad.numpy()


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize(("normalize", "clamp"), MODES, ids=MODE_IDS)
@pytest.mark.parametrize("base", BUILTIN_LOSSES)
def test_gradient_matches_autograd(path, base, normalize, clamp):
    # No saturated rows: autograd through (1 - s_y)**gamma at s_y == 1 is NaN, the closed form is not.
    logits, labels = _inputs(seed=3, edges=False)
    objective = _objective(base, normalize, clamp)
    got = _np(PATHS[path](logits, labels, objective).grad)
    want = _autograd_reference(logits, labels, objective)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9 * np.abs(want).max())


# --- hard inputs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize(("normalize", "clamp"), MODES, ids=MODE_IDS)
@pytest.mark.parametrize("base", BUILTIN_LOSSES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_extreme_logits_stay_finite(path, base, normalize, clamp, dtype):
    """Logits of +-1e4 at tau=0.01: s underflows to 0 almost everywhere, nothing overflows."""
    rng = np.random.default_rng(4)
    logits = rng.choice([-1e4, 1e4], size=(12, 6)) * rng.uniform(0.5, 1, size=(12, 6))
    logits = logits.astype(dtype)
    labels = rng.integers(0, 6, size=12)
    objective = _objective(base, normalize, clamp, tau=0.01)
    got = PATHS[path](logits, labels, objective)
    for part in got:
        assert np.isfinite(_np(part)).all()
    if dtype == "float64":
        _assert_terms_close(got, core_sr_terms(logits, labels, objective, need_grad=True), rtol=1e-9)


@pytest.mark.parametrize("path", list(PATHS))
def test_minus_infinity_classes_match_core(path):
    """-inf logits are classes of probability zero, handled exactly while a row has a finite entry."""
    logits, labels = _inputs(seed=5)
    logits[3:6, 0] = -np.inf
    labels[3:6] = 1
    objective = _objective("ce", False, None)
    got = PATHS[path](logits, labels, objective)
    _assert_terms_close(got, core_sr_terms(logits, labels, objective, need_grad=True), rtol=1e-10)


@pytest.mark.parametrize("path", list(PATHS))
def test_value_only_and_empty_batch(path):
    logits, labels = _inputs()
    objective = _objective("gce", True, 1e-7)
    got = PATHS[path](logits, labels, objective, need_grad=False)
    want = core_sr_terms(logits, labels, objective, need_grad=False)
    assert got.grad is None
    np.testing.assert_allclose(_np(got.base), want.base, rtol=1e-10)
    empty = PATHS[path](logits[:0], labels[:0], objective)
    assert tuple(empty.grad.shape) == (0, logits.shape[1]) and tuple(empty.base.shape) == (0,)


# --- NumPy specifics: row blocks, threads, output buffers ---------------------------------------


@pytest.mark.parametrize("block_elements", [1, 20, 10_000])
@pytest.mark.parametrize("threaded", [False, True])
def test_numpy_row_blocks_and_threads(monkeypatch, block_elements, threaded):
    if threaded:
        monkeypatch.setattr(numpy_path, "THREAD_MIN_ELEMENTS", 0)
    logits, labels = _inputs(n=57)
    objective = _objective("nfl+mae", True, 1e-7)
    got = numpy_path.fused_terms(logits, labels, objective, need_grad=True, block_elements=block_elements)
    _assert_terms_close(got, core_sr_terms(logits, labels, objective, need_grad=True), rtol=1e-10)


def test_numpy_grad_out_and_scale():
    logits, labels = _inputs()
    objective = _objective("focal", False, None)
    out = np.full(logits.shape, np.nan, dtype=np.float32)
    terms = numpy_path.fused_terms(logits, labels, objective, need_grad=True, grad_out=out, grad_scale=0.25)
    assert terms.grad is out
    want = core_sr_terms(logits, labels, objective, need_grad=True).grad * 0.25
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-6 * np.abs(want).max())


def test_numpy_runs_user_losses_through_the_registry():
    def value(log_s, mask, *, xp, w):
        return -w * xp.sum(xp.where(mask, log_s, xp.zeros_like(log_s)), axis=-1)

    def grad(log_s, mask, *, xp, w):
        return xp.where(mask, -w * xp.ones_like(log_s), xp.zeros_like(log_s))

    sr.register_loss("weighted_ce_test", value, grad, defaults={"w": 2.0}, overwrite=True)
    objective = _objective("weighted_ce_test", True, 1e-7)
    assert numpy_path.supports(objective)
    logits, labels = _inputs()
    got = numpy_path.sr_terms(logits, labels, objective, need_grad=True)
    _assert_terms_close(got, core_sr_terms(logits, labels, objective, need_grad=True), rtol=1e-10)


def test_cupy_kernel_declines_user_losses_without_a_gpu():
    from sparse_reg.backends import cupy as cupy_path

    sr.register_loss("value_only_test", lambda log_s, mask, *, xp: -xp.sum(log_s, axis=-1), overwrite=True)
    assert not cupy_path.supports(_objective("value_only_test", False, None))
    assert all(cupy_path.supports(_objective(name, False, None)) for name in BUILTIN_LOSSES)


def test_dispatch_reaches_the_fast_paths():
    assert fast_path(np.zeros((1, 2))) is numpy_path
    assert fast_path(torch.zeros(1, 2)) is torch_path


# --- the front door and torch autograd ---------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("base", ["ce", "nce+rce"])
def test_numpy_loss_and_grad_fused_equals_core(reduction, base):
    logits, labels = _inputs()
    args = dict(base=base, tau=0.4, p=0.3, lam=0.9, normalize=True, clamp=1e-7, reduction=reduction)
    value, grad = sr.loss_and_grad(logits, labels, **args)
    want_value, want_grad = sr.loss_and_grad(logits, labels, fused=False, **args)
    np.testing.assert_allclose(value, want_value, rtol=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_torch_backward_matches_autograd_of_the_core(reduction, dtype):
    logits, labels = _inputs(edges=False)  # autograd of the formula is NaN at a zero row
    y = torch.as_tensor(labels)
    args = dict(base="focal", tau=0.4, p=0.3, normalize=True, clamp=1e-7, reduction=reduction)
    lam = torch.tensor(0.9, dtype=torch.float64)
    z = torch.as_tensor(logits).to(dtype).requires_grad_(True)
    value = sr.loss(z, y, lam=lam, **args)
    weights = torch.linspace(0.5, 2.0, len(labels)) if reduction == "none" else torch.tensor(1.5)
    (value * weights).sum().backward()
    z64 = torch.as_tensor(logits).to(dtype).double().requires_grad_(True)
    reference = sr.loss(z64, y, lam=0.9, fused=False, **args)
    (reference * weights.double()).sum().backward()
    tol = 2e-2 if dtype == torch.bfloat16 else 1e-5 if dtype == torch.float32 else 1e-12
    np.testing.assert_allclose(_np(value), _np(reference), rtol=tol if dtype != torch.bfloat16 else 1e-5)
    assert z.grad.dtype == dtype
    scale = z64.grad.abs().max().item()
    np.testing.assert_allclose(_np(z.grad), z64.grad.numpy(), rtol=0, atol=tol * scale)


def test_torch_backward_twice_with_retained_graph():
    logits, labels = _inputs()
    z = torch.as_tensor(logits).requires_grad_(True)
    value = sr.loss(z, torch.as_tensor(labels), normalize=True)
    value.backward(retain_graph=True)
    first = z.grad.clone()
    value.backward()
    torch.testing.assert_close(z.grad, 2 * first)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_torch_backward_scaling_never_corrupts_a_retained_graph(reduction):
    # The backward scales the saved gradient in place only when no later pass can need it.
    logits, labels = _inputs()
    z = torch.as_tensor(logits).requires_grad_(True)
    value = sr.loss(z, torch.as_tensor(labels), reduction=reduction)
    _, want = sr.loss_and_grad(logits, labels, reduction=reduction)
    weight = torch.full(value.shape, 2.0, dtype=value.dtype)
    for _ in range(3):
        value.backward(weight, retain_graph=True)
    np.testing.assert_allclose(z.grad.numpy(), 6 * want, rtol=1e-12, atol=1e-15)
    z.grad = None
    value.backward(weight)  # the last pass: in place
    np.testing.assert_allclose(z.grad.numpy(), 2 * want, rtol=1e-12, atol=1e-15)


def test_torch_backward_of_one_hands_back_the_computed_gradient():
    logits, labels = _inputs()
    z = torch.as_tensor(logits).requires_grad_(True)
    sr.loss(z, torch.as_tensor(labels)).backward()
    np.testing.assert_array_equal(z.grad.numpy(), sr.loss_and_grad(logits, labels)[1])


def test_torch_lam_tensor_is_read_at_call_time():
    logits, labels = _inputs()
    lam = torch.tensor(0.5, dtype=torch.float64)
    objective = _objective("ce", False, None, lam=lam)
    z, y = torch.as_tensor(logits), torch.as_tensor(labels)
    before = torch_path.sr_terms(z, y, objective, need_grad=True).grad.clone()
    lam.fill_(2.0)
    after = torch_path.sr_terms(z, y, objective, need_grad=True).grad
    want = core_sr_terms(logits, labels, objective.with_lam(2.0), need_grad=True).grad
    np.testing.assert_allclose(after.numpy(), want, rtol=0, atol=1e-12)
    assert not torch.allclose(before, after)


def test_torch_logging_terms_are_detached_and_reduced():
    logits, labels = _inputs()
    z = torch.as_tensor(logits).requires_grad_(True)
    objective = _objective("gce", True, None)
    value, base, penalty = torch_path.differentiable_terms(z, torch.as_tensor(labels), objective, "mean")
    assert value.requires_grad and not base.requires_grad and not penalty.requires_grad
    torch.testing.assert_close(value, base + objective.lam * penalty)


# --- the declarations the fast paths derive from ----------------------------------------------


def test_every_builtin_loss_has_a_cuda_kernel_entry():
    from sparse_reg.backends import cupy as cupy_path

    source = cupy_path.kernel_source("float32")
    value_switch = source[source.index("loss_value("):source.index("loss_grad(")]
    grad_switch = source[source.index("loss_grad("):source.index("combined_grad(")]
    for name in BUILTIN_LOSSES:
        terms = sr.get_loss(name).kernel
        assert 1 <= len(terms) <= 2, f"built-in loss {name!r} has no CUDA kernel entry"
        for term in terms:
            assert term in cupy_path.KERNEL_TERMS[1:], f"{name!r}: unknown kernel term {term!r}"
            assert f"case L_{term}:" in value_switch and f"case L_{term}:" in grad_switch, (name, term)
        assert cupy_path.supports(_objective(name, False, None))


def test_kernel_source_per_dtype_and_refusal():
    from sparse_reg.backends import cupy as cupy_path

    assert "#define in_t __half" in cupy_path.kernel_source("float16")
    assert "#define acc_t double" in cupy_path.kernel_source("float64")
    assert f"void {cupy_path.KERNEL_NAME}(" in cupy_path.kernel_source("float32")
    with pytest.raises(ValueError, match=r"dtype must be one of .*got 'int8'"):
        cupy_path.kernel_source("int8")


def test_label_only_trait_matches_the_definitions():
    # A label-only loss must give the same value and gradient on the label column as on the row.
    logits, labels = _inputs(edges=False)
    xp = np
    log_s = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    mask = labels[:, None] == np.arange(logits.shape[1])
    column = np.ones((len(labels), 1), dtype=bool)
    log_s_y = log_s[mask][:, None]
    for name in BUILTIN_LOSSES:
        loss = sr.get_loss(name)
        params = dict(loss.defaults)
        with np.errstate(all="ignore"):  # nmae divides by C - 1 = 0 on a column: not label-only
            on_column = loss.value(log_s_y, column, xp=xp, **params)
        same = np.allclose(loss.value(log_s, mask, xp=xp, **params),
                           on_column, rtol=1e-12)
        dense = loss.grad(log_s, mask, xp=xp, **params)
        same = same and np.allclose(dense[mask], loss.grad(log_s_y, column, xp=xp, **params)[:, 0],
                                    rtol=1e-12) and not dense[~mask].any()
        assert same == loss.label_only, name


# --- autograd beyond the first derivative of the logits -----------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("logits_grad", [True, False])
def test_torch_lam_that_requires_grad_gets_its_gradient(reduction, logits_grad):
    logits, labels = _inputs()
    grads = []
    for fused in (True, False):
        z = torch.as_tensor(logits).requires_grad_(logits_grad)
        lam = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
        value = sr.loss(z, torch.as_tensor(labels), lam=lam, normalize=True, reduction=reduction, fused=fused)
        value.sum().backward()
        grads.append(lam.grad)
    assert grads[0] is not None
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-12, atol=0)


@pytest.mark.parametrize("base", ["ce", "focal", "nce+rce"])
def test_torch_double_backward_through_the_fused_path(base):
    logits, labels = _inputs(n=6, c=4, edges=False)
    y = torch.as_tensor(labels)
    lam = torch.tensor(0.9, dtype=torch.float64, requires_grad=True)
    z = torch.as_tensor(logits).requires_grad_(True)

    def fused(z, lam):
        return sr.loss(z, y, base=base, lam=lam, normalize=True, tau=0.7)

    assert torch.autograd.gradgradcheck(fused, (z, lam))
    (g,) = torch.autograd.grad(fused(z, lam), z, create_graph=True)
    (hessian_row,) = torch.autograd.grad(g[0, 0], z)
    assert hessian_row.abs().max() > 0  # never the zeros of a gradient without history


# --- the dtype's extremes ----------------------------------------------------------------------

EXTREME_LOGITS = np.array([[3e38, -3e38, 1e38], [1e38, 2e38, -1e38], [1.0, 0.5, -1.0]])
EXTREME_LABELS = np.array([0, 1, 2])


def _finite_where_float64_is(got, want, tau):
    in_range = np.isfinite(want) & (np.abs(want) < np.finfo(np.float32).max)
    assert np.isfinite(got[in_range]).all()
    # float32 rounding (cancellations of order eps) reaches the gradient multiplied by 1/tau
    scale = max(np.abs(want[np.isfinite(want)]).max(initial=1.0), 1 / tau)
    np.testing.assert_allclose(got[in_range], want[in_range], rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("tau", [0.5, 0.01, 1e-20])
@pytest.mark.parametrize("base", BUILTIN_LOSSES)
def test_float32_extremes_are_finite_where_float64_is(base, tau, normalize, fused):
    if base.startswith("nfl") and not normalize and tau > 1e-20:
        pytest.skip("documented limit: log-probabilities below float32's range make NFL's gradient NaN")
    logits = EXTREME_LOGITS if tau > 1e-20 else EXTREME_LOGITS[2:]
    labels = EXTREME_LABELS[: len(logits)]
    args = dict(base=base, tau=tau, normalize=normalize, reduction="none")
    with np.errstate(all="ignore"):
        value, grad = sr.loss_and_grad(logits.astype(np.float32), labels, fused=fused, **args)
        want_value, want_grad = sr.loss_and_grad(logits, labels, fused=False, **args)
    _finite_where_float64_is(value, want_value, tau)
    _finite_where_float64_is(grad, want_grad, tau)
