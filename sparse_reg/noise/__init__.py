"""Label-noise generators with explicit semantics.

Every generator takes clean integer labels (a 1-D NumPy array) and a ``seed`` and returns a
:class:`NoisyLabels` recording the noisy labels, the requested transition matrix, the realised
one and the realised flip rate. The same seed always gives the same labels.

"Rate" is the fraction of labels that *change* unless a docstring says otherwise: see
:func:`symmetric` for the uniform-other versus uniform-any distinction and :func:`asymmetric`
for the official CIFAR-10 sequential procedure, whose overall rate is lower than requested.
"""

from __future__ import annotations

from ._result import NoisyLabels
from .asymmetric import asymmetric
from .instance import instance_dependent
from .matrix import from_transition_matrix
from .presets import CIFAR100_COARSE_NAMES, CIFAR100_FINE_NAMES, CIFAR100_FINE_TO_COARSE, PRESETS
from .spec import SPEC_FORMS, apply
from .symmetric import pairflip, symmetric

__all__ = [
    "CIFAR100_COARSE_NAMES",
    "CIFAR100_FINE_NAMES",
    "CIFAR100_FINE_TO_COARSE",
    "PRESETS",
    "SPEC_FORMS",
    "NoisyLabels",
    "apply",
    "asymmetric",
    "from_transition_matrix",
    "instance_dependent",
    "pairflip",
    "symmetric",
]
