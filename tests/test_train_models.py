"""The paper's networks and initialisation; seeded on-device batching and augmentation."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sparse_reg.train.config import resolve_config  # noqa: E402
from sparse_reg.train.data import DeviceData, Prepared  # noqa: E402
from sparse_reg.train.models import build_model  # noqa: E402

_MODELS = [
    ("mlp", (1, 8, 8)),
    ("mlp-bn", (1, 8, 8)),
    ("mnist-cnn", (1, 28, 28)),
    ("cnn8", (3, 32, 32)),
    ("resnet34", (3, 32, 32)),
]


@pytest.mark.parametrize(("name", "shape"), _MODELS)
def test_models_map_images_to_logits_with_the_paper_initialisation(name, shape):
    torch.manual_seed(0)
    model = build_model(name, shape, 10).eval()
    assert model(torch.randn(2, *shape)).shape == (2, 10)
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            fan_in = module.weight[0].numel()
            assert module.weight.abs().max() <= math.sqrt(6 / fan_in)  # Kaiming-uniform, ReLU gain
        if isinstance(module, torch.nn.Linear):
            fan_out, fan_in = module.weight.shape
            bound = math.sqrt(6 / (fan_in + fan_out))  # Xavier-uniform
            assert module.weight.abs().max() <= bound and module.weight.abs().max() > 0.9 * bound
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)) and module.bias is not None:
            # PyTorch's default, kept as the official code keeps it: uniform in +-1/sqrt(fan-in).
            fan_in = module.weight[0].numel()
            assert module.bias.abs().max() <= 1 / math.sqrt(fan_in) and module.bias.any()


@pytest.mark.parametrize(("name", "shape"), _MODELS)
def test_biases_are_the_ones_pytorch_draws(name, shape):
    """The official code re-initialises only the weights: with one seed, the biases equal those of
    the same network left at PyTorch's defaults."""
    torch.manual_seed(3)
    ours = build_model(name, shape, 10)
    torch.manual_seed(3)
    default = type(ours)(*_constructor_args(name, shape))
    for (key, mine), (_, theirs) in zip(ours.state_dict().items(), default.state_dict().items(), strict=True):
        if key.endswith("bias"):
            assert torch.equal(mine, theirs), key


def _constructor_args(name: str, shape: tuple[int, int, int]) -> tuple:
    channels, height, width = shape
    return {
        "mlp": (channels * height * width, 10),
        "mlp-bn": (channels * height * width, 10, 256, True),
        "mnist-cnn": (channels, 10, height),
        "cnn8": (channels, 10, height),
        "resnet34": (channels, 10),
    }[name]


def _prepared(n: int = 10) -> Prepared:
    rng = np.random.default_rng(0)
    y = np.arange(n) % 3
    flipped = np.zeros(n, dtype=bool)
    return Prepared(
        "toy",
        rng.integers(0, 256, (n, 3, 6, 6), dtype=np.uint8),
        y,
        y,
        flipped,
        rng.integers(0, 256, (4, 3, 6, 6), dtype=np.uint8),
        y[:4],
        3,
        (0.5,) * 3,
        (0.25,) * 3,
        None,
        rng.integers(0, 256, (0, 3, 6, 6), dtype=np.uint8),
        y[:0],
    )  # type: ignore[arg-type]


def test_batches_cover_the_data_once_and_replay_from_the_generator_state():
    config = resolve_config({"batch_size": 4, "crop_pad": 2, "flip": True, "rotate": 20.0})
    data = DeviceData(_prepared(), config, torch.device("cpu"), seed=3)
    state = {k: v.clone() for k, v in data.state_dict().items()}
    first = list(data.train_batches())
    assert [y.shape[0] for _, y in first] == [4, 4, 2]
    assert sorted(torch.cat([y for _, y in first]).tolist()) == sorted(data.y_train.tolist())
    assert all(x.shape == (y.shape[0], 3, 6, 6) and x.dtype == torch.float32 for x, y in first)
    data.load_state_dict(state)
    again = list(data.train_batches())
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again, strict=True))


def test_crop_keeps_pixels_and_pads_with_zero():
    config = resolve_config({"crop_pad": 3})
    data = DeviceData(_prepared(), config, torch.device("cpu"), seed=0)
    x = torch.full((64, 3, 6, 6), 200, dtype=torch.uint8)
    out = data.augment(x)
    assert set(out.unique().tolist()) <= {0.0, 200.0}
    assert (out == 200).any() and (out == 0).any()  # some of 64 crops are shifted


def test_ddp_shards_take_the_same_number_of_steps():
    config = resolve_config({"batch_size": 4})
    shards = [
        DeviceData(_prepared(11), config, torch.device("cpu"), rank=r, world_size=2, seed=r) for r in (0, 1)
    ]
    assert [s.y_train.shape[0] for s in shards] == [6, 5]
    # Per-rank batches of 2: rank 1's 5 samples would end in a batch of one, which BatchNorm cannot
    # train on, so it joins the batch before (2 + 3), and rank 0 takes the same 2 steps (2 + 4).
    assert [[y.shape[0] for _, y in s.train_batches()] for s in shards] == [[2, 4], [2, 3]]
    assert sum(y.shape[0] for s in shards for _, y in s.train_batches()) == 11
