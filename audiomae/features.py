"""Log-mel front end, normalisation statistics, and patchify / unpatchify.

Shapes: waveforms are ``(B, S)`` (or ``(S,)``), spectrograms ``(B, F, T)`` with F mel bins
and T frames, patch sequences ``(B, N, P)`` with N = (F / patch_f) * (T / patch_t) patches
ordered time-major (all frequency patches of column 0, then column 1, ...), so a lost
packet is a contiguous run of ``F / patch_f`` tokens.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from audiomae.config import FeatureConfig


def mel_filterbank(cfg: FeatureConfig) -> torch.Tensor:
    """Slaney-style mel filterbank ``(n_mels, n_fft // 2 + 1)``, as librosa builds it."""
    import librosa

    fb = librosa.filters.mel(
        sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.f_min, fmax=cfg.fmax, htk=False
    )
    return torch.from_numpy(fb.astype(np.float32))


def _padded_window(cfg: FeatureConfig) -> torch.Tensor:
    # A win_length Hann window centred in n_fft, which is what librosa and nnAudio do.
    win = torch.hann_window(cfg.win_length, periodic=True, dtype=torch.float64)
    left = (cfg.n_fft - cfg.win_length) // 2
    return torch.nn.functional.pad(win, (left, cfg.n_fft - cfg.win_length - left)).float()


class LogMel(nn.Module):
    """Waveform ``(B, S)`` -> natural-log mel power ``(B, F, T)``.

    ``backend``: "nnaudio" (conv1d STFT, the default), "torch" (torch.stft; same output to
    float tolerance) or "torchaudio" (optional extra). All run batched on any device.
    """

    def __init__(self, cfg: FeatureConfig | None = None, backend: str = "nnaudio") -> None:
        super().__init__()
        self.cfg = cfg = cfg or FeatureConfig()
        if cfg.frontend != "logmel":
            raise ValueError(
                f"LogMel computes the log-mel front end, not {cfg.frontend!r} (see make_frontend)"
            )
        self.backend = backend
        self.register_buffer("mel_fb", mel_filterbank(cfg), persistent=False)
        self.register_buffer("window", _padded_window(cfg), persistent=False)
        if backend == "nnaudio":
            from nnAudio.features import STFT

            self._stft = STFT(
                n_fft=cfg.n_fft,
                win_length=cfg.win_length,
                hop_length=cfg.hop_length,
                window="hann",
                center=cfg.center,
                pad_mode="constant",
                output_format="Magnitude",
                trainable=False,
                verbose=False,
            )
        elif backend == "torchaudio":
            try:
                import torchaudio  # noqa: F401
            except ImportError as exc:
                raise ImportError(
                    "LogMel(backend='torchaudio') needs torchaudio: pip install 'audiomae[torchaudio]'"
                ) from exc
            from torchaudio.transforms import Spectrogram

            self._stft = Spectrogram(
                n_fft=cfg.n_fft,
                win_length=cfg.win_length,
                hop_length=cfg.hop_length,
                center=cfg.center,
                pad_mode="constant",
                power=None,
            )
        elif backend != "torch":
            raise ValueError(f"unknown LogMel backend '{backend}' (nnaudio, torch, torchaudio)")

    def spectrogram_power(self, wave: torch.Tensor) -> torch.Tensor:
        """Linear STFT power ``(B, n_fft//2+1, T)``."""
        cfg = self.cfg
        if self.backend == "torch":
            spec = torch.stft(
                wave,
                n_fft=cfg.n_fft,
                hop_length=cfg.hop_length,
                window=self.window,
                center=cfg.center,
                pad_mode="constant",
                return_complex=True,
            )
            return spec.real.square() + spec.imag.square()
        if self.backend == "nnaudio":
            return self._stft(wave).square()
        return self._stft(wave).abs().square()

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        squeeze = wave.dim() == 1
        if squeeze:
            wave = wave.unsqueeze(0)
        if wave.dim() != 2:
            raise ValueError(f"LogMel expects (B, S) or (S,) waveforms, got shape {tuple(wave.shape)}")
        # Always float32, also inside a bf16 autocast region: a bf16 STFT / filterbank matmul
        # would put ~0.4% errors into every log-mel value the model learns from.
        with torch.autocast(wave.device.type, enabled=False):
            power = self.spectrogram_power(wave.float())
            if self.cfg.power != 2.0:
                power = power.clamp_min(0).pow(self.cfg.power / 2)
            mel = torch.matmul(self.mel_fb, power)
            out = torch.log(mel.clamp_min(self.cfg.log_floor))
        return out[0] if squeeze else out


def make_frontend(cfg: FeatureConfig | None = None, backend: str = "nnaudio") -> nn.Module:
    """The front end ``cfg`` names: :class:`LogMel` (with ``backend``) or, for
    ``frontend="kaldi"``, :class:`audiomae.kaldi.KaldiFbank`. Waveform ``(B, S)`` -> ``(B, F, T)``."""
    cfg = cfg or FeatureConfig()
    if cfg.frontend == "kaldi":
        from audiomae.kaldi import KaldiFbank

        return KaldiFbank(cfg)
    return LogMel(cfg, backend=backend)


@dataclass(frozen=True)
class NormStats:
    """Global mean / std of log-mel values over a dataset (Audio-MAE normalises with scalars)."""

    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self) -> None:
        # A zero, huge or non-finite std would only show up later, as NaN inputs to the model.
        from audiomae.config import check_norm

        check_norm(float(self.mean), float(self.std))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean


