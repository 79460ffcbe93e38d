"""Vocoders: log-mel ``(B, F, T)`` -> waveform ``(B, S)``.

Both take the project's log-mel exactly as :class:`audiomae.features.LogMel` makes it
(natural log of mel power, not normalised; the MAE de-normalises before vocoding).
Frame ``t`` is centred on sample ``t * hop`` (``center=True``), so T frames render
``(T - 1) * hop`` samples, and "the samples of frame t" means ``[t * hop, (t + 1) * hop)``.

- :func:`griffin_lim` / :class:`GriffinLim`: the baseline. Mel power -> linear power by
  non-negative least squares on the mel filterbank, then fast Griffin-Lim (Perraudin et al.
  2013, momentum 0.99), optionally seeded with known audio whose frames keep their phase.
- :class:`Vocoder`: a Vocos-style model (Siuzdak 2023): a ConvNeXt backbone over mel frames
  and an inverse-STFT head that predicts log-magnitude and phase of the *front end's own*
  STFT (same n_fft, window and hop), so a perfect head output is the analysis STFT and the
  iSTFT reconstructs the waveform exactly. The magnitude is predicted as a correction of the
  pseudo-inverse of the mel filterbank, which makes it right from the first step and leaves
  training to the phase and the detail. Backbone convolutions are causal by default
  (``lookahead=0``), so rendering a window with enough left context is exactly the same as
  rendering the whole utterance: see :meth:`Vocoder.synthesize_window`.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from audiomae.config import FeatureConfig, from_dict
from audiomae.features import _padded_window, mel_filterbank

# --------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------


def _check_mel(mel: torch.Tensor, n_mels: int, name: str = "mel") -> torch.Tensor:
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


def mel_to_linear_power(
    mel: torch.Tensor, cfg: FeatureConfig | None = None, method: str = "nnls", n_iter: int = 30
) -> torch.Tensor:
    """Log-mel ``(B, F, T)`` -> non-negative linear power ``(B, n_fft // 2 + 1, T)``.

    ``method="pinv"``: clamped pseudo-inverse of the filterbank (fast, rings into negative
    values that are clipped). ``"nnls"``: starts there and runs ``n_iter`` multiplicative
    (Lee-Seung) updates, which stay non-negative and reduce ``||fb @ P - mel_power||``.
    """
    cfg = cfg or FeatureConfig()
    mel = _check_mel(mel, cfg.n_mels)
    fb, pinv = _filterbank_and_pinv(cfg)
    fb, pinv = fb.to(mel.device), pinv.to(mel.device)
    target = mel.exp()
    power = (pinv @ target).clamp_min(cfg.log_floor)
    if method == "pinv":
        return power
    if method != "nnls":
        raise ValueError(f"unknown mel inversion method '{method}' (pinv, nnls)")
    numer = fb.T @ target
    gram = fb.T @ fb
    for _ in range(n_iter):
        power = power * numer / (gram @ power).clamp_min(1e-12)
    return power.clamp_min(cfg.log_floor)


def _stft(wave: torch.Tensor, cfg: FeatureConfig, window: torch.Tensor) -> torch.Tensor:
    return torch.stft(
        wave,
        cfg.n_fft,
        hop_length=cfg.hop_length,
        window=window,
        center=True,
        pad_mode="constant",
        return_complex=True,
    )


def _istft(spec: torch.Tensor, cfg: FeatureConfig, window: torch.Tensor) -> torch.Tensor:
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
    rebuilt = _stft(wave, cfg, window).abs()
    t = min(rebuilt.shape[-1], magnitude.shape[-1])
    diff = magnitude[..., :t] - rebuilt[..., :t]
    return float(diff.norm() / magnitude[..., :t].norm().clamp_min(1e-12))


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
) -> torch.Tensor:
    """Fast Griffin-Lim from log-mel ``(B, F, T)`` to waveform ``(B, (T - 1) * hop)``.

    ``init_audio`` ``(B, S)``: start from its phase instead of random phase (for PLC, the
    received audio around a gap, with anything in the gap). ``known_frames`` ``(B, T)`` or
    ``(T,)`` bool: frames whose phase is re-imposed from ``init_audio`` after every
    iteration, so the received audio anchors the phase of the frames the algorithm fills.
    ``magnitude`` overrides the mel inversion with a linear magnitude ``(B, n_fft//2+1, T)``.
    """
    cfg = cfg or FeatureConfig()
    mel = _check_mel(mel, cfg.n_mels)
    b, _, t = mel.shape
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    if magnitude is None:
        magnitude = mel_to_linear_power(mel, cfg, method=method).sqrt()
    window = _padded_window(cfg).to(mel.device)
    if init_audio is not None:
        init_audio = torch.as_tensor(init_audio, dtype=torch.float32, device=mel.device)
        if init_audio.dim() == 1:
            init_audio = init_audio.unsqueeze(0)
        if init_audio.shape[0] != b:
            raise ValueError(f"init_audio: batch {init_audio.shape[0]} does not match mel batch {b}")
        need = (t - 1) * cfg.hop_length
        init_audio = F.pad(init_audio[:, :need], (0, max(0, need - init_audio.shape[1])))
        known_spec = _stft(init_audio, cfg, window)[..., :t]
        # Silent bins have no phase; random phase there avoids a degenerate all-real start.
        rand = torch.rand(known_spec.shape, generator=generator, dtype=torch.float32) * (2 * math.pi)
        rand = torch.polar(torch.ones_like(rand), rand).to(mel.device)
        silent = known_spec.abs() < 1e-8
        angles = torch.where(silent, rand, known_spec / known_spec.abs().clamp_min(1e-8))
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
        wave = _istft(magnitude * angles, cfg, window)
        rebuilt = _stft(wave, cfg, window)[..., :t]
        # Momentum extrapolates along the last step's direction ("fast" Griffin-Lim).
        angles = rebuilt - prev * (momentum / (1.0 + momentum))
        angles = angles / angles.abs().clamp_min(1e-16)
        if keep is not None:
            angles = torch.where(keep, anchor, angles)
        prev = rebuilt
    return _istft(magnitude * angles, cfg, window)


class GriffinLim(nn.Module):
    """The baseline with the :class:`Vocoder` call signature: ``forward(mel) -> (B, (T-1)*hop)``."""

    def __init__(
        self, features: FeatureConfig | None = None, n_iter: int = 32, momentum: float = 0.99, seed: int = 0
    ) -> None:
        super().__init__()
        self.feature_cfg = features or FeatureConfig()
        self.n_iter, self.momentum, self.seed = n_iter, momentum, seed

    @torch.no_grad()
    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed)
        return griffin_lim(mel, self.feature_cfg, self.n_iter, self.momentum, generator=gen)


# --------------------------------------------------------------------------------------
# Neural vocoder
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VocoderConfig:
    """Vocos-style vocoder size. The iSTFT head uses the front end's n_fft / window / hop.

    ``lookahead``: future frames each convolution sees (0: causal). The receptive field is
    ``(kernel_size - 1 - lookahead) * (n_layers + 1)`` frames to the left and
    ``lookahead * (n_layers + 1)`` to the right.
    """

    n_mels: int = 80
    dim: int = 384
    intermediate_dim: int = 1152
    n_layers: int = 4
    kernel_size: int = 7
    lookahead: int = 0
    layer_scale: float = 1.0 / 8
    # Fixed affine on the log-mel input so the first conv sees values near unit scale.
    input_mean: float = -6.0
    input_std: float = 4.0
    max_log_magnitude: float = 7.0  # exp(7) ~ 1100, above a full-scale sine's ~100

    def __post_init__(self) -> None:
        if min(self.n_mels, self.dim, self.intermediate_dim, self.kernel_size) <= 0 or self.n_layers < 0:
            raise ValueError(f"VocoderConfig sizes must be positive: {self}")
        if not 0 <= self.lookahead < self.kernel_size:
            raise ValueError(f"lookahead {self.lookahead} must be in [0, kernel_size {self.kernel_size})")

    @property
    def receptive_field(self) -> tuple[int, int]:
        """(left, right) frames of mel a backbone output frame depends on."""
        convs = self.n_layers + 1
        return (self.kernel_size - 1 - self.lookahead) * convs, self.lookahead * convs


VOCODER_PRESETS: dict[str, dict[str, Any]] = {
    # Tests: trains in seconds.
    "tiny": dict(dim=64, intermediate_dim=192, n_layers=2, kernel_size=5),
    # The bundled speech vocoder: sized so ~1.5k steps fit a 30 min budget on 2 shared CPU cores.
    "speech": dict(dim=256, intermediate_dim=768, n_layers=4, kernel_size=7),
}


def vocoder_preset(name: str, **overrides: Any) -> VocoderConfig:
    if name not in VOCODER_PRESETS:
        raise ValueError(f"unknown vocoder preset '{name}', choose from {sorted(VOCODER_PRESETS)}")
    return VocoderConfig(**{**VOCODER_PRESETS[name], **overrides})


class PaddedConv1d(nn.Conv1d):
    """Conv over time padded ``left`` / ``right`` frames: causal when ``right == 0``."""

    def __init__(self, cin: int, cout: int, kernel: int, right: int, groups: int = 1) -> None:
        super().__init__(cin, cout, kernel, groups=groups)
        self.pad = (kernel - 1 - right, right)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self.pad))


class ConvNeXtBlock(nn.Module):
    """Depthwise conv -> LayerNorm -> pointwise MLP (GELU) -> layer scale, residual. ``(B, C, T)``."""

    def __init__(self, cfg: VocoderConfig) -> None:
        super().__init__()
        self.dwconv = PaddedConv1d(cfg.dim, cfg.dim, cfg.kernel_size, cfg.lookahead, groups=cfg.dim)
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.pwconv1 = nn.Linear(cfg.dim, cfg.intermediate_dim)
        self.pwconv2 = nn.Linear(cfg.intermediate_dim, cfg.dim)
        self.gamma = nn.Parameter(torch.full((cfg.dim,), cfg.layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).transpose(1, 2)
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).transpose(1, 2)


class ConvNeXtBackbone(nn.Module):
    """Mel ``(B, F, T)`` -> features ``(B, T, dim)``."""

    def __init__(self, cfg: VocoderConfig) -> None:
        super().__init__()
        self.embed = PaddedConv1d(cfg.n_mels, cfg.dim, cfg.kernel_size, cfg.lookahead)
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.blocks = nn.ModuleList(ConvNeXtBlock(cfg) for _ in range(cfg.n_layers))
        self.final_norm = nn.LayerNorm(cfg.dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The embedding stays float32 under a bf16 autocast: log-mel rounded to bf16 moved the
        # tiny preset's gradient by 68% from float32, against 0.8% with this one conv in float32.
        with torch.autocast(x.device.type, enabled=False):
            x = self.norm(self.embed(x.float()).transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        return self.final_norm(x.transpose(1, 2))


class ISTFTHead(nn.Module):
    """Features ``(B, T, dim)`` + mel prior -> complex STFT ``(B, n_fft//2+1, T)`` -> waveform.

    Predicts a log-magnitude *correction* to the pseudo-inverse of the mel filterbank and a
    phase angle per bin (used through cos / sin, so wrapping never matters)."""

    def __init__(self, cfg: VocoderConfig, features: FeatureConfig) -> None:
        super().__init__()
        self.cfg, self.feature_cfg = cfg, features
        self.n_bins = features.n_fft // 2 + 1
        self.out = nn.Linear(cfg.dim, 2 * self.n_bins)
        # Start at "prior magnitude, arbitrary phase": a zero magnitude correction.
        nn.init.zeros_(self.out.weight[: self.n_bins])
        nn.init.zeros_(self.out.bias)
        fb = mel_filterbank(features)
        self.register_buffer("mel_pinv", torch.linalg.pinv(fb), persistent=False)
        self.register_buffer("window", _padded_window(features), persistent=False)

    def magnitude_phase(self, x: torch.Tensor, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # The head and the spectral maths stay float32 under a bf16 autocast: there is no bf16
        # complex type for the iSTFT, and phases and log-magnitudes need more than bf16's 8 bits
        # (with this layer in bf16 the tiny preset's gradient was 136% off the float32 one).
        with torch.autocast(x.device.type, enabled=False):
            log_mag, phase = self.out(x.float()).transpose(1, 2).chunk(2, dim=1)
            prior = (self.mel_pinv @ mel.float().exp()).clamp_min(self.feature_cfg.log_floor).log() * 0.5
            return (prior + log_mag).clamp(max=self.cfg.max_log_magnitude).exp(), phase

    def spectrum(self, x: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        mag, phase = self.magnitude_phase(x, mel)
        return torch.complex(mag * torch.cos(phase), mag * torch.sin(phase))

    def forward(self, x: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        return _istft(self.spectrum(x, mel), self.feature_cfg, self.window)


class Vocoder(nn.Module):
    """Vocos-style neural vocoder: ``Vocoder(backbone, head)`` over the project's log-mel.

    ``forward(mel (B, F, T)) -> (B, (T - 1) * hop)`` waveform in [-1, 1]-ish float32.
    """

    def __init__(self, cfg: VocoderConfig | None = None, features: FeatureConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or VocoderConfig()
        self.feature_cfg = features = features or FeatureConfig()
        if cfg.n_mels != features.n_mels:
            raise ValueError(f"VocoderConfig.n_mels {cfg.n_mels} != FeatureConfig.n_mels {features.n_mels}")
        if features.power != 2.0 or not features.center:
            raise ValueError("the vocoder needs power-2, centred log-mel features")
        self.backbone = ConvNeXtBackbone(cfg)
        self.head = ISTFTHead(cfg, features)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Conv1d):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    @classmethod
    def from_preset(cls, name: str, features: FeatureConfig | None = None, **overrides: Any) -> Vocoder:
        return cls(vocoder_preset(name, **overrides), features)

    @property
    def hop_length(self) -> int:
        return self.feature_cfg.hop_length

    @property
    def sample_rate(self) -> int:
        return self.feature_cfg.sample_rate

    def magnitude_phase(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mel ``(B, F, T)`` -> predicted STFT magnitude and phase (radians, unwrapped),
        each ``(B, n_fft//2+1, T)``."""
        mel = _check_mel(mel, self.cfg.n_mels)
        x = (mel - self.cfg.input_mean) / self.cfg.input_std
        return self.head.magnitude_phase(self.backbone(x), mel)

    def spectrum(self, mel: torch.Tensor) -> torch.Tensor:
        """Log-mel ``(B, F, T)`` -> predicted complex STFT ``(B, n_fft//2+1, T)``."""
        mag, phase = self.magnitude_phase(mel)
        return torch.complex(mag * torch.cos(phase), mag * torch.sin(phase))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return _istft(self.spectrum(mel), self.feature_cfg, self.head.window)

    @torch.no_grad()
    def synthesize(self, mel: torch.Tensor) -> torch.Tensor:
        """Inference: ``(B, F, T)`` or ``(F, T)`` -> ``(B, (T-1)*hop)`` / ``((T-1)*hop,)``, clipped."""
        squeeze = mel.dim() == 2
        out = self(mel).clamp(-1.0, 1.0)
        return out[0] if squeeze else out

    @property
    def context_frames(self) -> tuple[int, int]:
        """(left, right) frames :meth:`synthesize_window` needs around the requested frames to
        be exact: the backbone's receptive field plus the iSTFT overlap. A 400-sample window
        centred on each frame reaches 200 samples either side, so samples ``[start*hop,
        stop*hop)`` also take frames ``start - 1``, ``stop`` and ``stop + 1``."""
        left, right = self.cfg.receptive_field
        return left + 1, right + 2

    @torch.no_grad()
    def synthesize_window(self, mel: torch.Tensor, start: int, stop: int | None = None) -> torch.Tensor:
        """Render only frames ``[start, stop)`` of a short mel window: ``(B, (stop-start)*hop)``.

        ``mel`` ``(B, F, T)`` holds the frames to render plus context: ``start`` frames
        before them (left context) and ``T - stop`` after (right context). The whole window
        is run through the model, so the cost is that of ``T`` frames (about
        ``T * hop / sample_rate * RTF`` seconds); keep windows short.

        Exactness: the result equals samples ``[start*hop, stop*hop)`` of rendering the
        whole utterance when ``start >= context_frames[0]`` and ``T - stop >=
        context_frames[1]``; with the default causal backbone that is ``(kernel - 1) *
        (n_layers + 1) + 1`` frames on the left (31 for the bundled model) and 2 on the right.
        With less left context the result is an approximation, and not a close one: for the
        bundled model on speech, 12 frames give a median relative error of 0.28 against the
        full rendering and 20 frames 0.03 (worst windows above 1), while the exact 31 frames
        cost only ~1.5x as much, so pass ``context_frames[0]`` frames when they exist.

        Algorithmic delay: sample ``s`` is final once the frame centred at ``s + win/2``
        (``s + 200``, 12.5 ms later) is known, plus ``lookahead * (n_layers + 1)`` frames for
        a non-causal backbone (0 by default). With ``T - stop < 2`` (a concealer rendering
        the newest lost packet has no future frames), the missing frames are filled by
        holding the last one, so the last 200 samples are an extrapolation that differs from
        a full rendering, which the concealer's cross-fade into the next packet covers; the
        samples before them are still exact. No extra delay is added either way.
        """
        mel = _check_mel(mel, self.cfg.n_mels)
        t = mel.shape[-1]
        stop = t if stop is None else stop
        if not 0 <= start < stop <= t:
            raise ValueError(
                f"synthesize_window: need 0 <= start < stop <= T={t}, got start={start} stop={stop}"
            )
        missing = max(0, stop + 2 - t)
        if missing:
            mel = torch.cat([mel, mel[..., -1:].expand(-1, -1, missing)], dim=-1)
        wave = self(mel)
        return wave[:, start * self.hop_length : stop * self.hop_length].clamp(-1.0, 1.0)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ---- checkpoints --------------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike, extra: dict | None = None) -> None:
        from audiomae.checkpoint import save_model

        save_model(directory, self, extra=extra)

    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike,
        map_location: str | torch.device = "cpu",
        require_checksum: bool = True,
    ) -> Vocoder:
        from audiomae.checkpoint import load_model

        model = load_model(directory, map_location=map_location, require_checksum=require_checksum)
        if not isinstance(model, cls):
            raise ValueError(f"{directory}: holds a {type(model).__name__}, not a {cls.__name__}")
        return model


# --------------------------------------------------------------------------------------
# Training: data and the Task for audiomae.train.fit
# --------------------------------------------------------------------------------------


class RandomCrops(torch.utils.data.Dataset):
    """Random fixed-length crops ``(crop,)`` from a list of waveforms, with a random gain.

    Item ``i`` of epoch ``e`` is a pure function of ``(seed, e, i)``, so a resumed run sees
    the same crops. Clips shorter than ``crop`` are zero-padded."""

    def __init__(
        self,
        waves: list[torch.Tensor],
        crop: int,
        items_per_epoch: int,
        seed: int = 0,
        gain_db: tuple[float, float] = (-6.0, 3.0),
    ) -> None:
        if not waves:
            raise ValueError("RandomCrops: no waveforms given")
        self.waves = [torch.as_tensor(w, dtype=torch.float32).reshape(-1) for w in waves]
        self.crop, self.items, self.seed, self.gain_db = crop, items_per_epoch, seed, gain_db
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.items

    def __getitem__(self, i: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(hash((self.seed, self.epoch, i)) & 0x7FFFFFFF)
        wave = self.waves[int(torch.randint(len(self.waves), (1,), generator=g))]
        span = wave.numel() - self.crop
        off = int(torch.randint(span + 1, (1,), generator=g)) if span > 0 else 0
        x = F.pad(wave[off : off + self.crop], (0, max(0, -span)))
        lo, hi = self.gain_db
        gain = 10 ** ((lo + (hi - lo) * float(torch.rand((), generator=g))) / 20)
        peak = float(x.abs().max())
        # Never push a crop into clipping: the vocoder must not learn clipped waveforms.
        if peak * gain > 0.99:
            gain = 0.99 / max(peak, 1e-9)
        return x * gain


class VocoderTask:
    """Trains a :class:`Vocoder` to re-synthesise audio from its own log-mel.

    Loss: multi-resolution STFT (spectral convergence + log-magnitude L1) + mel L1. No
    adversarial terms: on a ~30 min CPU budget they cost a second network and several times
    the step time, and regression losses dominate the quality reached in so few steps."""

    def __init__(self, model: Vocoder, mel_weight: float = 1.0, phase_weight: float = 0.0) -> None:
        from audiomae.features import LogMel

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
        loss, parts = self.loss(_istft(spec, self.model.feature_cfg, self.model.head.window), wave)
        with torch.no_grad():
            target = _stft(wave, self.model.feature_cfg, self.model.head.window)[..., : phase.shape[-1]]
        ph = phase_loss(phase, target)
        loss = loss + self.phase_weight * ph
        return loss, {**parts, "loss": loss.item(), "phase": ph.item()}

    def training_step(self, batch: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        return self._run(batch)

    def validation_step(self, batch: torch.Tensor) -> dict[str, float]:
        return self._run(batch)[1]

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        self.model.save_pretrained(directory)


DEFAULT_VOCODER = "vocoder_speech"


def default_vocoder_path() -> Path:
    """Directory of the bundled speech vocoder inside the installed package."""
    from importlib.resources import files

    return Path(str(files("audiomae") / "assets" / DEFAULT_VOCODER))


def load_default_vocoder(map_location: str | torch.device = "cpu") -> Vocoder:
    """The bundled speech vocoder (trained by ``recipes/train_vocoder.py``)."""
    path = default_vocoder_path()
    if not (path / "model.safetensors").exists():
        raise FileNotFoundError(
            f"bundled vocoder weights missing at {path}; reinstall audiomae or train them with "
            "recipes/train_vocoder.py (see recipes/README.md)"
        )
    return Vocoder.from_pretrained(path, map_location=map_location)


def _describe(model: nn.Module) -> dict[str, Any]:
    return {"vocoder": asdict(model.cfg), "features": asdict(model.feature_cfg)}


def _build(config: dict[str, Any]) -> nn.Module:
    return Vocoder(from_dict(VocoderConfig, config["vocoder"]), from_dict(FeatureConfig, config["features"]))


def _register() -> None:
    from audiomae.checkpoint import register_kind

    register_kind(
        "vocoder", Vocoder, _build, _describe, {"vocoder": VocoderConfig, "features": FeatureConfig}
    )


_register()

__all__ = [
    "VocoderConfig",
    "VOCODER_PRESETS",
    "vocoder_preset",
    "Vocoder",
    "GriffinLim",
    "griffin_lim",
    "mel_to_linear_power",
    "spectral_convergence",
    "load_default_vocoder",
    "default_vocoder_path",
    "MultiResolutionSTFTLoss",
    "VocoderLoss",
    "phase_loss",
    "VocoderTask",
    "RandomCrops",
]


# --------------------------------------------------------------------------------------
# Training losses
# --------------------------------------------------------------------------------------


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
        from audiomae.features import LogMel

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
