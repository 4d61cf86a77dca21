"""Class maps of the asymmetric (class-conditional) noise presets.

Each preset is a map ``source class -> target class``: a selected sample of a source class is
relabelled as its target; classes absent from the map are never flipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

__all__ = [
    "CIFAR100_COARSE_NAMES",
    "CIFAR100_FINE_NAMES",
    "CIFAR100_FINE_TO_COARSE",
    "PRESETS",
    "Preset",
]

#: Fine label names of CIFAR-100 in index order (the ``fine_label_names`` of the ``meta`` file,
#: alphabetical).
CIFAR100_FINE_NAMES: tuple[str, ...] = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone",
    "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm",
)  # fmt: skip

# The 20 superclasses of the CIFAR-100 README, in coarse-label order, with their members.
_SUPERCLASSES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("aquatic_mammals", ("beaver", "dolphin", "otter", "seal", "whale")),
    ("fish", ("aquarium_fish", "flatfish", "ray", "shark", "trout")),
    ("flowers", ("orchid", "poppy", "rose", "sunflower", "tulip")),
    ("food_containers", ("bottle", "bowl", "can", "cup", "plate")),
    ("fruit_and_vegetables", ("apple", "mushroom", "orange", "pear", "sweet_pepper")),
    ("household_electrical_devices", ("clock", "keyboard", "lamp", "telephone", "television")),
    ("household_furniture", ("bed", "chair", "couch", "table", "wardrobe")),
    ("insects", ("bee", "beetle", "butterfly", "caterpillar", "cockroach")),
    ("large_carnivores", ("bear", "leopard", "lion", "tiger", "wolf")),
    ("large_man-made_outdoor_things", ("bridge", "castle", "house", "road", "skyscraper")),
    ("large_natural_outdoor_scenes", ("cloud", "forest", "mountain", "plain", "sea")),
    ("large_omnivores_and_herbivores", ("camel", "cattle", "chimpanzee", "elephant", "kangaroo")),
    ("medium_mammals", ("fox", "porcupine", "possum", "raccoon", "skunk")),
    ("non-insect_invertebrates", ("crab", "lobster", "snail", "spider", "worm")),
    ("people", ("baby", "boy", "girl", "man", "woman")),
    ("reptiles", ("crocodile", "dinosaur", "lizard", "snake", "turtle")),
    ("small_mammals", ("hamster", "mouse", "rabbit", "shrew", "squirrel")),
    ("trees", ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree")),
    ("vehicles_1", ("bicycle", "bus", "motorcycle", "pickup_truck", "train")),
    ("vehicles_2", ("lawn_mower", "rocket", "streetcar", "tank", "tractor")),
)

#: Coarse label names of CIFAR-100 in index order.
CIFAR100_COARSE_NAMES: tuple[str, ...] = tuple(name for name, _ in _SUPERCLASSES)


def _fine_to_coarse() -> tuple[int, ...]:
    index = {name: i for i, name in enumerate(CIFAR100_FINE_NAMES)}
    coarse = [-1] * len(CIFAR100_FINE_NAMES)
    for k, (_, members) in enumerate(_SUPERCLASSES):
        for name in members:
            coarse[index[name]] = k
    return tuple(coarse)


#: ``CIFAR100_FINE_TO_COARSE[fine] = coarse`` (the standard CIFAR-100 grouping).
CIFAR100_FINE_TO_COARSE: tuple[int, ...] = _fine_to_coarse()


def _cycle_within(groups: list[list[int]]) -> dict[int, int]:
    """Map each member to the next one of its group (ascending index; the last wraps around)."""
    mapping: dict[int, int] = {}
    for group in groups:
        ordered = sorted(group)
        for k, source in enumerate(ordered):
            mapping[source] = ordered[(k + 1) % len(ordered)]
    return mapping


Procedure = Literal["per-label", "sequential"]


@dataclass(frozen=True)
class Preset:
    """An asymmetric-noise preset.

    Attributes
    ----------
    name : str
    num_classes : int
    mapping : Mapping[int, int]
        ``source -> target``.
    official : {"per-label", "sequential"} or None
        The official code's procedure (used by ``paper_compatible=True``): transition-matrix
        sampling per label, or the CIFAR-10 sequential flips in ``order``; ``None`` when the
        preset has no official implementation.
    order : tuple of (int, int)
        Step order of the sequential procedure.
    """

    name: str
    num_classes: int
    mapping: MappingProxyType
    official: Procedure | None = None
    order: tuple[tuple[int, int], ...] = ()


def _preset(name: str, num_classes: int, mapping: dict[int, int], **kw: object) -> Preset:
    return Preset(name, num_classes, MappingProxyType(dict(mapping)), **kw)  # type: ignore[arg-type]


_CIFAR10_ORDER = ((9, 1), (2, 0), (3, 5), (5, 3), (4, 7))

#: All presets by name.
PRESETS: MappingProxyType = MappingProxyType(
    {
        # 7->1, 2->7, 5<->6, 3->8 (official MNIST code).
        "mnist": _preset("mnist", 10, {7: 1, 2: 7, 5: 6, 6: 5, 3: 8}, official="per-label"),
        # truck->automobile, bird->airplane, cat<->dog, deer->horse (official CIFAR-10 code).
        "cifar10": _preset(
            "cifar10", 10, dict(_CIFAR10_ORDER), official="sequential", order=_CIFAR10_ORDER
        ),
        # Official CIFAR-100 code: 20 blocks of 5 consecutive fine indices, which are NOT the
        # semantic superclasses because the fine labels are alphabetical.
        "cifar100": _preset(
            "cifar100",
            100,
            _cycle_within([list(range(b, b + 5)) for b in range(0, 100, 5)]),
            official="per-label",
        ),
        "cifar100-superclass": _preset(
            "cifar100-superclass",
            100,
            _cycle_within(
                [[f for f in range(100) if CIFAR100_FINE_TO_COARSE[f] == k] for k in range(20)]
            ),
        ),
        # T-shirt/top<->Shirt, Pullover<->Coat, Sneaker<->Ankle boot.
        "fashion-mnist": _preset("fashion-mnist", 10, {0: 6, 6: 0, 2: 4, 4: 2, 7: 9, 9: 7}),
    }
)
