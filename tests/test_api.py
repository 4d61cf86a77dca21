"""The front door's contract: reductions, edge cases, dispatch, devices, user losses, imports."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from _reference import objective, objective_grad

import sparse_reg as sr
from sparse_reg.backends import library_of, to_backend

Z = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.0, 1.0], [-2.0, 4.0, 0.0]])
Y = np.array([0, 2, 1, 1])


def test_reductions_agree(backend, numpy_of):
    z, y = backend.asarray(Z), backend.asarray(Y)
    per_sample = numpy_of(sr.loss(z, y, reduction="none"))
    assert per_sample.shape == (4,)
    np.testing.assert_allclose(numpy_of(sr.loss(z, y, reduction="sum")), per_sample.sum(), rtol=1e-12)
    np.testing.assert_allclose(numpy_of(sr.loss(z, y)), per_sample.mean(), rtol=1e-12)
    _, grad_sum = sr.loss_and_grad(z, y, reduction="sum")
    _, grad_mean = sr.loss_and_grad(z, y)
    _, grad_rows = sr.loss_and_grad(z, y, reduction="none")
    np.testing.assert_allclose(numpy_of(grad_sum) / 4, numpy_of(grad_mean), rtol=1e-12)
    np.testing.assert_allclose(numpy_of(grad_rows), numpy_of(grad_sum), rtol=1e-12)


def test_result_stays_in_the_logits_library(backend):
    value = sr.loss(backend.asarray(Z), backend.asarray(Y))
    assert library_of(value) == library_of(backend.asarray(Z))
    assert value.ndim == 0


def test_empty_batch_gives_zero_and_an_empty_gradient(backend, numpy_of):
    z, y = backend.asarray(np.zeros((0, 3))), backend.asarray(np.zeros((0,), dtype=np.int64))
    value, grad = sr.loss_and_grad(z, y)
    assert float(numpy_of(value)) == 0.0
    assert numpy_of(grad).shape == (0, 3)
    assert float(numpy_of(sr.loss(z, y, reduction="sum"))) == 0.0
    assert numpy_of(sr.loss(z, y, reduction="none")).shape == (0,)


def test_non_finite_logits_poison_only_their_row(backend, numpy_of):
    z = Z.copy()
    z[1, 0] = np.nan
    z[2, 2] = np.inf
    z[3, 0] = -np.inf  # a class of probability zero: handled exactly
    with np.errstate(invalid="ignore"):  # NumPy rightly warns about inf - inf in row 2
        value, grad = sr.loss_and_grad(backend.asarray(z), backend.asarray(Y), reduction="none")
    value, grad = numpy_of(value), numpy_of(grad)
    assert np.isnan(value[1]) and np.isnan(value[2])
    assert np.isnan(grad[1]).all() and np.isnan(grad[2]).all()
    np.testing.assert_allclose(value[0], objective(Z[:1], Y[:1])[0], rtol=1e-12)
    # s^p = exp(p log s) is still e^-8 at a logit of -40 for p = 0.1; -1e4 makes it exactly 0
    finite_part = objective(np.array([[-1e4, 4.0, 0.0]]), Y[3:])[0]
    np.testing.assert_allclose(value[3], finite_part, rtol=1e-12)
    assert np.isfinite(grad[3]).all() and grad[3, 0] == 0.0


def test_numpy_input_moves_to_the_requested_backend(backend, numpy_of):
    name = backend.name.partition(":")[0]
    if backend.name == "array_api_strict:2024.12":
        pytest.skip("the same library as array_api_strict")
    value = sr.loss(Z, Y, backend=backend.name)
    assert library_of(value) == name
    np.testing.assert_allclose(numpy_of(value), float(sr.loss(Z, Y)), rtol=1e-6)


def test_numpy_labels_follow_logits_to_their_device():
    strict = pytest.importorskip("array_api_strict")
    device = strict.Device("device1")
    logits = strict.asarray(Z, device=device)
    value, grad = sr.loss_and_grad(logits, Y)
    assert value.device == device and grad.device == device
    for fn in (sr.sharpen, lambda t: sr.project(t, strict.asarray([1.0, 0.0, 0.0], device=device))):
        assert fn(logits).device == device


def test_lam_as_a_zero_d_array(backend, numpy_of):
    lam = backend.asarray(np.asarray(2.5))
    z, y = backend.asarray(Z), backend.asarray(Y)
    np.testing.assert_allclose(numpy_of(sr.loss(z, y, lam=lam)), numpy_of(sr.loss(z, y, lam=2.5)), rtol=1e-12)


def test_a_lam_that_changes_between_calls_is_the_one_used(backend, numpy_of):
    # Objectives are cached without lam, so a schedule's new lam on every call must be read.
    z, y = backend.asarray(Z), backend.asarray(Y)
    for lam in (0.5, 2.0, 0.5, 3, 0.0, 2.0):
        value, grad = sr.loss_and_grad(z, y, lam=lam, tau=0.7)
        reference = objective(Z, Y, lam=float(lam), tau=0.7).mean()
        np.testing.assert_allclose(numpy_of(value), reference, rtol=1e-12)
        np.testing.assert_allclose(numpy_of(grad), objective_grad(Z, Y, lam=float(lam), tau=0.7) / 4,
                                   atol=1e-7)
        np.testing.assert_allclose(numpy_of(sr.loss(z, y, lam=lam, tau=0.7)), reference, rtol=1e-12)
    with pytest.raises(ValueError, match=r"lam must be a finite number >= 0; got -1\.0"):
        sr.loss(z, y, lam=-1.0, tau=0.7)
    with pytest.raises(TypeError, match="lam must be a real number >= 0 or a 0-D array; got True"):
        sr.loss(z, y, lam=True, tau=0.7)


def test_lam_zero_and_p_one_reduce_to_the_base_loss():
    base_only = sr.loss(Z, Y, lam=0.0, tau=1.0)
    constant_penalty = sr.loss(Z, Y, lam=3.0, p=1.0, tau=1.0)
    np.testing.assert_allclose(base_only, objective(Z, Y, lam=0.0, tau=1.0).mean(), rtol=1e-12)
    np.testing.assert_allclose(constant_penalty, base_only + 3.0, rtol=1e-12)
    _, grad_base = sr.loss_and_grad(Z, Y, lam=0.0)
    _, grad_p1 = sr.loss_and_grad(Z, Y, lam=3.0, p=1.0)
    np.testing.assert_allclose(grad_p1, grad_base, atol=1e-12)


def _brier_value(log_s, mask, *, xp, scale):
    label_prob = xp.exp(xp.sum(xp.where(mask, log_s, xp.zeros_like(log_s)), axis=-1))
    return scale * (1 - label_prob) ** 2


def _brier_grad(log_s, mask, *, xp, scale):
    label_prob = xp.exp(xp.sum(xp.where(mask, log_s, xp.zeros_like(log_s)), axis=-1))
    per_sample = -2 * scale * (1 - label_prob) * label_prob
    return xp.where(mask, per_sample[:, None], xp.zeros_like(log_s))


def test_user_loss_with_gradient_runs_everywhere(backend, numpy_of):
    sr.register_loss("test_brier", _brier_value, _brier_grad, defaults={"scale": 1.0}, overwrite=True)
    z, y = backend.asarray(Z), backend.asarray(Y)
    value, grad = sr.loss_and_grad(z, y, base="test_brier", scale=2.0)
    s = np.exp(Z / 0.5) / np.exp(Z / 0.5).sum(1, keepdims=True)
    a = s[np.arange(4), Y]
    expected = (2 * (1 - a) ** 2 + (s**0.1).sum(1)).mean()
    np.testing.assert_allclose(numpy_of(value), expected, rtol=1e-12)
    assert numpy_of(grad).shape == (4, 3)


@pytest.mark.parametrize("library", ["torch", "jax"])
def test_value_only_user_loss_is_differentiated_by_autograd(library):
    pytest.importorskip(library)
    sr.register_loss("test_brier_value_only", _brier_value, defaults={"scale": 1.0}, overwrite=True)
    sr.register_loss("test_brier_closed", _brier_value, _brier_grad, defaults={"scale": 1.0}, overwrite=True)
    if library == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)
    z, y = to_backend(Z, library), to_backend(Y, library)
    value, grad = sr.loss_and_grad(z, y, base="test_brier_value_only", scale=0.5, normalize=True)
    expected_value, expected_grad = sr.loss_and_grad(z, y, base="test_brier_closed", scale=0.5, normalize=True)
    np.testing.assert_allclose(np.asarray(value), np.asarray(expected_value), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(expected_grad), atol=1e-12)


def test_to_backend_shares_memory_through_dlpack():
    torch = pytest.importorskip("torch")
    host = np.arange(6.0).reshape(2, 3)
    tensor = to_backend(host, "torch")
    tensor[0, 0] = 42.0
    assert host[0, 0] == 42.0
    back = to_backend(torch.ones(2, requires_grad=True), "numpy")
    assert isinstance(back, np.ndarray) and back.tolist() == [1.0, 1.0]


def test_fused_and_reference_torch_paths_agree():
    torch = pytest.importorskip("torch")
    for base in sr.losses.BUILTIN_LOSSES:
        grads = []
        for fused in (True, False):
            logits = torch.tensor(Z, requires_grad=True)
            sr.loss(logits, torch.tensor(Y), base=base, fused=fused, normalize=True).backward()
            grads.append(logits.grad)
        torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-12)


def test_import_loads_no_optional_backend():
    code = (
        "import sys, numpy as np, sparse_reg as sr; sr.loss(np.ones((2, 3)), np.array([0, 1])); "
        "sr.noise; sr.data; "
        "print(sorted(m for m in ('torch', 'cupy', 'jax', 'array_api_strict', 'sklearn') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# --- the backend registry and the layering -------------------------------------------------------


def test_every_backend_row_provides_what_it_promises():
    import importlib

    from sparse_reg.backends import REGISTRY, BackendHooks

    for row in REGISTRY.values():
        if row.hooks is None:
            assert not (row.fused or row.autograd or row.requires_device), row.name
            continue
        try:
            module = importlib.import_module(row.hooks)
        except ImportError as exc:  # the library itself is not installed here
            pytest.skip(f"{row.hooks}: {exc}")
        promised = ["from_host", "host_view"] + ["supports", "sr_terms"] * row.fused
        promised += ["value_and_grad"] * row.autograd + ["require_device"] * row.requires_device
        promised += ["differentiable_loss"] * (row.fused and row.autograd)
        missing = [name for name in promised if not callable(getattr(module, name, None))]
        assert not missing, f"{row.hooks} lacks {missing}"
        assert all(hasattr(BackendHooks, name) for name in promised if name != "differentiable_loss")
        assert row.test_ids and all(t.partition(":")[0] == row.name for t in row.test_ids)
        assert set(row.gpu_ids) <= set(row.test_ids)


#: The core's layers, lowest first: a module may import only from its own layer or a lower one.
LAYERS = (
    ("_numerics", "_compat", "errors", "_reduction", "_validation", "schedule"),
    ("losses",),
    ("regularizer", "projection", "criterion"),
    ("backends",),
    ("_api",),
    ("nn",),
    ("train",),
)


def test_layers_point_one_way():
    import ast
    from pathlib import Path

    package = Path(sr.__file__).parent
    rank = {name: level for level, names in enumerate(LAYERS) for name in names}
    for name, level in rank.items():
        path = package / name if (package / name).is_dir() else package / f"{name}.py"
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            for node in ast.walk(ast.parse(file.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sparse_reg."):
                    target = node.module.split(".")[1]
                    assert rank.get(target, -1) <= level, f"{file.name} imports {node.module}"


def test_signatures_take_the_objective_parameters_from_one_list():
    import inspect

    from sparse_reg.nn import SparseRegLoss
    from sparse_reg.regularizer import OBJECTIVE_PARAMETERS
    from sparse_reg.train.config import Config

    loss_sig = inspect.signature(sr.loss).parameters
    module_sig = inspect.signature(SparseRegLoss).parameters
    config = Config()
    for parameter in OBJECTIVE_PARAMETERS:
        assert loss_sig[parameter.name].default == parameter.default
        in_module = "schedule" if parameter.name == "lam" else parameter.name
        assert module_sig[in_module].default == parameter.default
        assert sr.Objective.create().__getattribute__(parameter.name) == parameter.check(parameter.default)
    arguments = config.objective_arguments()
    assert arguments["lam"] == config.lam0 and arguments["tau"] == config.tau
    assert sr.Objective.create(**arguments).base.name == config.base_loss


def test_labels_under_jax_jit_give_nan_rows_and_checkify_raises():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    from jax.experimental import checkify

    jnp = jax.numpy
    z = jnp.asarray([[1.0, 2.0, 0.0], [0.5, 0.1, -1.0]])
    per_sample = jax.jit(lambda z, y: sr.loss(z, y, reduction="none"))
    values = np.asarray(per_sample(z, jnp.asarray([0, 5])))
    assert np.isfinite(values[0]) and np.isnan(values[1])
    grad = np.asarray(jax.jit(lambda z, y: sr.loss_and_grad(z, y)[1])(z, jnp.asarray([0, -1])))
    assert np.isfinite(grad[0]).all() and np.isnan(grad[1]).all()
    checked = checkify.checkify(jax.jit(lambda z, y: sr.loss(z, y)), errors=checkify.float_checks)
    assert checked(z, jnp.asarray([0, 2]))[0].get() is None
    with pytest.raises(Exception, match="nan generated"):
        checked(z, jnp.asarray([0, 3]))[0].throw()
