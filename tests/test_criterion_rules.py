"""One rule for class weights on every backend and under tracing; NaN value and gradient for what a
traced call cannot check; target gradients as torch's; bfloat16 targets; the module's arguments."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import sparse_reg as sr

torch = pytest.importorskip("torch")
F = torch.nn.functional
from sparse_reg.nn import SparseRegLoss  # noqa: E402  (imports torch)

C = 3
RNG = np.random.default_rng(3)
Z = RNG.normal(size=(5, C)) * 2
Y = np.array([0, 1, 2, 1, 0])
T = RNG.dirichlet(np.ones(C), size=5)
BAD_WEIGHTS = {"negative": [1.0, -1.0, 2.0], "nan": [1.0, np.nan, 2.0], "inf": [1.0, np.inf, 2.0]}
WEIGHT_ERROR = r"weight must hold finite values >= 0 .*torch accepts negative weights"


def _jax():
    jax = pytest.importorskip("jax")
    return jax, jax.numpy


def _backends():
    """(name, to-array) for every backend with readable weights in eager calls."""
    out = [("numpy", np.asarray), ("torch", torch.as_tensor)]
    try:
        import jax.numpy as jnp
    except ImportError:
        return out
    return [*out, ("jax", jnp.asarray)]


@pytest.mark.parametrize("kind", sorted(BAD_WEIGHTS))
@pytest.mark.parametrize("backend", [name for name, _ in _backends()])
def test_bad_class_weights_are_refused_alike_on_every_backend(backend, kind):
    """Negative weights too: torch accepts them, but its mean then divides by a total that can
    be 0 or negative (measured: weight [1, -1, 0] gives mean +3.25 where the sum is -3.25)."""
    convert = dict(_backends())[backend]
    for soft, labels in ((False, Y), (True, T)):
        with pytest.raises(ValueError, match=WEIGHT_ERROR):
            sr.loss(convert(Z), convert(labels), weight=convert(np.array(BAD_WEIGHTS[kind])))
        if not soft:
            with pytest.raises(ValueError, match=WEIGHT_ERROR):
                sr.loss_and_grad(convert(Z), convert(labels), weight=convert(np.array(BAD_WEIGHTS[kind])))


@pytest.mark.parametrize("kind", sorted(BAD_WEIGHTS))
@pytest.mark.parametrize("options", [{}, {"fused": False}, {"label_smoothing": 0.2}, {"soft": True}])
def test_jit_bad_weight_gives_nan_value_and_every_gradient_entry(kind, options):
    jax, jnp = _jax()
    options = dict(options)
    labels = jnp.asarray(T if options.pop("soft", False) else Y)

    def f(z, w):
        return sr.loss(z, labels, weight=w, **options)

    z, w = jnp.asarray(Z), jnp.asarray(BAD_WEIGHTS[kind])
    value, grad = jax.jit(jax.value_and_grad(f))(z, w)
    assert np.isnan(float(value))
    assert np.isnan(np.asarray(grad)).all()
    # A good weight under jit is the eager result.
    good = jnp.asarray([1.0, 2.0, 0.5])
    np.testing.assert_allclose(jax.jit(f)(z, good), f(z, good), rtol=1e-6)


def test_poison_weight_is_nan_everywhere_for_one_bad_entry():
    from sparse_reg.criterion import poison_weight

    xp = sr.backends.array_namespace(torch.empty(0))
    good = torch.tensor([1.0, 0.0, 2.0])
    assert torch.equal(poison_weight(good, xp), good)
    for bad in BAD_WEIGHTS.values():
        assert torch.isnan(poison_weight(torch.tensor(bad), xp)).all()


def test_loss_docstring_states_the_weight_rule_not_torchs():
    entry = sr.loss.__doc__.split("    weight\n", 1)[1].split("    ignore_index\n", 1)[0]
    entry = " ".join(entry.split())
    assert "as torch's" not in entry
    for rule in ("finite and :math:`\\ge 0`", "ValueError", "NaN", "torch.compile", "jax.jit"):
        assert rule in entry, rule


@pytest.mark.parametrize("fused", [True, False])
def test_module_weight_changed_in_place_is_checked_at_call_time(fused):
    criterion = SparseRegLoss(weight=torch.ones(C), fused=fused)
    criterion.weight.fill_(-1)
    with pytest.raises(ValueError, match=WEIGHT_ERROR):
        criterion(torch.as_tensor(Z), torch.as_tensor(Y))
    with pytest.raises(ValueError, match=WEIGHT_ERROR):
        SparseRegLoss(weight=torch.tensor([1.0, -2.0, 1.0]))


def test_compiled_module_with_a_bad_weight_gives_nan_value_and_gradient():
    criterion = SparseRegLoss(weight=torch.ones(C))
    compiled = torch.compile(criterion, backend="aot_eager", fullgraph=True)
    criterion.weight.fill_(-1)  # unread under compilation: folded into the computation
    z = torch.tensor(Z, requires_grad=True)
    value = compiled(z, torch.as_tensor(Y))
    value.backward()
    assert torch.isnan(value) and torch.isnan(z.grad).all()


@pytest.mark.parametrize(
    ("logits", "labels", "name", "kind"),
    [(Z, torch.as_tensor(Y), "logits", "numpy.ndarray"), (torch.as_tensor(Z), [0, 1, 2, 1, 0], "labels", "builtins.list")],
)
def test_module_names_an_argument_that_is_not_a_tensor(logits, labels, name, kind):
    with pytest.raises(TypeError, match=rf"SparseRegLoss expects torch tensors; {name} is a {kind}"):
        SparseRegLoss()(logits, labels)


# --- NaN, not a finite number, for what a traced call cannot check --------------------------------

BAD_LABELS = np.array([0, 7, 2, 1, 0])


def _torch_value_and_grad(fn, z, labels):
    logits = torch.tensor(z, requires_grad=True)
    value = fn(logits, torch.as_tensor(labels))
    value.sum().backward()
    return value.detach(), logits.grad


@pytest.mark.parametrize("options", [{}, {"fused": False}, {"label_smoothing": 0.1}, {"weight": [1.0, 2.0, 0.5]}])
def test_jit_grad_of_an_out_of_range_label_is_nan_in_that_row_only(options):
    jax, jnp = _jax()
    options = {k: jnp.asarray(v) if k == "weight" else v for k, v in options.items()}

    def f(z, y):
        return sr.loss(z, y, reduction="none", **options)

    z, y = jnp.asarray(Z), jnp.asarray(BAD_LABELS)
    grad = np.asarray(jax.jit(jax.grad(lambda a: f(a, y).sum()))(z))
    values = np.asarray(jax.jit(f)(z, y))
    assert np.isnan(values[1]) and np.isnan(grad[1]).all()
    good = np.array([0, 2, 3, 4])
    eager = np.asarray(jax.grad(lambda a: f(a, jnp.asarray(Y[good])).sum())(z[good]))
    np.testing.assert_allclose(grad[good], eager, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(values[good], np.asarray(f(z[good], jnp.asarray(Y[good]))), rtol=1e-6)


@pytest.mark.parametrize("options", [{"fused": False}, {"label_smoothing": 0.1}, {}])
def test_compiled_out_of_range_label_has_nan_gradient_in_its_row(options):
    compiled = torch.compile(lambda a, b: sr.loss(a, b, reduction="sum", **options), backend="aot_eager",
                             fullgraph=True)
    value, grad = _torch_value_and_grad(compiled, Z, BAD_LABELS)
    assert torch.isnan(value) and torch.isnan(grad[1]).all()
    assert torch.isfinite(grad[[0, 2, 3, 4]]).all()


NEGATIVE_TARGETS = np.array([[0.5, -0.2, 0.7], [0.2, 0.3, 0.5]])


def test_traced_negative_probability_targets_give_nan():
    jax, jnp = _jax()
    z, t = jnp.asarray(Z[:2]), jnp.asarray(NEGATIVE_TARGETS)
    values = np.asarray(jax.jit(lambda a, b: sr.loss(a, b, reduction="none"))(z, t))
    grad = np.asarray(jax.jit(jax.grad(lambda a, b: sr.loss(a, b, reduction="sum")))(z, t))
    assert np.isnan(values[0]) and np.isnan(grad[0]).all()
    assert np.isfinite(values[1]) and np.isfinite(grad[1]).all()
    compiled = torch.compile(lambda a, b: sr.loss(a, b, reduction="none"), backend="aot_eager", fullgraph=True)
    value, grad = _torch_value_and_grad(compiled, Z[:2], NEGATIVE_TARGETS)
    assert torch.isnan(value[0]) and torch.isnan(grad[0]).all() and torch.isfinite(grad[1]).all()
    with pytest.raises(ValueError, match="class probabilities must be >= 0"):  # eager: an error
        sr.loss(torch.as_tensor(Z[:2]), torch.as_tensor(NEGATIVE_TARGETS))


# --- probability targets: gradients as torch's --------------------------------------------------


@pytest.mark.parametrize("lam", [0.0, 1.0])
def test_target_gradient_is_finite_but_at_a_class_of_probability_zero(lam):
    """A -inf logit with target 0: torch's target gradient is finite, with inf at that class (its
    value is NaN there, ours the limit); the logits' gradient is finite."""

    def grads(fn):
        z = torch.tensor([[0.0, -float("inf"), 1.0]], dtype=torch.float64, requires_grad=True)
        q = torch.tensor([[0.5, 0.0, 0.5]], dtype=torch.float64, requires_grad=True)
        value = fn(z, q)
        value.backward()
        return value.detach(), z.grad, q.grad

    _, z_ref, q_ref = grads(F.cross_entropy)
    value, z_grad, q_grad = grads(lambda z, q: sr.loss(z, q, tau=1.0, lam=lam))
    assert torch.isfinite(value)
    np.testing.assert_allclose(q_grad.numpy(), q_ref.numpy(), rtol=1e-12)  # [1.31, inf, 0.31]
    assert torch.isinf(q_grad[0, 1]) and torch.isfinite(q_grad[0, [0, 2]]).all()
    assert torch.isfinite(z_grad).all()
    if lam == 0.0:
        np.testing.assert_allclose(z_grad.numpy(), z_ref.numpy(), rtol=1e-12)
        np.testing.assert_allclose(float(value), 0.5 * np.log1p(np.e) + 0.5 * (np.log1p(np.e) - 1), rtol=1e-12)


