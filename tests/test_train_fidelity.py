"""Where the paper presets follow the official code exactly, and the one place they do not (GCE's clamp).

The official GCE clamps the softmax at 1e-7 before the power: ``(1 - clamp(s, 1e-7, 1)_y^q) / q``.
The library computes GCE exactly, in log space (it never underflows, so it needs no guard). The two
agree wherever ``s_y >= 1e-7``; where the clamp binds the official loss is flat, so its gradient is
zero, while the exact gradient is ``-s_y^q (e_y - s)``, of size about ``(1e-7)^q``: negligible for
the baselines' ``q = 0.7`` (< 1.3e-5), but about 0.85 for GCE+SR's ``q = 0.01``. These tests pin that
difference down so the documentation's statement of it cannot drift.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import sparse_reg as sr  # noqa: E402

OFFICIAL_CLAMP = 1e-7


def _official_gce(logits: torch.Tensor, labels: torch.Tensor, q: float, tau: float) -> torch.Tensor:
    """The official GCE on sharpened logits (per sample)."""
    pred = torch.clamp(torch.softmax(logits / tau, dim=1), min=OFFICIAL_CLAMP, max=1.0)
    return (1.0 - pred.gather(1, labels[:, None]).squeeze(1) ** q) / q


def _ours(logits: torch.Tensor, labels: torch.Tensor, q: float, tau: float) -> torch.Tensor:
    return sr.loss(logits, labels, base="gce", tau=tau, lam=0.0, reduction="none", q=q)


def _batch(confident_wrong: bool) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 10, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 10, (64,), generator=gen)
    if confident_wrong:  # the network is sure of another class: s_y far below 1e-7 at tau = 0.5
        logits[torch.arange(64), (labels + 1) % 10] += 12.0
    return logits, labels


@pytest.mark.parametrize("q", [0.7, 0.01])
def test_exact_and_official_gce_agree_where_the_clamp_does_not_bind(q):
    logits, labels = _batch(confident_wrong=False)
    s_y = torch.softmax(logits / 0.5, 1).gather(1, labels[:, None]).squeeze(1)
    assert bool((s_y > OFFICIAL_CLAMP).all())
    ours_z = logits.clone().requires_grad_(True)
    theirs_z = logits.clone().requires_grad_(True)
    ours, theirs = _ours(ours_z, labels, q, 0.5), _official_gce(theirs_z, labels, q, 0.5)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    ours.sum().backward()
    theirs.sum().backward()
    torch.testing.assert_close(ours_z.grad, theirs_z.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("q", "smallest"), [(0.7, 0.0), (0.01, 0.5)])
def test_where_the_clamp_binds_the_official_gradient_vanishes_and_the_exact_one_does_not(q, smallest):
    logits, labels = _batch(confident_wrong=True)
    s_y = torch.softmax(logits / 0.5, 1).gather(1, labels[:, None]).squeeze(1)
    assert bool((s_y < OFFICIAL_CLAMP).all())
    ours_z = logits.clone().requires_grad_(True)
    theirs_z = logits.clone().requires_grad_(True)
    _ours(ours_z, labels, q, 0.5).sum().backward()
    _official_gce(theirs_z, labels, q, 0.5).sum().backward()
    assert float(theirs_z.grad.abs().max()) == 0.0
    norms = ours_z.grad.norm(dim=1)
    expected = (s_y**q) * (torch.nn.functional.one_hot(labels, 10) - torch.softmax(logits / 0.5, 1)).norm(dim=1) / 0.5
    np.testing.assert_allclose(norms.numpy(), expected.numpy(), rtol=1e-9)
    assert float(norms.min()) >= smallest  # q = 0.01: a CE-sized pull towards the (noisy) label
    assert float(norms.max()) < (1.3e-5 * 2 / 0.5 if q == 0.7 else np.inf)


def test_the_paper_presets_clamp_the_penalty_as_the_official_code():
    from sparse_reg.train.config import resolve_config

    for preset in ("mnist", "fashion-mnist", "cifar10", "cifar100"):
        assert resolve_config({"preset": preset, "loss": "gce+sr"}).clamp == OFFICIAL_CLAMP
    assert resolve_config({"preset": "mnist", "loss": "gce"}).clamp is None  # baselines: the plain loss
