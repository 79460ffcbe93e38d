"""Self-supervised Audio-MAE pretraining: the Task, its settings, and ``run_pretraining``.

Random masking draws come from a generator seeded by (seed, micro-step, rank), so a resumed
run masks exactly as the uninterrupted one would have, and DDP ranks mask differently.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from audiomae.config import FeatureConfig, from_dict, model_preset
from audiomae.features import LogMel, NormStats, patchify, unpatchify
from audiomae.masking import MaskResult, random_mask
from audiomae.model import AudioMAE
from audiomae.train import distributed as dist_utils
from audiomae.train.config import TrainConfig
from audiomae.train.data import (
    DataSettings,
    SyntheticSpeech,
    audio_datasets,
    norm_stats_from,
    validation_batches,
)
from audiomae.train.plots import save_spectrogram_plot
from audiomae.train.state import stages
from audiomae.train.task import derive_seed

VAL_SEED = 20240229  # validation masks are fixed so validation losses are comparable across steps


class MAEPretrainTask:
    """Masked-patch reconstruction on batches of waveforms ``(B, S)`` (or ``(wave, label)``)."""

    def __init__(self, model: AudioMAE, mask_ratio: float = 0.8, seed: int = 0) -> None:
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        self.model = model
        self.mask_ratio = mask_ratio
        self.seed = seed
        # The front end stays outside the model so checkpoints hold only the MAE's own weights.
        self.frontend = LogMel(model.feature_cfg)

    # ---- features and masks ---------------------------------------------------------------
    def spectrogram(self, wave: torch.Tensor) -> torch.Tensor:
        """Normalised log-mel ``(B, F, T)``, T cut to whole patch columns and ``max_frames``."""
        if isinstance(wave, (tuple, list)):
            wave = wave[0]
        if self.frontend.mel_fb.device != wave.device:
            self.frontend.to(wave.device)
        with torch.autocast(wave.device.type, enabled=False):
            spec = self.model.norm.normalize(self.frontend(wave.float()))
        cfg = self.model.cfg
        t = min(spec.shape[-1], cfg.max_frames)
        return spec[..., : t - t % cfg.patch_t]

    def masks(self, spec: torch.Tensor, seed: int) -> MaskResult:
        grid_t, grid_f = self.model.grid(spec)
        g = torch.Generator().manual_seed(seed)
        return random_mask(spec.shape[0], grid_t, grid_f, self.mask_ratio, generator=g).to(spec.device)

    # ---- Task -------------------------------------------------------------------------------
    def training_step(self, batch, step: int):
        spec = self.spectrogram(batch)
        out = self.model(spec, self.masks(spec, derive_seed(self.seed, step, dist_utils.rank())))
        return out.loss, {}

    def validation_step(self, batch) -> dict[str, float]:
        spec = self.spectrogram(batch)
        out = self.model(spec, self.masks(spec, VAL_SEED))
        return {"loss": float(out.loss)}

    @torch.no_grad()
    def plot(self, batch, path: str | os.PathLike) -> None:
        """Original / masked / reconstructed spectrogram of the first item (normalised domain)."""
        spec = self.spectrogram(batch)[:1]
        m = self.masks(spec, VAL_SEED)
        recon = self.model.reconstruct(spec, m)[0].float().cpu().numpy()
        cfg = self.model.cfg
        shown = patchify(spec, cfg.patch_f, cfg.patch_t).masked_fill(m.mask.unsqueeze(-1), float("nan"))
        masked = unpatchify(shown, cfg.n_mels, cfg.patch_f, cfg.patch_t)[0].cpu().numpy()
        save_spectrogram_plot(
            [spec[0].cpu().numpy(), masked, recon],
            [
                "original",
                f"masked ({self.mask_ratio:.0%} of patches hidden)",
                "reconstruction (visible patches kept)",
            ],
            path,
        )

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        self.model.save_pretrained(directory, extra={"pretrain": {"mask_ratio": self.mask_ratio}})


def neighbour_baseline(patches: torch.Tensor, mask: torch.Tensor, grid_f: int) -> torch.Tensor:
    """Trivial predictor for masked patches ``(B, N, P)``: the mean of the nearest visible patch
    before and after it in time in the same frequency row; if the row has none visible, the mean
    of the item's visible patches. Visible patches are returned unchanged."""
    b, n, p = patches.shape
    grid_t = n // grid_f
    x = patches.reshape(b, grid_t, grid_f, p)
    vis = (~mask).reshape(b, grid_t, grid_f)

    def nearest(order: range) -> tuple[torch.Tensor, torch.Tensor]:
        found = torch.zeros(b, grid_t, grid_f, dtype=torch.bool)
        value = torch.zeros_like(x)
        last_v = torch.zeros(b, grid_f, p, dtype=x.dtype)
        last_ok = torch.zeros(b, grid_f, dtype=torch.bool)
        for t in order:
            found[:, t], value[:, t] = last_ok, last_v
            last_v = torch.where(vis[:, t, :, None], x[:, t], last_v)
            last_ok = last_ok | vis[:, t]
        return found, value

    lf, lv = nearest(range(grid_t))
    rf, rv = nearest(range(grid_t - 1, -1, -1))
    count = lf.float() + rf.float()
    row_mean = (lv * lf[..., None] + rv * rf[..., None]) / count.clamp_min(1)[..., None]
    visw = vis.reshape(b, n, 1).float()
    item_mean = (patches * visw).sum(1) / visw.sum(1).clamp_min(1)  # (B, P)
    pred = torch.where((count > 0)[..., None], row_mean, item_mean[:, None, None, :])
    out = torch.where(mask.reshape(b, grid_t, grid_f, 1), pred, x)
    return out.reshape(b, n, p)


