"""Command-line noise specifications such as ``"sym:0.4"``."""

from __future__ import annotations

import re

import numpy as np

from ._result import NoisyLabels, make_result
from ._validate import check_labels, check_seed
from .asymmetric import asymmetric
from .instance import instance_dependent
from .symmetric import pairflip, symmetric

__all__ = ["SPEC_FORMS", "apply"]

#: The accepted specification forms, as shown in error messages.
SPEC_FORMS: tuple[str, ...] = (
    "none",
    "sym:RATE",
    "symany:RATE",
    "asym:RATE",
    "pairflip:RATE",
    "instance:RATE",
)

# Dataset name -> asymmetric preset (and whether the official sequential procedure is used).
_ASYM_PRESETS: dict[str, tuple[str, bool]] = {
    "digits": ("mnist", False),
    "mnist": ("mnist", False),
    "fashion-mnist": ("fashion-mnist", False),
    "cifar10": ("cifar10", True),
    "cifar100": ("cifar100", False),
}

_SPEC = re.compile(r"^(?P<kind>[a-z]+):(?P<rate>[^:]+)$")


def _base_dataset(dataset: str) -> str:
    """Strip a long-tailed suffix: ``"cifar10-lt-exp-0.01"`` -> ``"cifar10"``."""
    return re.split(r"[-_]lt(?:[-_]|$)", dataset.strip().lower(), maxsplit=1)[0]


def apply(
    spec: str,
    labels: np.ndarray,
    num_classes: int,
    *,
    dataset: str | None = None,
    seed: int,
    features: np.ndarray | None = None,
) -> NoisyLabels:
    """Apply a noise specification string.

    ==================  =====================================================================
    spec                meaning
    ==================  =====================================================================
    ``none``            clean labels (identity transition)
    ``sym:RATE``        :func:`symmetric`, uniform-other, exact counts (official CIFAR code)
    ``symany:RATE``     :func:`symmetric`, uniform-any, exact selection counts
    ``asym:RATE``       :func:`asymmetric` with the preset of ``dataset``: ``digits`` and
                        ``mnist`` -> ``"mnist"``; ``fashion-mnist`` -> ``"fashion-mnist"``;
                        ``cifar10`` -> ``"cifar10"`` with ``paper_compatible=True`` (the
                        sequential flips behind published numbers); ``cifar100`` ->
                        ``"cifar100"`` (consecutive blocks). Long-tailed variants (a ``-lt...``
                        suffix) use their base dataset's preset. Exact counts otherwise.
    ``pairflip:RATE``   :func:`pairflip`, exact counts
    ``instance:RATE``   :func:`instance_dependent`; needs ``features``
    ==================  =====================================================================

    Parameters
    ----------
    spec : str
        One of the forms above; ``RATE`` is a float in ``[0, 1)``.
    labels : array_like of int
        Clean labels.
    num_classes : int
        Number of classes.
    dataset : str, optional
        Dataset name, required by ``asym``.
    seed : int
        Seed of the ``numpy.random.default_rng`` stream.
    features : array_like, optional
        Per-sample features, required by ``instance``.

    Returns
    -------
    NoisyLabels
    """
    if not isinstance(spec, str):
        raise TypeError(f"spec must be a str, got {type(spec).__name__}")
    text = spec.strip().lower()
    if text == "none":
        clean, num_classes = check_labels(labels, num_classes)
        return make_result(clean, clean, np.eye(num_classes), check_seed(seed), "none")
    match = _SPEC.match(text)
    kind = match["kind"] if match else None
    if kind not in {"sym", "symany", "asym", "pairflip", "instance"}:
        raise ValueError(f"unknown noise spec {spec!r}; valid forms: {', '.join(SPEC_FORMS)}")
    try:
        rate = float(match["rate"])  # type: ignore[index]
    except ValueError:
        raise ValueError(
            f"noise spec {spec!r} has no numeric rate; valid forms: {', '.join(SPEC_FORMS)}"
        ) from None
    if kind == "sym":
        return symmetric(labels, rate, num_classes, seed=seed, target="other")
    if kind == "symany":
        return symmetric(labels, rate, num_classes, seed=seed, target="any")
    if kind == "pairflip":
        return pairflip(labels, rate, num_classes, seed=seed)
    if kind == "instance":
        if features is None:
            raise ValueError(f"noise spec {spec!r} needs features (one row per label)")
        return instance_dependent(labels, features, rate, num_classes, seed=seed)
    if dataset is None:
        raise ValueError(f"noise spec {spec!r} needs dataset to choose the asymmetric preset")
    base = _base_dataset(dataset)
    if base not in _ASYM_PRESETS:
        raise ValueError(
            f"no asymmetric preset for dataset {dataset!r}; known datasets: {sorted(_ASYM_PRESETS)}"
        )
    preset, paper_compatible = _ASYM_PRESETS[base]
    result = asymmetric(labels, rate, preset=preset, seed=seed, paper_compatible=paper_compatible)
    if result.num_classes != num_classes:
        raise ValueError(
            f"num_classes={num_classes} does not match the {preset!r} preset "
            f"({result.num_classes} classes)"
        )
    return result
