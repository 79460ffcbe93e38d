"""Training the Vocos-style vocoder (:class:`audiomae.vocoder.Vocoder`) on random crops of a
folder of speech: the settings a recipe config holds and the runner around
:func:`audiomae.train.fit`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from audiomae.config import from_dict
from audiomae.train.config import TrainConfig
from audiomae.train.runner import export_model, start_run


@dataclass(frozen=True)
class VocoderData:
    """The training audio: a folder's files (the first ``max_files``, sorted; None: all), of
    which the first ``val_files`` are held out for validation; ``items_per_epoch`` random crops
    of ``crop_seconds`` per epoch."""

    train_dir: str = "../shared/data/librispeech/train"
    max_files: int | None = None
    val_files: int = 4
    crop_seconds: float = 1.0
    items_per_epoch: int = 2000


@dataclass(frozen=True)
class VocoderSettings:
    """One vocoder run. ``model``: a VocoderConfig preset (``preset``, default ``speech``) plus
    field overrides; ``init_from``: a trained vocoder to start from instead (its config wins)."""

    data: VocoderData = field(default_factory=VocoderData)
    model: dict[str, Any] = field(default_factory=dict)
    mel_weight: float = 1.0
    phase_weight: float = 0.0
    init_from: str | None = None
    out_dir: str = "runs/vocoder"
    export: str | None = None  # also save the final model here (e.g. audiomae/assets/vocoder_speech)
    threads: int | None = None
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VocoderSettings:
        d = dict(d)
        d["model"] = dict(d.get("model") or {})
        sections = {"data": VocoderData, "train": TrainConfig}
        return from_dict(cls, d, sections, what="vocoder settings")


def run_vocoder_training(s: VocoderSettings, resume: bool = False):
    """Train a vocoder with :func:`audiomae.train.fit`; returns the TrainResult. The model is in
    ``out_dir/model`` (and in ``s.export`` when set)."""
    from tqdm.auto import tqdm

    from audiomae.audio import SAMPLE_RATE, check_outputs, find_audio, load_audio
    from audiomae.train.loop import fit
    from audiomae.vocoder import RandomCrops, Vocoder, VocoderTask, vocoder_preset

    check_outputs({"out_dir": s.out_dir}, directories=["out_dir"])  # before any data is read
    info = start_run(s.threads)
    data = s.data
    files = find_audio(data.train_dir, required=True)[: data.max_files]
    if len(files) <= data.val_files:
        raise ValueError(f"{data.train_dir}: {len(files)} files, need more than val_files={data.val_files}")
    show = s.train.progress and info.rank == 0
    loading = tqdm(files, desc="loading audio", leave=False, disable=not show)
    waves = [torch.from_numpy(load_audio(f)) for f in loading]
    crop = int(data.crop_seconds * SAMPLE_RATE)
    n_val = data.val_files
    train = RandomCrops(waves[n_val:], crop, data.items_per_epoch, seed=s.train.seed)
    # Fixed validation crops: held-out speakers, one epoch-0 draw, gain fixed at 0 dB.
    val_set = RandomCrops(waves[:n_val], crop, n_val * 4, seed=12345, gain_db=(0.0, 0.0))
    val = [torch.stack([val_set[j] for j in range(i, i + n_val)]) for i in range(0, len(val_set), n_val)]

    if s.init_from:
        vocoder = Vocoder.from_pretrained(s.init_from).train()  # warm start: its config wins
    else:
        model_cfg = dict(s.model)
        vocoder = Vocoder(vocoder_preset(model_cfg.pop("preset", "speech"), **model_cfg))
    if info.rank == 0:
        print(f"vocoder: {vocoder.num_params() / 1e6:.2f} M parameters, {len(waves) - n_val} training files")
    task = VocoderTask(vocoder, mel_weight=s.mel_weight, phase_weight=s.phase_weight)
    result = fit(task, train, val, s.train, s.out_dir, resume=resume)
    export_model(Path(s.out_dir) / "model", s.export, Vocoder.from_pretrained, extra={"steps": result.steps})
    return result


__all__ = ["VocoderData", "VocoderSettings", "run_vocoder_training"]