# ---- settings and the pretraining entry point ------------------------------------------------
@dataclass(frozen=True)
class PretrainSettings:
    data: DataSettings = field(default_factory=DataSettings)
    preset: str = "tiny"  # YAML: model.preset
    model: dict[str, Any] = field(default_factory=dict)  # other model.* keys: ModelConfig overrides
    features: dict[str, Any] = field(default_factory=dict)  # FeatureConfig fields
    mask_ratio: float = 0.8
    train: TrainConfig = field(default_factory=TrainConfig)
    out_dir: str = "runs/pretrain"
    export: str | None = None  # also save the final model here (e.g. audiomae/assets/...)
    threads: int | None = None
    # Accumulating runs: a saved encoder to start from (e.g. audiomae/assets/mae_tiny_speech).
    # Set, the run trains in stages (out_dir/stage_000, stage_001, ...): each invocation starts
    # a new stage from the newest finished one, or from ``init`` in a fresh run directory, and
    # ``--resume`` continues the newest stage; architecture and norm stats are the start's.
    init: str | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PretrainSettings:
        d = dict(d)
        if isinstance(d.get("data"), str):  # "data=PATH" shorthand
            d["data"] = {"train": d["data"]}
        d["model"] = dict(d.get("model") or {})
        d["preset"] = d["model"].pop("preset", d.get("preset", "tiny"))
        sections = {"data": DataSettings, "train": TrainConfig}
        return from_dict(cls, d, sections, what="pretraining settings")


def build_model(s: PretrainSettings, norm: NormStats | None = None) -> AudioMAE:
    features = from_dict(FeatureConfig, {"n_mels": 80, **s.features})
    overrides = {"n_mels": features.n_mels, **s.model}
    cfg = model_preset(s.preset, **overrides)
    if "max_frames" not in s.model:
        # The positional table is fixed sin-cos (not weights), so a longer table costs nothing.
        frames = features.num_frames(int(round(s.data.clip_seconds * features.sample_rate)))
        needed = frames - frames % cfg.patch_t
        if needed > cfg.max_frames:
            cfg = dataclasses.replace(cfg, max_frames=needed)
    return AudioMAE(cfg, features=features, norm=norm)