def compute_norm_stats(waves: Iterable[np.ndarray | torch.Tensor], frontend: LogMel) -> NormStats:
    """Mean and std of log-mel values over every frame of ``waves`` (float64 accumulation)."""
    total, total_sq, count = 0.0, 0.0, 0
    with torch.no_grad():
        for wave in waves:
            x = frontend(torch.as_tensor(wave, dtype=torch.float32)).double()
            total += float(x.sum())
            total_sq += float(x.square().sum())
            count += x.numel()
    if count == 0:
        raise ValueError("cannot compute normalisation statistics from no audio")
    mean = total / count
    var = max(total_sq / count - mean * mean, 1e-12)
    return NormStats(mean=float(mean), std=float(np.sqrt(var)))


def patchify(spec: torch.Tensor, patch_f: int, patch_t: int) -> torch.Tensor:
    """``(B, F, T)`` -> ``(B, N, patch_f * patch_t)``, time-major patch order."""
    b, f, t = spec.shape
    if f % patch_f or t % patch_t:
        raise ValueError(f"spectrogram {f}x{t} is not divisible into {patch_f}x{patch_t} patches")
    gf, gt = f // patch_f, t // patch_t
    x = spec.reshape(b, gf, patch_f, gt, patch_t)
    x = x.permute(0, 3, 1, 2, 4)  # (B, gt, gf, pf, pt)
    return x.reshape(b, gt * gf, patch_f * patch_t)


def unpatchify(patches: torch.Tensor, n_mels: int, patch_f: int, patch_t: int) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``(B, N, P)`` -> ``(B, F, T)``."""
    b, n, p = patches.shape
    if p != patch_f * patch_t or n_mels % patch_f:
        raise ValueError(f"patch dim {p} does not match {patch_f}x{patch_t} patches of {n_mels} bins")
    gf = n_mels // patch_f
    if n % gf:
        raise ValueError(f"{n} patches is not a whole number of {gf}-patch columns")
    gt = n // gf
    x = patches.reshape(b, gt, gf, patch_f, patch_t).permute(0, 2, 3, 1, 4)
    return x.reshape(b, n_mels, gt * patch_t)


def pad_frames(spec: torch.Tensor, multiple: int, value: float | None = None) -> torch.Tensor:
    """Right-pad (or keep) the time axis of ``(B, F, T)`` to a multiple of ``multiple`` frames.

    ``value`` defaults to the spectrogram's minimum, i.e. silence."""
    t = spec.shape[-1]
    extra = (-t) % multiple
    if extra == 0:
        return spec
    fill = float(spec.min()) if value is None else value
    return torch.nn.functional.pad(spec, (0, extra), value=fill)
