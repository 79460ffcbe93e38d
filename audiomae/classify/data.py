"""Labelled clips for a fine-tune: where they come from, how they are split, and their log-mels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from audiomae.features import make_frontend
from audiomae.model import AudioMAE


@dataclass(frozen=True)
class FinetuneData:
    """Where labelled clips come from and how they are split.

    ``layout``: "folders" (``root/<class>/*``), "csv" (``csv`` file, paths relative to
    ``root`` or the CSV), "pattern" (file names under ``root`` matched by ``pattern``, class in
    field ``label``) or "synthetic" (a small generated set written under the run folder).
    ``split_column``/``test_values``: clips whose column value is listed form the test set
    (e.g. a held-out speaker); without a split column a stratified random ``test_fraction``
    is held out. ``train_fraction`` keeps a stratified fraction of the training labels."""

    root: str = "synthetic"
    layout: str = "synthetic"
    csv: str | None = None
    pattern: str | None = None
    label: str = "label"
    split_column: str | None = None
    test_values: tuple[str, ...] = ()
    test_fraction: float = 0.2
    train_fraction: float = 1.0
    clip_seconds: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        layouts = ("folders", "csv", "pattern", "synthetic")
        if self.layout not in layouts:
            raise ValueError(f"data.layout must be one of {layouts}, got '{self.layout}'")
        object.__setattr__(self, "test_values", tuple(str(v) for v in self.test_values))


def load_labelled(data: FinetuneData, workdir: str | Path = ".") -> tuple[Any, Any]:
    """(train, test) LabelSets described by ``data`` (synthetic data is written under ``workdir``)."""
    from audiomae import labels as L

    if data.layout == "synthetic":
        root = Path(workdir) / "synthetic_data"
        pattern = L.write_synthetic_dataset(root, seed=data.seed)
        full = L.from_pattern(root, pattern, label="label")
    elif data.layout == "folders":
        full = L.from_folders(data.root)
    elif data.layout == "csv":
        if not data.csv:
            raise ValueError("data.layout=csv needs data.csv (a path,label[,label...] file)")
        full = L.from_csv(data.csv, root=data.root if data.root != "synthetic" else None)
    else:
        if not data.pattern:
            raise ValueError("data.layout=pattern needs data.pattern, e.g. '{digit}_{speaker}_{take}.wav'")
        full = L.from_pattern(data.root, data.pattern, label=data.label)
    if data.split_column:
        if not data.test_values:
            raise ValueError(f"data.split_column={data.split_column} needs data.test_values")
        train, test = full.split_by(data.split_column, data.test_values)
    else:
        train, test = full.split_random(data.test_fraction, seed=data.seed)
    train = train.subsample(data.train_fraction, seed=data.seed)
    train.check_nonempty("training set")
    if len(test) == 0:
        raise ValueError("the test split is empty")
    return train, test


@torch.no_grad()
def log_mels(
    waves: torch.Tensor, features: Any, batch_size: int = 256, progress: bool = False
) -> torch.Tensor:
    """Un-normalised log-mel (or Kaldi fbank) ``(N, F, T)`` of waveforms ``(N, S)``, in batches."""
    from tqdm import tqdm

    frontend = make_frontend(features)
    chunks = range(0, waves.shape[0], batch_size)
    out = [frontend(waves[i : i + batch_size]) for i in tqdm(chunks, desc="log-mel", disable=not progress)]
    return torch.cat(out)


def fit_spectrogram(spec: torch.Tensor, encoder: AudioMAE) -> torch.Tensor:
    """Normalise raw log-mels with the encoder's statistics and trim to whole patch columns."""
    spec = encoder.norm.normalize(spec)
    t = min(spec.shape[-1], encoder.cfg.max_frames)
    return spec[..., : t - t % encoder.cfg.patch_t]
