"""Distributed data parallel under ``torchrun``.

``torchrun`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; :func:`setup` then joins the process
group (NCCL on CUDA, gloo on the CPU) and picks this process's device. Without those variables the
run is a single process and every collective below is the identity.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as torch_dist

__all__ = ["Context", "choose_device", "setup"]


def choose_device(name: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` is CUDA (this process's local GPU) when available, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"--device {name} needs CUDA, but torch.cuda.is_available() is False")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
    return device


@dataclass
class Context:
    """This process's place in the job."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes logs, metrics and checkpoints."""
        return self.rank == 0

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over the ranks, in place, and return it."""
        if self.distributed:
            torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.SUM)
        return tensor

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order (on every rank)."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        torch_dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        torch_dist.broadcast_object_list(box, src=0)
        return box[0]

    def sync_buffers(self, module: torch.nn.Module) -> None:
        """Copy rank 0's buffers (BatchNorm running statistics) to every rank before evaluation."""
        if self.distributed:
            for buffer in module.buffers():
                torch_dist.broadcast(buffer, src=0)

    def barrier(self) -> None:
        if self.distributed:
            torch_dist.barrier()

    def close(self) -> None:
        if self.distributed and torch_dist.is_initialized():
            torch_dist.destroy_process_group()


def _environment_count(name: str, default: int, least: int) -> int:
    """An integer that ``torchrun`` sets in the environment; anything else is a one-line error."""
    from sparse_reg.train.config import ConfigError

    text = os.environ.get(name, str(default))
    try:
        value = int(text)
    except ValueError:
        value = least - 1
    if value < least:
        raise ConfigError(
            f"the environment variable {name}={text!r} must be an integer >= {least} (torchrun sets it)"
        )
    return value


def setup(device_name: str) -> Context:
    """Join the ``torchrun`` process group if the environment names one, and pick the device.

    Raises
    ------
    ConfigError
        ``WORLD_SIZE``, ``RANK`` or ``LOCAL_RANK`` is set to something other than a count.
    """
    world_size = _environment_count("WORLD_SIZE", 1, 1)
    rank = _environment_count("RANK", 0, 0)
    local_rank = _environment_count("LOCAL_RANK", 0, 0)
    device = choose_device(device_name, local_rank)
    if world_size > 1 and not torch_dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch_dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Context(rank=rank, local_rank=local_rank, world_size=world_size, device=device)
