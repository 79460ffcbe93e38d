"""Spectral operations the vocoders share: the front end's STFT and its inverse, mel -> linear
power, and a consistency measure. Frame ``t`` is centred on sample ``t * hop``."""

from __future__ import annotations

import functools

import torch

from audiomae.config import FeatureConfig
from audiomae.features import _padded_window, mel_filterbank


def check_mel(mel: torch.Tensor, n_mels: int, name: str = "mel") -> torch.Tensor:
    """``mel`` as float32 ``(B, n_mels, T)`` (a 2-D one gains a batch axis); ValueError naming
    what is wrong with a non-tensor, a wrong shape, fewer than 2 frames or NaN/inf."""
    if not isinstance(mel, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(mel).__name__}")
    if mel.dim() == 2:
        mel = mel.unsqueeze(0)
    if mel.dim() != 3 or mel.shape[1] != n_mels:
        raise ValueError(f"{name}: expected (B, {n_mels}, T) log-mel, got shape {tuple(mel.shape)}")
    if mel.shape[-1] < 2:
        raise ValueError(f"{name}: need at least 2 frames to render audio, got {mel.shape[-1]}")
    if not torch.isfinite(mel).all():
        raise ValueError(f"{name}: contains NaN or inf")
    return mel.float()


@functools.lru_cache(maxsize=8)
def _filterbank_and_pinv(cfg: FeatureConfig) -> tuple[torch.Tensor, torch.Tensor]:
    # The pseudo-inverse is an SVD: compute it once per front end, not once per call (the
    # concealer inverts a short window for every lost packet).
    fb = mel_filterbank(cfg)
    return fb, torch.linalg.pinv(fb.double()).float()


@functools.lru_cache(maxsize=8)
def _nearest_covered_bin(cfg: FeatureConfig) -> torch.Tensor:
    # Index of the nearest bin that some mel filter weighs (itself where covered).
    covered = (mel_filterbank(cfg).sum(0) > 0).nonzero().squeeze(1)
    bins = torch.arange(cfg.n_fft // 2 + 1)
    return covered[(bins.unsqueeze(1) - covered.unsqueeze(0)).abs().argmin(1)]


def mel_to_linear_power(
    mel: torch.Tensor, cfg: FeatureConfig | None = None, method: str = "nnls", n_iter: int = 30
) -> torch.Tensor:
    """Log-mel ``(B, F, T)`` -> non-negative linear power ``(B, n_fft // 2 + 1, T)``.

    ``method="pinv"``: clamped pseudo-inverse of the filterbank (fast, rings into negative
    values that are clipped). ``"nnls"``: starts there and runs ``n_iter`` multiplicative
    (Lee-Seung) updates, which stay non-negative and reduce ``||fb @ P - mel_power||``.
    ``"flat"``: the same updates from each frame's mel power spread evenly over the bins, which
    keeps the pseudo-inverse's ringing out of the estimate (closer to the true spectrum in
    PESQ-WB after Griffin-Lim); bins that no filter weighs (DC, Nyquist) take the power of the
    nearest bin that one does, as a window leaks the lowest band into DC, instead of silence.
    """
    cfg = cfg or FeatureConfig()
    mel = check_mel(mel, cfg.n_mels)
    fb, pinv = _filterbank_and_pinv(cfg)
    fb, pinv = fb.to(mel.device), pinv.to(mel.device)
    target = mel.exp()
    if method == "flat":
        power = (target.mean(1, keepdim=True) / fb.sum(1).mean()).expand(-1, fb.shape[1], -1)
        numer = fb.T @ target
        for _ in range(n_iter):
            power = power * numer / (fb.T @ (fb @ power)).clamp_min(1e-12)
        nearest = _nearest_covered_bin(cfg).to(mel.device)
        return power[:, nearest].clamp_min(cfg.log_floor)
    power = (pinv @ target).clamp_min(cfg.log_floor)
    if method == "pinv":
        return power
    if method != "nnls":
        raise ValueError(f"unknown mel inversion method '{method}' (pinv, nnls, flat)")
    numer = fb.T @ target
    gram = fb.T @ fb
    for _ in range(n_iter):
        power = power * numer / (gram @ power).clamp_min(1e-12)
    return power.clamp_min(cfg.log_floor)


def stft(wave: torch.Tensor, cfg: FeatureConfig, window: torch.Tensor) -> torch.Tensor:
    """The front end's complex STFT of ``wave`` ``(B, S)``: ``(B, n_fft // 2 + 1, S // hop + 1)``."""
    return torch.stft(
        wave,
        cfg.n_fft,
        hop_length=cfg.hop_length,
        window=window,
        center=True,
        pad_mode="constant",
        return_complex=True,
    )


def istft(spec: torch.Tensor, cfg: FeatureConfig, window: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`stft`: ``(B, n_fft // 2 + 1, T)`` -> ``(B, (T - 1) * hop)``."""
    return torch.istft(
        spec,
        cfg.n_fft,
        hop_length=cfg.hop_length,
        window=window,
        center=True,
        length=(spec.shape[-1] - 1) * cfg.hop_length,
    )


def spectral_convergence(
    magnitude: torch.Tensor, wave: torch.Tensor, cfg: FeatureConfig | None = None
) -> float:
    """``||M - |STFT(wave)| ||_F / ||M||_F``: how consistent ``wave`` is with target magnitude ``M``."""
    cfg = cfg or FeatureConfig()
    window = _padded_window(cfg).to(wave.device)
    rebuilt = stft(wave, cfg, window).abs()
    t = min(rebuilt.shape[-1], magnitude.shape[-1])
    diff = magnitude[..., :t] - rebuilt[..., :t]
    return float(diff.norm() / magnitude[..., :t].norm().clamp_min(1e-12))
