"""The criterion options (weight, ignore_index, label_smoothing, class probabilities, shapes) match
torch.nn.CrossEntropyLoss, are defined for every base loss, and agree on every path."""

from __future__ import annotations

import inspect
import itertools

import numpy as np
import pytest

import sparse_reg as sr
from sparse_reg.criterion import CRITERION_PARAMETERS
from sparse_reg.losses import BUILTIN_LOSSES

torch = pytest.importorskip("torch")
F = torch.nn.functional
from sparse_reg.nn import SparseRegLoss  # noqa: E402  (imports torch)

C = 4
W = np.array([1.0, 2.5, 0.5, 3.0])
RNG = np.random.default_rng(7)
#: (N, C) logits, labels with one ignored sample, and class probabilities.
Z = RNG.normal(size=(6, C)) * 2
Y = np.array([0, 1, -100, 3, 2, 1])
T = RNG.dirichlet(np.ones(C), size=6)
#: (N, C, d1, d2) logits and their labels and probabilities.
Z4 = RNG.normal(size=(2, C, 3, 2))
Y4 = RNG.integers(0, C, size=(2, 3, 2))
Y4[0, 1, 0] = -100
T4 = np.moveaxis(RNG.dirichlet(np.ones(C), size=(2, 3, 2)), -1, 1)

SHAPES = {
    "2d": (Z, Y, T),
    "4d": (Z4, Y4, T4),
    "1d": (Z[0], np.asarray(Y[1]), T[0]),
}


def _torch_options(options: dict) -> dict:
    return {k: torch.as_tensor(v) if k == "weight" else v for k, v in options.items()}


def _torch_reference(z: np.ndarray, target: np.ndarray, reduction: str, options: dict):
    logits = torch.tensor(z, requires_grad=True)
    value = F.cross_entropy(logits, torch.as_tensor(target), reduction=reduction, **_torch_options(options))
    value.sum().backward()
    return value.detach().numpy(), logits.grad.numpy()


GRID = [
    {"weight": weight, "ignore_index": ignore, "label_smoothing": smoothing}
    for weight, ignore, smoothing in itertools.product((None, W), (-100, 1), (0.0, 0.3))
]


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("options", GRID, ids=lambda o: f"w{o['weight'] is not None}-i{o['ignore_index']}"
                         f"-ls{o['label_smoothing']}")
