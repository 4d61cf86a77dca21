"""Standard-only numerical building blocks shared by every formula.

Everything here uses the array API standard alone (no ``xp.logsumexp``, no in-place writes,
``device=`` on every creation), so it runs unchanged on NumPy, CuPy, PyTorch, JAX and
array-api-strict.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from sparse_reg._compat import device_of

Array = Any

#: Row norms below this are clamped, as :func:`torch.nn.functional.normalize` does.
NORM_EPS = 1e-12


def compute_dtype(xp: ModuleType, dtype: Any) -> Any:
    """The dtype the formulas run in: float32 for 16-bit floats, otherwise ``dtype`` itself.

    Half-precision exponentials overflow for logits of a few hundred over ``tau``; computing in
    float32 and casting the gradient back is what autocast does for softmax-type losses.
    """
    return xp.float32 if xp.finfo(dtype).bits < 32 else dtype


def log_softmax(u: Array, xp: ModuleType, axis: int = -1, scale: float = 1.0) -> Array:
    r""":math:`\log\operatorname{softmax}(u/t)` along ``axis`` by the log-sum-exp trick, ``t = scale > 0``.

    .. math:: \log s_k = \frac{u_k - m}{t} - \log\sum_j e^{(u_j - m)/t},\qquad m = \max_j u_j

    The shift comes before the division, so :math:`u/t` is never formed: logits near the dtype's
    largest value, or a temperature far below 1, cannot overflow to ``inf - inf``. A row of only
    ``-inf`` would make :math:`m` infinite; it is shifted by zero instead, giving NaN for that row
    rather than a silent wrong value elsewhere.
    """
    m = xp.max(u, axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, xp.zeros_like(m))
    # A traced scale (jax.jit with tau an argument) cannot be compared: it is always divided by.
    shifted = u - m if isinstance(scale, (int, float)) and scale == 1.0 else (u - m) / scale
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))


def unit_rows(z: Array, xp: ModuleType) -> tuple[Array, Array]:
    r"""Each row divided by its Euclidean norm, and the norm, clamped below at :data:`NORM_EPS`.

    Returns ``(n, norm)`` with :math:`n = z/\max(\lVert z\rVert, \epsilon)` and ``norm`` of shape
    ``(N, 1)``. The norm is taken as :math:`a\sqrt{\sum_k (z_k/a)^2}` with :math:`a = \max_k
    |z_k|`, and :math:`n` from the scaled row, so neither the squares of large logits (above
    :math:`10^{19}` in float32) nor a norm beyond the dtype's range spoil :math:`n`; such a norm
    becomes ``inf``, whose reciprocal (all the backward needs) is the correct limit 0. A row
    holding an infinite or NaN entry has no direction: its ``n`` and ``norm`` are NaN, as on
    every fused path.
    """
    peak = xp.max(xp.abs(z), axis=-1, keepdims=True)
    peak = xp.where(peak > 0, peak, xp.ones_like(peak))
    # Divided by sqrt(peak) twice, not by peak: XLA turns z / peak into z * (1 / peak), and for
    # peaks near the dtype's largest value 1 / peak is subnormal, flushed to 0 on the CPU.
    root = xp.sqrt(peak)
    scaled = (z / root) / root
    length = xp.sqrt(xp.sum(scaled * scaled, axis=-1, keepdims=True))
    norm = xp.maximum(peak * length, NORM_EPS)  # NaN stays NaN: maximum propagates it
    # 1 only where the row is zero (then the clamped branch is taken); a NaN length, from an
    # infinite entry (inf / inf), is kept, so the whole row is NaN.
    safe_length = xp.where(length == 0, xp.ones_like(length), length)
    unit = xp.where(norm <= NORM_EPS, z / NORM_EPS, scaled / safe_length)
    return unit, norm


def normalize_backward(grad_n: Array, n: Array, norm: Array, xp: ModuleType) -> Array:
    r"""Pull a gradient with respect to :math:`n = z/\lVert z\rVert` back to :math:`z`.

    .. math:: \frac{\partial L}{\partial z} = \frac{g - n\,(n\cdot g)}{\lVert z\rVert}

    Where the norm was clamped, :math:`n = z/\epsilon` is linear in :math:`z` and the projection
    term vanishes.
    """
    projected = grad_n - n * xp.sum(n * grad_n, axis=-1, keepdims=True)
    return xp.where(norm > NORM_EPS, projected, grad_n) / norm


def label_mask(labels: Array, num_classes: int, xp: ModuleType) -> Array:
    """Boolean one-hot mask of shape ``(N, C)``, on the labels' device: ``mask[i, k]`` is
    ``labels[i] == k``."""
    # 8- and 16-bit label dtypes cannot hold every class index; compare in 32 bits at least.
    if xp.iinfo(labels.dtype).bits < 32:
        labels = xp.astype(labels, xp.int32)
    classes = xp.arange(num_classes, dtype=labels.dtype, device=device_of(labels))
    return labels[:, None] == classes


def at_label(x: Array, mask: Array, xp: ModuleType) -> Array:
    r"""``x[i, labels[i]]`` for each row, via the mask so ``-inf`` elsewhere never meets a zero.

    A floating-point ``mask`` holds class probabilities :math:`t`; then the result is
    :math:`\sum_k t_k x_k`, linear in :math:`t`, with the classes of probability 0 left out (so an
    infinite :math:`x_k` there does not make it NaN).
    """
    if mask.dtype == xp.bool:
        return xp.sum(xp.where(mask, x, xp.zeros_like(x)), axis=-1)
    return xp.sum(xp.where(mask != 0, mask * x, xp.zeros_like(x)), axis=-1)


def nan_rows(values: Array, valid: Array, xp: ModuleType) -> Array:
    """``values`` (shape ``(N,)`` or ``(N, C)``) with the rows where ``valid`` (shape ``(N,)``) is
    false made NaN, by a factor of 1 or NaN.

    A product, not ``where``: autograd sends no gradient through the branch ``where`` drops, so a
    replaced row would have a NaN value but a finite gradient; the product makes its gradient NaN
    too (and its value NaN even where it was infinite).
    """
    # *_like of valid: the device follows, with no device() query (which torch.compile traces).
    factor = xp.where(valid, xp.ones_like(valid, dtype=values.dtype),
                      xp.full_like(valid, xp.nan, dtype=values.dtype))
    return values * (factor if values.ndim == 1 else factor[:, None])
