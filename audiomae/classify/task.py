"""The :class:`ClassificationTask` that trains an :class:`AudioClassifier` with :func:`audiomae.train.fit`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiomae.augment import AugmentConfig, augment_batch, center_crop, patch_mask
from audiomae.classify.metrics import accuracy, mean_average_precision
from audiomae.classify.model import AudioClassifier


@dataclass
class ClassificationTask:
    """Adapter for :func:`audiomae.train.fit`. Batches are ``(spec (B, F, T), target)`` with
    target (B,) class indices or (B, C) multi-hot; augmentation and the encoder's structured
    patch mask are drawn from a generator seeded by ``(seed, step)`` so a resumed run repeats
    the same draws.

    ``pooled_inputs``: batches hold pooled encoder features ``(B, enc_dim)`` instead of
    spectrograms, so a linear probe can train on features computed once (the frozen encoder
    gives the same features every epoch). ``eval_frames``: centre-crop validation inputs."""

    model: AudioClassifier
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    layer_decay: float = 0.75
    seed: int = 0
    eval_frames: int | None = None
    pooled_inputs: bool = False

    def __post_init__(self) -> None:
        if self.pooled_inputs and self.model.cfg.mode != "linear_probe":
            raise ValueError(
                "pooled_inputs needs a linear_probe classifier (a fine-tune must run the encoder)"
            )

    def _generator(self, step: int) -> torch.Generator:
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        seed = np.random.SeedSequence([self.seed, step, rank]).generate_state(1, np.uint64)[0] >> np.uint64(1)
        return torch.Generator().manual_seed(int(seed))

    def training_step(self, batch: Any, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        spec, target = batch
        model = self.model
        if self.pooled_inputs:
            logits = model.head_logits(spec)
            loss = model.loss(logits, target)
            logs = {"loss": float(loss.detach())}
            if not model.cfg.multilabel:
                logs["acc"] = accuracy(logits.detach(), target)
            return loss, logs
        g = self._generator(step)
        aug = self.augment
        if model.cfg.mode == "linear_probe":
            # MAE's linear probe trains on clean features; masking a frozen encoder only adds noise.
            mask = None
        else:
            spec, target = augment_batch(spec, target, aug, model.cfg.num_classes, generator=g)
            grid_t, grid_f = model.encoder.grid(spec)
            mask = patch_mask(aug, spec.shape[0], grid_t, grid_f, generator=g)
            mask = mask.to(spec.device) if mask is not None else None
        out = model(spec, mask)
        loss = model.loss(out.logits, target)
        logs = {"loss": float(loss.detach())}
        if not model.cfg.multilabel:
            logs["acc"] = accuracy(out.logits.detach(), target)
        return loss, logs

    @torch.no_grad()
    def validation_step(self, batch: Any) -> dict[str, float]:
        spec, target = batch
        if self.pooled_inputs:
            logits = self.model.head_logits(spec)
        else:
            if self.eval_frames is not None:
                spec = center_crop(spec, self.eval_frames)
            logits = self.model(spec).logits
        out = {"loss": float(self.model.loss(logits, target))}
        if self.model.cfg.multilabel:
            try:
                out["map"] = mean_average_precision(torch.sigmoid(logits), target)
            except ValueError:
                pass  # a validation batch without any positive label has no mAP
        else:
            out["acc"] = accuracy(logits, target)
            out["err"] = 1.0 - out["acc"]
        return out

    def param_groups(self, base_lr: float, weight_decay: float) -> list[dict[str, Any]]:
        return self.model.param_groups(base_lr, weight_decay, self.layer_decay)

    def save_pretrained(self, directory: str | Path) -> None:
        self.model.save_pretrained(directory)
