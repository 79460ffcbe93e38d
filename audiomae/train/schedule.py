"""Learning-rate schedules as pure functions of the step, so resuming needs no scheduler state."""

from __future__ import annotations

import math


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, min_ratio: float = 0.0) -> float:
    """Multiplier of the base lr at ``step`` (0-based): linear warm-up from ~0 to 1 over
    ``warmup_steps``, then a half cosine down to ``min_ratio`` at ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosine:
    """Sets ``lr = base_lr * lr_scale * warmup_cosine(step)`` on every param group.

    ``lr_scale`` (default 1) is a per-group factor, e.g. layer-wise lr decay in fine-tuning."""

    def __init__(
        self, optimizer, base_lr: float, total_steps: int, warmup_steps: int, min_ratio: float = 0.0
    ):
        self.optimizer = optimizer
        self.base_lr = base_lr
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.min_ratio = min_ratio

    def lr_at(self, step: int) -> float:
        return self.base_lr * warmup_cosine(step, self.total_steps, self.warmup_steps, self.min_ratio)

    def apply(self, step: int) -> float:
        lr = self.lr_at(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr
