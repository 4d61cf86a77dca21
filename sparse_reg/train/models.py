r"""The paper's networks, with its initialisation.

Every convolution is initialised Kaiming-uniform (fan-in, ReLU gain) and every linear layer
Xavier-uniform, as in the official code; the biases keep PyTorch's default initialisation
(uniform in :math:`\pm 1/\sqrt{\text{fan-in}}`), as the official code leaves them.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["CNN8", "MLP", "MNISTCNN", "ResNet34", "build_model", "memory_format"]


class MLP(nn.Module):
    r"""Two hidden ReLU layers over the flattened image (the ``digits`` model).

    With ``batch_norm`` each hidden layer is Linear-BatchNorm-ReLU, as the paper's CNNs are: without
    it, :math:`\lambda_0 = 4` drives the network to predict one class within its first steps.
    """

    def __init__(
        self, in_features: int, num_classes: int, hidden: int = 256, batch_norm: bool = False
    ) -> None:
        super().__init__()

        def hidden_layer(cin: int) -> list[nn.Module]:
            norm: list[nn.Module] = [nn.BatchNorm1d(hidden)] if batch_norm else []
            return [nn.Linear(cin, hidden), *norm, nn.ReLU()]

        self.net = nn.Sequential(
            nn.Flatten(), *hidden_layer(in_features), *hidden_layer(hidden), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]


class MNISTCNN(nn.Module):
    """The MNIST network: two conv-BN-ReLU-maxpool blocks (32, 64), FC 3136-128 with BN, FC 128-C."""

    def __init__(self, in_channels: int, num_classes: int, image_size: int = 28) -> None:
        super().__init__()
        side = image_size // 4
        self.features = nn.Sequential(
            *_conv_bn(in_channels, 32), nn.MaxPool2d(2), *_conv_bn(32, 64), nn.MaxPool2d(2), nn.Flatten()
        )
        self.classifier = nn.Sequential(
            nn.Linear(64 * side * side, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Linear(128, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class CNN8(nn.Module):
    """The CIFAR-10 network: conv-BN-ReLU pairs of 64, 128 and 196 channels, each pair max-pooled,
    then FC 3136-256 with BN, FC 256-C."""

    def __init__(self, in_channels: int, num_classes: int, image_size: int = 32) -> None:
        super().__init__()
        side = image_size // 8
        self.features = nn.Sequential(
            *_conv_bn(in_channels, 64),
            *_conv_bn(64, 64),
            nn.MaxPool2d(2),
            *_conv_bn(64, 128),
            *_conv_bn(128, 128),
            nn.MaxPool2d(2),
            *_conv_bn(128, 196),
            *_conv_bn(196, 196),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(196 * side * side, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Linear(256, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet34(nn.Module):
    """ResNet-34 for 32x32 images: 3x3 stem at stride 1, BasicBlocks [3, 4, 6, 3], average pool 4."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU()
        )
        layers: list[nn.Module] = []
        cin = 64
        for cout, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            for i in range(blocks):
                layers.append(_BasicBlock(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AvgPool2d(4), nn.Flatten(), nn.Linear(512, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.stem(x)))


def initialise(model: nn.Module) -> nn.Module:
    """Kaiming-uniform (fan-in, ReLU) for convolutions, Xavier-uniform for linear layers; the biases
    keep PyTorch's default initialisation, as in the official code."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_uniform_(module.weight, mode="fan_in", nonlinearity="relu")
        elif isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
    return model


def build_model(name: str, image_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """Build and initialise a model by name.

    Parameters
    ----------
    name
        ``"mlp"``, ``"mlp-bn"`` (with BatchNorm), ``"mnist-cnn"``, ``"cnn8"`` or ``"resnet34"``.
    image_shape
        ``(channels, height, width)`` of the input.
    num_classes
        Number of outputs.
    """
    channels, height, width = image_shape
    if name in ("mlp", "mlp-bn"):
        model: nn.Module = MLP(channels * height * width, num_classes, batch_norm=name == "mlp-bn")
    elif name == "mnist-cnn":
        model = MNISTCNN(channels, num_classes, height)
    elif name == "cnn8":
        model = CNN8(channels, num_classes, height)
    elif name == "resnet34":
        if height != 32 or width != 32:
            raise ValueError(f"resnet34 expects 32x32 images; got {height}x{width}")
        model = ResNet34(channels, num_classes)
    else:
        raise ValueError(f"unknown model {name!r}; valid models: mlp, mlp-bn, mnist-cnn, cnn8, resnet34")
    return initialise(model)


def memory_format(model: nn.Module, device: torch.device) -> torch.memory_format:
    """The memory format to train ``model`` in on ``device``.

    ``torch.channels_last`` for a convolutional model on the CPU, where oneDNN's NHWC convolutions
    made the plain training loop of the MNIST CNN 1.29x as fast on one thread
    (``benchmarks/trainer_throughput.py``, ``docs/benchmarks.md``); the default contiguous format
    elsewhere, where no measurement showed a gain. A convolution whose weight is channels-last
    gives a channels-last output, so the batches need no conversion.
    """
    convolutional = any(isinstance(module, nn.Conv2d) for module in model.modules())
    return torch.channels_last if convolutional and device.type == "cpu" else torch.contiguous_format
