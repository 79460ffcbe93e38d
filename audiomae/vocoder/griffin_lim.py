"""The Griffin-Lim vocoder: mel power -> linear power (NNLS on the filterbank), then fast
Griffin-Lim (Perraudin et al. 2013, momentum 0.99) from random phase, PGHI phase, or the phase of
known audio."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from audiomae.config import FeatureConfig
from audiomae.features import _padded_window
from audiomae.vocoder.pghi import pghi
from audiomae.vocoder.spectral import check_mel, istft, mel_to_linear_power, stft

# Iterations of copy synthesis (GriffinLim, `audiomae resynth`), started from PGHI phase on the
# flat-start NNLS magnitude: on LibriSpeech dev PESQ-WB stops rising by 32 (48 and 64 add
# nothing on the screen), at about 0.03 one-thread RTF (benchmarks/bench_vocoder.py;
# docs/results.md). The PLC renderers choose their own counts and keep random / received phase.
COPY_SYNTHESIS_ITERS = 32


def griffin_lim(
    mel: torch.Tensor,
    cfg: FeatureConfig | None = None,
    n_iter: int = 32,
    momentum: float = 0.99,
    init_audio: torch.Tensor | None = None,
    known_frames: torch.Tensor | None = None,
    method: str = "nnls",
    generator: torch.Generator | None = None,
    magnitude: torch.Tensor | None = None,
    n_inversion_iter: int = 30,
    init_phase: str = "random",
) -> torch.Tensor:
    """Fast Griffin-Lim from log-mel ``(B, F, T)`` to waveform ``(B, (T - 1) * hop)``.

    ``init_audio`` ``(B, S)``: start from its phase instead of random phase (for PLC, the
    received audio around a gap, with anything in the gap). ``known_frames`` ``(B, T)`` or
    ``(T,)`` bool: frames whose phase is re-imposed from ``init_audio`` after every
    iteration, so the received audio anchors the phase of the frames the algorithm fills.
    ``magnitude`` overrides the mel inversion with a linear magnitude ``(B, n_fft//2+1, T)``;
    ``method`` and ``n_inversion_iter`` are those of :func:`mel_to_linear_power` otherwise.
    ``init_phase`` without ``init_audio``: ``"random"`` or ``"pghi"``, the phase that
    :func:`audiomae.vocoder.pghi.pghi` integrates from the magnitude (near-consistent from the
    start, so a few iterations reach what random phase needs many more for).
    """
    cfg = cfg or FeatureConfig()
    mel = check_mel(mel, cfg.n_mels)
    b, _, t = mel.shape
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    if init_phase not in ("random", "pghi"):
        raise ValueError(f"unknown init_phase '{init_phase}' (random, pghi)")
    if init_phase == "pghi" and init_audio is not None:
        raise ValueError("init_phase='pghi' and init_audio both choose the starting phase; pass one")
    if magnitude is None:
        magnitude = mel_to_linear_power(mel, cfg, method=method, n_iter=n_inversion_iter).sqrt()
    window = _padded_window(cfg).to(mel.device)
    if init_audio is not None:
        init_audio = torch.as_tensor(init_audio, dtype=torch.float32, device=mel.device)
        if init_audio.dim() == 1:
            init_audio = init_audio.unsqueeze(0)
        if init_audio.shape[0] != b:
            raise ValueError(f"init_audio: batch {init_audio.shape[0]} does not match mel batch {b}")
        need = (t - 1) * cfg.hop_length
        init_audio = F.pad(init_audio[:, :need], (0, max(0, need - init_audio.shape[1])))
        known_spec = stft(init_audio, cfg, window)[..., :t]
        # Silent bins have no phase; random phase there avoids a degenerate all-real start.
        rand = torch.rand(known_spec.shape, generator=generator, dtype=torch.float32) * (2 * math.pi)
        rand = torch.polar(torch.ones_like(rand), rand).to(mel.device)
        silent = known_spec.abs() < 1e-8
        angles = torch.where(silent, rand, known_spec / known_spec.abs().clamp_min(1e-8))
    else:
        if init_phase == "pghi":
            angles = pghi(magnitude, cfg, generator=generator)
        else:
            rand = torch.rand(magnitude.shape, generator=generator, dtype=torch.float32) * (2 * math.pi)
            angles = torch.polar(torch.ones_like(rand), rand).to(mel.device)
        if known_frames is not None:
            raise ValueError("known_frames needs init_audio to take the phase from")
    keep = None
    if known_frames is not None:
        keep = torch.as_tensor(known_frames, dtype=torch.bool, device=mel.device)
        keep = keep.expand(b, t) if keep.dim() == 1 else keep
        if keep.shape != (b, t):
            raise ValueError(f"known_frames: expected ({b}, {t}) or ({t},), got {tuple(keep.shape)}")
        keep = keep.unsqueeze(1)
        anchor = angles.clone()
    prev = torch.zeros_like(angles)
    for _ in range(n_iter):
        wave = istft(magnitude * angles, cfg, window)
        rebuilt = stft(wave, cfg, window)[..., :t]
        # Momentum extrapolates along the last step's direction ("fast" Griffin-Lim).
        angles = rebuilt - prev * (momentum / (1.0 + momentum))
        angles = angles / angles.abs().clamp_min(1e-16)
        if keep is not None:
            angles = torch.where(keep, anchor, angles)
        prev = rebuilt
    return istft(magnitude * angles, cfg, window)


class GriffinLim(nn.Module):
    """Fast Griffin-Lim with the :class:`Vocoder` call signature: ``forward(mel) -> (B, (T-1)*hop)``.

    The default copy-synthesis vocoder: the flat-start NNLS magnitude (``method="flat"``), PGHI
    phase as the start, then :data:`COPY_SYNTHESIS_ITERS` iterations. ``method="nnls",
    init_phase="random"`` is plain fast Griffin-Lim from random phase, which needs more
    iterations for less (docs/results.md).
    """

    def __init__(
        self,
        features: FeatureConfig | None = None,
        n_iter: int = COPY_SYNTHESIS_ITERS,
        momentum: float = 0.99,
        seed: int = 0,
        method: str = "flat",
        n_inversion_iter: int = 60,
        init_phase: str = "pghi",
    ) -> None:
        super().__init__()
        self.feature_cfg = features or FeatureConfig()
        self.n_iter, self.momentum, self.seed = n_iter, momentum, seed
        self.method, self.n_inversion_iter, self.init_phase = method, n_inversion_iter, init_phase

    @torch.no_grad()
    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed)
        return griffin_lim(
            mel,
            self.feature_cfg,
            self.n_iter,
            self.momentum,
            method=self.method,
            generator=gen,
            n_inversion_iter=self.n_inversion_iter,
            init_phase=self.init_phase,
        )
