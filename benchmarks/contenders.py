"""The contenders of the loss benchmark, each a forward plus backward pass on the same inputs.

A clean-room re-implementation of the official formulation (Zhou et al., ICCV 2021, CIFAR path):
``F.normalize -> CE(z/tau) + lam * mean(sum(clamp(softmax(z/tau), 1e-7, 1) ** p))``, written from the
formula, and the library's fused paths on the same objective. Every contender returns the gradient
with respect to the logits, so :func:`check` can compare it with a float64 reference first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import sparse_reg as sr
from sparse_reg.backends import _cpu_kernel as cpu_kernel

#: The paper's CIFAR-10 setting: CE + SR with the official code's normalisation and clamp.
SETTING = dict(base="ce", tau=0.5, p=0.1, lam=1.2, normalize=True, clamp=1e-7)
CLAMP = 1e-7


@dataclass(frozen=True)
class Contender:
    """A named benchmark participant: ``make(inputs)`` returns a zero-argument step function."""

    key: str
    label: str
    make: Callable[[Inputs], Callable[[], Any]]
    dtypes: tuple[str, ...] = ("float32", "bfloat16")


@dataclass
class Inputs:
    """One input set: torch logits (leaf requiring grad), labels, and NumPy float32 copies."""

    logits: Any
    labels: Any
    logits_np: np.ndarray | None
    labels_np: np.ndarray
    dtype: str


def make_inputs(num_rows: int, num_classes: int, dtype: str, seed: int) -> Inputs:
    """Fresh random logits of scale 3 (never zeros: timing on zeros flatters some kernels)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    logits = (3 * torch.randn(num_rows, num_classes, generator=gen)).to(getattr(torch, dtype))
    labels = torch.randint(0, num_classes, (num_rows,), generator=gen)
    logits_np = logits.numpy() if dtype != "bfloat16" else None
    return Inputs(logits.requires_grad_(True), labels, logits_np, labels.numpy(), dtype)


# --- A, B, C, D: torch -----------------------------------------------------------------------------


def official_loss(z: Any, y: Any, tau: float = 0.5, p: float = 0.1, lam: float = 1.2) -> Any:
    """The official formulation as a chain of framework ops (clean-room, from the formula)."""
    import torch.nn.functional as F

    z = F.normalize(z, dim=1)
    u = z / tau
    ce = F.cross_entropy(u, y)
    penalty = F.softmax(u, dim=1).clamp(min=CLAMP, max=1.0).pow(p).sum(dim=1).mean()
    return ce + lam * penalty


def _backward_step(loss_fn: Callable[[Any, Any], Any], inputs: Inputs) -> Callable[[], Any]:
    z, y = inputs.logits, inputs.labels

    def step() -> Any:
        z.grad = None
        loss_fn(z, y).backward()
        return z.grad

    return step


def make_official(inputs: Inputs) -> Callable[[], Any]:
    return _backward_step(official_loss, inputs)


_COMPILED: dict[str, Any] = {}


def make_compiled(inputs: Inputs) -> Callable[[], Any]:
    import torch

    # One compiled function per dtype; shapes change between rows of the table, so allow the
    # recompiles (after the first, Dynamo marks the sizes dynamic and reuses one graph).
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    compiled = _COMPILED.setdefault(inputs.dtype, torch.compile(official_loss))
    return _backward_step(compiled, inputs)


def make_cross_entropy(inputs: Inputs) -> Callable[[], Any]:
    import torch.nn.functional as F

    return _backward_step(F.cross_entropy, inputs)


def make_ours_torch(inputs: Inputs) -> Callable[[], Any]:
    return _backward_step(lambda z, y: sr.loss(z, y, **SETTING), inputs)


def make_ours_module(inputs: Inputs) -> Callable[[], Any]:
    """Ours as a training loop uses it: a :class:`sparse_reg.nn.SparseRegLoss` built once."""
    from sparse_reg.nn import SparseRegLoss

    setting = {key: value for key, value in SETTING.items() if key not in ("base", "lam")}
    criterion = SparseRegLoss(SETTING["base"], schedule=SETTING["lam"], **setting)
    return _backward_step(criterion, inputs)


def make_copy_torch(inputs: Inputs) -> Callable[[], Any]:
    """The floor: read the logits and write a gradient of the same size, once (torch's threads)."""
    src = inputs.logits.detach()
    dst = src.clone()

    def step() -> Any:
        return dst.copy_(src)

    return step


# --- E: CuPy ---------------------------------------------------------------------------------------


def make_ours_cupy(inputs: Inputs) -> Callable[[], Any]:
    import cupy

    z = cupy.from_dlpack(inputs.logits.detach().float().cuda())
    y = cupy.asarray(inputs.labels_np)

    def step() -> Any:
        grad = sr.loss_and_grad(z, y, **SETTING)[1]
        cupy.cuda.get_current_stream().synchronize()
        return grad

    return step


# --- F, G: NumPy ------------------------------------------------------------------------------------


