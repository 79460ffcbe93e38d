"""What a model family implements to be trained by :func:`audiomae.train.fit`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn


@runtime_checkable
class Task(Protocol):
    """A model plus its loss. The loop owns optimisation, devices, precision and checkpoints.

    Batches arrive already on the training device. ``step`` passed to :meth:`training_step`
    counts micro-batches (it equals the optimiser step when ``grad_accum == 1``) and is a
    pure function of training progress: derive any randomness (masks, augmentation) from
    ``torch.Generator().manual_seed(derive_seed(seed, step, rank))`` and a resumed run reproduces it.
    Under DDP the loop averages gradients itself, so a task may call any model method, not
    only ``forward``.

    Optional methods, looked up with ``getattr``:
      ``param_groups(base_lr, weight_decay) -> list[dict]`` (may set ``lr_scale`` per group),
      ``plot(batch, path)`` (a PNG for a person to look at),
      ``collate(items) -> batch`` (for map-style datasets; default ``default_collate``).
    """

    model: nn.Module

    def training_step(self, batch: Any, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """Scalar loss to minimise and floats to log."""
        ...

    def validation_step(self, batch: Any) -> dict[str, float]:
        """Metrics for one validation batch (averaged over batches by the loop)."""
        ...

    def save_pretrained(self, directory: str | Path) -> None:
        """Export the trained model as a self-describing checkpoint (audiomae.checkpoint)."""
        ...


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (nearby steps get unrelated streams)."""
    return int(
        np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint64)[0] >> 1
    )


def default_param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on biases, norms, embeddings and tokens (1-D tensors)."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups
