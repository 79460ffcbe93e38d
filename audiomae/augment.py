"""Fine-tuning augmentation on normalised log-mel batches ``(B, F, T)``.

All functions are pure: they return new tensors and draw from an explicit
``torch.Generator``, so a seeded run is reproducible and a resumed run can restore the draw.
Patch-level structured masking (Audio-MAE's fine-tune masking) is not here: it is a
:class:`audiomae.masking.MaskResult` from :func:`audiomae.masking.time_freq_mask` that the
encoder receives; :func:`patch_mask` builds it from an :class:`AugmentConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from audiomae.masking import MaskResult, time_freq_mask


@dataclass(frozen=True)
class AugmentConfig:
    """Defaults follow Audio-MAE's fine-tune recipe scaled to short clips.

    ``time_masks`` / ``freq_masks`` SpecAugment bands of up to ``time_width`` frames /
    ``freq_width`` bins; ``max_shift`` frames of random circular-free shift; ``crop_frames``
    random crop length (None: no crop); ``mixup_alpha`` Beta(alpha, alpha) mixup (0: off);
    ``mask_time`` / ``mask_freq`` fractions of patch columns / rows hidden from the encoder;
    ``freq_warp`` maximum relative mel-axis stretch (:func:`freq_warp`); ``gain`` maximum level
    offset in normalised log-mel units (:func:`random_gain`); ``time_stretch`` maximum relative
    change of speaking rate (:func:`time_stretch`). The last three are off by default."""

    time_masks: int = 2
    time_width: int = 10
    freq_masks: int = 2
    freq_width: int = 8
    max_shift: int = 10
    crop_frames: int | None = None
    mixup_alpha: float = 0.0
    mask_time: float = 0.2
    mask_freq: float = 0.2
    freq_warp: float = 0.0
    gain: float = 0.0
    time_stretch: float = 0.0

    def __post_init__(self) -> None:
        for name in ("time_masks", "time_width", "freq_masks", "freq_width", "max_shift"):
            if getattr(self, name) < 0:
                raise ValueError(f"AugmentConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.mixup_alpha < 0:
            raise ValueError(f"mixup_alpha must be >= 0, got {self.mixup_alpha}")
        if not (0 <= self.freq_warp < 1 and 0 <= self.time_stretch < 1) or self.gain < 0:
            raise ValueError(
                "need 0 <= freq_warp < 1, 0 <= time_stretch < 1 and gain >= 0, got "
                f"{self.freq_warp}, {self.time_stretch}, {self.gain}"
            )
        for name in ("mask_time", "mask_freq"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"AugmentConfig.{name} must be in [0, 1), got {getattr(self, name)}")

    @classmethod
    def off(cls) -> AugmentConfig:
        return cls(time_masks=0, freq_masks=0, max_shift=0, mask_time=0.0, mask_freq=0.0)


def _bands(batch: int, size: int, count: int, width: int, generator: torch.Generator | None) -> torch.Tensor:
    """(B, size) bool: ``count`` random bands of width 0..width per item."""
    out = torch.zeros(batch, size, dtype=torch.bool)
    if count == 0 or width == 0 or size == 0:
        return out
    pos = torch.arange(size)
    for _ in range(count):
        w = torch.randint(0, min(width, size) + 1, (batch, 1), generator=generator)
        start = (torch.rand(batch, 1, generator=generator) * (size - w + 1)).long()
        out |= (pos >= start) & (pos < start + w)
    return out


def spec_augment(
    spec: torch.Tensor,
    time_masks: int = 2,
    time_width: int = 10,
    freq_masks: int = 2,
    freq_width: int = 8,
    fill: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """SpecAugment: set random time bands and frequency bands of each item to ``fill``
    (0 is the dataset mean of a normalised spectrogram)."""
    if spec.dim() != 3:
        raise ValueError(f"spec_augment expects (B, F, T), got shape {tuple(spec.shape)}")
    b, f, t = spec.shape
    tm = _bands(b, t, time_masks, time_width, generator).to(spec.device)
    fm = _bands(b, f, freq_masks, freq_width, generator).to(spec.device)
    hide = tm.unsqueeze(1) | fm.unsqueeze(2)
    return spec.masked_fill(hide, fill)


def random_shift(
    spec: torch.Tensor, max_shift: int, fill: float | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Shift each item by a random -max_shift..max_shift frames; vacated frames get ``fill``
    (default: the batch minimum, i.e. silence). Nothing wraps around."""
    if max_shift <= 0:
        return spec
    b, _, t = spec.shape
    shift = torch.randint(-max_shift, max_shift + 1, (b, 1), generator=generator).to(spec.device)
    src = torch.arange(t, device=spec.device).unsqueeze(0) - shift  # (B, T)
    valid = (src >= 0) & (src < t)
    idx = src.clamp(0, t - 1).unsqueeze(1).expand_as(spec)
    out = torch.gather(spec, 2, idx)
    value = float(spec.min()) if fill is None else fill
    return out.masked_fill(~valid.unsqueeze(1), value)


