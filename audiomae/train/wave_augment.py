"""Waveform augmentation for training audio: the speech chain (``audiomentations``: gain, pitch
shift, tempo, band-limiting, low-level noise) with a mild synthetic room, shared by the PLC
window pools and by pretraining (:class:`AugmentedClips`)."""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import Dataset

ROOM_PROBABILITY = 0.15  # share of augmented clips that also get the synthetic room


def make_augmenter():
    """The speech augmentation chain (audiomentations), applied to mono float32 waveforms."""
    try:
        import audiomentations as A
    except ImportError as e:  # pragma: no cover - an install problem
        raise ImportError("waveform augmentation needs audiomentations: pip install audiomentations") from e
    return A.Compose(
        [
            A.Gain(min_gain_db=-10.0, max_gain_db=6.0, p=0.5),
            A.PitchShift(min_semitones=-2.0, max_semitones=2.0, p=0.3),
            A.TimeStretch(min_rate=0.9, max_rate=1.1, leave_length_unchanged=False, p=0.3),
            A.LowPassFilter(min_cutoff_freq=3400.0, max_cutoff_freq=7500.0, p=0.2),
            A.AddGaussianSNR(min_snr_db=25.0, max_snr_db=50.0, p=0.3),
        ]
    )


def mild_room(x: np.ndarray, rng: np.random.Generator, sample_rate: int = 16000) -> np.ndarray:
    """A small room: direct path plus exponentially decaying noise (RT60 0.1-0.3 s), mixed
    10-30% wet. audiomentations' room simulator needs pyroomacoustics; this needs nothing."""
    from scipy.signal import fftconvolve

    rt60 = rng.uniform(0.1, 0.3)
    n = int(rt60 * sample_rate)
    t = np.arange(n) / sample_rate
    ir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    ir[0] = 0.0
    ir /= np.sqrt(np.sum(ir**2)) + 1e-12
    wet = fftconvolve(x, ir)[: x.size]
    mix = rng.uniform(0.1, 0.3)
    return ((1 - mix) * x + mix * wet).astype(np.float32)


def augment_wave(
    augment,
    wave: np.ndarray,
    rng: np.random.Generator,
    sample_rate: int = 16000,
    room: float = ROOM_PROBABILITY,
) -> np.ndarray:
    """One pass of the chain (and, with probability ``room``, the room), peak-limited to 0.99. The chain's
    own draws (audiomentations uses the global ``random`` and ``numpy.random``) are seeded from
    ``rng`` and the global states restored, so a seeded caller gets the same audio every time."""
    py_state, np_state = random.getstate(), np.random.get_state()
    seed = int(rng.integers(2**31))
    random.seed(seed)
    np.random.seed(seed)
    try:
        out = augment(wave.astype(np.float32), sample_rate=sample_rate)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    if rng.random() < room:
        out = mild_room(out, rng, sample_rate)
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    return out * (0.99 / peak) if peak > 0.99 else out


class AugmentedClips(Dataset):
    """Training clips of ``base`` passed through the speech chain with probability ``p``, drawn
    from (seed, epoch, index): a resumed run sees the same audio. A tempo change is cut or
    zero-padded back to the clip's length; labels (``(wave, label)`` items) pass through."""

    def __init__(self, base: Dataset, p: float, sample_rate: int = 16000, seed: int = 0) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"augment must be a probability in [0, 1], got {p}")
        self.base, self.p, self.sr, self.seed = base, p, sample_rate, seed
        self.epoch = 0
        self.augment = make_augmenter() if p > 0 else None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def waveform(self, index: int):
        """The base dataset's whole unaugmented file (normalisation statistics read these)."""
        return self.base.waveform(index)

    def __getitem__(self, index: int):
        item = self.base[index]
        wave, rest = (item[0], item[1:]) if isinstance(item, tuple) else (item, ())
        rng = np.random.default_rng([self.seed, self.epoch, index, 0x5A])
        if self.augment is not None and rng.random() < self.p:
            n = wave.shape[-1]
            out = augment_wave(self.augment, wave.numpy(), rng, self.sr)[:n]
            wave = torch.from_numpy(np.pad(out, (0, n - out.size)).astype(np.float32))
        return (wave, *rest) if rest else wave


__all__ = ["make_augmenter", "mild_room", "augment_wave", "AugmentedClips", "ROOM_PROBABILITY"]
