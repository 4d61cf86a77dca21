r"""``python -m sparse_reg.train.tsne RUN_DIR... --out FIG.png``: the paper's Figure 1 for finished runs.

For each run directory it rebuilds the run's model and test set from ``config.json`` (read as
``evaluate`` reads it, so a run of an older version is rebuilt as it ran), loads the returned
weights ``model.pt`` (the selected epoch's, with ``--select holdout``), takes the *penultimate*
features (the input of the last linear layer) of every test image and embeds them in 2-D with
scikit-learn's :class:`~sklearn.manifold.TSNE` (PCA initialisation, a fixed seed), one panel per
run, coloured by the clean test label. A run whose
representation separates the classes shows one cluster per class.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from sparse_reg.train.config import Config, ConfigError
from sparse_reg.train.data import DeviceData, prepare
from sparse_reg.train.evaluate import EvaluateError, stored_run
from sparse_reg.train.models import build_model

__all__ = ["main", "penultimate_features"]

#: Seed of the t-SNE embedding, so the figure is the same on every call.
TSNE_SEED = 0


def _load_run(run_dir: Path) -> tuple[Config, DeviceData, torch.nn.Module]:
    config, _ = stored_run(run_dir)
    prepared = prepare(config)
    data = DeviceData(prepared, config, torch.device("cpu"))
    model = build_model(config.model, data.image_shape, prepared.num_classes)
    model.load_state_dict(torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True))
    return config, data, model.eval()


@torch.no_grad()
def penultimate_features(model: torch.nn.Module, data: DeviceData) -> np.ndarray:
    """The input of the model's last :class:`torch.nn.Linear` layer for every test image, ``(N, D)``."""
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    captured: list[torch.Tensor] = []
    handle = last.register_forward_pre_hook(lambda _module, inputs: captured.append(inputs[0].detach()))
    try:
        for x, _ in data.eval_batches("test"):
            model(x)
    finally:
        handle.remove()
    return torch.cat(captured).double().numpy()


def main(argv: Sequence[str] | None = None) -> int:
    """Draw the figure; returns the exit status (2: a run directory is missing or unfinished)."""
    parser = argparse.ArgumentParser(
        prog="python -m sparse_reg.train.tsne",
        description="t-SNE of the penultimate features of finished runs on their test set (Figure 1).",
    )
    parser.add_argument("runs", nargs="+", type=Path, help="finished run directories, one panel each")
    parser.add_argument("--out", type=Path, required=True, help="image file to write (PNG, SVG, PDF)")
    parser.add_argument("--perplexity", type=float, default=30.0, help="t-SNE perplexity (default 30)")
    args = parser.parse_args(argv)
    runs = []
    for run_dir in args.runs:  # every run is read before the first (slow) embedding
        try:
            runs.append(_load_run(run_dir))
        except (EvaluateError, ConfigError) as exc:
            print(f"python -m sparse_reg.train.tsne: error: {exc}", file=sys.stderr)
            return 2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    fig, axes = plt.subplots(1, len(args.runs), figsize=(4 * len(args.runs), 4.2), squeeze=False)
    for ax, run_dir, (config, data, model) in zip(axes[0], args.runs, runs, strict=True):
        features = penultimate_features(model, data)
        perplexity = min(args.perplexity, (len(features) - 1) / 3)
        # One thread: a few hundred points gain nothing from OpenMP, and on a loaded machine its
        # spinning threads cost minutes (threadpoolctl comes with scikit-learn).
        with threadpool_limits(1):
            tsne = TSNE(2, perplexity=perplexity, init="pca", random_state=TSNE_SEED)
            embedded = tsne.fit_transform(features)
        labels = data.y_test.numpy()
        ax.scatter(embedded[:, 0], embedded[:, 1], c=labels, cmap="tab10", s=4, vmin=0, vmax=9)
        summary_path = run_dir / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
        accuracy = f", test {100 * summary['final']['test_acc']:.1f}%" if summary else ""
        ax.set_title(f"{config.loss.upper()} ({config.noise}{accuracy})", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    plt.close(fig)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
