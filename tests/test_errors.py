"""Every bad input gives a clear exception naming the argument and what was expected."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import sparse_reg as sr
from sparse_reg.errors import BackendMismatchError, BackendUnavailableError, NoClosedFormGradientError

Z = np.array([[1.0, 2.0, 0.5], [0.3, -1.0, 2.0]])
Y = np.array([0, 2])


@pytest.mark.parametrize(
    ("logits", "labels", "error", "message"),
    [
        (Z[0, 0], Y, ValueError, r"logits must have shape \(C,\), \(N, C\) or \(N, C, d1, ..., dk\); got a 0-D"),
        (Z[0], Y[:1], ValueError, r"labels must have shape \(\) = \(\) to match logits of shape \(3,\); got \(1,\)"),
        (Z[None], Y, ValueError, r"labels must have shape \(N, d1, ..., dk\) = \(1, 3\) .* got \(2,\)"),
        (Z.astype(np.int64), Y, TypeError, r"logits must be floating point .* got int64"),
        (Z[:, :1], Y, ValueError, r"logits must have at least 2 classes \(C >= 2\); got C=1"),
        (Z, Y.astype(np.float64), TypeError, r"labels must be an integer array .* got dtype float64"),
        (Z, np.array([0, 1, 2]), ValueError, r"labels must have shape \(N,\) = \(2,\) .* got \(3,\)"),
        (Z, np.array([[0], [1]]), ValueError, r"labels must have shape \(N,\) = \(2,\) .* got \(2, 1\)"),
        (Z, np.array([0, 3]), ValueError, r"labels must lie in \[0, C\) = \[0, 3\) or equal ignore_index=-100; got values from 0 to 3"),
        (Z, np.array([-1, 0]), ValueError, r"labels must lie in \[0, C\) = \[0, 3\) or equal .*; got values from -1"),
        ("logits", Y, TypeError, r"logits must be an array .* got str"),
    ],
)
def test_bad_arrays(backend, logits, labels, error, message):
    as_backend = backend.asarray if not isinstance(logits, str) else (lambda x: x)
    with pytest.raises(error, match=message):
        sr.loss(as_backend(logits), backend.asarray(labels))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"tau": 0.0}, ValueError, r"tau must be > 0; got 0.0"),
        ({"tau": -1}, ValueError, r"tau must be > 0; got -1"),
        ({"tau": float("nan")}, TypeError, r"tau must be a finite real number; got nan"),
        ({"tau": "0.5"}, TypeError, r"tau must be a finite real number; got '0.5'"),
        ({"p": 0.0}, ValueError, r"p must be > 0; got 0.0"),
        ({"p": 1.5}, ValueError, r"p must lie in \(0, 1\]; got 1.5"),
        ({"lam": -0.1}, ValueError, r"lam must be a finite number >= 0; got -0.1"),
        ({"lam": True}, TypeError, r"lam must be a real number >= 0 or a 0-D array; got True"),
        ({"lam": np.ones(2)}, TypeError, r"lam must be a real number >= 0 or a 0-D array"),
        ({"clamp": 1.0}, ValueError, r"clamp must be None or lie in \(0, 1\); got 1.0"),
        ({"normalize": 1}, TypeError, r"normalize must be True or False; got 1"),
        ({"reduction": "avg"}, ValueError, r"reduction must be one of 'mean', 'sum', 'none'; got 'avg'"),
        ({"base": "hinge"}, ValueError, r"unknown base loss 'hinge'; valid: ce, focal, gce, .*nfl\+mae"),
        ({"base": "gce", "gamma": 2}, TypeError, r"base loss 'gce' got unexpected parameter\(s\) gamma; it takes: q"),
        ({"base": "ce", "q": 0.5}, TypeError, r"base loss 'ce' got unexpected .* it takes: no parameters"),
        ({"base": "gce", "q": 0.0}, ValueError, r"q of base loss 'gce' must be a number in \(0, 1\]; got 0.0"),
        ({"base": "focal", "gamma": -1}, ValueError, r"gamma of base loss 'focal' must be a number >= 0"),
        ({"base": "focal", "detach_weight": "yes"}, ValueError, r"detach_weight .* must be True or False"),
        ({"backend": "tensorflow"}, ValueError, r"unknown backend 'tensorflow'; valid backends: numpy, torch"),
        ({"backend": 3}, TypeError, r"backend must be a string such as 'torch' or 'cupy'; got 3"),
        # Every scalar is checked alike, whether Python, NumPy scalar or 0-D NumPy array.
        ({"lam": np.float32(-1)}, ValueError, r"lam must be a finite number >= 0; got np.float32\(-1.0\)"),
        ({"lam": np.array(-3.0)}, ValueError, r"lam must be a finite number >= 0; got array\(-3.\)"),
        ({"lam": np.array(np.nan)}, ValueError, r"lam must be a finite number >= 0; got array\(nan\)"),
        ({"lam": np.True_}, TypeError, r"lam must be a real number >= 0 or a 0-D array; got np.True_"),
        ({"lam": np.array(1 + 1j)}, TypeError, r"lam must be a real number >= 0 or a 0-D array"),
        ({"tau": np.float32(0)}, ValueError, r"tau must be > 0; got np.float32\(0.0\)"),
        ({"tau": np.array(np.inf)}, TypeError, r"tau must be a finite real number; got array\(inf\)"),
        ({"p": np.True_}, TypeError, r"p must be a finite real number; got np.True_"),
        # Booleans are never numbers, and numbers are never switches.
        ({"base": "gce", "q": True}, ValueError, r"q of base loss 'gce' must be a number in \(0, 1\]; got True"),
        ({"base": "focal", "gamma": np.float64(-1)}, ValueError, r"gamma .* >= 0; got np.float64\(-1.0\)"),
        ({"base": "focal", "detach_weight": 1}, ValueError, r"detach_weight .* must be True or False; got 1"),
    ],
)
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        sr.loss(Z, Y, **kwargs)
    with pytest.raises(error, match=message):
        sr.loss_and_grad(Z, Y, **kwargs)


def test_numpy_scalars_are_numbers():
    want = float(sr.loss(Z, Y, base="gce", q=0.5, tau=0.5, lam=2.0))
    got = sr.loss(Z, Y, base="gce", q=np.float32(0.5), tau=np.array(0.5), lam=np.float32(2))
    assert float(got) == pytest.approx(want, rel=1e-12)


def test_cpu_tensor_lam_is_checked_without_a_sync():
    torch = pytest.importorskip("torch")
    z, y = torch.as_tensor(Z), torch.as_tensor(Y)
    with pytest.raises(ValueError, match=r"lam must be a finite number >= 0; got tensor\(-1.\)"):
        sr.loss(z, y, lam=torch.tensor(-1.0))
    with pytest.raises(TypeError, match=r"lam must be a real number >= 0 or a 0-D array; got tensor\(True\)"):
        sr.loss(z, y, lam=torch.tensor(True))


def test_backend_not_installed_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    with pytest.raises(BackendUnavailableError, match=r"backend='cupy' needs the 'cupy' package.*"
                       r"pip install 'sparse_reg\[cupy\]'"):
        sr.loss(Z, Y, backend="cupy")


def test_cuda_backend_without_a_device():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    with pytest.raises(BackendUnavailableError, match=r"backend='torch:cuda' needs a CUDA device"):
        sr.loss(Z, Y, backend="torch:cuda")


def test_cupy_without_a_device(monkeypatch):
    class FakeRuntime:
        @staticmethod
        def getDeviceCount():
            return 0

    fake = type(sys)("cupy")
    fake.cuda = type(sys)("cupy.cuda")
    fake.cuda.runtime = FakeRuntime
    monkeypatch.setitem(sys.modules, "cupy", fake)
    with pytest.raises(BackendUnavailableError, match=r"backend='cupy' needs a CUDA device; none was found"):
        sr.loss(Z, Y, backend="cupy")


def test_arrays_from_two_libraries():
    torch = pytest.importorskip("torch")
    with pytest.raises(BackendMismatchError, match=r"logits is a numpy array but labels is a torch array"):
        sr.loss(Z, torch.tensor(Y))
    with pytest.raises(BackendMismatchError, match=r"backend='jax' was asked for, but logits is a torch "
                       r"array; convert it explicitly with sparse_reg.backends.to_backend\(logits, 'jax'\)"):
        sr.loss(torch.tensor(Z), torch.tensor(Y), backend="jax")


def test_value_only_loss_has_no_gradient_on_numpy():
    def brier(log_s, mask, *, xp):
        return (1 - xp.exp(xp.sum(xp.where(mask, log_s, xp.zeros_like(log_s)), axis=-1))) ** 2

    sr.register_loss("test_value_only", brier, overwrite=True)
    with pytest.raises(NoClosedFormGradientError, match=r"'test_value_only' was registered without a "
                       r"gradient, and numpy has no autograd"):
        sr.loss_and_grad(Z, Y, base="test_value_only")
    assert np.isfinite(sr.loss(Z, Y, base="test_value_only"))


def test_registering_a_taken_name_needs_overwrite():
    with pytest.raises(ValueError, match=r"base loss 'ce' is already registered; pass overwrite=True"):
        sr.register_loss("ce", lambda log_s, mask, *, xp: log_s[:, 0])


@pytest.mark.parametrize("parameter", ["weight", "label_smoothing", "tau", "schedule", "reduction"])
def test_a_loss_parameter_named_like_an_argument_of_the_front_door_is_refused(parameter):
    with pytest.raises(ValueError, match=rf"defaults of base loss 'test_taken' name '{parameter}', "
                       r"which sparse_reg.loss and SparseRegLoss take as their own arguments"):
        sr.register_loss("test_taken", lambda log_s, mask, *, xp, **_: log_s[:, 0],
                         defaults={parameter: 1.0, "q": 0.5})
    assert "test_taken" not in sr.available_losses()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lam0": -1.0}, r"lam0 must be a finite number >= 0; got -1.0"),
        ({"lam0": 1.0, "rho": 0.0}, r"rho must be a finite number > 0; got 0.0"),
        ({"lam0": 1.0, "every": 0}, r"every must be an int >= 1; got 0"),
        ({"lam0": 1.0, "every": 1.5}, r"every must be an int >= 1; got 1.5"),
    ],
)
def test_bad_schedule(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sr.LambdaSchedule(**kwargs)


def test_schedule_state_must_match():
    schedule = sr.LambdaSchedule(1.0)
    with pytest.raises(ValueError, match=r"state must have exactly the keys \[.*'epoch', 'every'.*'lam0'.*'rho'.*\]; got \['lam0'\]"):
        schedule.load_state_dict({"lam0": 2.0})


def test_projection_vector_must_fit():
    with pytest.raises(ValueError, match=r"v must be 1-D with one entry per class \(3\); got shape \(2,\)"):
        sr.project(Z, np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match=r"sinkhorn_iterations must be >= 0; got -1"):
        sr.soft_project(Z, np.array([1.0, 0.0, 0.0]), sinkhorn_iterations=-1)
