"""PLC fine-tuning: teach a pretrained Audio-MAE to fill packet-loss gaps as the concealer sees them.

Each training item is a window of ``context_packets`` 20 ms packets. A Gilbert-Elliott loss
pattern (5-40 % loss, 1-10 packet bursts) is drawn over the window, and a *target burst*
is forced to end near its right edge, in one of two layouts the streaming concealer uses:

    causal      |  received / lost ...  | burst .. t | f |     f = the next packet, unknown
    lookahead k |  received / lost ...  | burst .. t | k packets (received or lost) |

The encoder sees log-mel computed from the lossy waveform (lost packets zeroed, exactly what
the concealer computes at run time); the loss is the MSE between predicted and *clean*
absolute (normalised) log-mel on every masked column, so the vocoder can render it
(``energy_gamma`` > 0 weighs each band of a frame by its share of the frame's power).
"""

from __future__ import annotations

import dataclasses
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiomae.audio import SAMPLE_RATE, SAMPLES_PER_PACKET
from audiomae.config import from_dict
from audiomae.features import LogMel, patchify, unpatchify
from audiomae.loss_models import gilbert_elliott
from audiomae.masking import MaskResult, packet_loss_mask
from audiomae.model import AudioMAE
from audiomae.train import distributed as dist_utils
from audiomae.train.config import TrainConfig
from audiomae.train.data import DataSettings, audio_datasets, norm_stats_from, val_dataset, validation_batches
from audiomae.train.plots import save_spectrogram_plot
from audiomae.train.task import derive_seed

VAL_SEED = 777


@dataclass(frozen=True)
class PLCMaskSettings:
    """How loss patterns are drawn for fine-tuning."""

    rate: tuple[float, float] = (0.05, 0.40)  # Gilbert-Elliott loss rate range
    burst: tuple[float, float] = (1.0, 10.0)  # mean burst length range (packets)
    target_burst_max: int = 10  # forced burst ending at the target packet: 1..this many packets
    lookahead_probs: tuple[float, ...] = (0.5, 0.3, 0.2)  # P(causal), P(lookahead 1), P(lookahead 2)


def draw_loss_window(
    n_packets: int, s: PLCMaskSettings, rng: np.random.Generator
) -> tuple[np.ndarray, int, int]:
    """One training loss pattern over ``n_packets`` columns.

    Returns (lost (n_packets,) bool, target packet index, lookahead). In the causal layout
    the final column is the unknown future packet and is always masked."""
    probs = np.asarray(s.lookahead_probs, dtype=np.float64)
    lookahead = int(rng.choice(len(probs), p=probs / probs.sum()))
    rate = rng.uniform(*s.rate)
    burst = rng.uniform(*s.burst)
    burst = max(burst, rate / (1 - rate) + 1e-3)  # keep the GE transition probability valid
    lost = gilbert_elliott(n_packets, rate, burst, rng)
    # Causal: the target is followed by one unknown packet; lookahead k: by k packets.
    after = 1 if lookahead == 0 else lookahead
    target = n_packets - 1 - after
    length = int(rng.integers(1, s.target_burst_max + 1))
    lost[max(0, target - length + 1) : target + 1] = True
    if lookahead == 0:
        lost[target + 1 :] = True
    # The encoder needs something visible: keep the oldest packet when all else is lost.
    if lost.all():
        lost[0] = False
    return lost, target, lookahead


def zero_lost(wave: torch.Tensor, lost: torch.Tensor) -> torch.Tensor:
    """Zero the samples of lost packets: ``wave`` (B, S), ``lost`` (B, n) with n*320 >= S."""
    b, s = wave.shape
    per_sample = lost.repeat_interleave(SAMPLES_PER_PACKET, dim=1)[:, :s]
    return wave.masked_fill(per_sample, 0.0)


