r"""The permutation set :math:`\mathcal P_v = \{\Pi v\}`: hard and soft projection onto it.

The robustness theorem holds for outputs restricted to :math:`\mathcal P_v`; sparse regularization
approximates the one-hot case. These functions make the constraint itself available: an exact
projection for evaluation and analysis, and a differentiable SoftSort relaxation for training with a
non-one-hot :math:`v`.

In all three, ``v`` is an array, and may be a NumPy array whatever the library of the first
argument; it follows that array to its library and device. A list or tuple is refused with
:class:`TypeError`: arguments are arrays, never converted silently. Arrays of two device libraries
are refused with :class:`~sparse_reg.errors.BackendMismatchError`, as in :func:`sparse_reg.loss`.
The two dtypes are promoted as the array API does, and an integer array takes the other's floating
dtype; :func:`soft_project` computes in floating point.
"""

from __future__ import annotations

from typing import Any

from sparse_reg._compat import array_namespace, device, is_array_api_obj, library_of
from sparse_reg._numerics import Array, log_softmax
from sparse_reg.errors import BackendMismatchError
from sparse_reg.regularizer import check_tau

__all__ = ["is_permutation_of", "project", "soft_project"]


def _promoted(xp: Any, first: Any, second: Any) -> Any:
    """The array API's promotion of two dtypes; where it leaves integer with floating undefined,
    the floating one, as for a Python integer combined with a floating array."""
    first_float, second_float = xp.isdtype(first, "real floating"), xp.isdtype(second, "real floating")
    if first_float != second_float:
        return first if first_float else second
    return xp.result_type(first, second)


def _common(outputs: Array, v: Array, name: str, *, floating: bool) -> tuple[Any, Array, Array]:
    """``(xp, outputs, v)`` in one namespace and one dtype, promoted as the array API does.

    ``v`` may be a NumPy array whatever ``outputs`` is (it follows ``outputs`` to its library and
    device); another device library is refused, as :func:`sparse_reg.loss` refuses it, and so is
    anything but an array. With ``floating``, integer input is promoted to the default floating
    dtype first.
    """
    for argument, value in ((name, outputs), ("v", v)):
        if not is_array_api_obj(value):
            raise TypeError(
                f"{argument} must be an array (NumPy, CuPy, PyTorch, JAX or any array-API library); "
                f"got {type(value).__name__} {value!r}"
            )
    xp = array_namespace(outputs)
    have, given = library_of(outputs), library_of(v)
    if given != have:
        if given != "numpy":
            raise BackendMismatchError.mixed(name, have, "v", given)
        v = xp.asarray(v, device=device(outputs))
    if v.ndim != 1 or v.shape[0] != outputs.shape[-1]:
        raise ValueError(
            f"v must be 1-D with one entry per class ({outputs.shape[-1]}); got shape {tuple(v.shape)}"
        )
    dtype = _promoted(xp, outputs.dtype, v.dtype)
    if floating and not xp.isdtype(dtype, "real floating"):
        info = xp.__array_namespace_info__()
        dtype = info.default_dtypes(device=device(outputs))["real floating"]
    return xp, xp.astype(outputs, dtype), xp.astype(v, dtype)


def project(outputs: Array, v: Array) -> Array:
    r"""Nearest permutation of ``v`` to each row: the Euclidean projection onto :math:`\mathcal P_v`.

    By the rearrangement inequality the minimiser of :math:`\lVert x - \Pi v\rVert_2` gives the
    :math:`r`-th smallest entry of :math:`v` to the :math:`r`-th smallest entry of :math:`x`.

    Parameters
    ----------
    outputs
        Array of shape ``(..., C)`` (scores, logits or probabilities).
    v
        The fixed vector, shape ``(C,)``.

    Returns
    -------
    Array
        Same shape as ``outputs``; each row is a permutation of ``v``.

    Notes
    -----
    Ties are broken deterministically on every backend: among equal entries, the one with the
    lower index receives the smaller entry of ``v`` (stable sorting).

    Examples
    --------
    >>> import numpy as np
    >>> from sparse_reg import project
    >>> project(np.array([[0.1, 0.7, 0.2]]), np.array([1.0, 0.0, 0.0]))
    array([[0., 1., 0.]])
    """
    xp, outputs, v = _common(outputs, v, "outputs", floating=False)
    ranks = xp.argsort(xp.argsort(outputs, axis=-1, stable=True), axis=-1, stable=True)
    ascending = xp.broadcast_to(xp.sort(v), outputs.shape)
    return xp.take_along_axis(ascending, ranks, axis=-1)


