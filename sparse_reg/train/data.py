"""Device-resident data: the whole (noisy) dataset lives on the device as uint8 tensors.

Batching, normalisation and augmentation (random crop with zero padding, horizontal flip, rotation)
run on the device from explicit, checkpointable generators; there are no DataLoader workers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sparse_reg import data as datasets
from sparse_reg import noise as noise_lib
from sparse_reg.train import userdata
from sparse_reg.train.config import Config, ConfigError

__all__ = ["DeviceData", "Prepared", "load_dataset", "normalise", "prepare"]

#: Seed of the fixed subset chosen by ``limit_train``: the same images for every run and seed.
SUBSET_SEED = 0
#: Seed of the held-out part of the noisy training set chosen by ``holdout``.
HOLDOUT_SEED = 1


@dataclass
class Prepared:
    """Host-side arrays of a run: images, clean and noisy labels, and the noise record."""

    name: str
    x_train: np.ndarray
    y_clean: np.ndarray
    y_noisy: np.ndarray
    flipped: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    noise: noise_lib.NoisyLabels
    #: The held-out split (``holdout``) with its *noisy* labels; empty without one.
    x_holdout: np.ndarray
    y_holdout: np.ndarray

    def describe(self) -> dict[str, Any]:
        """A JSON-ready record of the data and the noise actually drawn.

        ``image_shape``, ``mean`` and ``std`` are what ``evaluate`` needs to rebuild the model and
        feed it exactly as in training.
        """
        return {
            "dataset": self.name,
            "train_size": int(self.y_clean.size),
            "holdout_size": int(self.y_holdout.size),
            "test_size": int(self.y_test.size),
            "num_classes": self.num_classes,
            "image_shape": list(self.x_train.shape[1:]),
            "mean": list(self.mean),
            "std": list(self.std),
            "noise": self.noise.description,
            "realised_rate": self.noise.realised_rate,
            "noise_seed": self.noise.seed,
            "clean_fingerprint": self.noise.clean_fingerprint,
        }


def prepare(config: Config) -> Prepared:
    """Load the dataset, apply the long-tail subset and ``limit_*`` options, draw the label noise.

    With ``config.holdout`` a stratified fraction of the *noisy* training set is held out, with its
    noisy labels (:func:`holdout_mask`); it is never trained on, and the test set is kept apart.

    Raises
    ------
    sparse_reg.errors.DatasetNotFoundError
        The data files are missing; the message says how to get them.
    """
    ds = load_dataset(config)
    if config.lt_profile is not None:
        ds = datasets.long_tailed(
            ds, profile=config.lt_profile, imbalance=config.lt_imbalance, seed=SUBSET_SEED
        )
    x_train, y_train = ds.x_train, ds.y_train
    if config.limit_train is not None and config.limit_train < y_train.size:
        keep = np.sort(np.random.default_rng(SUBSET_SEED).permutation(y_train.size)[: config.limit_train])
        x_train, y_train = x_train[keep], y_train[keep]
    x_test, y_test = ds.x_test, ds.y_test
    if config.limit_test is not None:
        x_test, y_test = x_test[: config.limit_test], y_test[: config.limit_test]
    noise_seed = config.seed if config.noise_seed is None else config.noise_seed
    features = None
    if config.noise.startswith("instance"):
        scale = 1.0 if userdata.is_features(x_train) else 255.0
        features = x_train.reshape(x_train.shape[0], -1).astype(np.float64) / scale
    noisy = noise_lib.apply(
        config.noise, y_train, ds.num_classes, dataset=ds.name, seed=noise_seed, features=features
    )
    y_noisy, flipped = np.asarray(noisy.labels), np.asarray(noisy.flipped)
    held = np.zeros(y_noisy.size, dtype=bool)
    if config.holdout is not None:
        held = holdout_mask(y_noisy, config.holdout, seed=config.seed)
    x_holdout, y_holdout = x_train[held], y_noisy[held]
    x_train, y_train, y_noisy, flipped = x_train[~held], y_train[~held], y_noisy[~held], flipped[~held]
    return Prepared(
        name=ds.name,
        x_train=x_train,
        y_clean=y_train,
        y_noisy=y_noisy,
        flipped=flipped,
        x_test=x_test,
        y_test=y_test,
        num_classes=ds.num_classes,
        mean=ds.mean,
        std=ds.std,
        noise=noisy,
        x_holdout=x_holdout,
        y_holdout=y_holdout,
    )


def normalise(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, scale: float) -> torch.Tensor:
    """The model's input: :math:`(x / \\text{scale} - \\mu) / \\sigma`, per channel, in float32.

    ``scale`` is 255 for uint8 images and 1 for feature vectors; ``mean`` and ``std`` have shape
    ``(1, C, 1, 1)``.
    """
    return (x.float() / scale - mean) / std


def load_dataset(config: Config) -> datasets.Dataset:
    """The run's dataset: the ``data`` file when given (:mod:`~sparse_reg.train.userdata`), else the preset's.

    Raises
    ------
    sparse_reg.errors.DatasetError
        The files are missing or invalid.
    ConfigError
        Augmentation was asked for on feature vectors.
    """
    if config.data is not None:
        ds = userdata.load_npz(config.data)
        if userdata.is_features(ds.x_train) and (config.crop_pad or config.flip or config.rotate):
            raise ConfigError(
                f"--data {config.data!r} holds feature vectors, which cannot be cropped, flipped or "
                f"rotated (crop_pad={config.crop_pad}, flip={config.flip}, rotate={config.rotate}); pass "
                "--crop-pad 0 --no-flip --rotate 0"
            )
        return ds
    kwargs = {} if config.dataset == "digits" else {"data_dir": config.data_dir}
    return datasets.load(config.dataset, **kwargs)


def holdout_mask(noisy_labels: np.ndarray, fraction: float, *, seed: int = 0) -> np.ndarray:
    """The training samples held out: ``round(fraction * n_c)`` of each noisy class ``c``.

    Stratified by the *noisy* label (the only one a user has), at least one and at most
    ``n_c - 1`` per class, drawn by a generator seeded with ``(HOLDOUT_SEED, seed)``: the same
    split for every setting of one seed, so runs that differ only in their hyperparameters (a
    ``tune`` grid) are scored on the same samples.

    Raises
    ------
    ValueError
        A class that has a training sample would have no held-out one, or nothing left to train
        on (fewer than two samples); the message names ``--holdout``.
    """
    labels = np.asarray(noisy_labels)
    held = np.zeros(labels.size, dtype=bool)
    rng = np.random.default_rng([HOLDOUT_SEED, seed])
    classes, counts = np.unique(labels, return_counts=True)
    if classes.size and counts.min() < 2:
        lonely = int(classes[np.argmin(counts)])
        raise ValueError(
            f"--holdout {fraction:g} cannot hold out a sample of class {lonely}: it has "
            f"{int(counts.min())} training sample(s) with that noisy label, and a split needs 2 (one "
            "held out, one to train on); use more training data or no --holdout"
        )
    for label, count in zip(classes, counts, strict=True):
        members = np.flatnonzero(labels == label)
        take = min(max(1, round(fraction * count)), count - 1)
        held[rng.permutation(members)[:take]] = True
    return held


class DeviceData:
    """One rank's share of the data on ``device``, with seeded on-device batching and augmentation.

    Parameters
    ----------
    prepared
        The host arrays.
    config
        Batch sizes and augmentation settings.
    device
        Where the tensors live.
    rank, world_size
        Training and test sets are sharded by ``index % world_size == rank``; each rank trains on
        ``batch_size // world_size`` samples per step, so the global batch stays ``batch_size``.
    seed
        Seed of this rank's data-order and augmentation generators.
    """

    def __init__(
        self,
        prepared: Prepared,
        config: Config,
        device: torch.device,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
    ) -> None:
        shard = slice(rank, None, world_size)
        self.device = device
        self.x_train = torch.as_tensor(prepared.x_train[shard]).to(device)
        self.y_train = torch.as_tensor(np.array(prepared.y_noisy[shard])).to(device)
        self.y_clean = torch.as_tensor(prepared.y_clean[shard]).to(device)
        self.flipped = torch.as_tensor(np.array(prepared.flipped[shard])).to(device)
        self.x_test = torch.as_tensor(prepared.x_test[shard]).to(device)
        self.y_test = torch.as_tensor(prepared.y_test[shard]).to(device)
        self.x_holdout = torch.as_tensor(prepared.x_holdout[shard]).to(device)
        self.y_holdout = torch.as_tensor(np.array(prepared.y_holdout[shard])).to(device)
        channels = prepared.x_train.shape[1]
        # uint8 images are scaled to [0, 1] before normalisation; feature vectors are used as given.
        self.scale = 255.0 if prepared.x_train.dtype == np.uint8 else 1.0
        self.mean = torch.tensor(prepared.mean, dtype=torch.float32, device=device).view(1, channels, 1, 1)
        self.std = torch.tensor(prepared.std, dtype=torch.float32, device=device).view(1, channels, 1, 1)
        self.batch_size = max(1, config.batch_size // world_size)
        self.eval_batch_size = config.eval_batch_size
        self.crop_pad, self.flip, self.rotate = config.crop_pad, config.flip, config.rotate
        # Every rank takes the same number of steps (DDP needs it): the smallest shard decides, and
        # the ranks holding one extra sample put it into their last batch.
        smallest = len(range(world_size - 1, prepared.y_noisy.size, world_size))
        steps = max(1, math.ceil(smallest / self.batch_size))
        # A last batch of one sample cannot be trained with BatchNorm: it joins the batch before.
        if steps > 1 and smallest % self.batch_size == 1:
            steps -= 1
        self.steps_per_epoch = steps
        self.order_generator = torch.Generator().manual_seed(seed)
        self.augment_generator = torch.Generator(device=device).manual_seed(seed + 1)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images (or float32 features) to normalised float32."""
        return normalise(x, self.mean, self.std, self.scale)

    def train_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of augmented, normalised training batches in a fresh random order."""
        n = self.y_train.shape[0]
        order = torch.randperm(n, generator=self.order_generator).to(self.device)
        for step in range(self.steps_per_epoch):
            stop = n if step == self.steps_per_epoch - 1 else (step + 1) * self.batch_size
            index = order[step * self.batch_size : stop]
            yield self.normalise(self.augment(self.x_train[index])), self.y_train[index]

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """Random crop (zero padding ``crop_pad``), horizontal flip and rotation, per sample."""
        if not (self.crop_pad or self.flip or self.rotate):
            return x
        x = x.float()
        n, _, h, w = x.shape
        gen = self.augment_generator
        if self.crop_pad:
            pad = self.crop_pad
            padded = F.pad(x, (pad, pad, pad, pad))
            dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=x.device)
            dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=x.device)
            rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
            cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
            batch = torch.arange(n, device=x.device)[:, None, None, None]
            chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
            x = padded[batch, chans, rows, cols]
        if self.flip:
            mirror = torch.rand(n, generator=gen, device=x.device) < 0.5
            x = torch.where(mirror[:, None, None, None], x.flip(3), x)
        if self.rotate:
            angle = (torch.rand(n, generator=gen, device=x.device) * 2 - 1) * math.radians(self.rotate)
            cos, sin = torch.cos(angle), torch.sin(angle)
            zero = torch.zeros_like(cos)
            theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)
        return x

    def eval_batches(self, split: str) -> Iterator[tuple[torch.Tensor, slice]]:
        """Normalised, unaugmented batches of ``"train"``, ``"test"`` or ``"holdout"`` images with
        their positions."""
        x = {"train": self.x_train, "test": self.x_test, "holdout": self.x_holdout}[split]
        for start in range(0, x.shape[0], self.eval_batch_size):
            part = slice(start, start + self.eval_batch_size)
            yield self.normalise(x[part]), part

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The generators' states, for an exact resume."""
        return {
            "order": self.order_generator.get_state(),
            "augment": self.augment_generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.order_generator.set_state(state["order"])
        self.augment_generator.set_state(state["augment"])
