"""Every backend trains a torch model: the NumPy and CuPy bridges agree with the torch path."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from sparse_reg.train import main  # noqa: E402
from sparse_reg.train.config import resolve_config  # noqa: E402
from sparse_reg.train.losses import Criterion  # noqa: E402

SHORT = ["--epochs", "3", "--limit-train", "300", "--limit-test", "200", "--threads", "1", "--quiet"]


def _rows(path):
    return [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("loss", ["ce+sr", "gce+sr"])
def test_numpy_and_torch_backends_give_the_same_run(tmp_path, loss):
    for backend in ("torch", "numpy"):
        assert main(["--backend", backend, "--loss", loss, "--out", str(tmp_path / backend), *SHORT]) == 0
    torch_rows, numpy_rows = _rows(tmp_path / "torch"), _rows(tmp_path / "numpy")
    for a, b in zip(torch_rows, numpy_rows, strict=True):
        for key in ("loss", "base", "sr_term", "penalty"):
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6), key
        for key in ("test_acc", "train_acc_clean", "train_acc_flipped", "memorised", "lam", "lr"):
            assert b[key] == a[key], key


def _bridge_vs_torch(backend: str, device: str, normalize: bool, lam0: float) -> None:
    settings = {"loss": "focal+sr", "tau": 0.3, "p": 0.4, "lam0": lam0, "normalize": normalize}
    reference = Criterion(resolve_config({**settings, "backend": "torch"}))
    bridged = Criterion(resolve_config({**settings, "backend": backend}))
    gen = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(16, 7, generator=gen, dtype=torch.float64)).to(device)
    labels = torch.randint(0, 7, (16,), generator=gen).to(device)
    results = []
    for criterion in (reference, bridged):
        z = logits.clone().requires_grad_(True)
        value, base, penalty = criterion(z.float(), labels)
        (2.5 * value).backward()
        results.append((value.item(), base.item(), penalty.item(), z.grad.cpu().numpy()))
    (v0, b0, p0, g0), (v1, b1, p1, g1) = results
    assert (v1, b1, p1) == pytest.approx((v0, b0, p0), rel=1e-5)
    np.testing.assert_allclose(g1, g0, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("lam0", [0.0, 2.0])
def test_numpy_bridge_gradient_matches_torch(normalize, lam0):
    _bridge_vs_torch("numpy", "cpu", normalize, lam0)


@pytest.mark.gpu
def test_cupy_bridge_gradient_matches_torch_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    pytest.importorskip("cupy")
    _bridge_vs_torch("cupy", "cuda", True, 2.0)
