"""Renderers: what turns the MAE's filled log-mel window into the samples of a lost packet.

Every renderer has ``feature_cfg`` (the log-mel settings it expects) and
``render(mel, start, stop, audio, known, guide=None)`` returning the samples of frames
``[start, stop)`` (:class:`Renderer`). The concealer's default is :class:`PitchGuidedRenderer`
(its numpy twin, for the torch-free runtime, is :class:`audiomae.runtime.PitchGuidedRenderer`);
a renderer that also has ``correct(delta, start, stop, guide)`` can serve a residual model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:  # torch is imported only where the torch renderers run
    import torch


class Renderer(Protocol):
    """What :class:`~audiomae.plc.mae.MAEConcealer` asks of a renderer."""

    feature_cfg: Any

    def render(
        self, mel: Any, start: int, stop: int, audio: np.ndarray, known: np.ndarray, guide: Any = None
    ) -> np.ndarray:
        """Samples ``((stop - start) * hop,)`` of frames ``[start, stop)`` of ``mel`` ``(1, F, T)``:
        ``audio`` is the received window (zeros where lost), ``known`` marks the frames computed
        from received audio only, ``guide`` is the continuation laid over the lost samples."""
        ...


def numpy_pitch_guided_renderer():
    """The class of the torch-free :class:`PitchGuidedRenderer` (``audiomae.runtime``)."""
    from audiomae.runtime.render import PitchGuidedRenderer as NumpyPitchGuidedRenderer

    return NumpyPitchGuidedRenderer


def as_renderer(vocoder) -> Renderer:
    """``vocoder`` as a renderer: a renderer as it is, a neural vocoder wrapped in
    :class:`VocoderRenderer`."""
    return vocoder if hasattr(vocoder, "render") else VocoderRenderer(vocoder)


def known_frames(lost: np.ndarray, frames_per_packet: int, hop: int, win_length: int) -> np.ndarray:
    """Frames whose (centred) analysis window touches no lost sample."""
    samples = np.repeat(lost, frames_per_packet * hop)
    starts = np.arange(samples.size // hop) * hop - win_length // 2
    # lost samples before each window's start and before its end (windows clipped to the signal)
    before = np.concatenate([[0], np.cumsum(samples)])
    lo = np.clip(starts, 0, samples.size)
    hi = np.clip(starts + win_length, 0, samples.size)
    return before[hi] - before[lo] == 0


class VocoderRenderer:
    """Render a filled log-mel window with a neural :class:`~audiomae.vocoder.Vocoder`."""

    def __init__(self, vocoder) -> None:
        self.vocoder = vocoder.eval()
        self.feature_cfg = vocoder.feature_cfg

    def render(
        self, mel: torch.Tensor, start: int, stop: int, audio: np.ndarray, known: np.ndarray, guide=None
    ) -> np.ndarray:
        """Samples of frames ``[start, stop)`` of ``mel`` (1, F, T); the audio arguments are unused."""
        return self.vocoder.synthesize_window(mel, start, stop)[0].numpy()


class GriffinLimRenderer:
    """Render with fast Griffin-Lim whose phase is anchored on the received audio.

    Frames whose analysis window lies entirely in received audio keep their true magnitude
    and phase; only the frames touching the gap are estimated. The gap therefore inherits
    the phase of the audio around it, which keeps the cross-fades smooth. Cost: ``n_iter``
    STFT/iSTFT pairs over a few hundred samples."""

    def __init__(self, features=None, n_iter: int = 24, momentum: float = 0.99) -> None:
        from audiomae.config import FeatureConfig
        from audiomae.features import _padded_window

        self.feature_cfg = features or FeatureConfig()
        self.n_iter, self.momentum = n_iter, momentum
        self._window = _padded_window(self.feature_cfg)

    def render(
        self, mel: torch.Tensor, start: int, stop: int, audio: np.ndarray, known: np.ndarray, guide=None
    ) -> np.ndarray:
        """Samples of frames ``[start, stop)``; ``audio`` is the received window (zeros where
        lost) and ``known`` marks frames computed from received audio only."""
        from audiomae.vocoder import mel_to_linear_power

        magnitude = mel_to_linear_power(mel, self.feature_cfg, method="nnls", n_iter=10).sqrt()
        return self._griffin_lim(mel, start, stop, audio, known, magnitude)

    def logmel(self, audio: np.ndarray, frames: int) -> np.ndarray:
        """The log-mel ``(1, F, frames)`` of ``audio`` as this renderer analyses it (a guide's
        spectrum before it is shaped)."""
        from audiomae.features import mel_filterbank

        power = mel_filterbank(self.feature_cfg) @ self._stft(audio, frames).abs().square()
        return power.clamp_min(self.feature_cfg.log_floor).log().numpy()

    def _stft(self, audio: np.ndarray, frames: int) -> torch.Tensor:
        import torch

        from audiomae.vocoder import stft

        x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)).unsqueeze(0)
        return stft(x, self.feature_cfg, self._window)[..., :frames]

    def _griffin_lim(self, mel, start, stop, audio, known, magnitude, init_audio=None) -> np.ndarray:
        import torch

        from audiomae.vocoder import griffin_lim

        cfg = self.feature_cfg
        init = torch.from_numpy(np.ascontiguousarray(audio if init_audio is None else init_audio))
        known_t = torch.from_numpy(known)
        if known_t.any():
            true = self._stft(audio, mel.shape[-1]).abs()
            magnitude = torch.where(known_t[None, None, :], true, magnitude)
        wave = griffin_lim(
            mel,
            cfg,
            self.n_iter,
            self.momentum,
            init_audio=init,
            known_frames=known_t,
            magnitude=magnitude,
            generator=torch.Generator().manual_seed(0),
        )
        hop = cfg.hop_length
        out = wave[0, start * hop : stop * hop]
        return torch.nn.functional.pad(out, (0, (stop - start) * hop - out.numel())).numpy()


class PitchGuidedRenderer(GriffinLimRenderer):
    """Shape a pitch-period continuation of the played audio with the MAE's log-mel.

    Griffin-Lim from a predicted log-mel alone is smooth but breathy: the mel has no
    harmonic fine structure. Here the gap's magnitude is the continuation's own spectrum
    (harmonics at the last pitch) with each mel band scaled to the predicted energy, and the
    continuation's phase starts Griffin-Lim; frames of received audio stay anchored. Band gains
    are limited to +-``max_gain_db`` and shared by ``gain_groups`` groups of adjacent mel bands
    (None: one gain per band). The defaults (12 dB, 4 groups) scored best on the tuning set
    (``experiments/tune_concealer.md``)."""

    def __init__(
        self,
        features=None,
        n_iter: int = 8,
        momentum: float = 0.99,
        max_gain_db: float = 12.0,
        gain_groups: int | None = 4,
    ) -> None:
        super().__init__(features, n_iter=n_iter, momentum=momentum)
        import torch

        from audiomae.features import mel_filterbank

        self._fb = mel_filterbank(self.feature_cfg)
        weights = self._fb / self._fb.sum(0, keepdim=True).clamp_min(1e-8)  # per-bin share of each mel band
        self._spread = weights.T  # (bins, mels): a band's gain applies to the bins it covers
        self._max_gain = 10 ** (max_gain_db / 10)
        n_mels = self._fb.shape[0]
        groups = n_mels if gain_groups is None else gain_groups
        if not 1 <= groups <= n_mels:
            raise ValueError(f"gain_groups must be in [1, {n_mels}], got {gain_groups}")
        # (groups, mels) one-hot: which group of adjacent mel bands shares one gain
        member = torch.div(torch.arange(n_mels) * groups, n_mels, rounding_mode="floor")
        self._groups = (member[None, :] == torch.arange(groups)[:, None]).to(self._fb.dtype)

    def render(
        self, mel: torch.Tensor, start: int, stop: int, audio: np.ndarray, known: np.ndarray, guide=None
    ) -> np.ndarray:
        if guide is None:
            return super().render(mel, start, stop, audio, known)
        frames = mel.shape[-1]
        guide_spec = self._stft(guide, frames)
        guide_mel = self._fb @ guide_spec.abs().square()
        floor = self.feature_cfg.log_floor
        group_power = (self._groups @ guide_mel).clamp_min(floor)
        gain = ((self._groups @ mel.exp()) / group_power).clamp(1 / self._max_gain, self._max_gain)
        gain = self._groups.T @ gain
        magnitude = guide_spec.abs() * (self._spread @ gain).sqrt()
        return self._griffin_lim(mel, start, stop, audio, known, magnitude, init_audio=guide)

    def correct(self, delta, start: int, stop: int, guide: np.ndarray) -> np.ndarray:
        """Samples of frames ``[start, stop)`` of ``guide`` with each frame's mel bands scaled by
        ``exp(delta)`` (a residual model's log-mel correction, ``(1, F, T)``, zero where it
        corrects nothing) in the renderer's band groups and gain limits, phase kept: with a
        zero correction this is ``guide`` itself (an STFT / iSTFT round trip)."""
        import torch

        from audiomae.vocoder import istft

        delta = torch.as_tensor(delta, dtype=torch.float32)[0]
        frames = delta.shape[-1]
        spec = self._stft(guide, guide.size)  # every frame of the guide
        power = spec.abs().square()[0, :, :frames]
        guide_mel = (self._fb @ power).clamp_min(self.feature_cfg.log_floor)
        gain = (self._groups @ (guide_mel * delta.exp())) / (self._groups @ guide_mel)
        gain = gain.clamp(1 / self._max_gain, self._max_gain)
        scale = torch.ones(spec.shape[1:], dtype=power.dtype)
        # Bins no mel band covers keep their magnitude (a gain of one spread over the bands).
        scale[:, :frames] = (1 + self._spread @ (self._groups.T @ gain - 1)).clamp_min(0).sqrt()
        wave = istft(spec * scale[None], self.feature_cfg, self._window)[0]
        hop = self.feature_cfg.hop_length
        out = wave[start * hop : stop * hop]
        return torch.nn.functional.pad(out, (0, (stop - start) * hop - out.numel())).numpy()


__all__ = [
    "GriffinLimRenderer",
    "PitchGuidedRenderer",
    "Renderer",
    "VocoderRenderer",
    "as_renderer",
    "known_frames",
    "numpy_pitch_guided_renderer",
]
