"""Training the residual PLC model on precomputed windows (:mod:`audiomae.train.plc_pool`).

The model sees the log-mel of what the MAE-free concealer played over a window (lost columns
marked) and learns the correction that turns it into the clean log-mel. Validation reports
the model's error beside the continuation's own (the model with a zero correction) on every
lost column and on the target column alone, so "never worse than the continuation" is read
off every validation line.

Runs accumulate: each invocation is a new *stage* in ``out_dir/stage_K`` that starts from
the previous stage's exported model, or from ``init`` (the bundled model) when there is none;
``--resume`` continues the newest stage after a kill.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from audiomae.config import from_dict
from audiomae.features import unpatchify
from audiomae.masking import burst_position, packet_loss_mask
from audiomae.model import AudioMAE, ResidualPLCMAE
from audiomae.train import distributed as dist_utils
from audiomae.train.config import TrainConfig
from audiomae.train.plc_pool import load_pool
from audiomae.train.task import derive_seed

LOG_FLOOR = math.log(1e-8)  # FeatureConfig.log_floor: no log-mel value lies below it


class PoolDataset(Dataset):
    """Windows of a loaded pool as dicts of tensors (log-mel still in natural-log power)."""

    def __init__(self, pool: dict[str, np.ndarray]) -> None:
        self.pool = pool

    def __len__(self) -> int:
        return len(self.pool["lost"])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        p = self.pool
        return {
            "clean": torch.from_numpy(p["clean"][i].astype(np.float32)),
            "played": torch.from_numpy(p["played"][i].astype(np.float32)),
            "lost": torch.from_numpy(p["lost"][i]),
            "target": torch.tensor(int(p["target"][i])),
        }


def position_weight(pos: torch.Tensor) -> torch.Tensor:
    """Loss weight of a lost column by its burst position: the first three packets are what the
    renderer plays at full level; later ones fade into comfort noise."""
    w = torch.where(pos <= 3, 1.0, torch.where(pos <= 6, 0.3, 0.05))
    return w * (pos > 0)


class ResidualPLCTask:
    """Loss per lost frame, in the normalised log-mel domain: the band error weighted by each
    band's share of the clean frame's power (``energy_gamma``, plus a 10% floor: the loud bands
    are what the renderer reproduces) plus ``level_weight`` times the squared error of the frame's
    total level; frames count by their packet's burst position (:func:`position_weight`), the
    target packet ``target_weight`` and the other lost columns ``context_weight``. Plain MSE
    treats near-silent bands like loud ones, and a model trained on it beat the continuation
    there while losing to it on the envelope and level that are heard."""

    def __init__(
        self,
        model: ResidualPLCMAE,
        seed: int = 0,
        target_weight: float = 1.0,
        level_db: float = 10.0,
        energy_gamma: float = 0.5,
        level_weight: float = 1.0,
        context_weight: float = 0.1,
    ) -> None:
        if not isinstance(model, ResidualPLCMAE):
            raise TypeError(f"residual PLC training needs a ResidualPLCMAE, got {type(model).__name__}")
        self.model = model
        self.seed = seed
        self.target_weight = float(target_weight)
        # Level augmentation: a gain shifts clean and played log-mel alike (the LPC continuation
        # scales with its input), drawn uniformly in +-level_db.
        self.level_db = float(level_db)
        self.energy_gamma = float(energy_gamma)
        self.level_weight = float(level_weight)
        self.context_weight = float(context_weight)

    def _inputs(self, batch: dict, gen: torch.Generator | None):
        clean, played = batch["clean"], batch["played"]
        if gen is not None and self.level_db > 0:
            db = (torch.rand(clean.shape[0], 1, 1, generator=gen) * 2 - 1) * self.level_db
            shift = (db * math.log(10) / 10).to(clean.device)
            clean = (clean + shift).clamp_min(LOG_FLOOR)
            played = (played + shift).clamp_min(LOG_FLOOR)
        norm = self.model.norm
        mask = packet_loss_mask(batch["lost"], self.model.cfg.grid_f)
        return norm.normalize(played), norm.normalize(clean), mask

    def _frame_errors(self, est: torch.Tensor, clean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, F, T) normalised log-mel -> ((B, T) objective per frame, (B, T) plain MSE)."""
        norm = self.model.norm
        clean_log = norm.denormalize(clean).float()
        est_log = norm.denormalize(est).float()
        sq = (est.float() - clean.float()).square()
        bands = 0.1 + 0.9 * torch.softmax(self.energy_gamma * clean_log, dim=-2) * clean.shape[-2]
        level = (torch.logsumexp(est_log, dim=-2) - torch.logsumexp(clean_log, dim=-2)) / norm.std
        return (sq * bands).mean(-2) + self.level_weight * level.square(), sq.mean(-2)

    def _errors(self, batch: dict, gen: torch.Generator | None):
        spec, clean, mask = self._inputs(batch, gen)
        cfg = self.model.cfg
        pred = unpatchify(self.model._predict(spec, mask)[1], cfg.n_mels, cfg.patch_f, cfg.patch_t)
        lost = batch["lost"]
        pos = burst_position(lost)
        column = torch.arange(lost.shape[1], device=lost.device)
        # The concealer renders the target packet from what came before it (and the lookahead);
        # the other lost columns of the window are context, with audio on both sides.
        is_target = column[None, :] == batch["target"][:, None]
        weight = position_weight(pos) * torch.where(is_target, self.target_weight, self.context_weight)
        per_frame = cfg.patch_t
        model = [e.unflatten(-1, (-1, per_frame)).mean(-1) for e in self._frame_errors(pred, clean)]
        cont = [e.unflatten(-1, (-1, per_frame)).mean(-1) for e in self._frame_errors(spec, clean)]
        return model, cont, weight, pos

    def training_step(self, batch, step: int):
        gen = torch.Generator().manual_seed(derive_seed(self.seed, step, dist_utils.rank()))
        (objective, _), _, weight, _ = self._errors(batch, gen)
        return (objective * weight).sum() / weight.sum().clamp_min(1e-6), {}

    @torch.no_grad()
    def validation_step(self, batch) -> dict[str, float]:
        (obj, mse), (obj_c, mse_c), weight, pos = self._errors(batch, None)

        def mean(e, w):
            w = w.to(e.dtype)
            return float(((e * w).sum(-1) / w.sum(-1).clamp_min(1e-6)).mean())

        target = torch.arange(pos.shape[1], device=pos.device)[None, :] == batch["target"][:, None]
        early = target & (pos >= 1) & (pos <= 3)
        return {
            "loss": mean(obj, weight),
            "continuation": mean(obj_c, weight),
            "early": mean(obj, early),  # the target packet, 1-3 packets into its burst
            "early_continuation": mean(obj_c, early),
            "mse": mean(mse, pos > 0),
            "mse_continuation": mean(mse_c, pos > 0),
        }

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        self.model.save_pretrained(directory)


