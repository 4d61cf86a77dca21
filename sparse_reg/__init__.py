"""sparse_reg: sparse regularization makes any classification loss robust to noisy labels.

The method of Zhou et al., "Learning with Noisy Labels via Sparse Regularization" (ICCV 2021):
sharpen the output, :math:`s = \\operatorname{softmax}(z/\\tau)`, and add
:math:`\\lambda \\sum_k s_k^p` to any base loss. One array-API core runs on NumPy, CuPy, PyTorch and
JAX; importing this package imports none of the optional libraries.

>>> import numpy as np
>>> import sparse_reg as sr
>>> float(sr.loss(np.array([[3.0, 0.0, -1.0]]), np.array([0]), base="gce", q=0.7)) > 0
True
"""

from __future__ import annotations

import importlib
from typing import Any

from sparse_reg import backends, errors
from sparse_reg._api import loss, loss_and_grad
from sparse_reg.losses import BaseLoss, available_losses, get_loss, register_loss
from sparse_reg.projection import is_permutation_of, project, soft_project
from sparse_reg.regularizer import Objective, lp_penalty, sharpen
from sparse_reg.schedule import AdaptiveLambda, LambdaSchedule

__version__ = "0.1.0"

__all__ = [
    "AdaptiveLambda",
    "BaseLoss",
    "LambdaSchedule",
    "Objective",
    "__version__",
    "available_losses",
    "backends",
    "data",
    "errors",
    "get_loss",
    "is_permutation_of",
    "loss",
    "loss_and_grad",
    "lp_penalty",
    "nn",
    "noise",
    "project",
    "register_loss",
    "sharpen",
    "soft_project",
]

#: Submodules loaded on first access: ``nn`` imports torch, and the others are not needed by the
#: loss functions.
_LAZY_SUBMODULES = ("data", "nn", "noise")


def __getattr__(name: str) -> Any:
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"sparse_reg.{name}")
    raise AttributeError(f"module 'sparse_reg' has no attribute {name!r}")
