"""Frozen configuration dataclasses. Models take one of these; files and flags live elsewhere."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from audiomae import audio

MAX_SAMPLE_RATE = 384_000
MAX_N_FFT = 8192
FRONTENDS = ("logmel", "kaldi")
# ModelConfig's sizes: whole numbers of at least one (dec_depth: at least zero).
_SIZES = (
    "n_mels", "max_frames", "patch_f", "patch_t",
    "enc_dim", "enc_depth", "enc_heads", "dec_dim", "dec_depth", "dec_heads",
)  # fmt: skip
POS_EMBEDS = ("sincos", "stored")


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
    # "logmel" (:class:`audiomae.features.LogMel`) or "kaldi" (:class:`audiomae.kaldi.KaldiFbank`,
    # the original Audio-MAE's front end: frames that fit the clip, so ``center`` must be False).
    frontend: str = "logmel"
    # Kaldi front end only: every clip gives exactly this many frames (cut, or padded with zeros).
    target_frames: int | None = None

    def __post_init__(self) -> None:
        if self.frontend not in FRONTENDS:
            raise ValueError(f"frontend must be one of {FRONTENDS}, got {self.frontend!r}")
        if self.frontend == "kaldi" and (self.center or self.n_fft % 2):
            raise ValueError("the kaldi front end needs center=False and an even n_fft")
        if self.target_frames is not None and (self.frontend != "kaldi" or self.target_frames < 1):
            raise ValueError(
                f"target_frames must be None, or >= 1 with the kaldi front end, got {self.target_frames}"
            )
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length {self.win_length} > n_fft {self.n_fft}")
        if self.hop_length <= 0 or self.n_mels <= 0 or self.win_length <= 0:
            raise ValueError("hop_length, win_length and n_mels must be positive")
        # Upper bounds keep a bad config from asking for gigabytes of STFT kernels (the conv
        # STFT holds n_fft x n_fft weights); real front ends stay far below them.
        if not 0 < self.sample_rate <= MAX_SAMPLE_RATE or self.n_fft > MAX_N_FFT:
            raise ValueError(
                f"need 0 < sample_rate <= {MAX_SAMPLE_RATE} and n_fft <= {MAX_N_FFT}, got "
                f"{self.sample_rate}, {self.n_fft}"
            )
        if self.n_mels > self.n_fft // 2 + 1 or self.hop_length > self.n_fft:
            raise ValueError(
                f"need n_mels <= n_fft // 2 + 1 and hop_length <= n_fft, got {self.n_mels}, "
                f"{self.hop_length} for n_fft {self.n_fft}"
            )
        if not (self.power > 0 and self.log_floor > 0 and self.f_min >= 0):
            raise ValueError("power and log_floor must be positive and f_min >= 0")
        if not self.f_min < self.fmax <= self.sample_rate / 2:
            raise ValueError(
                f"need f_min < f_max <= sample_rate / 2, got f_min {self.f_min}, f_max {self.fmax} "
                f"at {self.sample_rate} Hz"
            )

    @property
    def fmax(self) -> float:
        return self.f_max if self.f_max is not None else self.sample_rate / 2

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for ``num_samples`` samples."""
        if self.target_frames is not None:
            return self.target_frames
        if self.frontend == "kaldi":
            return max(0, 1 + (num_samples - self.win_length) // self.hop_length)
        if self.center:
            return num_samples // self.hop_length + 1
        return 1 + (num_samples - self.n_fft) // self.hop_length

    @classmethod
    def audioset(cls) -> FeatureConfig:
        """The original Audio-MAE setup: 128 mel bins, 25 ms window, 10 ms hop."""
        return cls(n_mels=128)

    @classmethod
    def kaldi_fbank(cls, n_mels: int = 128, target_frames: int | None = 1024) -> FeatureConfig:
        """The original Audio-MAE code's front end (torchaudio's Kaldi fbank with its settings):
        25 ms symmetric Hann window padded to 512 points, 10 ms shift, 20 Hz .. 8 kHz, and
        ``target_frames`` frames per clip (1024 for AudioSet)."""
        return cls(
            n_fft=512,
            win_length=400,
            hop_length=160,
            n_mels=n_mels,
            f_min=20.0,
            log_floor=float.fromhex("0x1p-23"),  # float32 epsilon, Kaldi's floor
            center=False,
            frontend="kaldi",
            target_frames=target_frames,
        )


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
    # What the original Audio-MAE code's ViT has and this project's own models do not: a CLS
    # token prepended to the encoder's input (attended to, never returned by ``encode``), a
    # positional table stored with the weights ("stored") instead of computed ("sincos"),
    # LayerNorm epsilon 1e-6, no final encoder norm (its fine-tuned classifiers pool the last
    # block's output), and no decoder (``dec_depth=0``: an encoder for classification).
    cls_token: bool = False
    pos_embed: str = "sincos"
    norm_eps: float = 1e-5
    final_norm: bool = True

    def __post_init__(self) -> None:
        for name in _SIZES:
            low = 0 if name == "dec_depth" else 1  # dec_depth 0: an encoder without a decoder
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be at least {low}, got {getattr(self, name)}")
        if self.pos_embed not in POS_EMBEDS:
            raise ValueError(f"pos_embed must be one of {POS_EMBEDS}, got {self.pos_embed!r}")
        if not 0 < self.norm_eps <= 0.1:
            raise ValueError(f"norm_eps must be in (0, 0.1], got {self.norm_eps}")
        if not self.mlp_ratio > 0:
            raise ValueError(f"mlp_ratio must be positive, got {self.mlp_ratio}")
        if self.dec_window is not None and self.dec_window < 0:
            raise ValueError(f"dec_window must be None (global) or >= 0 columns, got {self.dec_window}")
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
    # The original Audio-MAE code's ViT-B/16 encoder, as `audiomae convert-reference` loads it
    # (1024 frames x 128 bins; its decoder is not carried).
    "reference_base": dict(
        n_mels=128,
        max_frames=1024,
        enc_dim=768,
        enc_depth=12,
        enc_heads=12,
        dec_depth=0,
        patch_f=16,
        patch_t=16,
        cls_token=True,
        pos_embed="stored",
        norm_eps=1e-6,
    ),
}