@dataclass(frozen=True)
class ResidualPLCSettings:
    pool: str = "runs/pool_speech"
    val_pool: str | None = "runs/pool_dev"
    groups: tuple[str, ...] | None = None  # pool source groups to train on (None: all)
    init: str = "audiomae/assets/plc_tiny_speech"  # a residual model, or a plain MAE to start one from
    out_dir: str = "runs/plc_residual"
    export: str | None = None
    threads: int | None = 1
    target_weight: float = 1.0
    level_db: float = 10.0
    energy_gamma: float = 0.5
    level_weight: float = 1.0
    context_weight: float = 0.1  # loss weight of lost columns other than the target
    val_windows: int = 1000
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ResidualPLCSettings:
        return from_dict(cls, dict(d), {"train": TrainConfig}, what="residual PLC settings")


def load_residual(path: str | os.PathLike) -> ResidualPLCMAE:
    model = AudioMAE.from_pretrained(path)
    return model if isinstance(model, ResidualPLCMAE) else ResidualPLCMAE.from_mae(model)


def run_residual_plc(s: ResidualPLCSettings, resume: bool = False):
    """Train one stage (see the module's docstring); returns the TrainResult. The model is in
    ``out_dir/stage_K/model`` (and in ``s.export`` when set)."""
    from audiomae.train.loop import fit
    from audiomae.train.runner import export_model, stage_directory, start_run

    info = start_run(s.threads)
    stage, start = stage_directory(s.out_dir, s.init, resume)
    model = load_residual(s.init if start == "resume" else start)
    model.reset_calibration()  # a calibration is fitted after training (calibrate_levels)
    model.train()
    train = PoolDataset(load_pool(s.pool, list(s.groups) if s.groups else None))
    val_batches = _val_batches(s)
    if info.rank == 0:
        print(
            f"residual PLC: {model.num_params() / 1e6:.2f} M params, {len(train)} windows, "
            f"stage {stage.name} from {start}",
            flush=True,
        )
    task = ResidualPLCTask(
        model,
        # A new stage draws new level shifts; the task mixes in the rank per step.
        seed=derive_seed(s.train.seed, int(stage.name[-3:])),
        target_weight=s.target_weight,
        level_db=s.level_db,
        energy_gamma=s.energy_gamma,
        level_weight=s.level_weight,
        context_weight=s.context_weight,
    )
    result = fit(task, train, val_batches, s.train, stage, resume=start == "resume")
    extra = {
        "residual_plc": {
            "pool": s.pool,
            "groups": s.groups,
            "stage": stage.name,
            "start": start,
            "steps": result.steps,
            "train": dataclasses.asdict(s.train),
        }
    }
    export_model(stage / "model", s.export, load_residual, extra=extra)
    return result


def _val_batches(s: ResidualPLCSettings) -> list[dict]:
    if not s.val_pool:
        return []
    val = {k: v[: s.val_windows] for k, v in load_pool(s.val_pool).items()}
    ds = PoolDataset(val)
    bs = s.train.batch_size
    return [
        torch.utils.data.default_collate([ds[i] for i in range(j, min(j + bs, len(ds)))])
        for j in range(0, len(ds), bs)
    ]


