"""Multi-process training from ``torchrun`` environment variables.

The loop averages gradients with one all-reduce per step instead of wrapping the model in
DistributedDataParallel: DDP only synchronises through ``forward()``, while tasks call model
methods such as ``encode``/``decode`` directly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(backend: str | None = None, init_method: str | None = None) -> DistInfo:
    """Join the process group described by torchrun's RANK/WORLD_SIZE/LOCAL_RANK variables.

    Single-process when they are absent. Backend: nccl when CUDA is available, else gloo.
    ``init_method``: where the ranks meet (default torchrun's ``env://``: MASTER_ADDR and
    MASTER_PORT); ``file:///path/on/a/shared/disk`` needs no port."""
    if dist.is_available() and dist.is_initialized():
        return info()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    if init_method is None:
        dist.init_process_group(backend=backend)
    else:
        rank = int(os.environ.get("RANK", "0"))
        dist.init_process_group(backend=backend, init_method=init_method, rank=rank, world_size=world)
    return info()


def info() -> DistInfo:
    if dist.is_available() and dist.is_initialized():
        return DistInfo(
            rank=dist.get_rank(),
            world_size=dist.get_world_size(),
            local_rank=int(os.environ.get("LOCAL_RANK", dist.get_rank())),
        )
    return DistInfo()


def rank() -> int:
    return info().rank


def world_size() -> int:
    return info().world_size


def is_main() -> bool:
    """True on rank 0 (and in single-process runs): the one process that logs and writes."""
    return rank() == 0


def barrier() -> None:
    if info().enabled:
        dist.barrier()


def cleanup() -> None:
    """Leave the process group. All ranks meet at a barrier first: a rank that tears gloo down
    while a peer is still finishing its last collective can abort the peer at exit ("terminate
    called without an active exception", seen once in CI)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank."""
    if not info().enabled:
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src)


def average_gradients(params: list[nn.Parameter]) -> None:
    """All-reduce and average gradients in one flat buffer (one collective per step)."""
    world = world_size()
    if world <= 1:
        return
    for p in params:
        # Every rank must contribute the same flat layout, even for a parameter unused this step.
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


def default_device(dist_info: DistInfo | None = None) -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", (dist_info or info()).local_rank)
    return torch.device("cpu")