class PLCFinetuneTask:
    """Fine-tune an AudioMAE on packet-loss masks. Batches are clean waveforms ``(B, S)``."""

    def __init__(
        self,
        model: AudioMAE,
        masks: PLCMaskSettings | None = None,
        seed: int = 0,
        target_weight: float = 1.0,
        energy_gamma: float = 0.0,
    ) -> None:
        if model.cfg.patch_t * model.feature_cfg.hop_length != SAMPLES_PER_PACKET:
            raise ValueError(
                "PLC fine-tuning needs one patch column per 20 ms packet "
                f"(patch_t * hop = {model.cfg.patch_t * model.feature_cfg.hop_length} samples)"
            )
        if model.cfg.norm_pix_loss:
            raise ValueError("PLC needs absolute log-mel predictions: use a model with norm_pix_loss=False")
        self.model = model
        self.masks = masks or PLCMaskSettings()
        self.seed = seed
        if target_weight < 1:
            raise ValueError(f"target_weight must be >= 1, got {target_weight}")
        # Loss weight of the target column (the one the concealer renders) relative to the
        # other masked columns of the window.
        self.target_weight = float(target_weight)
        if energy_gamma < 0:
            raise ValueError(f"energy_gamma must be >= 0, got {energy_gamma}")
        # 0: every (mel band, frame) of a masked patch counts alike. > 0: within each frame,
        # bands count by their share of the clean frame's power raised to this exponent (1:
        # power, 0.5: amplitude), plus a 10% floor: the loud bands are what the renderer
        # reproduces, the quiet ones sit near the log floor and are mostly noise.
        self.energy_gamma = float(energy_gamma)
        self.frontend = LogMel(model.feature_cfg, backend="torch")

    def _spec(self, wave: torch.Tensor) -> torch.Tensor:
        if self.frontend.mel_fb.device != wave.device:
            self.frontend.to(wave.device)
        with torch.autocast(wave.device.type, enabled=False):
            spec = self.model.norm.normalize(self.frontend(wave.float()))
        t = wave.shape[-1] // SAMPLES_PER_PACKET * self.model.cfg.patch_t
        return spec[..., :t]

    def prepare(self, wave: torch.Tensor, seed: int | list[int], targets: bool = False) -> tuple:
        """(lossy spec, clean spec, mask) for a batch of clean waves, from a seeded draw: one
        generator for the batch (``seed: int``) or one per item (a list of seeds). With
        ``targets``, a fourth item: each window's target packet (column) index, (B,)."""
        if isinstance(wave, (tuple, list)):
            wave = wave[0]
        n_packets = wave.shape[-1] // SAMPLES_PER_PACKET
        wave = wave[:, : n_packets * SAMPLES_PER_PACKET]
        if isinstance(seed, int):
            rng = np.random.default_rng(seed)
            rngs = [rng] * wave.shape[0]
        else:
            rngs = [np.random.default_rng(s) for s in seed]
        draws = [draw_loss_window(n_packets, self.masks, r) for r in rngs]
        lost_t = torch.from_numpy(np.stack([d[0] for d in draws])).to(wave.device)
        clean = self._spec(wave)
        lossy = self._spec(zero_lost(wave, lost_t))
        mask = packet_loss_mask(lost_t, self.model.cfg.grid_f)
        if targets:
            return lossy, clean, mask, torch.tensor([d[1] for d in draws], device=wave.device)
        return lossy, clean, mask

    def band_weights(self, clean: torch.Tensor, gamma: float | None = None) -> torch.Tensor:
        """(B, F, T) normalised clean log-mel -> (B, F, T) loss weights with mean 1 per frame:
        10% uniform, 90% by each band's share of the frame's power ** ``gamma`` (default
        ``energy_gamma``; 0 gives all ones)."""
        gamma = self.energy_gamma if gamma is None else gamma
        if gamma == 0:
            return torch.ones_like(clean)
        log_power = self.model.norm.denormalize(clean)
        return 0.1 + 0.9 * torch.softmax(gamma * log_power, dim=-2) * clean.shape[-2]

    def training_step(self, batch, step: int):
        seed = derive_seed(self.seed, step, dist_utils.rank())
        if self.target_weight == 1 and self.energy_gamma == 0:
            lossy, clean, mask = self.prepare(batch, seed)
            return self.model(lossy, mask, target=clean).loss, {}
        lossy, clean, mask, target = self.prepare(batch, seed, targets=True)
        out = self.model(lossy, mask, target=clean)
        cfg = self.model.cfg
        bands = patchify(self.band_weights(clean), cfg.patch_f, cfg.patch_t)
        err = ((out.pred - patchify(clean, cfg.patch_f, cfg.patch_t)).square() * bands).mean(-1)
        column = torch.arange(err.shape[1], device=err.device) // cfg.grid_f  # time-major patches
        weight = mask.mask.to(err.dtype) * (1 + (self.target_weight - 1) * (column == target[:, None]))
        return (err * weight).sum() / weight.sum().clamp_min(1.0), {}

    @torch.no_grad()
    def validation_step(self, batch) -> dict[str, float]:
        lossy, clean, mask = self.prepare(batch, validation_seeds(batch))
        out = self.model(lossy, mask, target=clean)
        cfg = self.model.cfg
        sq = (out.pred - patchify(clean, cfg.patch_f, cfg.patch_t)).square()
        err = sq.mean(-1)
        # Energy-weighted error (amplitude shares, as ``energy_gamma=0.5``), whatever the
        # training loss: what the loud bands the renderer reproduces get.
        bands = patchify(self.band_weights(clean, gamma=0.5), cfg.patch_f, cfg.patch_t)
        # Per-clip means, then their mean: the figure is the same whatever the batching.
        # The "repeat the last received column" baseline puts it in context.
        return {
            "loss": float(_per_item_mean(err, mask.mask).mean()),
            "energy_mse": float(_per_item_mean((sq * bands).mean(-1), mask.mask).mean()),
            "repeat_baseline": float(repeat_last_loss(clean, mask, self.model, per_item=True).mean()),
        }

    def plot(self, batch, path: str | os.PathLike) -> None:
        batch = batch[0] if isinstance(batch, (tuple, list)) else batch
        lossy, clean, mask = self.prepare(batch[:1], validation_seeds(batch[:1]))
        cfg = self.model.cfg
        rec = self.model.reconstruct(lossy, mask)[0].float().cpu().numpy()
        shown = patchify(lossy, cfg.patch_f, cfg.patch_t).masked_fill(mask.mask.unsqueeze(-1), float("nan"))
        masked = unpatchify(shown, cfg.n_mels, cfg.patch_f, cfg.patch_t)[0].cpu().numpy()
        save_spectrogram_plot(
            [clean[0].cpu().numpy(), masked, rec],
            ["clean", "received (lost packets hidden)", "concealed (MAE prediction in the gaps)"],
            path,
        )

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        self.model.save_pretrained(directory, extra={"plc": dataclasses.asdict(self.masks)})