def naive_numpy_value_and_grad(
    z: np.ndarray, y: np.ndarray, tau: float = 0.5, p: float = 0.1, lam: float = 1.2
) -> tuple[float, np.ndarray]:
    """A straight NumPy port of the official formulation and of the backward autograd would run."""
    n_rows = z.shape[0]
    rows = np.arange(n_rows)
    # forward
    norm = np.maximum(np.sqrt(np.sum(z**2, axis=1, keepdims=True)), 1e-12)
    unit = z / norm
    u = unit / tau
    shifted = u - np.max(u, axis=1, keepdims=True)
    log_s = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    ce = -np.mean(log_s[rows, y])
    e = np.exp(u - np.max(u, axis=1, keepdims=True))
    s = e / np.sum(e, axis=1, keepdims=True)
    clipped = np.clip(s, CLAMP, 1.0)
    powered = clipped**p
    value = ce + lam * np.mean(np.sum(powered, axis=1))
    # backward, op by op
    d_powered = np.full_like(powered, lam / n_rows)
    d_clipped = d_powered * p * clipped ** (p - 1)
    d_s = d_clipped * ((s >= CLAMP) & (s <= 1.0))
    d_u = s * (d_s - np.sum(d_s * s, axis=1, keepdims=True))
    one_hot = np.zeros_like(s)
    one_hot[rows, y] = 1.0
    d_u = d_u + (np.exp(log_s) - one_hot) / n_rows
    d_unit = d_u / tau
    d_z = (d_unit - unit * np.sum(unit * d_unit, axis=1, keepdims=True)) / norm
    return float(value), d_z


def make_naive_numpy(inputs: Inputs) -> Callable[[], Any]:
    z, y = inputs.logits_np, inputs.labels_np
    return lambda: naive_numpy_value_and_grad(z, y)[1]


def make_ours_numpy(inputs: Inputs) -> Callable[[], Any]:
    """Ours on NumPy without the compiled kernel: the row-blocked NumPy fallback."""
    z, y = inputs.logits_np, inputs.labels_np

    def step() -> Any:
        with cpu_kernel.disabled():
            return sr.loss_and_grad(z, y, **SETTING)[1]

    return step


# --- K: the compiled CPU kernel ----------------------------------------------------------------------


def make_kernel_numpy(inputs: Inputs) -> Callable[[], Any]:
    """Ours on NumPy with the compiled kernel (the ``fast`` extra), as ``sr.loss_and_grad`` runs it."""
    if not cpu_kernel.available():
        raise RuntimeError("the compiled CPU kernel needs numba: pip install 'sparse_reg[fast]'")
    z, y = inputs.logits_np, inputs.labels_np
    return lambda: sr.loss_and_grad(z, y, **SETTING)[1]


def make_kernel_exact(inputs: Inputs) -> Callable[[], Any]:
    """The kernel in exact mode (no clamp): the clamp's cost is K over K-exact."""
    if not cpu_kernel.available():
        raise RuntimeError("the compiled CPU kernel needs numba: pip install 'sparse_reg[fast]'")
    z, y = inputs.logits_np, inputs.labels_np
    exact = {**SETTING, "clamp": None}
    return lambda: sr.loss_and_grad(z, y, **exact)[1]


def make_copy_numpy(inputs: Inputs) -> Callable[[], Any]:
    """The single-threaded floor: ``np.copyto`` of the same bytes."""
    src = inputs.logits_np
    dst = np.empty_like(src)

    def step() -> Any:
        np.copyto(dst, src)
        return dst

    return step


CONTENDERS: tuple[Contender, ...] = (
    Contender("A", "official, eager torch", make_official),
    Contender("B", "official, torch.compile", make_compiled),
    Contender("C", "F.cross_entropy alone (no SR)", make_cross_entropy),
    Contender("D", "ours, torch fused: sr.loss(...).backward()", make_ours_torch),
    Contender("D-nn", "ours, torch fused: sparse_reg.nn.SparseRegLoss module", make_ours_module),
    Contender("E", "ours, CuPy kernel", make_ours_cupy, ("float32",)),
    Contender("F-naive", "official, naive NumPy", make_naive_numpy, ("float32",)),
    Contender("F-ours", "ours, NumPy fused (fallback, kernel off)", make_ours_numpy, ("float32",)),
    Contender("K", "ours, compiled CPU kernel on NumPy arrays", make_kernel_numpy, ("float32",)),
    Contender("K-exact", "ours, compiled CPU kernel, exact mode (clamp=None)", make_kernel_exact,
              ("float32",)),
    Contender("G-torch", "floor: torch copy of the bytes", make_copy_torch),
    Contender("G-numpy", "floor: np.copyto of the bytes", make_copy_numpy, ("float32",)),
)

#: Contenders that compute a gradient (the floors only move bytes).
GRADIENT_KEYS = ("A", "B", "C", "D", "D-nn", "E", "F-naive", "F-ours", "K")


def reference_grad(inputs: Inputs) -> np.ndarray:
    """The official objective's gradient in float64, by autograd (the accuracy yardstick)."""

    z = inputs.logits.detach().double().requires_grad_(True)
    official_loss(z, inputs.labels).backward()
    return z.grad.cpu().numpy()


def relative_error(grad: Any, reference: np.ndarray) -> float:
    """``||grad - reference|| / ||reference||`` for a torch, CuPy or NumPy gradient."""
    if hasattr(grad, "detach"):
        grad = grad.detach().cpu().double().numpy()
    elif hasattr(grad, "get"):
        grad = grad.get()
    grad = np.asarray(grad, dtype=np.float64)
    return float(np.linalg.norm(grad - reference) / np.linalg.norm(reference))