def random_crop(spec: torch.Tensor, frames: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random window of ``frames`` frames from each item (per-item offsets)."""
    b, _, t = spec.shape
    if frames > t:
        raise ValueError(f"cannot crop {frames} frames from a {t}-frame spectrogram")
    if frames == t:
        return spec
    start = torch.randint(0, t - frames + 1, (b, 1), generator=generator).to(spec.device)
    idx = (start + torch.arange(frames, device=spec.device)).unsqueeze(1).expand(-1, spec.shape[1], -1)
    return torch.gather(spec, 2, idx)


def center_crop(spec: torch.Tensor, frames: int) -> torch.Tensor:
    """The middle ``frames`` frames (evaluation counterpart of :func:`random_crop`)."""
    t = spec.shape[-1]
    if frames > t:
        raise ValueError(f"cannot crop {frames} frames from a {t}-frame spectrogram")
    start = (t - frames) // 2
    return spec[..., start : start + frames]


def freq_warp(spec: torch.Tensor, max_warp: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Stretch or squeeze each item's mel axis by a random factor in [1 - max_warp, 1 + max_warp]
    (linear interpolation; bins pulled from beyond the top repeat the top bin).

    A cheap stand-in for vocal-tract-length perturbation: with few training speakers the
    formant positions of the test voices are what the model has not seen."""
    if max_warp <= 0:
        return spec
    b, f, _ = spec.shape
    alpha = 1.0 + (torch.rand(b, 1, generator=generator) * 2 - 1) * max_warp
    src = (torch.arange(f, dtype=spec.dtype).unsqueeze(0) / alpha.to(spec.dtype)).clamp(0, f - 1)
    lo = src.floor().long()
    hi = (lo + 1).clamp(max=f - 1)
    w = (src - lo.to(spec.dtype)).to(spec.device).unsqueeze(-1)
    lo, hi = lo.to(spec.device), hi.to(spec.device)
    take = lambda idx: torch.gather(spec, 1, idx.unsqueeze(-1).expand_as(spec))  # noqa: E731
    return take(lo) * (1 - w) + take(hi) * w


def time_stretch(
    spec: torch.Tensor,
    max_stretch: float,
    fill: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Play each item faster or slower by a random factor in [1 - max_stretch, 1 + max_stretch]
    about the clip's centre (linear interpolation between frames; frames pulled from outside the
    clip get ``fill``, default the batch minimum, i.e. silence). Speaking rate is the other
    thing besides the voice that differs between speakers."""
    if max_stretch <= 0:
        return spec
    b, _, t = spec.shape
    rate = 1.0 + (torch.rand(b, 1, generator=generator) * 2 - 1) * max_stretch
    centre = (t - 1) / 2
    src = centre + (torch.arange(t, dtype=torch.float32).unsqueeze(0) - centre) * rate  # (B, T)
    valid = ((src >= 0) & (src <= t - 1)).to(spec.device)
    src = src.clamp(0, t - 1)
    lo = src.floor().long()
    hi = (lo + 1).clamp(max=t - 1)
    w = (src - lo.float()).to(spec.device, spec.dtype).unsqueeze(1)
    take = lambda idx: torch.gather(spec, 2, idx.to(spec.device).unsqueeze(1).expand_as(spec))  # noqa: E731
    out = take(lo) * (1 - w) + take(hi) * w
    value = float(spec.min()) if fill is None else fill
    return out.masked_fill(~valid.unsqueeze(1), value)


def random_gain(
    spec: torch.Tensor, max_gain: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Add one random offset in [-max_gain, max_gain] to each item (a level change, in the
    units of ``spec``: for a normalised natural-log mel, 6 dB is 1.38 / norm.std)."""
    if max_gain <= 0:
        return spec
    offset = (torch.rand(spec.shape[0], 1, 1, generator=generator) * 2 - 1) * max_gain
    return spec + offset.to(spec.device, spec.dtype)


def mixup(
    spec: torch.Tensor, target: torch.Tensor, alpha: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix each item with a random partner using one lambda ~ Beta(alpha, alpha) per batch.

    ``target`` must be ``(B, C)`` probabilities (one-hot or multi-hot); returns mixed
    ``(spec, target)``. ``alpha == 0`` returns the inputs unchanged."""
    if alpha <= 0:
        return spec, target
    if target.dim() != 2 or target.shape[0] != spec.shape[0]:
        raise ValueError(f"mixup needs (B, C) targets for {spec.shape[0]} items, got {tuple(target.shape)}")
    # torch's Beta sampler takes no generator; seed numpy from the generator to stay reproducible.
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    perm = torch.randperm(spec.shape[0], generator=generator).to(spec.device)
    return lam * spec + (1 - lam) * spec[perm], lam * target + (1 - lam) * target[perm]


def augment_batch(
    spec: torch.Tensor,
    target: torch.Tensor,
    cfg: AugmentConfig,
    num_classes: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop, shift, time stretch, frequency warp, gain, SpecAugment and mixup in that order. ``target``: (B,)
    class indices or (B, C) multi-hot; returned targets are (B, C) probabilities when mixup is
    on, else as given."""
    if cfg.crop_frames is not None:
        spec = random_crop(spec, cfg.crop_frames, generator)
    spec = random_shift(spec, cfg.max_shift, generator=generator)
    spec = time_stretch(spec, cfg.time_stretch, generator=generator)
    spec = freq_warp(spec, cfg.freq_warp, generator=generator)
    spec = random_gain(spec, cfg.gain, generator=generator)
    spec = spec_augment(
        spec, cfg.time_masks, cfg.time_width, cfg.freq_masks, cfg.freq_width, generator=generator
    )
    if cfg.mixup_alpha > 0:
        if target.dim() == 1:
            target = F.one_hot(target, num_classes).float()
        spec, target = mixup(spec, target, cfg.mixup_alpha, generator)
    return spec, target


def patch_mask(
    cfg: AugmentConfig, batch: int, grid_t: int, grid_f: int, generator: torch.Generator | None = None
) -> MaskResult | None:
    """Structured time/frequency patch masking for the encoder, or None when both ratios are 0."""
    if cfg.mask_time == 0 and cfg.mask_freq == 0:
        return None
    return time_freq_mask(batch, grid_t, grid_f, cfg.mask_time, cfg.mask_freq, generator=generator)


__all__ = [
    "AugmentConfig",
    "spec_augment",
    "random_shift",
    "random_crop",
    "center_crop",
    "freq_warp",
    "time_stretch",
    "random_gain",
    "mixup",
    "augment_batch",
    "patch_mask",
]