def is_permutation_of(outputs: Array, v: Array, *, atol: float = 1e-6) -> Array:
    """Whether each row of ``outputs`` is a permutation of ``v`` (entrywise within ``atol``).

    Returns
    -------
    Array
        Boolean, shape ``outputs.shape[:-1]``.

    Examples
    --------
    >>> import numpy as np
    >>> from sparse_reg import is_permutation_of
    >>> is_permutation_of(np.array([[0.0, 1.0], [0.5, 0.5]]), np.array([1.0, 0.0]))
    array([ True, False])
    """
    xp, outputs, v = _common(outputs, v, "outputs", floating=False)
    gap = xp.abs(xp.sort(outputs, axis=-1) - xp.sort(v))
    return xp.all(gap <= atol, axis=-1)


def soft_project(
    logits: Array, v: Array, tau: float = 0.1, *, sinkhorn_iterations: int = 0
) -> Array:
    r"""Differentiable relaxation of :func:`project` by SoftSort (Prillo & Eisenschlos, 2020).

    .. math::
       \hat P = \operatorname{softmax}_\text{rows}\!\Bigl(
           -\bigl|\operatorname{sort}_\downarrow(z)\,\mathbf 1^\top - \mathbf 1\, z^\top\bigr|/\tau
       \Bigr),\qquad \text{output} = \hat P^\top v_\downarrow

    Row :math:`r` of :math:`\hat P` softly selects the class with the :math:`r`-th largest logit,
    so the class ranked :math:`r` receives about the :math:`r`-th largest entry of :math:`v`. As
    :math:`\tau \to 0` the output tends to the element of :math:`\mathcal P_v` with the logits'
    ranking; with :math:`v = e_1` it is a soft argmax.

    Parameters
    ----------
    logits
        Array of shape ``(N, C)``.
    v
        The fixed vector, shape ``(C,)``, typically a point of the simplex.
    tau
        Relaxation temperature > 0.
    sinkhorn_iterations
        Number of Sinkhorn normalisations (columns, then rows, in the log domain) that push
        :math:`\hat P` towards a doubly stochastic matrix, so that the output lies (nearly) in the
        permutohedron :math:`\operatorname{conv}\mathcal P_v`, i.e. is majorised by :math:`v`.
        Rows are normalised last, so the output always sums to :math:`\sum_k v_k`.

    Returns
    -------
    Array
        Shape ``(N, C)``; non-negative rows summing to :math:`\sum_k v_k` when :math:`v \ge 0`.

    Raises
    ------
    ValueError
        ``logits`` is not 2-D, or ``v`` is not 1-D with ``C`` entries.
    TypeError
        ``logits`` or ``v`` is not an array (a list, a tuple).
    """
    tau = check_tau(tau)
    if isinstance(sinkhorn_iterations, bool) or not isinstance(sinkhorn_iterations, int):
        raise TypeError(f"sinkhorn_iterations must be an int >= 0; got {sinkhorn_iterations!r}")
    if sinkhorn_iterations < 0:
        raise ValueError(f"sinkhorn_iterations must be >= 0; got {sinkhorn_iterations}")
    if getattr(logits, "ndim", None) != 2:
        raise ValueError(
            f"logits must have shape (N, C); got shape {tuple(getattr(logits, 'shape', ()))}"
        )
    xp, logits, v = _common(logits, v, "logits", floating=True)
    ordered = xp.sort(logits, axis=-1, descending=True)
    log_p = log_softmax(-xp.abs(ordered[:, :, None] - logits[:, None, :]) / tau, xp, axis=-1)
    for _ in range(sinkhorn_iterations):
        log_p = log_softmax(log_softmax(log_p, xp, axis=-2), xp, axis=-1)
    return xp.sum(xp.exp(log_p) * xp.sort(v, descending=True)[:, None], axis=-2)
