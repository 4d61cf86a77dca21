"""SparseRegLoss and sr.loss with torch's machinery: torch.compile, torch.func, pickling, autocast."""

from __future__ import annotations

import copy
import io
import pickle
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

import sparse_reg as sr  # noqa: E402
from sparse_reg.nn import SparseRegLoss  # noqa: E402

dynamo = pytest.importorskip("torch._dynamo")
from torch._dynamo.testing import CompileCounter  # noqa: E402

FUSED = pytest.mark.parametrize("fused", [True, False], ids=["fused", "reference"])
DEVICES = pytest.mark.parametrize("device", ["cpu", "cuda"])


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    dynamo.reset()
    yield
    dynamo.reset()


def _device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        pytest.skip("torch:cuda needs a CUDA device; torch.cuda.is_available() is False")
    return torch.device(name)


def _batch(n: int = 8, c: int = 5, dtype: torch.dtype = torch.float32, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=generator, dtype=dtype) * 2
    labels = torch.randint(0, c, (n,), generator=generator)
    return logits, labels


def _value_and_grad(fn, logits, labels):
    z = logits.clone().requires_grad_(True)
    value = fn(z, labels)
    value.sum().backward()
    return value.detach(), z.grad


class _Recording:
    """A torch.compile backend that keeps the code of each captured graph, then runs AOT autograd
    (so the backward is traced too) in eager kernels."""

    def __init__(self) -> None:
        self.codes: list[str] = []
        from torch._dynamo.backends.registry import lookup_backend

        self._aot = lookup_backend("aot_eager")

    def __call__(self, gm, example_inputs):
        self.codes.append(gm.code)
        return self._aot(gm, example_inputs)


# --- torch.compile ------------------------------------------------------------------------------


@FUSED
def test_set_epoch_never_recompiles_a_compiled_training_step(fused):
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 5)
    criterion = SparseRegLoss("gce", schedule=sr.LambdaSchedule(1.0, 2.0, 1), fused=fused, q=0.7)
    x = torch.randn(8, 6)
    y = torch.randint(0, 5, (8,))

    def step(x, y):
        loss = criterion(model(x), y)
        loss.backward()
        return loss.detach()

    counter = CompileCounter()
    compiled = torch.compile(step, backend=counter)
    compiled(x, y)
    frames = counter.frame_count
    assert frames >= 1
    for epoch in (1, 2, 5):
        criterion.set_epoch(epoch)
        got = compiled(x, y)
        with torch.no_grad():
            want = criterion(model(x), y)
        torch.testing.assert_close(got, want)  # the new lambda is used, not a captured constant
    assert counter.frame_count == frames
    assert float(criterion.lam) == 32.0