def validation_seeds(batch) -> list[int]:
    """One loss-pattern seed per validation clip, from its samples: a clip is scored under the
    same pattern whatever the validation batch size or order."""
    wave = batch[0] if isinstance(batch, (tuple, list)) else batch
    data = wave.detach().float().cpu().numpy()
    return [VAL_SEED ^ zlib.crc32(np.ascontiguousarray(item).tobytes()) for item in data]


def _per_item_mean(err: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """(B, N) errors, (B, N) bool -> (B,) mean over each item's selected entries."""
    w = where.to(err.dtype)
    return (err * w).sum(-1) / w.sum(-1).clamp_min(1.0)


def repeat_last_loss(
    clean: torch.Tensor, mask: MaskResult, model: AudioMAE, per_item: bool = False
) -> torch.Tensor:
    """MSE on masked patches when each lost column repeats the last visible column before it
    (over the batch, or ``(B,)`` per-item means with ``per_item``)."""
    cfg = model.cfg
    patches = patchify(clean, cfg.patch_f, cfg.patch_t)
    b, n, p = patches.shape
    cols = patches.reshape(b, n // cfg.grid_f, cfg.grid_f, p)
    lost = mask.mask.reshape(b, n // cfg.grid_f, cfg.grid_f)[..., 0]
    pred = cols.clone()
    for i in range(b):
        last = None
        for t in range(cols.shape[1]):
            if lost[i, t]:
                pred[i, t] = last if last is not None else cols[i][~lost[i]].mean(0)
            else:
                last = cols[i, t]
    err = (pred - cols).square().mean(-1)
    return _per_item_mean(err.mean(-1), lost) if per_item else err[lost].mean()


@dataclass(frozen=True)
class PLCSettings:
    init: str | None = None  # pretrained AudioMAE checkpoint directory (None: from scratch)
    preset: str = "tiny"  # used only without ``init``
    context_packets: int = 40  # window length in packets (0.8 s)
    data: DataSettings = field(default_factory=DataSettings)
    masks: PLCMaskSettings = field(default_factory=PLCMaskSettings)
    train: TrainConfig = field(default_factory=TrainConfig)
    out_dir: str = "runs/plc"
    export: str | None = None
    threads: int | None = None
    target_weight: float = 1.0  # loss weight of the concealer's target column vs other lost ones
    energy_gamma: float = 0.0  # > 0: weigh each band by its share of the frame's power ** gamma

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PLCSettings:
        d = dict(d)
        if isinstance(d.get("data"), str):  # "data=PATH" shorthand
            d["data"] = {"train": d["data"]}
        sections = {"data": DataSettings, "masks": PLCMaskSettings, "train": TrainConfig}
        return from_dict(cls, d, sections, what="PLC fine-tuning settings")


def _window_data(s: PLCSettings) -> DataSettings:
    """The data settings with clips cut to the PLC window (``context_packets`` packets)."""
    return dataclasses.replace(s.data, clip_seconds=s.context_packets * SAMPLES_PER_PACKET / SAMPLE_RATE)


def run_plc_finetune(s: PLCSettings, resume: bool = False):
    """Fine-tune (or train from scratch) an AudioMAE for PLC; returns the TrainResult."""
    from audiomae.train.loop import fit
    from audiomae.train.runner import export_model, start_run

    info = start_run(s.threads)
    data = _window_data(s)
    if s.init:
        model = AudioMAE.from_pretrained(s.init)
        model.train()
    else:
        model = AudioMAE.from_preset(s.preset)
    frames = s.context_packets * model.cfg.patch_t
    if frames > model.cfg.max_frames:
        raise ValueError(
            f"context of {s.context_packets} packets exceeds the model's {model.cfg.max_frames} frames"
        )
    train, val = audio_datasets(data, model.feature_cfg.sample_rate, s.train.seed)
    val_batches = validation_batches(val, data.val_clips, s.train.batch_size)
    if not s.init:
        norm = norm_stats_from(train, LogMel(model.feature_cfg), data.norm_files, seed=s.train.seed)
        model = AudioMAE(model.cfg, features=model.feature_cfg, norm=norm)
    if info.rank == 0:
        src = s.init or f"scratch ({s.preset})"
        print(f"PLC fine-tuning from {src}: {model.num_params() / 1e6:.2f} M params, {len(train)} items")
    task = PLCFinetuneTask(
        model, s.masks, seed=s.train.seed, target_weight=s.target_weight, energy_gamma=s.energy_gamma
    )
    result = fit(task, train, val_batches, s.train, s.out_dir, resume)
    extra = {
        "plc": dataclasses.asdict(s.masks),
        "context_packets": s.context_packets,
        "init": s.init,
        "steps": result.steps,
    }
    export_model(Path(s.out_dir) / "model", s.export, AudioMAE.from_pretrained, extra=extra)
    return result


def evaluate_plc(model_dir: str | os.PathLike, s: PLCSettings) -> dict[str, float]:
    """Validation figures of a PLC model on ``s``'s validation clips (the recipe's windows and
    per-clip loss patterns): masked-column MSE and the repeat-last-column baseline."""
    from audiomae.train.loop import validation_metrics

    model = AudioMAE.from_pretrained(model_dir).eval()
    data = _window_data(s)
    val = val_dataset(data, model.feature_cfg.sample_rate, s.train.seed)
    task = PLCFinetuneTask(model, s.masks, seed=s.train.seed)
    return validation_metrics(task, validation_batches(val, data.val_clips, s.train.batch_size))
