"""Frozen configuration dataclasses. Models take one of these; files and flags live elsewhere."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from audiomae import audio


@dataclass(frozen=True)
class FeatureConfig:
    """Log-mel front end. Defaults fit speech PLC: 16 kHz, 25 ms window, 10 ms hop, 80 bins."""

    sample_rate: int = audio.SAMPLE_RATE
    n_fft: int = audio.N_FFT
    win_length: int = audio.WIN_LENGTH
    hop_length: int = audio.HOP_LENGTH
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = None  # None: sample_rate / 2
    power: float = 2.0
    log_floor: float = 1e-8  # -80 dB; keeps digital silence from dominating the statistics
    center: bool = True

    def __post_init__(self) -> None:
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length {self.win_length} > n_fft {self.n_fft}")
        if self.hop_length <= 0 or self.n_mels <= 0:
            raise ValueError("hop_length and n_mels must be positive")

    @property
    def fmax(self) -> float:
        return self.f_max if self.f_max is not None else self.sample_rate / 2

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for ``num_samples`` samples (center padding)."""
        if self.center:
            return num_samples // self.hop_length + 1
        return 1 + (num_samples - self.n_fft) // self.hop_length

    @classmethod
    def audioset(cls) -> FeatureConfig:
        """The original Audio-MAE setup: 128 mel bins, 25 ms window, 10 ms hop."""
        return cls(n_mels=128)


@dataclass(frozen=True)
class ModelConfig:
    """Audio-MAE geometry and size. The spectrogram is (n_mels, max_frames) at most.

    Patches are ``patch_f`` mel bins by ``patch_t`` frames; the default time width is one
    20 ms packet (two 10 ms hops), so a lost packet is exactly one column of patches.
    """

    n_mels: int = 80
    max_frames: int = 512
    patch_f: int = 16
    patch_t: int = audio.FRAMES_PER_PACKET
    enc_dim: int = 192
    enc_depth: int = 4
    enc_heads: int = 3
    dec_dim: int = 128
    dec_depth: int = 2
    dec_heads: int = 4
    mlp_ratio: float = 4.0
    norm_pix_loss: bool = False
    # Decoder local attention: each patch attends to patches within this many time columns
    # (None: global). Audio-MAE found local decoder attention best for spectrograms.
    dec_window: int | None = None

    def __post_init__(self) -> None:
        if self.n_mels % self.patch_f:
            raise ValueError(f"n_mels {self.n_mels} is not a multiple of patch_f {self.patch_f}")
        if self.max_frames % self.patch_t:
            raise ValueError(f"max_frames {self.max_frames} is not a multiple of patch_t {self.patch_t}")
        if self.enc_dim % self.enc_heads or self.dec_dim % self.dec_heads:
            raise ValueError("embedding dims must be divisible by the number of heads")
        if self.enc_dim % 4 or self.dec_dim % 4:
            raise ValueError("2-D sin-cos embeddings need dims divisible by 4")

    @property
    def grid_f(self) -> int:
        return self.n_mels // self.patch_f

    @property
    def max_grid_t(self) -> int:
        return self.max_frames // self.patch_t

    @property
    def patch_dim(self) -> int:
        return self.patch_f * self.patch_t


PRESETS: dict[str, dict[str, Any]] = {
    # CPU tests and real-time PLC: ~1.3 M parameters.
    "tiny": dict(enc_dim=128, enc_depth=4, enc_heads=4, dec_dim=128, dec_depth=2, dec_heads=4),
    "small": dict(enc_dim=384, enc_depth=12, enc_heads=6, dec_dim=256, dec_depth=4, dec_heads=8),
    # ViT-B/16 encoder as in the Audio-MAE paper (768-d, 12 layers, 12 heads), 512-d decoder.
    "base": dict(
        enc_dim=768,
        enc_depth=12,
        enc_heads=12,
        dec_dim=512,
        dec_depth=8,
        dec_heads=16,
        patch_f=16,
        patch_t=16,
    ),
}


def model_preset(name: str, **overrides: Any) -> ModelConfig:
    """A named preset (tiny/small/base) with optional field overrides."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset '{name}', choose from {sorted(PRESETS)}")
    return ModelConfig(**{**PRESETS[name], **overrides})


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(
    cls: type, data: dict[str, Any], sections: dict[str, type] | None = None, what: str | None = None
) -> Any:
    """Build the dataclass ``cls`` from a dict (e.g. parsed YAML), rejecting unknown keys with a
    message naming ``what`` and the known keys. ``sections`` maps a field to the dataclass its
    sub-dict builds (a missing, empty or null section gives that class's defaults). Lists given for
    tuple-valued fields become tuples, so frozen settings stay hashable."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        what = what or f"{cls.__name__} fields"
        raise ValueError(f"unknown {what}: {sorted(unknown)} (known: {sorted(fields)})")
    kwargs = {
        name: tuple(value) if isinstance(value, list) and isinstance(fields[name].default, tuple) else value
        for name, value in data.items()
    }
    for name, sub in (sections or {}).items():
        kwargs[name] = from_dict(sub, data.get(name) or {})
    return cls(**kwargs)


__all__ = ["FeatureConfig", "ModelConfig", "PRESETS", "model_preset", "to_dict", "from_dict"]
