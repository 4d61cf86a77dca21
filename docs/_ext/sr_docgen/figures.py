"""Figures drawn at build time from the library's own functions (no formula is re-implemented)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import sparse_reg as sr
from sparse_reg.losses import BUILTIN_LOSSES

#: Classes used for the loss curves; the non-label mass is spread evenly over the others.
CURVE_CLASSES = 10

#: Penalty exponents shown on the simplex.
SIMPLEX_EXPONENTS = (0.1, 0.5)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _simplex_grid(resolution: int) -> np.ndarray:
    """Barycentric points of the 2-simplex on a triangular grid, interior and boundary."""
    i, j = np.meshgrid(np.arange(resolution + 1), np.arange(resolution + 1), indexing="ij")
    keep = i + j <= resolution
    a, b = i[keep] / resolution, j[keep] / resolution
    return np.stack([a, b, 1.0 - a - b], axis=-1)


def penalty_on_simplex(path: Path, resolution: int = 120) -> None:
    r"""Ternary heatmap of :math:`\sum_k s_k^p` over the 3-class simplex, one panel per ``p``."""
    plt = _pyplot()
    points = np.clip(_simplex_grid(resolution), 0.0, 1.0)
    # Barycentric -> Cartesian, corners at e_1 (bottom left), e_2 (bottom right), e_3 (top).
    x = points[:, 1] + 0.5 * points[:, 2]
    y = points[:, 2] * np.sqrt(3) / 2
    fig, axes = plt.subplots(1, len(SIMPLEX_EXPONENTS), figsize=(4.8 * len(SIMPLEX_EXPONENTS), 4.2))
    for ax, p in zip(np.atleast_1d(axes), SIMPLEX_EXPONENTS, strict=True):
        values = np.asarray(sr.lp_penalty(points, p=p))
        mesh = ax.tricontourf(x, y, values, levels=24, cmap="viridis")
        ax.tricontour(x, y, values, levels=8, colors="white", linewidths=0.4)
        ax.plot([0, 1, 0.5, 0], [0, 0, np.sqrt(3) / 2, 0], color="black", linewidth=0.8)
        for (cx, cy), label in zip([(0, 0), (1, 0), (0.5, np.sqrt(3) / 2)], ["$e_1$", "$e_2$", "$e_3$"],
                                   strict=True):
            ax.annotate(label, (cx, cy), textcoords="offset points", ha="center",
                        xytext=(0, 6 if cy > 0 else -14))
        ax.set_title(rf"$p = {p}$: 1 at the corners, {3 ** (1 - p):.2f} at the centre",
                     fontsize=10, pad=22)
        ax.set_aspect("equal")
        ax.axis("off")
        fig.colorbar(mesh, ax=ax, shrink=0.8)
    fig.suptitle(r"$\sum_k s_k^p$ over the 3-class simplex", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _curve_inputs(s_y: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose softmax (at tau = 1) puts ``s_y`` on class 0 and the rest evenly elsewhere."""
    rest = (1.0 - s_y) / (num_classes - 1)
    probs = np.concatenate([s_y[:, None], np.repeat(rest[:, None], num_classes - 1, axis=1)], axis=1)
    return np.log(probs), np.zeros(s_y.shape[0], dtype=np.int64)


def _loss_groups() -> list[tuple[str, list[str]]]:
    normalised = [name for name in BUILTIN_LOSSES if name.startswith("n") or "+" in name]
    plain = [name for name in BUILTIN_LOSSES if name not in normalised]
    return [("plain losses", plain), ("normalised and active-passive losses", normalised)]


def base_losses_against_s_y(path: Path, points: int = 400) -> None:
    r"""Each built-in base loss and :math:`\partial L/\partial z_y` against :math:`s_y`.

    Evaluated with :func:`sparse_reg.loss_and_grad` at :math:`\tau = 1`, :math:`\lambda = 0`, so
    the curves are the base losses themselves, with their default parameters.
    """
    plt = _pyplot()
    s_y = np.linspace(0.005, 0.995, points)
    logits, labels = _curve_inputs(s_y, CURVE_CLASSES)
    groups = _loss_groups()
    fig, axes = plt.subplots(len(groups), 2, figsize=(10, 4.0 * len(groups)), squeeze=False)
    for row, (title, names) in zip(axes, groups, strict=True):
        for name in names:
            value, grad = sr.loss_and_grad(logits, labels, base=name, tau=1.0, lam=0.0, reduction="none")
            row[0].plot(s_y, value, label=name)
            row[1].plot(s_y, grad[:, 0], label=name)
        row[0].set_title(f"{title}: value $L(s, y)$", fontsize=10)
        row[1].set_title(rf"{title}: gradient $\partial L/\partial z_y$", fontsize=10)
        for ax in row:
            ax.set_xlabel(f"$s_y$ ({CURVE_CLASSES} classes, the rest spread evenly)")
            ax.grid(alpha=0.3)
        row[1].legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def penalty_against_lambda(path: Path, points: int = 400) -> None:
    r"""The CE+SR gradient on the label's logit against :math:`s_y`, for several :math:`\lambda`.

    Shows what the schedule does: the penalty's gradient adds to CE's pull on :math:`z_y` while
    :math:`s_y` is the largest entry and opposes it while :math:`s_y` is small, so a confidently
    wrong (noisy) label gets less pull as :math:`\lambda` grows.
    """
    plt = _pyplot()
    s_y = np.linspace(0.005, 0.995, points)
    logits, labels = _curve_inputs(s_y, CURVE_CLASSES)
    fig, ax = plt.subplots(figsize=(6, 4))
    for lam in (0.0, 1.0, 4.0, 16.0):
        _, grad = sr.loss_and_grad(logits, labels, base="ce", tau=1.0, p=0.1, lam=lam, reduction="none")
        ax.plot(s_y, grad[:, 0], label=rf"$\lambda = {lam:g}$")
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.axvline(1.0 / CURVE_CLASSES, color="grey", linestyle=":", linewidth=0.8)
    ax.set_xlabel(f"$s_y$ ({CURVE_CLASSES} classes, the rest spread evenly)")
    ax.set_ylabel(r"$\partial(\mathrm{CE} + \lambda\sum_k s_k^{0.1})/\partial z_y$")
    ax.set_title(r"CE+SR gradient on the label's logit ($\tau = 1$, $p = 0.1$)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


#: File name -> function drawing it.
FIGURES = {
    "penalty_simplex.png": penalty_on_simplex,
    "base_losses.png": base_losses_against_s_y,
    "sr_gradient_lambda.png": penalty_against_lambda,
}


def draw_all(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, draw in FIGURES.items():
        draw(directory / name)
