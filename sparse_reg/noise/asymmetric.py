"""Asymmetric (class-conditional) noise between look-alike classes."""

from __future__ import annotations

import numpy as np

from ._core import class_conditional
from ._result import NoisyLabels, make_result
from ._sampling import flip_matrix
from ._validate import check_labels, check_rate, check_seed
from .presets import PRESETS, Preset

__all__ = ["asymmetric"]


def asymmetric(
    labels: np.ndarray,
    rate: float,
    *,
    preset: str,
    seed: int,
    paper_compatible: bool = False,
    exact: bool | None = None,
) -> NoisyLabels:
    """Asymmetric noise: each source class of a preset flips to its target with rate ``rate``.

    Presets (``source -> target``; other classes never flip):

    ``"mnist"``
        7 -> 1, 2 -> 7, 5 <-> 6, 3 -> 8 (the official MNIST code).
    ``"cifar10"``
        truck -> automobile (9 -> 1), bird -> airplane (2 -> 0), deer -> horse (4 -> 7),
        cat <-> dog (3 <-> 5).
    ``"cifar100"``
        The official code's grouping: 20 blocks of 5 *consecutive* fine indices, ``i -> i + 1``
        within a block, the last wrapping to the first. Because the fine labels are alphabetical
        these blocks are not the semantic superclasses (e.g. apple, aquarium_fish, baby, bear,
        beaver form one block).
    ``"cifar100-superclass"``
        The true 20 CIFAR-100 superclasses (see ``presets.CIFAR100_FINE_TO_COARSE``): each fine
        class flips to the next fine index of its superclass, the last wrapping to the first.
    ``"fashion-mnist"``
        T-shirt/top <-> Shirt (0 <-> 6), Pullover <-> Coat (2 <-> 4), Sneaker <-> Ankle boot
        (7 <-> 9). These are the pairs most often confused by classifiers on Fashion-MNIST (tops,
        long-sleeved upper garments, closed shoes). Swapping pairs keeps every noisy class
        dominated by its clean members for any ``rate < 0.5``, unlike a many-to-one map.

    Parameters
    ----------
    labels : array_like of int
        Clean labels, 1-D, in ``[0, C)`` where ``C`` is the preset's number of classes.
    rate : float
        Flip rate of each source class, in ``[0, 1)``.
    preset : str
        One of the names above.
    seed : int
        Seed of the ``numpy.random.default_rng`` stream.
    paper_compatible : bool
        Reproduce the official code's procedure: per-label transition-matrix sampling for
        ``"mnist"`` and ``"cifar100"``; for ``"cifar10"`` the **sequential** flips 9 -> 1,
        2 -> 0, 3 -> 5, 5 -> 3, 4 -> 7, each step flipping exactly ``floor(rate * m)`` of the
        ``m`` samples that *currently* carry the source label. The 5 -> 3 step therefore also
        draws cats that were just relabelled dog and flips them back: the expected cat noise is
        ``rate - rate**2``, the dog noise ``rate``, and the overall rate ``(5 rate - rate**2) / 10``
        (0.184 at ``rate=0.4`` on balanced labels, not 0.2). ``transition`` then holds this
        expected (large-sample) matrix, ``T[3, 5] = rate (1 - rate)`` and ``T[5, 3] = rate``.
        Presets without official code raise ``ValueError``.
    exact : bool, optional
        Without ``paper_compatible``: ``True`` (default) flips exactly ``floor(rate * n_c)``
        samples of every source class, simultaneously; ``False`` flips each label independently
        with probability ``rate``. Must be left unset with ``paper_compatible=True``, which fixes
        the procedure.

    Returns
    -------
    NoisyLabels
    """
    spec = _get_preset(preset)
    clean, _ = check_labels(labels, spec.num_classes)
    rate = check_rate(rate)
    seed = check_seed(seed)
    if paper_compatible:
        if exact is not None:
            raise ValueError("exact must be left unset when paper_compatible=True")
        if spec.official is None:
            official = sorted(k for k, p in PRESETS.items() if p.official is not None)
            raise ValueError(
                f"preset {preset!r} has no official implementation to be compatible with; "
                f"paper_compatible=True is available for {official}"
            )
        if spec.official == "sequential":
            return _sequential(clean, rate, spec, seed)
        exact = False
    elif exact is None:
        exact = True
    flip_rate, destination = _flip_arrays(spec, rate)
    suffix = ", paper-compatible" if paper_compatible else ""
    return class_conditional(
        clean,
        flip_rate,
        destination,
        exact=exact,
        seed=seed,
        description=f"asymmetric {spec.name} {rate:g}{suffix}",
    )


def _get_preset(preset: str) -> Preset:
    try:
        return PRESETS[preset]
    except (KeyError, TypeError):
        raise ValueError(f"unknown preset {preset!r}; valid presets: {sorted(PRESETS)}") from None


def _flip_arrays(spec: Preset, rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-class flip rates and one-hot destinations of a preset."""
    identity = np.eye(spec.num_classes)
    flip_rate = np.zeros(spec.num_classes)
    destination = identity.copy()
    for source, target in spec.mapping.items():
        flip_rate[source] = rate
        destination[source] = identity[target]
    return flip_rate, destination


def _sequential(clean: np.ndarray, rate: float, spec: Preset, seed: int) -> NoisyLabels:
    rng = np.random.default_rng(seed)
    noisy = clean.copy()
    for source, target in spec.order:
        idx = np.flatnonzero(noisy == source)
        chosen = rng.choice(idx, size=int(rate * idx.size), replace=False)
        noisy[chosen] = target
    flip_rate, destination = _flip_arrays(spec, rate)
    # A sample flipped forward along a 2-cycle (a -> b, later b -> a) is flipped back with
    # probability ``rate``; only the pair's earlier step is affected.
    seen: set[int] = set()
    for source, target in spec.order:
        if spec.mapping.get(target) == source and target not in seen:
            flip_rate[source] = rate * (1.0 - rate)
        seen.add(source)
    order = ", ".join(f"{s}->{t}" for s, t in spec.order)
    return make_result(
        clean,
        noisy,
        flip_matrix(flip_rate, destination),
        seed,
        f"asymmetric {spec.name} {rate:g}, paper-compatible sequential flips ({order})",
    )
