"""The trainer: ``python -m sparse_reg.train`` reproduces the paper's experiments.

Modules: :mod:`~sparse_reg.train.presets` (the paper's settings), :mod:`~sparse_reg.train.config`
(resolution of preset, config file and options), :mod:`~sparse_reg.train.data` (device-resident
data), :mod:`~sparse_reg.train.models`, :mod:`~sparse_reg.train.losses` (the criterion on every
backend), :mod:`~sparse_reg.train.loop` (one run), :mod:`~sparse_reg.train.checkpoint`,
:mod:`~sparse_reg.train.report`, :mod:`~sparse_reg.train.progress` (bar or progress lines),
:mod:`~sparse_reg.train.evaluate` (``evaluate RUN_DIR``), :mod:`~sparse_reg.train.userdata`
(``--data PATH.npz``), :mod:`~sparse_reg.train.tblog` (``--tensorboard``),
:mod:`~sparse_reg.train.sweep` and :mod:`~sparse_reg.train.dist` (``torchrun``). Importing this
package imports neither torch nor the datasets.
"""

__all__ = ["main"]


def main(argv=None) -> int:
    """Run the command line (see ``python -m sparse_reg.train --help``); returns the exit status."""
    from sparse_reg.train.__main__ import main as _main

    return _main(argv)