def test_jax_target_gradient_matches_optax():
    jax, jnp = _jax()
    optax = pytest.importorskip("optax")
    z = jnp.array([[0.0, -jnp.inf, 1.0]])
    q = jnp.array([[0.5, 0.0, 0.5]])
    ours = jax.grad(lambda a, b: sr.loss(a, b, tau=1.0, lam=0.0), argnums=(0, 1))(z, q)
    theirs = jax.grad(lambda a, b: optax.softmax_cross_entropy(a, b).sum(), argnums=(0, 1))(z, q)
    for got, expected in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-6)


@pytest.mark.parametrize("base", ["ce", "focal", "gce", "sce"])
def test_label_only_expectation_matches_autograd_of_the_definition(base):
    """The mass-weighted sum is sum_c m_c L(s, c), value and target gradient, in float64."""
    z = torch.tensor(Z, requires_grad=True)
    t = torch.tensor(T, requires_grad=True)
    value = sr.loss(z, t, base=base, reduction="sum", lam=0.0, tau=0.7)
    value.backward()
    per_class = torch.stack(
        [sr.loss(z.detach(), torch.full((len(Z),), c), base=base, reduction="none", lam=0.0, tau=0.7)
         for c in range(C)], dim=-1)
    np.testing.assert_allclose(float(value.detach()), float((t.detach() * per_class).sum()), rtol=1e-12)
    np.testing.assert_allclose(t.grad.numpy(), per_class.numpy(), rtol=1e-10)