@FUSED
@pytest.mark.parametrize("entry", ["module", "function"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_fullgraph_compile_matches_eager_forward_and_backward(fused, entry, reduction):
    if entry == "module":
        fn = SparseRegLoss("sce", tau=0.3, schedule=2.0, fused=fused, reduction=reduction)
    else:
        def fn(z, y):
            return sr.loss(z, y, base="sce", tau=0.3, lam=2.0, fused=fused, reduction=reduction)
    backend = _Recording()
    compiled = torch.compile(fn, backend=backend, fullgraph=True)
    logits, labels = _batch()
    # Eager first: the first call in a process fills per-type caches, which under tracing would
    # cost one recompilation on the second call.
    want_value, want_grad = _value_and_grad(fn, logits, labels)
    got_value, got_grad = _value_and_grad(compiled, logits, labels)
    assert got_value.dtype == want_value.dtype == torch.float32
    torch.testing.assert_close(got_value, want_value, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-5, atol=1e-7)
    captured = len(backend.codes)
    _value_and_grad(compiled, logits, labels)
    assert captured >= 1 and len(backend.codes) == captured  # no recompilation on a second call
    # The fused path is the one autograd.Function in the graph; the reference has none.
    assert all(("autograd_function_apply" in code) is fused for code in backend.codes)


def test_fullgraph_compile_of_a_first_call_in_a_fresh_process():
    """sparse_reg imported before torch, and its first call with a tensor inside the compiled
    function: the torch hooks are imported while torch.compile traces."""
    script = (
        "import sparse_reg as sr, sys, torch\n"
        "assert 'sparse_reg.backends.torch' not in sys.modules\n"
        "z = torch.randn(8, 5, requires_grad=True); y = torch.randint(0, 5, (8,))\n"
        "f = torch.compile(lambda z, y: sr.loss(z, y), backend='aot_eager', fullgraph=True)\n"
        "value = f(z, y); value.backward()\n"
        "assert torch.allclose(value.detach(), sr.loss(z.detach(), y)), value\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]



def test_a_first_compile_in_a_fresh_process_emits_no_warning():
    """Dynamo warns once per process for each functools cache it traces (array_api_compat's type
    checks, our dtype caches): none may be on the traced path, for any option."""
    script = (
        "import logging, warnings, torch, sparse_reg as sr\n"
        "from sparse_reg.nn import SparseRegLoss\n"
        "records = []\n"
        "class Keep(logging.Handler):\n"
        "    def emit(self, record):\n"
        "        if record.levelno >= logging.WARNING: records.append(record.getMessage())\n"
        "logging.getLogger('torch').addHandler(Keep())\n"
        "z = torch.randn(8, 5, requires_grad=True); y = torch.randint(0, 5, (8,))\n"
        "calls = [lambda z, y: sr.loss(z, y), lambda z, y: sr.loss(z, y, fused=False),\n"
        "         lambda z, y: sr.loss(z, y, label_smoothing=0.1),\n"
        "         lambda z, y: sr.loss(z, y, weight=torch.ones(5), ignore_index=1),\n"
        "         lambda z, y: sr.loss(z, y, normalize=True), SparseRegLoss(),\n"
        "         SparseRegLoss(fused=False, label_smoothing=0.1)]\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    for call in calls:\n"
        "        torch.compile(call, backend='aot_eager')(z, y).backward()\n"
        "print([str(w.message).splitlines()[0] for w in caught] + records)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]", result.stdout[-3000:]
    assert "warn" not in result.stderr.lower(), result.stderr[-3000:]

@FUSED
def test_compiled_call_marks_an_out_of_range_label_with_nan(fused):
    criterion = SparseRegLoss(fused=fused, reduction="none")
    compiled = torch.compile(criterion, backend="aot_eager", fullgraph=True)
    logits, labels = _batch()
    labels[3] = 5
    value, grad = _value_and_grad(compiled, logits, labels)
    assert torch.isnan(value[3]) and torch.isfinite(value[torch.arange(8) != 3]).all()
    assert torch.isnan(grad[3]).all()  # fused or reference: the row's gradient is NaN too
    assert torch.isfinite(grad[torch.arange(8) != 3]).all()
    with pytest.raises(ValueError, match=r"labels must lie in \[0, C\)"):
        criterion(logits, labels)  # eager calls still check


# --- torch.func ---------------------------------------------------------------------------------


@FUSED
def test_vmap_of_grad_gives_the_per_sample_gradients(fused):
    from torch.func import grad, vmap

    logits, labels = _batch(12, 5, torch.float64)
    batched, batched_labels = logits.reshape(3, 4, 5), labels.reshape(3, 4)
    per_call = vmap(grad(lambda z, y: sr.loss(z, y, base="focal", fused=fused, reduction="sum")))
    got = per_call(batched, batched_labels).reshape(12, 5)
    _, want = sr.loss_and_grad(logits, labels, base="focal", reduction="none")
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    values = vmap(lambda z, y: sr.loss(z, y, base="focal", fused=fused))(batched, batched_labels)
    torch.testing.assert_close(values, sr.loss(logits, labels, base="focal", reduction="none")
                               .reshape(3, 4).mean(axis=1))


@FUSED
def test_vmap_of_grad_through_the_module(fused):
    from torch.func import grad, vmap

    criterion = SparseRegLoss("ce", schedule=sr.LambdaSchedule(1.5, 2.0, 1, epoch=1), fused=fused)
    logits, labels = _batch(12, 5, torch.float64)
    got = vmap(grad(criterion))(logits.reshape(3, 4, 5), labels.reshape(3, 4)).reshape(12, 5)
    _, want = sr.loss_and_grad(logits, labels, lam=3.0, reduction="none")
    torch.testing.assert_close(got, want / 4, rtol=1e-12, atol=1e-14)  # the mean over 4 rows


def test_second_derivatives_under_torch_func_are_exact_on_the_fused_path():
    from torch.func import jacrev

    logits, labels = _batch(4, 5, torch.float64)
    hessian = {fused: jacrev(jacrev(lambda z, fused=fused: sr.loss(z, labels, fused=fused)))(logits)
               for fused in (True, False)}
    assert hessian[False].abs().max() > 1e-3
    torch.testing.assert_close(hessian[True], hessian[False], rtol=1e-12, atol=1e-14)


def test_vmap_over_single_rows():
    from torch.func import grad, vmap

    logits, labels = _batch(6, 5, torch.float64)
    got = vmap(grad(lambda z, y: sr.loss(z, y)))(logits, labels)
    _, want = sr.loss_and_grad(logits, labels, reduction="none")
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)


# --- pickling -----------------------------------------------------------------------------------


class _Classifier(torch.nn.Module):
    """A model that holds its criterion, as training code often does."""

    def __init__(self, criterion: SparseRegLoss) -> None:
        super().__init__()
        self.net = torch.nn.Linear(4, 5)
        self.criterion = criterion

    def forward(self, x, y):
        return self.criterion(self.net(x), y)


def _machinery_brier(log_s, mask, *, xp):
    a = xp.exp(xp.sum(xp.where(mask, log_s, xp.zeros_like(log_s)), axis=-1))
    return (1 - a) ** 2


def _machinery_brier_grad(log_s, mask, *, xp):
    a = xp.exp(xp.sum(xp.where(mask, log_s, xp.zeros_like(log_s)), axis=-1))
    return xp.where(mask, (-2 * (1 - a) * a)[:, None], xp.zeros_like(log_s))


def _round_trips():
    def by_torch_save(obj):
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        buffer.seek(0)
        return torch.load(buffer, weights_only=False)

    return {"deepcopy": copy.deepcopy, "pickle": lambda obj: pickle.loads(pickle.dumps(obj)),
            "torch.save": by_torch_save}


ROUND_TRIPS = pytest.mark.parametrize("round_trip", list(_round_trips()))


@ROUND_TRIPS
@pytest.mark.parametrize("base", ["sce", "machinery_brier"])
def test_criterion_round_trips_keep_value_gradient_schedule_and_lambda(round_trip, base):
    sr.register_loss("machinery_brier", _machinery_brier, _machinery_brier_grad, overwrite=True)
    criterion = SparseRegLoss(base, schedule=sr.LambdaSchedule(1.0, 2.0, 1))
    criterion.set_epoch(3)
    copied = _round_trips()[round_trip](criterion)
    assert copied.schedule.epoch == 3 and float(copied.lam) == 8.0
    assert copied.objective.base is sr.get_loss(base)  # pickled by name: the registered object
    logits, labels = _batch()
    for got, want in zip(_value_and_grad(copied, logits, labels), _value_and_grad(criterion, logits, labels),
                         strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    copied.set_epoch(4)  # the copy's buffer is its own, and its objective follows it
    assert float(copied.lam) == 16.0 and float(criterion.lam) == 8.0
    assert float(copied(logits, labels)) != float(criterion(logits, labels))


@ROUND_TRIPS
def test_a_module_holding_the_criterion_round_trips(round_trip):
    torch.manual_seed(0)
    model = _Classifier(SparseRegLoss("gce", schedule=sr.LambdaSchedule(1.2, 1.03, 1), q=0.5))
    model.criterion.set_epoch(7)
    copied = _round_trips()[round_trip](model)
    x, y = torch.randn(8, 4), torch.randint(0, 5, (8,))
    torch.testing.assert_close(copied(x, y), model(x, y), rtol=0, atol=0)
    assert copied.criterion.schedule == model.criterion.schedule
    assert copied.criterion.objective.params == {"q": 0.5}


@pytest.mark.parametrize("holder", ["sequential", "module"])
def test_averaged_model_copies_the_criterion(holder):
    from torch.optim.swa_utils import AveragedModel

    torch.manual_seed(0)
    criterion = SparseRegLoss(schedule=sr.LambdaSchedule(1.0, 2.0, 1, epoch=2))
    model = torch.nn.Sequential(_Classifier(criterion)) if holder == "sequential" else _Classifier(criterion)
    averaged = AveragedModel(model)
    averaged.update_parameters(model)
    x, y = torch.randn(8, 4), torch.randint(0, 5, (8,))
    run = (lambda m: m[0](x, y)) if holder == "sequential" else (lambda m: m(x, y))
    torch.testing.assert_close(run(averaged.module), run(model))
    inner = averaged.module[0] if holder == "sequential" else averaged.module
    assert inner.criterion is not criterion and float(inner.criterion.lam) == 4.0


def test_objective_and_schedule_pickle_and_stay_read_only():
    objective = sr.Objective.create("nce+rce", tau=0.3, lam=2.0, alpha=0.5)
    copied = pickle.loads(pickle.dumps(objective))
    assert copied == objective and copied.base is objective.base
    with pytest.raises(TypeError):
        copied.params["alpha"] = 1.0  # type: ignore[index]
    schedule = sr.LambdaSchedule(4.0, 2.0, 5, unit="progress", horizon=50, total=200, count=30)
    assert pickle.loads(pickle.dumps(schedule)) == schedule


def test_a_replaced_registration_pickles_by_its_fields():
    first = sr.register_loss("machinery_brier", _machinery_brier, _machinery_brier_grad, overwrite=True)
    sr.register_loss("machinery_brier", _machinery_brier, overwrite=True)  # no gradient now
    copied = pickle.loads(pickle.dumps(first))
    assert copied is not sr.get_loss("machinery_brier")
    assert copied == first and copied.grad is _machinery_brier_grad
    sr.register_loss("machinery_brier", _machinery_brier, _machinery_brier_grad, overwrite=True)


# --- autocast -----------------------------------------------------------------------------------


@DEVICES
@FUSED
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bfloat16", "float16"])
def test_autocast_values_are_finite_float32_and_close(device, fused, dtype):
    device = _device(device)
    torch.manual_seed(0)
    model = torch.nn.Linear(16, 10).to(device)
    criterion = SparseRegLoss("ce", tau=0.5, schedule=2.0, fused=fused).to(device)
    x = torch.randn(32, 16, device=device)
    y = torch.randint(0, 10, (32,), device=device)
    with torch.autocast(device.type, dtype=dtype):
        logits = model(x)
        logits.retain_grad()
        value = criterion(logits, y)
    assert logits.dtype == dtype and value.dtype == torch.float32 and torch.isfinite(value)
    value.backward()
    assert logits.grad.dtype == dtype and torch.isfinite(logits.grad).all()
    assert model.weight.grad.dtype == torch.float32 and torch.isfinite(model.weight.grad).all()
    reference = criterion(model(x), y)  # float32 throughout
    torch.testing.assert_close(value, reference, rtol=2e-2, atol=2e-2)
    _, want = _value_and_grad(criterion, logits.detach().float(), y)
    torch.testing.assert_close(logits.grad.float(), want, rtol=2e-2, atol=2e-3)


# --- constructor --------------------------------------------------------------------------------


def test_lam_is_refused_with_a_pointer_to_schedule():
    with pytest.raises(TypeError, match=r"lam=4\.0.*schedule="):
        SparseRegLoss(lam=4.0)
    assert float(SparseRegLoss(schedule=4.0).lam) == 4.0


@pytest.mark.parametrize("lam_grad", [False, True], ids=["float-lam", "tensor-lam"])
def test_the_public_function_apply_gives_the_same_step(monkeypatch, lam_grad):
    # The eager path calls the C++ apply beneath Function.apply (private to torch); a torch
    # without it falls back on the public apply, which must give the same value and gradients.
    from sparse_reg.backends import torch as torch_backend

    def step():
        logits, labels = _batch(16, 7)
        logits.requires_grad_(True)
        lam = torch.tensor(1.5, dtype=torch.float64, requires_grad=True) if lam_grad else 1.5
        value = sr.loss(logits, labels, lam=lam, normalize=True, clamp=1e-7)
        value.backward()
        return value.detach(), logits.grad, lam.grad if lam_grad else None

    direct = step()
    monkeypatch.setattr(torch_backend, "_EAGER_APPLY", None)
    public = step()
    for a, b in zip(direct, public, strict=True):
        assert (a is None and b is None) or torch.equal(a, b)
