"""Fixtures local to the proofs: the backends the hypothesis properties run on."""

from __future__ import annotations

import pytest


@pytest.fixture
def proof_backend(fast_backend):
    """:func:`fast_backend` without JAX, for properties whose array shapes vary from example to example.

    JAX compiles every operation anew for each array shape (about a second per shape for one call
    of :func:`sparse_reg.loss` on CPU), and hypothesis draws a new shape almost every example; the
    properties with fixed shapes run on JAX too.
    """
    if fast_backend.name == "jax":
        pytest.skip("varying shapes recompile every JAX operation; this property runs on the other "
                    "backends")
    return fast_backend