def evaluate_residual(model_dir: str | os.PathLike, s: ResidualPLCSettings) -> dict[str, float]:
    """Validation figures of a model (a plain PLC MAE counts as its zero-correction start)."""
    from audiomae.train.loop import validation_metrics

    if s.threads:
        torch.set_num_threads(s.threads)
    task = ResidualPLCTask(
        load_residual(model_dir).eval(),
        seed=s.train.seed,
        target_weight=s.target_weight,
        energy_gamma=s.energy_gamma,
        level_weight=s.level_weight,
        context_weight=s.context_weight,
    )
    return validation_metrics(task, _val_batches(s))


@torch.no_grad()
def level_pairs(
    model: ResidualPLCMAE, pool: dict[str, np.ndarray], batch_size: int = 200
) -> dict[str, np.ndarray]:
    """Per frame of every window's target packet: its burst position (the last counts all deeper
    ones), ``change`` = the prediction's level minus the input's (what the concealer played) and
    ``truth`` = the clean level minus the input's (natural-log power over all bands)."""
    model.eval()
    n = len(pool["target"])
    fpp = model.cfg.patch_t
    out: dict[str, list[np.ndarray]] = {"pos": [], "change": [], "truth": []}

    def level(x, index):  # (B, F, T) log power -> (B, fpp) level of the indexed frames
        return torch.logsumexp(x.gather(2, index), 1)

    for i in range(0, n, batch_size):
        part = slice(i, min(i + batch_size, n))
        played = torch.from_numpy(pool["played"][part].astype(np.float32))
        clean = torch.from_numpy(pool["clean"][part].astype(np.float32))
        lost = torch.from_numpy(pool["lost"][part])
        target = torch.from_numpy(pool["target"][part].astype(np.int64))
        pred = model.norm.denormalize(
            model.reconstruct(model.norm.normalize(played), packet_loss_mask(lost, model.cfg.grid_f))
        )
        frames = target[:, None] * fpp + torch.arange(fpp)[None, :]  # (B, fpp)
        index = frames[:, None, :].expand(-1, pred.shape[1], -1)
        base = level(played, index)
        pos = burst_position(lost).gather(1, target[:, None]).clamp(1, model.BURST_POSITIONS)
        out["pos"].append(pos.expand(-1, fpp).reshape(-1).numpy())
        out["change"].append((level(pred, index) - base).reshape(-1).numpy())
        out["truth"].append((level(clean, index) - base).reshape(-1).numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def level_bias(model: ResidualPLCMAE, pool: dict[str, np.ndarray], batch_size: int = 200) -> np.ndarray:
    """(BURST_POSITIONS, 2): per burst position of the target packet, the mean error of the
    prediction's frame level against the clean one (natural-log power) and the number of
    target packets."""
    pairs = level_pairs(model, pool, batch_size)
    fpp = model.cfg.patch_t
    out = np.zeros((model.BURST_POSITIONS, 2))
    for p in range(model.BURST_POSITIONS):
        at = pairs["pos"] == p + 1
        out[p] = (pairs["change"][at] - pairs["truth"][at]).mean() if at.any() else 0.0, at.sum() / fpp
    return out


def calibrate_levels(
    model: ResidualPLCMAE,
    pool: dict[str, np.ndarray],
    min_count: int = 50,
    scale: bool = True,
    max_scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Fit the model's level calibration on ``pool`` (training windows) and set it: per burst
    position, the least-squares line from the predicted level change to the true one
    (``scale=False``: slope 1, i.e. the mean level error as the offset). A slope below one
    shrinks the prediction's level toward the continuation's where the model's level is less
    reliable than the continuation's, so with slope 0 the level *is* the continuation's (plus the
    offset). Positions with fewer than ``min_count`` target packets take the next shallower
    position's values. Returns ``(offset, scale)``."""
    model.reset_calibration()
    pairs = level_pairs(model, pool)
    fpp = model.cfg.patch_t
    offset, slope = np.zeros(model.BURST_POSITIONS), np.ones(model.BURST_POSITIONS)
    for p in range(model.BURST_POSITIONS):
        at = pairs["pos"] == p + 1
        if at.sum() < min_count * fpp:
            offset[p], slope[p] = (offset[p - 1], slope[p - 1]) if p else (0.0, 1.0)
            continue
        x, y = pairs["change"][at].astype(np.float64), pairs["truth"][at].astype(np.float64)
        if scale:
            var, cov = x.var(), ((x - x.mean()) * (y - y.mean())).mean()
            slope[p] = np.clip(cov / var, 0.0, max_scale) if var > 0 else 1.0
        offset[p] = (slope[p] * x - y).mean()
    model.level_offset.copy_(torch.from_numpy(offset).float())
    model.level_scale.copy_(torch.from_numpy(slope).float())
    return offset, slope
