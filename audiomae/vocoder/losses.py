"""Vocoder training losses: multi-resolution STFT, mel L1 and the APNet phase loss."""

from __future__ import annotations

import math

import torch
from torch import nn

from audiomae.config import FeatureConfig
from audiomae.features import LogMel


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence + log-magnitude L1 averaged over several STFT resolutions.

    ``resolutions``: (n_fft, hop, win) triples; the defaults bracket the 25 ms analysis
    window so neither time nor frequency smearing goes unpunished."""

    def __init__(
        self,
        resolutions: tuple[tuple[int, int, int], ...] = ((256, 64, 256), (512, 128, 512), (1024, 256, 1024)),
    ):
        super().__init__()
        self.resolutions = resolutions
        for i, (_, _, win) in enumerate(resolutions):
            self.register_buffer(f"window{i}", torch.hann_window(win), persistent=False)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = pred.new_zeros(())
        for i, (n_fft, hop, win) in enumerate(self.resolutions):
            window = getattr(self, f"window{i}")
            p = torch.stft(pred, n_fft, hop, win, window, return_complex=True).abs().clamp_min(1e-7)
            t = torch.stft(target, n_fft, hop, win, window, return_complex=True).abs().clamp_min(1e-7)
            sc = (t - p).norm() / t.norm().clamp_min(1e-7)
            total = total + sc + (t.log() - p.log()).abs().mean()
        return total / len(self.resolutions)


def _anti_wrap(x: torch.Tensor) -> torch.Tensor:
    return (x - 2 * math.pi * torch.round(x / (2 * math.pi))).abs()


def phase_loss(phase: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Magnitude-weighted anti-wrapped phase errors (APNet, Ai & Ling 2023) between predicted
    ``phase`` and the complex target STFT ``target``, both ``(B, K, T)``: instantaneous phase,
    group delay (difference along frequency) and instantaneous frequency (along time). The
    two differences do not care about a constant phase offset, which the mel cannot tell;
    weighting by the target magnitude ignores the random phase of empty bins."""
    true = torch.angle(target)
    weight = target.abs()
    weight = weight / weight.mean(dim=(1, 2), keepdim=True).clamp_min(1e-8)
    diff = phase - true
    ip = (weight * _anti_wrap(diff)).mean()
    gd = (weight[:, 1:] * _anti_wrap(diff[:, 1:] - diff[:, :-1])).mean()
    iaf = (weight[..., 1:] * _anti_wrap(diff[..., 1:] - diff[..., :-1])).mean()
    return ip + gd + iaf


class VocoderLoss(nn.Module):
    """``mrstft + mel_weight * L1(log-mel)``; returns (loss, parts) with detached floats."""

    def __init__(self, features: FeatureConfig | None = None, mel_weight: float = 1.0) -> None:
        super().__init__()
        self.stft = MultiResolutionSTFTLoss()
        self.logmel = LogMel(features or FeatureConfig(), backend="torch")
        self.mel_weight = mel_weight

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        n = min(pred.shape[-1], target.shape[-1])
        pred, target = pred[..., :n], target[..., :n]
        stft = self.stft(pred, target)
        mel = (self.logmel(pred) - self.logmel(target)).abs().mean()
        loss = stft + self.mel_weight * mel
        return loss, {"loss": loss.item(), "mrstft": stft.item(), "mel_l1": mel.item()}
