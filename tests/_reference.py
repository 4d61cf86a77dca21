"""Independent float64 NumPy reference for every built-in loss, written from the formulas.

Nothing here imports the library's formulas: values are computed on probabilities ``s`` directly,
the way a reader would write them from the paper, and gradients by central finite differences.
"""

from __future__ import annotations

import math

import numpy as np

RCE_SCALE = -math.log(1e-4)


def softmax(u: np.ndarray) -> np.ndarray:
    e = np.exp(u - u.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _focal_all(s: np.ndarray, gamma: float) -> np.ndarray:
    return -((1 - s) ** gamma) * np.log(s)


def base_loss(name: str, s: np.ndarray, y: np.ndarray, params: dict) -> np.ndarray:
    """Per-sample base loss on probabilities ``s`` (N, C)."""
    n, c = s.shape
    a = s[np.arange(n), y]
    onehot = np.eye(c)[y]
    gamma, q = params.get("gamma", 0.5), params.get("q", 0.7)
    alpha, beta = params.get("alpha"), params.get("beta")
    simple = {
        "ce": lambda: -np.log(a),
        "focal": lambda: -((1 - a) ** gamma) * np.log(a),
        "gce": lambda: (1 - a**q) / q,
        "mae": lambda: np.abs(s - onehot).sum(axis=1),
        "mse": lambda: ((s - onehot) ** 2).sum(axis=1),
        "rce": lambda: -(s * np.log(np.clip(onehot, 1e-4, 1))).sum(axis=1),
        "nce": lambda: np.log(a) / np.log(s).sum(axis=1),
        "nfl": lambda: _focal_all(s, gamma)[np.arange(n), y] / _focal_all(s, gamma).sum(axis=1),
        "ngce": lambda: (1 - a**q) / (c - (s**q).sum(axis=1)),
        "nmae": lambda: np.abs(s - onehot).sum(axis=1) / (2 * (c - 1)),
    }
    if name in simple:
        return simple[name]()
    first, second = {"sce": ("ce", "rce")}.get(name, tuple(name.split("+")))
    if name == "sce":
        alpha = 0.1 if alpha is None else alpha
    alpha = 1.0 if alpha is None else alpha
    beta = 1.0 if beta is None else beta
    return alpha * base_loss(first, s, y, params) + beta * base_loss(second, s, y, params)


def objective(
    z: np.ndarray,
    y: np.ndarray,
    *,
    base: str = "ce",
    tau: float = 0.5,
    p: float = 0.1,
    lam: float = 1.0,
    normalize: bool = False,
    clamp: float | None = None,
    **params,
) -> np.ndarray:
    """Per-sample :math:`L(\\sigma_\\tau(z), y) + \\lambda\\sum_k \\sigma_\\tau(z)_k^p`."""
    z = np.asarray(z, dtype=np.float64)
    if normalize:
        z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    s = softmax(z / tau)
    penalty = (np.clip(s, clamp, 1.0) if clamp else s) ** p
    return base_loss(base, s, y, params) + lam * penalty.sum(axis=1)


def objective_grad(z: np.ndarray, y: np.ndarray, step: float = 1e-6, **kwargs) -> np.ndarray:
    """Gradient of the summed objective by central differences (accurate to ~1e-8 here)."""
    z = np.asarray(z, dtype=np.float64)
    grad = np.zeros_like(z)
    for index in np.ndindex(*z.shape):
        plus, minus = z.copy(), z.copy()
        plus[index] += step
        minus[index] -= step
        grad[index] = (objective(plus, y, **kwargs).sum() - objective(minus, y, **kwargs).sum()) / (2 * step)
    return grad
