"""Write two of scikit-learn's bundled tabular data sets as ``--data`` files, standardised.

``python scripts/make_tabular.py DIR`` writes ``DIR/breast_cancer.npz`` (569 samples, 30 features,
2 classes) and ``DIR/wine.npz`` (178 samples, 13 features, 3 classes): a stratified 25 % test
split (``random_state=0``), every feature standardised by the training part's mean and standard
deviation, in float32, with the class names. ``docs/reproduction.md`` trains on them with
``python -m sparse_reg.train sweep --data DIR/wine.npz --model mlp-bn ...``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def write(directory: Path) -> list[Path]:
    """Write the two files into ``directory``; returns their paths."""
    from sklearn.datasets import load_breast_cancer, load_wine
    from sklearn.model_selection import train_test_split

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, loader in (("breast_cancer", load_breast_cancer), ("wine", load_wine)):
        bunch = loader()
        x_train, x_test, y_train, y_test = train_test_split(
            bunch.data, bunch.target, test_size=0.25, stratify=bunch.target, random_state=0
        )
        mean, std = x_train.mean(axis=0), x_train.std(axis=0)
        path = directory / f"{name}.npz"
        np.savez(
            path,
            x_train=((x_train - mean) / std).astype(np.float32),
            y_train=y_train,
            x_test=((x_test - mean) / std).astype(np.float32),
            y_test=y_test,
            class_names=np.array(bunch.target_names),
        )
        written.append(path)
    return written


if __name__ == "__main__":
    for written_path in write(Path(sys.argv[1] if len(sys.argv) > 1 else "data")):
        print(written_path)
