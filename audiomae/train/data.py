"""Audio for the MAE training runs (pretraining, PLC fine-tuning): where clips come from,
the train/validation datasets, fixed validation batches and the normalisation statistics."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from audiomae.features import LogMel, NormStats, compute_norm_stats


@dataclass(frozen=True)
class DataSettings:
    """``train``: folder, manifest, or ``"synthetic"``. ``val``: folder/manifest for validation
    (None: a fixed hash split of ``train`` with ``val_fraction``). ``fallback_synthetic``: use
    synthetic audio (with a warning) when ``train`` does not exist, for quick smoke runs."""

    train: str | list[str] = "synthetic"
    val: str | None = None
    val_fraction: float = 0.05
    clip_seconds: float = 2.0
    val_clips: int = 32
    norm_files: int = 64
    synthetic_items: int = 256
    fallback_synthetic: bool = False
    # Training items per file and epoch, each its own random crop: lets a large batch (one
    # GPU) draw from a small corpus. 1: each file once per epoch.
    crops_per_file: int = 1
    # Probability that a training clip goes through the speech augmentation chain (gain,
    # pitch shift, tempo, band-limiting, noise, room: ``audiomae.train.wave_augment``).
    augment: float = 0.0


class SyntheticSpeech(Dataset):
    """Speech-like synthetic clips (harmonic glides with syllable envelopes, noise bursts and
    pauses), a pure function of (seed, epoch, index): smoke tests and runs without data."""

    def __init__(
        self, n: int, clip_seconds: float, sample_rate: int = 16000, seed: int = 0, vary: bool = True
    ):
        self.n, self.sr, self.seed, self.vary = n, sample_rate, seed, vary
        self.samples = int(round(clip_seconds * sample_rate))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, self.epoch if self.vary else 0, index])
        t = np.arange(self.samples) / self.sr
        f0 = rng.uniform(90, 260) * (
            1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t + rng.uniform(0, 6))
        )
        phase = 2 * np.pi * np.cumsum(f0) / self.sr
        tilt = rng.uniform(0.6, 1.2)
        voiced = sum(np.sin(k * phase) / k**tilt for k in range(1, 25) if k * f0.max() < self.sr / 2)
        syll = np.clip(np.sin(2 * np.pi * rng.uniform(2, 5) * t + rng.uniform(0, 6)), 0, None) ** 1.5
        noise = rng.standard_normal(self.samples) * (syll < 0.05) * rng.uniform(0.0, 0.3)
        x = 0.15 * syll * voiced + 0.05 * noise + 1e-3 * rng.standard_normal(self.samples)
        return torch.from_numpy(x.astype(np.float32))


def train_source(d: DataSettings) -> str | list[str]:
    """The training folder or manifest (or a list of them, mixed in one dataset), or
    "synthetic" (asked for, or standing in for a missing folder)."""
    if d.train == "synthetic":
        return d.train
    sources = list(d.train) if isinstance(d.train, (list, tuple)) else [d.train]
    missing = [str(s) for s in sources if not Path(s).exists()]
    if missing:
        if not d.fallback_synthetic:
            raise FileNotFoundError(f"training data not found: {', '.join(missing)}")
        warnings.warn(f"{', '.join(missing)} not found; pretraining on synthetic audio instead", stacklevel=3)
        return "synthetic"
    return d.train


def val_dataset(d: DataSettings, sr: int, seed: int, train_src: str | None = None) -> Dataset:
    """The validation clips alone (no training audio is read)."""
    from audiomae.data import AudioDataset

    train_src = train_src or train_source(d)
    if train_src == "synthetic":
        return SyntheticSpeech(d.val_clips, d.clip_seconds, sr, seed=seed + 1, vary=False)
    common = dict(clip_seconds=d.clip_seconds, sample_rate=sr, seed=seed, random_crop=False)
    if d.val is not None:
        return AudioDataset(d.val, **common)
    return AudioDataset(train_src, split="val", val_fraction=d.val_fraction, **common)


def audio_datasets(d: DataSettings, sr: int, seed: int) -> tuple[Dataset, Dataset]:
    from audiomae.data import AudioDataset

    train_src = train_source(d)
    val = val_dataset(d, sr, seed, train_src)
    if train_src == "synthetic":
        return SyntheticSpeech(d.synthetic_items, d.clip_seconds, sr, seed=seed), val
    common = dict(clip_seconds=d.clip_seconds, sample_rate=sr, seed=seed, crops_per_file=d.crops_per_file)
    if d.val is not None:
        train = AudioDataset(train_src, **common)
    else:
        train = AudioDataset(train_src, split="train", val_fraction=d.val_fraction, **common)
    if d.augment > 0:
        from audiomae.train.wave_augment import AugmentedClips

        train = AugmentedClips(train, d.augment, sr, seed)
    return train, val


def norm_stats_from(dataset: Dataset, frontend: LogMel, max_files: int, seed: int = 0) -> NormStats:
    """Dataset mean/std of log-mel values from up to ``max_files`` items (whole files when the
    dataset can give them)."""
    n = len(dataset)
    idx = np.random.default_rng(seed).permutation(n)[: min(n, max_files)]
    whole = getattr(dataset, "waveform", None)

    def waves():
        for i in idx:
            w = whole(int(i)) if whole is not None else dataset[int(i)]
            if w is not None:
                yield w

    return compute_norm_stats(waves(), frontend)


def validation_batches(val: Dataset, clips: int, batch_size: int) -> list[torch.Tensor]:
    """The first ``clips`` validation items stacked into batches of ``batch_size``."""
    items = [val[i] for i in range(min(clips, len(val)))]
    items = [it[0] if isinstance(it, tuple) else it for it in items]
    return [torch.stack(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]


__all__ = [
    "DataSettings",
    "SyntheticSpeech",
    "train_source",
    "val_dataset",
    "audio_datasets",
    "norm_stats_from",
    "validation_batches",
]
