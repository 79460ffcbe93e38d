"""The Vocos-style neural vocoder (Siuzdak 2023): ``Vocoder(backbone, head)``, its presets, the
bundled speech vocoder and its checkpoint kind."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from audiomae.config import FeatureConfig, from_dict
from audiomae.features import _padded_window, mel_filterbank
from audiomae.vocoder.spectral import check_mel, istft


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
        return istft(self.spectrum(x, mel), self.feature_cfg, self.window)


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
        mel = check_mel(mel, self.cfg.n_mels)
        x = (mel - self.cfg.input_mean) / self.cfg.input_std
        return self.head.magnitude_phase(self.backbone(x), mel)

    def spectrum(self, mel: torch.Tensor) -> torch.Tensor:
        """Log-mel ``(B, F, T)`` -> predicted complex STFT ``(B, n_fft//2+1, T)``."""
        mag, phase = self.magnitude_phase(mel)
        return torch.complex(mag * torch.cos(phase), mag * torch.sin(phase))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return istft(self.spectrum(mel), self.feature_cfg, self.head.window)

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
        mel = check_mel(mel, self.cfg.n_mels)
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