def test_lam_zero_tau_one_ce_is_torch_cross_entropy(shape, soft, reduction, options):
    z, labels, probabilities = SHAPES[shape]
    options = {k: v for k, v in options.items() if v is not None}
    target = probabilities if soft else np.where(labels == -100, options["ignore_index"], labels)
    if soft and options["ignore_index"] != -100:
        pytest.skip("torch refuses ignore_index with class probabilities (tested below)")
    want_value, want_grad = _torch_reference(z, target, reduction, options)
    # A mean over no counted sample (here: the one sample ignored) is 0, as for an empty batch,
    # where torch gives NaN.
    want_value = np.where(np.isnan(want_value), 0.0, want_value)
    plain = {"lam": 0.0, "tau": 1.0, "reduction": reduction, **options}
    for fused in (True, False):
        value, grad = sr.loss_and_grad(z, target, fused=fused, **plain)
        assert np.shape(value) == want_value.shape and grad.shape == z.shape
        np.testing.assert_allclose(value, want_value, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-10, atol=1e-15)
        np.testing.assert_allclose(sr.loss(z, target, fused=fused, **plain), want_value, rtol=1e-12, atol=1e-15)
        # torch tensors: autograd through the fused Function (or the reference) and the module
        logits = torch.tensor(z, requires_grad=True)
        sr.loss(logits, torch.as_tensor(target), fused=fused, **plain).sum().backward()
        np.testing.assert_allclose(logits.grad.numpy(), want_grad, rtol=1e-10, atol=1e-15)
        module = SparseRegLoss("ce", tau=1.0, schedule=0.0, reduction=reduction, fused=fused,
                               **_torch_options(options))
        logits = torch.tensor(z, requires_grad=True)
        value = module(logits, torch.as_tensor(target))
        value.sum().backward()
        np.testing.assert_allclose(value.detach().numpy(), want_value, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(logits.grad.numpy(), want_grad, rtol=1e-10, atol=1e-15)


#: Base losses with parameters away from their defaults, spanning label-only, dense and sums.
BASES = [
    ("ce", {}), ("focal", {"gamma": 1.5}), ("gce", {"q": 0.5}), ("mae", {}), ("mse", {}),
    ("nce", {}), ("nfl", {"gamma": 0.7}), ("ngce", {"q": 0.6}), ("nmae", {}), ("sce", {}),
    ("nce+rce", {"alpha": 0.7, "beta": 1.3}), ("nfl+mae", {}),
]
OPTIONS = [
    {"weight": W},
    {"weight": W, "label_smoothing": 0.2},
    {"ignore_index": 2, "label_smoothing": 0.1},
    {"weight": W, "ignore_index": 1},
]


@pytest.mark.parametrize(("base", "params"), BASES, ids=[b for b, _ in BASES])
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(sorted(o)))
@pytest.mark.parametrize(("shape", "reduction"), [("2d", "mean"), ("4d", "none")])
def test_closed_form_gradient_matches_torch_autograd(base, params, options, reduction, shape):
    z, labels, _ = SHAPES[shape]
    labels = np.where(labels == -100, options.get("ignore_index", -100), labels)
    arguments = {"base": base, "tau": 0.7, "p": 0.4, "lam": 1.3, "normalize": True, "reduction": reduction,
                 **params, **options}
    logits = torch.tensor(z, requires_grad=True)
    value = sr.loss(logits, torch.as_tensor(labels), fused=False, **arguments)
    value.sum().backward()
    for fused in (True, False):
        got_value, got_grad = sr.loss_and_grad(z, labels, fused=fused, **arguments)
        np.testing.assert_allclose(got_value, value.detach().numpy(), rtol=1e-11, atol=1e-14)
        np.testing.assert_allclose(got_grad, logits.grad.numpy(), rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize(("base", "params"), BASES, ids=[b for b, _ in BASES])
def test_soft_targets_are_the_expectation_over_the_labels(base, params):
    arguments = {"base": base, "tau": 0.6, "lam": 0.8, "reduction": "none", **params}
    per_class = np.stack([sr.loss(Z, np.full(len(Z), c), **arguments) for c in range(C)], axis=1)
    grads = np.stack([sr.loss_and_grad(Z, np.full(len(Z), c), **arguments)[1] for c in range(C)], axis=1)
    value, grad = sr.loss_and_grad(Z, T, **arguments)
    # The penalty does not depend on the label, so the expectation of L + lam R is E[L] + lam R.
    np.testing.assert_allclose(value, (T * per_class).sum(1), rtol=1e-11)
    np.testing.assert_allclose(grad, (T[:, :, None] * grads).sum(1), rtol=1e-9, atol=1e-13)
    # Label smoothing is the soft target (1 - eps) e_y + eps / C.
    labels = np.array([0, 1, 2, 3, 2, 1])
    smoothed = np.eye(C)[labels] * 0.75 + 0.25 / C
    np.testing.assert_allclose(sr.loss(Z, labels, label_smoothing=0.25, **arguments),
                               sr.loss(Z, smoothed, **arguments), rtol=1e-12)


def test_unnormalised_soft_targets_are_linear_as_in_torch():
    target = T * np.array([[0.5], [2.0], [1.0], [0.0], [3.0], [1.0]])
    value = sr.loss(Z, target, lam=0.0, tau=1.0, reduction="none")
    want = F.cross_entropy(torch.tensor(Z), torch.tensor(target), reduction="none").numpy()
    np.testing.assert_allclose(value, want, rtol=1e-12)
    np.testing.assert_allclose(sr.loss(Z, target, base="mse", reduction="none", lam=0.0),
                               sr.loss(Z, target / target.sum(1, keepdims=True).clip(1e-300),
                                       base="mse", reduction="none", lam=0.0) * target.sum(1), rtol=1e-12)


def test_weighted_mean_semantics_with_the_penalty():
    """Sample i counts w[y_i] times in the whole objective; ignored samples not at all."""
    arguments = {"base": "gce", "tau": 0.5, "p": 0.3, "lam": 2.0}
    keep = Y != -100
    per_sample = sr.loss(Z[keep], Y[keep], reduction="none", **arguments)
    omega = W[Y[keep]]
    np.testing.assert_allclose(sr.loss(Z, Y, weight=W, **arguments), (omega * per_sample).sum() / omega.sum(),
                               rtol=1e-12)
    np.testing.assert_allclose(sr.loss(Z, Y, weight=W, reduction="sum", **arguments),
                               (omega * per_sample).sum(), rtol=1e-12)
    # Multiplying every weight by a constant changes nothing in a mean.
    np.testing.assert_allclose(sr.loss(Z, Y, weight=7 * W, **arguments), sr.loss(Z, Y, weight=W, **arguments),
                               rtol=1e-12)
    # Ignored samples: as if absent, with a zero gradient row, whatever their logits.
    z = Z.copy()
    z[2] = np.nan
    value, grad = sr.loss_and_grad(z, Y, **arguments)
    np.testing.assert_allclose(value, sr.loss(Z[keep], Y[keep], **arguments), rtol=1e-12)
    np.testing.assert_allclose(grad[keep], sr.loss_and_grad(Z[keep], Y[keep], **arguments)[1], rtol=1e-12)
    assert (grad[2] == 0).all() and (sr.loss(z, Y, reduction="none", **arguments)[2] == 0)


def test_class_probabilities_weight_the_base_term_only():
    """With probabilities every sample counts once (torch's mean over N); weights act on classes."""
    arguments = {"base": "ce", "tau": 0.5, "lam": 1.5}
    value = sr.loss(Z, T, weight=W, reduction="none", **arguments)
    base = sr.loss(Z, T, weight=W, reduction="none", **{**arguments, "lam": 0.0})
    penalty = sr.loss(Z, T, reduction="none", **{**arguments, "lam": 1.0}) - sr.loss(
        Z, T, reduction="none", **{**arguments, "lam": 0.0})
    np.testing.assert_allclose(value, base + 1.5 * penalty, rtol=1e-12)
    np.testing.assert_allclose(sr.loss(Z, T, weight=W, **arguments), value.mean(), rtol=1e-12)


def test_all_ignored_or_zero_weight_gives_zero_not_nan():
    for kwargs in ({"labels": np.full(len(Z), -100)}, {"labels": np.zeros(len(Z), int), "weight": np.r_[0.0, W[1:]]}):
        value, grad = sr.loss_and_grad(Z, kwargs.pop("labels"), **kwargs)
        assert float(value) == 0.0 and (grad == 0).all()


def test_torch_fused_path_and_module_logs_agree_with_the_reference():
    module_options = {"weight": torch.as_tensor(W), "ignore_index": 1}
    values = []
    for fused in (True, False):
        module = SparseRegLoss("nce+rce", tau=0.5, schedule=1.7, fused=fused, **module_options)
        logits = torch.tensor(Z4, requires_grad=True)
        value = module(logits, torch.as_tensor(np.where(Y4 == -100, 1, Y4)))
        value.backward()
        torch.testing.assert_close(module.last_base + module.lam * module.last_penalty, value.detach(),
                                   rtol=1e-12, atol=1e-14)
        values.append((value.detach(), logits.grad))
    torch.testing.assert_close(values[0], values[1], rtol=1e-10, atol=1e-13)
    assert "weight" in SparseRegLoss(weight=torch.ones(3)).state_dict()
    assert SparseRegLoss(weight=torch.ones(3)).to(torch.float32).weight.dtype == torch.float32


def test_signatures_take_the_criterion_parameters_from_one_list():
    for function in (sr.loss, sr.loss_and_grad, SparseRegLoss):
        parameters = inspect.signature(function).parameters
        for parameter in CRITERION_PARAMETERS:
            assert parameters[parameter.name].default == parameter.default
            assert parameters[parameter.name].kind is inspect.Parameter.KEYWORD_ONLY


def test_every_builtin_loss_takes_soft_targets_and_an_undeclared_one_refuses():
    assert all(sr.get_loss(name).soft_targets for name in BUILTIN_LOSSES)

    def dense(log_s, mask, *, xp):
        return xp.sum(xp.exp(log_s) * xp.astype(mask, log_s.dtype), axis=-1) ** 2

    sr.register_loss("test_dense_square", dense, overwrite=True)
    assert float(sr.loss(Z, np.array([0, 1, 2, 3, 0, 1]), base="test_dense_square")) > 0
    for target, kwargs in ((T, {}), (np.array([0, 1, 2, 3, 0, 1]), {"label_smoothing": 0.1})):
        with pytest.raises(ValueError, match=r"soft targets .* not defined for base loss 'test_dense_square'"):
            sr.loss(Z, target, base="test_dense_square", **kwargs)
    sr.register_loss("test_dense_linear", dense, soft_mask=True, overwrite=True)
    assert np.isfinite(float(sr.loss(Z, T, base="test_dense_linear")))


def test_options_on_every_backend(backend, numpy_of):
    """The array-API path (k-dim shapes, take, where) runs on every library and agrees with NumPy."""
    z4, y4, t4 = (backend.asarray(x) for x in (Z4, Y4, T4))
    options = {"base": "focal", "tau": 0.5, "lam": 0.7}
    for target, host, extra, reduction in ((y4, Y4, {"weight": backend.asarray(W)}, "mean"),
                                           (y4, Y4, {"label_smoothing": 0.2}, "none"),
                                           (t4, T4, {"weight": backend.asarray(W)}, "none")):
        value, grad = sr.loss_and_grad(z4, target, reduction=reduction, **options, **extra)
        want_value, want_grad = sr.loss_and_grad(Z4, host, reduction=reduction, **options,
                                                 **{k: W if k == "weight" else v for k, v in extra.items()})
        np.testing.assert_allclose(numpy_of(value), want_value, rtol=1e-10)
        np.testing.assert_allclose(numpy_of(grad), want_grad, rtol=1e-9, atol=1e-13)


def test_under_jax_jit_and_vmap():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    z, y = jnp.asarray(Z), jnp.asarray(np.array([0, 1, -100, 3, 7, 1]))
    values = np.asarray(jax.jit(lambda z, y: sr.loss(z, y, weight=jnp.asarray(W), reduction="none"))(z, y))
    assert values[2] == 0 and np.isnan(values[4]) and np.isfinite(np.delete(values, 4)).all()
    per_example = jax.vmap(lambda row, label: sr.loss(row, label, base="gce"))(z[:2], y[:2])
    np.testing.assert_allclose(np.asarray(per_example), sr.loss(Z[:2], Y[:2], base="gce", reduction="none"),
                               rtol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"weight": np.ones(C + 1)}, ValueError, r"weight must have shape \(C,\) = \(4,\), .* got \(5,\)"),
        ({"weight": np.ones((1, C))}, ValueError, r"weight must be 1-D with shape \(C,\), .* got shape \(1, 4\)"),
        ({"weight": 2.0}, TypeError, r"weight must be None or a 1-D array of per-class weights; got 2.0"),
        ({"weight": np.ones(C, dtype=bool)}, TypeError, r"weight must have a real .* dtype; got bool"),
        ({"weight": np.array([1.0, -1.0, 1.0, 1.0])}, ValueError, r"weight must hold finite values >= 0"),
        ({"weight": np.array([1.0, np.nan, 1.0, 1.0])}, ValueError, r"weight must hold finite values >= 0"),
        ({"label_smoothing": -0.1}, ValueError, r"label_smoothing must lie in \[0, 1\]; got -0.1"),
        ({"label_smoothing": 1.5}, ValueError, r"label_smoothing must lie in \[0, 1\]; got 1.5"),
        ({"label_smoothing": np.float32(2)}, ValueError, r"label_smoothing must lie in \[0, 1\]; got np.float32"),
        ({"label_smoothing": np.array(-1.0)}, ValueError, r"label_smoothing must lie in \[0, 1\]; got array"),
        ({"label_smoothing": "0.1"}, TypeError, r"label_smoothing must be a finite real number in \[0, 1\]; got '0.1'"),
        ({"label_smoothing": True}, TypeError, r"label_smoothing must be a finite real number .* got True"),
        ({"label_smoothing": float("nan")}, TypeError, r"label_smoothing must be a finite real number .* nan"),
        ({"label_smoothing": np.ones(2)}, TypeError, r"label_smoothing must be a finite real number"),
        ({"ignore_index": 1.0}, TypeError, r"ignore_index must be an integer; got 1.0"),
        ({"ignore_index": True}, TypeError, r"ignore_index must be an integer; got True"),
        ({"labels": T, "ignore_index": 3}, ValueError, r"ignore_index=3 cannot be used with class-probability"),
        ({"labels": -T}, ValueError, r"labels given as class probabilities must be >= 0; got a smallest entry"),
        ({"labels": T[:, :3]}, TypeError, r"labels must be an integer array .* or floating-point class "
                                          r"probabilities of the logits' shape \(6, 4\); got dtype float64 and "
                                          r"shape \(6, 3\)"),
        ({"labels": np.array([0, 1, 5, 3, 2, 1])}, ValueError,
         r"labels must lie in \[0, C\) = \[0, 4\) or equal ignore_index=-100; got values from 0 to 5"),
    ],
)
def test_bad_criterion_arguments(kwargs, error, message):
    labels = kwargs.pop("labels", Y)
    for function in (sr.loss, sr.loss_and_grad):
        with pytest.raises(error, match=message):
            function(Z, labels, **kwargs)


def test_bad_tensor_arguments():
    with pytest.raises(ValueError, match=r"label_smoothing must lie in \[0, 1\]; got tensor\(2.\)"):
        sr.loss(torch.tensor(Z), torch.tensor(Y), label_smoothing=torch.tensor(2.0))
    np.testing.assert_allclose(sr.loss(Z, Y, label_smoothing=torch.tensor(0.25)),
                               sr.loss(Z, Y, label_smoothing=0.25), rtol=1e-15)
    with pytest.raises(ValueError, match=r"weight must hold finite values >= 0"):
        SparseRegLoss(weight=torch.tensor([1.0, -2.0]))
    with pytest.raises(sr.errors.BackendMismatchError, match=r"logits is a numpy array but weight is a torch"):
        sr.loss(Z, Y, weight=torch.as_tensor(W))
    with pytest.raises(ValueError, match=r"soft targets .* not defined"):
        sr.register_loss("test_dense_square", lambda log_s, mask, *, xp: xp.sum(log_s, axis=-1), overwrite=True)
        SparseRegLoss("test_dense_square")(torch.tensor(Z), torch.tensor(T))