def run_pretraining(s: PretrainSettings, resume: bool = False):
    """Build data, model and task from ``s`` and train with :func:`audiomae.train.fit`.

    Returns the :class:`~audiomae.train.TrainResult`; the final model is in ``out_dir/model``
    (and in ``s.export`` when set)."""
    from audiomae.train.loop import fit
    from audiomae.train.runner import export_model, stage_directory, start_run

    info = start_run(s.threads)
    out_dir, start, seed = Path(s.out_dir), None, s.train.seed
    if s.init is not None:
        out_dir, start = stage_directory(s.out_dir, s.init, resume)
        resume = start == "resume"
        seed = derive_seed(s.train.seed, int(out_dir.name[-3:]))  # new masks and crops per stage
    if start is not None:
        # Architecture and normalisation come from the starting encoder, so every stage (and a
        # PLC model fine-tuned from the result) sees the features the first one was trained on.
        model = AudioMAE.from_pretrained(s.init if resume else start)
        if type(model) is not AudioMAE:
            raise ValueError(f"{start}: holds a {type(model).__name__}, not a pretrained AudioMAE encoder")
        model.train()
        train, val = audio_datasets(s.data, model.feature_cfg.sample_rate, seed)
        origin = f"stage {out_dir.name} from {start}"
    else:
        probe = build_model(s)
        train, val = audio_datasets(s.data, probe.feature_cfg.sample_rate, seed)
        norm = norm_stats_from(train, LogMel(probe.feature_cfg), s.data.norm_files, seed=seed)
        torch.manual_seed(seed)
        model = build_model(s, norm)
        origin = "from scratch"
    if info.rank == 0:
        print(
            f"pretraining {s.preset if start is None else 'encoder'} "
            f"({model.num_params() / 1e6:.2f} M params) "
            f"on {len(train)} items, {len(val)} validation, {origin}; "
            f"norm mean {model.norm.mean:.3f} std {model.norm.std:.3f}",
            flush=True,
        )
    task = MAEPretrainTask(model, s.mask_ratio, seed=seed)
    val_batches = validation_batches(val, s.data.val_clips, s.train.batch_size)
    result = fit(task, train, val_batches, s.train, out_dir, resume=resume)
    steps = result.steps
    if info.rank == 0 and start is not None:
        # A stage's model records the steps behind it, its start's included.
        steps += _steps_before(out_dir, s.init)
        model = AudioMAE.from_pretrained(out_dir / "model")
        model.save_pretrained(
            out_dir / "model", extra={"pretrain": {"mask_ratio": s.mask_ratio, "steps": steps}}
        )
    extra = {"pretrain": {"mask_ratio": s.mask_ratio, "steps": steps}}
    export_model(out_dir / "model", s.export, AudioMAE.from_pretrained, extra=extra)
    return result


def _steps_before(stage: Path, init: str) -> int:
    """Pretraining steps behind what ``stage`` started from: the newest finished stage before
    it, else ``init`` (from its config's ``extra.pretrain.steps``; 0 when not recorded)."""
    import json

    before = [
        p for p in stages(stage.parent) if p.name < stage.name and (p / "model" / "config.json").is_file()
    ]
    cfg = Path(before[-1] if before else init)
    cfg = (cfg / "model" if before else cfg) / "config.json"
    if not cfg.is_file():
        return 0
    return int(json.loads(cfg.read_text()).get("extra", {}).get("pretrain", {}).get("steps", 0) or 0)


__all__ = [
    "MAEPretrainTask",
    "PretrainSettings",
    "DataSettings",
    "SyntheticSpeech",
    "run_pretraining",
    "build_model",
    "neighbour_baseline",
    "norm_stats_from",
    "save_spectrogram_plot",
    "derive_seed",
]
