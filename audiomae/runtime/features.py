"""The log-mel front end in numpy: the same values as :class:`audiomae.features.LogMel`.

Shapes follow the package convention: waveforms ``(B, S)`` or ``(S,)``, spectra ``(B, bins,
T)`` with ``bins = n_fft // 2 + 1``, log-mel ``(B, F, T)``. The STFT is centred with zero
padding and a ``win_length`` Hann window centred in ``n_fft`` (as torch.stft, librosa and
nnAudio compute it); the filterbank is librosa's Slaney-style mel.
"""

from __future__ import annotations

import functools

import numpy as np

from audiomae.config import FeatureConfig

_MIN_LOG_HZ = 1000.0
_F_SP = 200.0 / 3  # Hz per mel below 1 kHz (Slaney)
_LOGSTEP = np.log(6.4) / 27.0


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / _F_SP
    log = hz >= _MIN_LOG_HZ
    return np.where(log, _MIN_LOG_HZ / _F_SP + np.log(np.maximum(hz, 1e-12) / _MIN_LOG_HZ) / _LOGSTEP, mel)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    min_log_mel = _MIN_LOG_HZ / _F_SP
    return np.where(mel >= min_log_mel, _MIN_LOG_HZ * np.exp(_LOGSTEP * (mel - min_log_mel)), _F_SP * mel)


@functools.lru_cache(maxsize=8)
def _mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    fft_freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]  # Slaney: constant energy per band
    out = weights.astype(np.float32)
    out.setflags(write=False)
    return out


def mel_filterbank(cfg: FeatureConfig) -> np.ndarray:
    """Slaney-style mel filterbank ``(n_mels, n_fft // 2 + 1)`` float32 (read-only)."""
    return _mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, float(cfg.f_min), float(cfg.fmax))


@functools.lru_cache(maxsize=8)
def _window(n_fft: int, win_length: int) -> np.ndarray:
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win_length) / win_length)  # periodic Hann
    left = (n_fft - win_length) // 2
    out = np.pad(win, (left, n_fft - win_length - left)).astype(np.float32)
    out.setflags(write=False)
    return out


def padded_window(cfg: FeatureConfig) -> np.ndarray:
    """The analysis window ``(n_fft,)``: a ``win_length`` periodic Hann centred in ``n_fft``."""
    return _window(cfg.n_fft, cfg.win_length)


def stft(wave: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Centred STFT of ``(B, S)`` or ``(S,)`` -> complex ``(B, bins, 1 + S // hop)`` (or unbatched)."""
    # float64 throughout: in the quietest bands (70 dB below a frame's loudest) a float32 FFT's
    # rounding is already 1e-4 in the log domain.
    x = np.asarray(wave, dtype=np.float64)
    squeeze = x.ndim == 1
    x = np.atleast_2d(x)
    half = cfg.n_fft // 2
    x = np.pad(x, ((0, 0), (half, half)))
    frames = np.lib.stride_tricks.sliding_window_view(x, cfg.n_fft, axis=-1)[:, :: cfg.hop_length]
    spec = np.fft.rfft(frames * padded_window(cfg).astype(np.float64), axis=-1).transpose(0, 2, 1)
    return spec[0] if squeeze else spec


def istft(spec: np.ndarray, cfg: FeatureConfig, length: int) -> np.ndarray:
    """Inverse of :func:`stft` by weighted overlap-add: ``(B, bins, T)`` or ``(bins, T)`` ->
    ``(B, length)``."""
    spec = np.asarray(spec)
    if spec.ndim == 2:
        spec = spec[None]
    b, _, t = spec.shape
    n_fft, hop = cfg.n_fft, cfg.hop_length
    window = padded_window(cfg).astype(np.float64)
    frames = np.fft.irfft(spec.transpose(0, 2, 1), n=n_fft, axis=-1) * window  # (B, T, n_fft)
    total = n_fft + hop * (t - 1)
    out = np.zeros((b, total))
    norm = np.zeros(total)
    for i in range(t):
        out[:, i * hop : i * hop + n_fft] += frames[:, i]
        norm[i * hop : i * hop + n_fft] += window**2
    start = n_fft // 2
    out = out[:, start : start + length] / np.where(norm > 1e-11, norm, 1.0)[start : start + length]
    if out.shape[1] < length:
        out = np.pad(out, ((0, 0), (0, length - out.shape[1])))
    return out.astype(np.float32)


class LogMel:
    """Waveform ``(B, S)`` or ``(S,)`` -> natural-log mel power ``(B, F, T)`` (or ``(F, T)``),
    float32; equal to :class:`audiomae.features.LogMel` to float rounding."""

    def __init__(self, cfg: FeatureConfig | None = None) -> None:
        self.cfg = cfg or FeatureConfig()
        if not self.cfg.center:
            raise ValueError("the numpy front end implements center=True only")
        self.mel_fb = mel_filterbank(self.cfg)

    def power(self, wave: np.ndarray) -> np.ndarray:
        """Linear STFT power ``(B, bins, T)`` (float64)."""
        spec = stft(wave, self.cfg)
        return spec.real**2 + spec.imag**2

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        x = np.asarray(wave)
        if x.ndim not in (1, 2):
            raise ValueError(f"LogMel expects (B, S) or (S,) waveforms, got shape {x.shape}")
        power = self.power(x)
        if self.cfg.power != 2.0:
            power = np.maximum(power, 0) ** (self.cfg.power / 2)
        mel = np.matmul(self.mel_fb.astype(np.float64), power)
        return np.log(np.maximum(mel, self.cfg.log_floor)).astype(np.float32)


__all__ = ["LogMel", "istft", "mel_filterbank", "padded_window", "stft"]