# --- bfloat16 targets, weights under fullgraph compilation ------------------------------------------


def test_bfloat16_probability_targets_are_computed_in_float32():
    logits = torch.tensor(Z, dtype=torch.bfloat16, requires_grad=True)
    targets = torch.tensor(T, dtype=torch.bfloat16)
    value = sr.loss(logits, targets, weight=torch.tensor([1.0, 2.0, 0.5]))
    value.backward()
    reference = logits.detach().float().requires_grad_(True)
    expected = sr.loss(reference, targets.float(), weight=torch.tensor([1.0, 2.0, 0.5]))
    expected.backward()
    assert value.dtype == torch.float32 and logits.grad.dtype == torch.bfloat16
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(logits.grad.float(), reference.grad.to(torch.bfloat16).float())


@pytest.mark.parametrize("options", [{}, {"fused": False}, {"label_smoothing": 0.1}, {"ignore_index": 1}])
def test_fullgraph_compile_with_weight_matches_eager(options):
    def fn(a, b, w):
        return sr.loss(a, b, weight=w, **options)

    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)
    w = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = _torch_value_and_grad(lambda a, b: compiled(a, b, w), Z, Y)
    expected = _torch_value_and_grad(lambda a, b: fn(a, b, w), Z, Y)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e)
    # The weight checks trace no functools cache of array_api_compat (Dynamo warns on each).
    assert not [w for w in caught if "lru_cache" in str(w.message) and "criterion.py" in str(w.message)]
    bad = torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64)
    value, grad = _torch_value_and_grad(lambda a, b: compiled(a, b, bad), Z, Y)
    counted = torch.as_tensor(Y) != options.get("ignore_index", -100)
    assert torch.isnan(value) and torch.isnan(grad[counted]).all()
    assert (grad[~counted] == 0).all()  # an ignored sample's gradient is 0, whatever the weights
