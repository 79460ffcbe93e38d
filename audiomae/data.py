"""Audio datasets for training: a folder (recursive) or a manifest, fixed-length crops.

Crops are a pure function of ``(seed, epoch, index)`` so a resumed run sees the same audio;
the training loop calls :meth:`AudioDataset.set_epoch`. Waveforms only: log-mel features are
computed batched on the training device by the task, not in data-loader workers.
"""

from __future__ import annotations

import csv
import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from audiomae.audio import AUDIO_EXTENSIONS, SAMPLE_RATE, find_audio, load_audio

SPLITS = ("all", "train", "val")


@dataclass(frozen=True)
class AudioItem:
    path: Path
    label: str | None = None


def read_manifest(path: str | os.PathLike) -> list[AudioItem]:
    """One path per line, or CSV rows ``path[,label]`` (a header row starting with ``path`` is
    skipped). Relative paths are relative to the manifest; blank lines and ``#`` comments are ignored."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    items = []
    with open(path, newline="") as fh:
        for lineno, row in enumerate(csv.reader(fh), start=1):
            if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
                continue
            if lineno == 1 and row[0].strip().lower() == "path":
                continue
            if len(row) > 2:
                raise ValueError(f"{path}:{lineno}: expected 'path' or 'path,label', got {len(row)} fields")
            file = Path(row[0].strip())
            if not file.is_absolute():
                file = path.parent / file
            label = row[1].strip() if len(row) == 2 and row[1].strip() else None
            items.append(AudioItem(file, label))
    return items


def collect_items(source: str | os.PathLike | list) -> list[AudioItem]:
    """Items from a folder, a manifest file, or a list of those, audio files and AudioItems
    (in order; a folder or manifest in the list contributes all its items)."""
    if isinstance(source, (list, tuple)):
        items: list[AudioItem] = []
        for s in source:
            if isinstance(s, AudioItem):
                items.append(s)
            elif Path(s).is_dir() or (Path(s).is_file() and Path(s).suffix.lower() not in AUDIO_EXTENSIONS):
                items.extend(collect_items(s))
            else:
                items.append(AudioItem(Path(s)))
        return items
    source = Path(source)
    if source.is_dir():
        return [AudioItem(p) for p in find_audio(source)]
    if source.is_file() and source.suffix.lower() in AUDIO_EXTENSIONS:
        return [AudioItem(source)]
    return read_manifest(source)


def in_validation(path: str | os.PathLike, val_fraction: float) -> bool:
    """Fixed split by a hash of the file name and its parent folder: stable across machines,
    runs and changes to the rest of the dataset."""
    key = "/".join(Path(path).parts[-2:]).encode()
    u = int.from_bytes(hashlib.sha1(key).digest()[:8], "big") / 2**64
    return u < val_fraction


class AudioDataset(Dataset):
    """Fixed-length mono crops ``(S,)`` float32 at ``sample_rate`` from a folder or manifest.

    ``clip_seconds``: crop length (None: whole files; then batch with batch_size 1). Short files
    are zero-padded at the end. ``random_crop``: a crop seeded by (seed, epoch, index), else
    the centre. ``split``/``val_fraction``: the fixed hash split (see :func:`in_validation`).
    ``cache``: keep decoded audio in memory (None: when the files hold under ``cache_mb``).
    ``return_labels``: items are ``(wave, class_index)`` with classes sorted in ``classes``.
    ``crops_per_file``: each file appears this many times per epoch, each time with its own
    random crop (item ``i`` is file ``i % n_files``): large batches over a small corpus.

    Unreadable files are reported once (path and reason) and skipped; no readable audio at
    all is a ValueError.
    """

    def __init__(
        self,
        source: str | os.PathLike | list,
        clip_seconds: float | None = 2.0,
        sample_rate: int = SAMPLE_RATE,
        split: str = "all",
        val_fraction: float = 0.0,
        random_crop: bool = True,
        seed: int = 0,
        cache: bool | None = None,
        cache_mb: float = 1024.0,
        return_labels: bool = False,
        crops_per_file: int = 1,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got '{split}'")
        if clip_seconds is not None and clip_seconds <= 0:
            raise ValueError(f"clip_seconds must be positive, got {clip_seconds}")
        if crops_per_file < 1:
            raise ValueError(f"crops_per_file must be >= 1, got {crops_per_file}")
        self.crops_per_file = int(crops_per_file)
        self.sample_rate = sample_rate
        self.clip = None if clip_seconds is None else int(round(clip_seconds * sample_rate))
        self.random_crop = random_crop
        self.seed = seed
        self.epoch = 0
        self.return_labels = return_labels
        self.bad: dict[Path, str] = {}

        items = collect_items(source)
        if split != "all":
            items = [it for it in items if in_validation(it.path, val_fraction) == (split == "val")]
        if not items:
            raise ValueError(
                f"{source}: no audio files found (split '{split}', extensions {AUDIO_EXTENSIONS})"
            )
        items = [it for it in items if self._check_header(it.path)]
        if not items:
            raise ValueError(
                f"{source}: no readable audio ({len(self.bad)} unreadable files, e.g. {self._example()})"
            )
        self.items = items
        self.classes = sorted({it.label for it in items if it.label is not None})
        if return_labels and any(it.label is None for it in items):
            raise ValueError(f"{source}: return_labels=True but some entries have no label")

        self._cache: list[np.ndarray | None] | None = None
        if cache is None:
            cache = self._decoded_mb() <= cache_mb
        if cache:
            self._fill_cache(source)

    # ---- file checks ----------------------------------------------------------------------
    def _report(self, path: Path, reason: str) -> None:
        if path not in self.bad:
            self.bad[path] = reason
            warnings.warn(f"skipping unreadable audio {path}: {reason}", stacklevel=3)

    def _example(self) -> str:
        path, reason = next(iter(self.bad.items())) if self.bad else ("?", "?")
        return f"{path}: {reason}"

    def _check_header(self, path: Path) -> bool:
        import soundfile as sf

        try:
            info = sf.info(str(path))
        except Exception as exc:  # soundfile raises several types for missing/corrupt files
            self._report(path, str(exc) or type(exc).__name__)
            return False
        if info.frames == 0:
            self._report(path, "empty (0 samples)")
            return False
        return True

    def _decoded_mb(self) -> float:
        import soundfile as sf

        total = sum(sf.info(str(it.path)).duration for it in self.items)
        return total * self.sample_rate * 4 / 2**20

    def _fill_cache(self, source) -> None:
        from tqdm.auto import tqdm

        waves, keep = [], []
        for it in tqdm(self.items, desc="loading audio", leave=False, disable=len(self.items) < 50):
            wave = self._decode(it.path)
            if wave is not None:
                waves.append(wave)
                keep.append(it)
        if not keep:
            raise ValueError(
                f"{source}: no readable audio ({len(self.bad)} unreadable files, e.g. {self._example()})"
            )
        self.items, self._cache = keep, waves

    def _decode(self, path: Path) -> np.ndarray | None:
        try:
            return load_audio(path, sr=self.sample_rate)
        except (ValueError, FileNotFoundError, RuntimeError) as exc:
            self._report(path, str(exc))
            return None

    # ---- Dataset --------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items) * self.crops_per_file

    def waveform(self, index: int) -> np.ndarray | None:
        """The whole decoded file of item ``index`` (None if it turned out unreadable)."""
        index %= len(self.items)
        if self._cache is not None:
            return self._cache[index]
        return self._decode(self.items[index].path)

    def crop(self, wave: np.ndarray, index: int) -> np.ndarray:
        if self.clip is None:
            return wave
        if len(wave) <= self.clip:
            return np.pad(wave, (0, self.clip - len(wave)))
        span = len(wave) - self.clip
        if self.random_crop:
            start = int(np.random.default_rng([self.seed, self.epoch, index]).integers(0, span + 1))
        else:
            start = span // 2
        return wave[start : start + self.clip]

    def __getitem__(self, index: int):
        # An unreadable file found late (without the cache) is replaced by the next readable
        # one, so a long run never stops on a single bad file.
        for offset in range(len(self.items)):
            i = (index + offset) % len(self.items)
            wave = self.waveform(i)
            if wave is not None:
                break
        else:
            raise ValueError("no readable audio left in the dataset")
        # Repeats of a file (crops_per_file > 1) draw their crops from their own seeds.
        key = i + len(self.items) * (index // len(self.items))
        out = torch.from_numpy(np.ascontiguousarray(self.crop(wave, key), dtype=np.float32))
        if self.return_labels:
            return out, self.classes.index(self.items[i].label)
        return out


__all__ = ["AudioDataset", "AudioItem", "find_audio", "read_manifest", "collect_items", "in_validation"]
