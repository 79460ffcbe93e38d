"""PLC training windows recorded from the streaming concealer itself.

:mod:`audiomae.train.plc_pool` conceals a cut window offline with ``lpc`` and asks the model to
correct it. That is close to, but not, what the model is asked in a stream: there the window's
history holds what the concealer (with the model) played, the target packet sits where the
stream's loss pattern puts it in its burst, and the clean reference is the signal's own log-mel.
Here the streaming :class:`~audiomae.plc.mae.MAEConcealer`, running a residual model, conceals
whole (augmented) files under Gilbert-Elliott loss; a :class:`~audiomae.plc.mae.ConcealerHooks`
notes every MAE pass: the log-mel of the exact window the model gets, its loss flags and target
column, beside the clean log-mel of the same frames. Burst positions come out as the loss
process makes them (mostly short), not forced.

The shards have the pool format of :mod:`audiomae.train.plc_pool` (``clean``, ``played``,
``lost``, ``target``, ``lookahead``, ``group``), so :func:`~audiomae.train.plc_pool.load_pool`
and the residual recipe read them unchanged.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from audiomae.audio import SAMPLE_RATE, SAMPLES_PER_PACKET, atomic_write, load_audio
from audiomae.config import FeatureConfig
from audiomae.loss_models import LossSpec, apply_loss, parse_condition
from audiomae.plc.mae import RESIDUAL_DEFAULTS, ConcealerConfig, ConcealerHooks, MAEConcealer
from audiomae.train.plc_pool import POOL_FORMAT, SourceGroup, save_shard
from audiomae.train.wave_augment import augment_wave, make_augmenter


@dataclass(frozen=True)
class RecordSettings:
    """What to record. ``conditions`` (e.g. ``["ge10b2"]``) fixes the loss conditions, each run
    causal and with every lookahead in ``lookaheads`` (a validation set); otherwise each file
    gets one GE pattern with rate and mean burst drawn uniformly from ``rate`` / ``burst`` and a
    lookahead drawn from ``lookahead_probs`` (0, 1, 2 packets)."""

    groups: tuple[SourceGroup, ...]
    model: str  # the residual model the concealer runs (its corrections shape the history)
    exclude: tuple[SourceGroup, ...] = ()  # files kept out (the tuning set, validation files)
    n_windows: int = 60000
    shard_size: int = 1000
    seconds: float = 10.0  # a random excerpt of each file this long
    augment: float = 0.5  # probability that a file is augmented
    rate: tuple[float, float] = (0.03, 0.3)
    burst: tuple[float, float] = (1.0, 4.0)
    lookahead_probs: tuple[float, ...] = (0.5, 0.3, 0.2)
    conditions: tuple[str, ...] = ()
    lookaheads: tuple[int, ...] = (0, 1)
    seed: int = 0


class WindowRecorder(ConcealerHooks):
    """Notes (clean log-mel, input log-mel, loss flags, target packet) of every MAE pass whose
    window lies inside the signal; ``clean_mel`` ``(F, T)`` is set per signal."""

    def __init__(self, concealer: MAEConcealer) -> None:
        self.concealer = concealer
        self.clean_mel: np.ndarray | None = None
        self.rows: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]] = []

    def logmel(self, window, predicted):
        c = self.concealer
        hop = c.model.feature_cfg.hop_length
        frames = c.cfg.context_packets * c.frames_per_packet
        first = window.start // hop
        if window.start >= 0 and first + frames <= self.clean_mel.shape[-1]:
            seen = np.asarray(c.window_logmel(window.wave))[0]
            if seen.shape[-1] == frames and window.lost.size == c.cfg.context_packets:
                target = window.target // c.frames_per_packet
                self.rows.append(
                    (self.clean_mel[:, first : first + frames], seen, window.lost.copy(), target)
                )
        return predicted


def _files(groups: tuple[SourceGroup, ...], exclude: tuple[SourceGroup, ...], seed: int) -> list[list[Path]]:
    drop = {str(p) for g in exclude for p in g.files(seed)[0]}
    out = []
    for g in groups:
        files = [p for p in g.files(seed)[0] if str(p) not in drop]
        if not files:
            raise FileNotFoundError(f"source group {g.name!r}: no files left after the exclusions")
        out.append(files)
    return out


def _prepare(file: Path, s: RecordSettings, rng: np.random.Generator, augment) -> np.ndarray:
    wave = load_audio(file).astype(np.float32)
    if rng.random() < s.augment:
        wave = augment_wave(augment, wave, rng, SAMPLE_RATE, room=0.1)
    n = int(s.seconds * SAMPLE_RATE)
    if wave.size > n:
        start = int(rng.integers(0, wave.size - n + 1)) if s.augment > 0 else 0
        wave = wave[start : start + n]
    return wave


def _patterns(s: RecordSettings, rng: np.random.Generator) -> list[tuple[int, LossSpec]]:
    if s.conditions:
        return [(k, parse_condition(c)) for k in s.lookaheads for c in s.conditions]
    probs = np.asarray(s.lookahead_probs, dtype=np.float64)
    lookahead = int(rng.choice(len(probs), p=probs / probs.sum()))
    rate = float(rng.uniform(*s.rate))
    burst = max(float(rng.uniform(*s.burst)), rate / (1 - rate) + 1e-3)
    return [(lookahead, LossSpec("gilbert_elliott", rate, burst))]


def record_pool(
    s: RecordSettings, out_dir: str | os.PathLike, progress: bool = True, worker: int = 0, workers: int = 1
) -> Path:
    """Write ``ceil(n_windows / shard_size)`` shards of recorded windows to ``out_dir``; shards
    already there are kept (the build resumes), each written atomically; ``worker`` of
    ``workers`` records every ``workers``-th shard. Each shard has its own random stream."""
    from audiomae.model import AudioMAE
    from audiomae.plc.offline import conceal

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = _files(s.groups, s.exclude, s.seed)
    meta = {
        "format": POOL_FORMAT,
        "recorded": asdict(s),
        "groups": [{"name": g.name, "files": len(f)} for g, f in zip(s.groups, files)],
        "features": asdict(FeatureConfig()),
    }
    if worker == 0:
        atomic_write(out / "pool.json", lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=1)))
    model = AudioMAE.from_pretrained(s.model).eval()
    config = ConcealerConfig(**RESIDUAL_DEFAULTS)
    recorders = {}
    for k in sorted({*s.lookaheads, *range(len(s.lookahead_probs))}):
        c = MAEConcealer(model, lookahead=k, config=config)
        c.hooks = recorders[k] = WindowRecorder(c)
    weights = np.array([g.weight for g in s.groups], dtype=np.float64)
    weights /= weights.sum()
    augment = make_augmenter()
    n_shards = -(-s.n_windows // s.shard_size)
    t0 = time.time()
    for shard in range(n_shards):
        path = out / f"shard_{shard:04d}.npz"
        if path.exists() or shard % workers != worker:
            continue
        rng = np.random.default_rng([s.seed, shard])
        rows: list[tuple] = []
        while len(rows) < s.shard_size:
            gi = int(rng.choice(len(weights), p=weights))
            wave = _prepare(files[gi][int(rng.integers(len(files[gi])))], s, rng, augment)
            n = -(-wave.size // SAMPLES_PER_PACKET)
            if n <= 2 * config.context_packets:
                continue
            padded = np.pad(wave, (0, n * SAMPLES_PER_PACKET - wave.size))
            for lookahead, spec in _patterns(s, rng):
                rec = recorders[lookahead]
                rec.clean_mel = rec.concealer.frontend(torch.from_numpy(padded).unsqueeze(0))[0].numpy()
                rec.rows = []
                lost = spec.draw(n, rng)
                conceal(apply_loss(wave, lost), lost, rec.concealer)
                rows.extend(r + (lookahead, gi) for r in rec.rows)
        rows = [rows[i] for i in rng.permutation(len(rows))[: s.shard_size]]
        save_shard(
            path,
            dict(
                clean=np.stack([r[0] for r in rows]).astype(np.float16),
                played=np.stack([r[1] for r in rows]).astype(np.float16),
                lost=np.stack([r[2] for r in rows]),
                target=np.array([r[3] for r in rows], dtype=np.int16),
                lookahead=np.array([r[4] for r in rows], dtype=np.int8),
                group=np.array([r[5] for r in rows], dtype=np.int16),
            ),
        )
        if progress:
            print(f"shard {shard + 1}/{n_shards} written ({time.time() - t0:.0f} s)", flush=True)
    return out


__all__ = ["RecordSettings", "WindowRecorder", "record_pool"]
