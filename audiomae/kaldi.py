"""Kaldi-compatible log mel filterbank, the front end of the original Audio-MAE (and AST) code.

The reference computes ``torchaudio.compliance.kaldi.fbank(wave - wave.mean(), htk_compat=True,
window_type='hanning', num_mel_bins=128, frame_shift=10, dither=0.0, use_energy=False)`` and
pads (with zeros, in the log domain) or cuts the result to a fixed number of frames. This module
computes the same in plain torch (torchaudio stays optional): frames that fit the clip
(Kaldi's ``snip_edges``), each frame's mean removed, pre-emphasis 0.97, a symmetric Hann window,
zero-padding to ``n_fft``, power spectrum, triangular filters on Kaldi's mel scale
(1127 ln(1 + f / 700)), natural log floored at float32 epsilon.

Shapes: waveforms ``(B, S)`` (or ``(S,)``), outputs ``(B, F, T)`` like :class:`LogMel`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from audiomae.config import FeatureConfig

PREEMPHASIS = 0.97  # Kaldi's default, which the reference keeps
KALDI_EPSILON = float(torch.finfo(torch.float32).eps)  # Kaldi floors energies at this before the log


def kaldi_mel_scale(freq: torch.Tensor | float) -> torch.Tensor | float:
    if isinstance(freq, torch.Tensor):
        return 1127.0 * (1.0 + freq / 700.0).log()
    return 1127.0 * math.log(1.0 + freq / 700.0)


def kaldi_mel_banks(cfg: FeatureConfig) -> torch.Tensor:
    """Kaldi's triangular mel filters ``(n_mels, n_fft // 2 + 1)``; the Nyquist bin gets no weight.

    Triangles are linear in mel (not in Hz) between equally spaced mel points from ``f_min``
    to ``f_max``, evaluated at the FFT bin frequencies. Computed in float32 in torchaudio's
    order of operations: the lowest bins of a pre-emphasised spectrum sit near float32's
    rounding noise, where a filter that differs in its last bit already shows."""
    n_bins = cfg.n_fft // 2
    mel_lo, mel_hi = kaldi_mel_scale(cfg.f_min), kaldi_mel_scale(cfg.fmax)
    delta = (mel_hi - mel_lo) / (cfg.n_mels + 1)
    edge = torch.arange(cfg.n_mels, dtype=torch.float32).unsqueeze(1)
    left = mel_lo + edge * delta
    center = mel_lo + (edge + 1.0) * delta
    right = mel_lo + (edge + 2.0) * delta
    mel = kaldi_mel_scale(cfg.sample_rate / cfg.n_fft * torch.arange(n_bins, dtype=torch.float32)).unsqueeze(
        0
    )
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    banks = torch.max(torch.zeros(1), torch.min(up, down))
    return F.pad(banks, (0, 1))


class KaldiFbank(nn.Module):
    """Waveform ``(B, S)`` -> Kaldi log mel filterbank ``(B, F, T)`` (natural log of power).

    Each clip's mean is removed first, as the reference's data loader does. With
    ``cfg.target_frames`` every output has exactly that many frames: longer clips are cut at
    the end, shorter ones padded with zeros (log-domain zeros, as the reference pads)."""

    def __init__(self, cfg: FeatureConfig) -> None:
        super().__init__()
        if cfg.frontend != "kaldi":
            raise ValueError(f"KaldiFbank needs a FeatureConfig with frontend='kaldi', got {cfg.frontend!r}")
        self.cfg = cfg
        window = torch.hann_window(cfg.win_length, periodic=False, dtype=torch.float32)
        self.register_buffer("window", window, persistent=False)
        self.register_buffer("mel_fb", kaldi_mel_banks(cfg), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        squeeze = wave.dim() == 1
        if squeeze:
            wave = wave.unsqueeze(0)
        if wave.dim() != 2:
            raise ValueError(f"KaldiFbank expects (B, S) or (S,) waveforms, got shape {tuple(wave.shape)}")
        cfg = self.cfg
        if wave.shape[-1] < cfg.win_length:
            raise ValueError(
                f"KaldiFbank needs at least one {cfg.win_length}-sample frame, got {wave.shape[-1]} samples"
            )
        # float32 also inside a bf16 autocast region (see LogMel.forward).
        with torch.autocast(wave.device.type, enabled=False):
            x = wave.float()
            x = x - x.mean(dim=-1, keepdim=True)
            frames = x.unfold(-1, cfg.win_length, cfg.hop_length)  # (B, T, win)
            frames = frames - frames.mean(dim=-1, keepdim=True)
            previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
            frames = (frames - PREEMPHASIS * previous) * self.window
            frames = F.pad(frames, (0, cfg.n_fft - cfg.win_length))
            spectrum = torch.fft.rfft(frames).abs().pow(cfg.power)
            mel = torch.matmul(spectrum, self.mel_fb.T)
            out = mel.clamp_min(cfg.log_floor).log().transpose(1, 2)
        if cfg.target_frames is not None:
            out = fix_frames(out, cfg.target_frames)
        return out[0] if squeeze else out


def fix_frames(spec: torch.Tensor, frames: int) -> torch.Tensor:
    """``(B, F, T)`` cut at the end or right-padded with zeros to ``frames`` frames."""
    t = spec.shape[-1]
    if t >= frames:
        return spec[..., :frames]
    return F.pad(spec, (0, frames - t))


__all__ = ["KALDI_EPSILON", "KaldiFbank", "fix_frames", "kaldi_mel_banks", "kaldi_mel_scale"]
