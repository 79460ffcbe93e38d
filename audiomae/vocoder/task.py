"""The :class:`VocoderTask` that trains a :class:`Vocoder` with :func:`audiomae.train.fit`."""

from __future__ import annotations

import os

import torch

from audiomae.features import LogMel
from audiomae.vocoder.losses import VocoderLoss, phase_loss
from audiomae.vocoder.model import Vocoder
from audiomae.vocoder.spectral import istft, stft


class VocoderTask:
    """Trains a :class:`Vocoder` to re-synthesise audio from its own log-mel.

    Loss: multi-resolution STFT (spectral convergence + log-magnitude L1) + mel L1. No
    adversarial terms: on a ~30 min CPU budget they cost a second network and several times
    the step time, and regression losses dominate the quality reached in so few steps."""

    def __init__(self, model: Vocoder, mel_weight: float = 1.0, phase_weight: float = 0.0) -> None:
        self.model = model
        self.loss = VocoderLoss(model.feature_cfg, mel_weight=mel_weight)
        self.frontend = LogMel(model.feature_cfg, backend="torch")
        self.phase_weight = phase_weight

    def _run(self, wave: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        self.loss.to(wave.device)
        self.frontend.to(wave.device)
        with torch.no_grad():
            mel = self.frontend(wave)
        if not self.phase_weight:
            return self.loss(self.model(mel), wave)
        mag, phase = self.model.magnitude_phase(mel)
        spec = torch.complex(mag * torch.cos(phase), mag * torch.sin(phase))
        loss, parts = self.loss(istft(spec, self.model.feature_cfg, self.model.head.window), wave)
        with torch.no_grad():
            target = stft(wave, self.model.feature_cfg, self.model.head.window)[..., : phase.shape[-1]]
        ph = phase_loss(phase, target)
        loss = loss + self.phase_weight * ph
        return loss, {**parts, "loss": loss.item(), "phase": ph.item()}

    def training_step(self, batch: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        return self._run(batch)

    def validation_step(self, batch: torch.Tensor) -> dict[str, float]:
        return self._run(batch)[1]

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        self.model.save_pretrained(directory)
