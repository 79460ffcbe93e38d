"""The concealer's default renderer in numpy: :class:`audiomae.plc.render.PitchGuidedRenderer`
without torch (same output to float rounding).

A pitch continuation of the played audio (the ``guide``) keeps its harmonic fine structure;
each group of mel bands is scaled to the MAE's predicted energy; frames computed from received
audio only keep their true magnitude and phase; ``n_iter`` fast Griffin-Lim iterations (0 in
the concealer) then settle the phase.
"""

from __future__ import annotations

import numpy as np

from audiomae.config import FeatureConfig
from audiomae.runtime.features import istft, mel_filterbank, stft


class PitchGuidedRenderer:
    """``render(mel (1, F, T), start, stop, audio, known, guide) -> samples of frames
    [start, stop)``. Options as the torch class; ``guide`` is required."""

    def __init__(
        self,
        features: FeatureConfig | None = None,
        n_iter: int = 8,
        momentum: float = 0.99,
        max_gain_db: float = 12.0,
        gain_groups: int | None = 4,
    ) -> None:
        self.feature_cfg = features or FeatureConfig()
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.n_iter, self.momentum = n_iter, momentum
        self._fb = mel_filterbank(self.feature_cfg).astype(np.float64)
        weights = self._fb / np.maximum(self._fb.sum(0, keepdims=True), 1e-8)
        self._spread = weights.T  # (bins, mels): a band's gain applies to the bins it covers
        self._max_gain = 10 ** (max_gain_db / 10)
        n_mels = self._fb.shape[0]
        groups = n_mels if gain_groups is None else gain_groups
        if not 1 <= groups <= n_mels:
            raise ValueError(f"gain_groups must be in [1, {n_mels}], got {gain_groups}")
        member = np.arange(n_mels) * groups // n_mels
        self._groups = (member[None, :] == np.arange(groups)[:, None]).astype(np.float64)
        self._rng = np.random.default_rng(0)

    def logmel(self, audio: np.ndarray, frames: int) -> np.ndarray:
        """The log-mel ``(1, F, frames)`` of ``audio`` as this renderer analyses it."""
        power = self._fb @ np.abs(self._stft(audio, frames)) ** 2
        return np.log(np.maximum(power, self.feature_cfg.log_floor))

    def _stft(self, audio: np.ndarray, frames: int) -> np.ndarray:
        return stft(np.asarray(audio)[None], self.feature_cfg)[..., :frames]

    def render(
        self, mel, start: int, stop: int, audio: np.ndarray, known: np.ndarray, guide=None
    ) -> np.ndarray:
        if guide is None:
            raise ValueError("the numpy PitchGuidedRenderer needs a guide (the continuation to shape)")
        mel = np.asarray(mel, dtype=np.float64)
        frames = mel.shape[-1]
        guide_spec = self._stft(guide, frames)
        guide_mel = self._fb @ np.abs(guide_spec) ** 2
        group_power = np.maximum(self._groups @ guide_mel, self.feature_cfg.log_floor)
        gain = np.clip((self._groups @ np.exp(mel)) / group_power, 1 / self._max_gain, self._max_gain)
        gain = self._groups.T @ gain
        magnitude = np.abs(guide_spec) * np.sqrt(self._spread @ gain)
        if known.any():
            true = np.abs(self._stft(audio, frames))
            magnitude = np.where(known[None, None, :], true, magnitude)
        wave = self._griffin_lim(magnitude, guide, known)
        hop = self.feature_cfg.hop_length
        out = wave[0, start * hop : stop * hop]
        return np.pad(out, (0, (stop - start) * hop - out.size)).astype(np.float32)

    def correct(self, delta, start: int, stop: int, guide: np.ndarray) -> np.ndarray:
        """``guide`` with a residual model's log-mel correction applied to its mel bands (as
        the torch class)."""
        delta = np.asarray(delta, dtype=np.float64)[0]
        frames = delta.shape[-1]
        guide = np.asarray(guide, dtype=np.float32)
        spec = stft(guide[None], self.feature_cfg)[0]
        guide_mel = np.maximum(self._fb @ np.abs(spec[:, :frames]) ** 2, self.feature_cfg.log_floor)
        gain = (self._groups @ (guide_mel * np.exp(delta))) / (self._groups @ guide_mel)
        gain = np.clip(gain, 1 / self._max_gain, self._max_gain)
        scale = np.ones(spec.shape)
        # Bins no mel band covers keep their magnitude (a gain of one spread over the bands).
        scale[:, :frames] = np.sqrt(np.maximum(1 + self._spread @ (self._groups.T @ gain - 1), 0))
        wave = istft((spec * scale)[None], self.feature_cfg, guide.size)[0]
        hop = self.feature_cfg.hop_length
        out = wave[start * hop : stop * hop]
        return np.pad(out, (0, (stop - start) * hop - out.size)).astype(np.float32)

    def _griffin_lim(self, magnitude: np.ndarray, init: np.ndarray, known: np.ndarray) -> np.ndarray:
        cfg = self.feature_cfg
        t = magnitude.shape[-1]
        need = (t - 1) * cfg.hop_length
        init = np.asarray(init, dtype=np.float32)[:need]
        init = np.pad(init, (0, need - init.size))
        known_spec = stft(init[None], cfg)[..., :t]
        size = np.abs(known_spec)
        # Silent bins have no phase: give them a random one (their magnitude is ~0 anyway).
        rand = np.exp(1j * 2 * np.pi * self._rng.random(known_spec.shape))
        angles = np.where(size < 1e-8, rand, known_spec / np.maximum(size, 1e-8))
        keep = known[None, None, :]
        anchor = angles
        prev = np.zeros_like(angles)
        for _ in range(self.n_iter):
            rebuilt = stft(istft(magnitude * angles, cfg, need), cfg)[..., :t]
            # Momentum extrapolates along the last step's direction ("fast" Griffin-Lim).
            angles = rebuilt - prev * (self.momentum / (1.0 + self.momentum))
            angles = angles / np.maximum(np.abs(angles), 1e-16)
            angles = np.where(keep, anchor, angles)
            prev = rebuilt
        return istft(magnitude * angles, cfg, need)


__all__ = ["PitchGuidedRenderer"]