# Normalisation statistics of log-mel values (natural log of power: about -18 .. 10): a mean or
# std far outside these bounds is not a front end's, and would only show up as NaN or silence.
NORM_MEAN_LIMIT = 1e3
NORM_STD_RANGE = (1e-3, 1e3)


def check_norm(mean: Any, std: Any, where: str = "norm") -> None:
    """Raise ValueError unless ``mean`` / ``std`` are normalisation statistics of log-mel values."""
    import math

    for name, v in (("mean", mean), ("std", std)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{where}.{name}: expected a finite number, got {_show(v)}")
    lo, hi = NORM_STD_RANGE
    if abs(mean) > NORM_MEAN_LIMIT or not lo <= std <= hi:
        raise ValueError(
            f"{where}: mean {mean} / std {std} are not log-mel statistics (need |mean| <= "
            f"{NORM_MEAN_LIMIT:g} and {lo:g} <= std <= {hi:g})"
        )


def check_plc_geometry(features: FeatureConfig, model: ModelConfig, where: str = "model") -> None:
    """Raise ValueError unless a model of this front end and geometry can conceal 20 ms packets:
    the stream's sample rate, and one patch column = one packet."""
    if features.frontend != "logmel":
        raise ValueError(f"{where}: a PLC model needs the log-mel front end, got {features.frontend!r}")
    if model.cls_token or model.dec_depth == 0:
        raise ValueError(f"{where}: a PLC model needs a decoder and no CLS token")
    if features.sample_rate != audio.SAMPLE_RATE:
        raise ValueError(
            f"{where}: features.sample_rate is {features.sample_rate} Hz; a PLC model works on the "
            f"stream's {audio.SAMPLE_RATE} Hz"
        )
    if features.hop_length * model.patch_t != audio.SAMPLES_PER_PACKET:
        raise ValueError(
            f"{where}: a patch column is {model.patch_t} frames x {features.hop_length} samples; a PLC "
            f"model needs one {audio.SAMPLES_PER_PACKET}-sample packet per column"
        )
    if features.n_mels != model.n_mels:
        raise ValueError(f"{where}: features.n_mels {features.n_mels} != model.n_mels {model.n_mels}")


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


def check_fields(cls: type, data: Any, where: str) -> None:
    """Check ``data`` (e.g. a section of a checkpoint's JSON) against the fields of the dataclass
    ``cls`` before anything is built from it: a JSON object, no unknown or missing fields, and each
    value of its field's type (ints where ints are due, finite numbers, strings, lists for tuples).
    Raises ValueError naming ``where`` and the field."""
    import math
    import types
    import typing

    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object with {cls.__name__} fields, got {_show(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown field {unknown[0]!r} (known: {sorted(fields)})")
    required = [
        n
        for n, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [n for n in required if n not in data]
    if missing:
        raise ValueError(f"{where}: missing field {missing[0]!r}")
    hints = typing.get_type_hints(cls)

    def fits(value: Any, hint: Any) -> bool:
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if hint is type(None):
            return value is None
        if origin in (typing.Union, types.UnionType):
            return any(fits(value, a) for a in args)
        if origin is tuple:
            item = args[0] if args else Any
            return isinstance(value, (list, tuple)) and all(fits(v, item) for v in value)
        if hint is bool:
            return isinstance(value, bool)
        if hint is int:
            return isinstance(value, int) and not isinstance(value, bool)
        if hint is float:
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if hint is str:
            return isinstance(value, str)
        return True

    for name, value in data.items():
        hint = hints.get(name, Any)
        if not fits(value, hint):
            what = getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
            raise ValueError(f"{where}.{name}: expected {what}, got {_show(value)}")


def _show(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


__all__ = [
    "check_fields",
    "check_norm",
    "check_plc_geometry",
    "FeatureConfig",
    "ModelConfig",
    "PRESETS",
    "model_preset",
    "to_dict",
    "from_dict",
]
