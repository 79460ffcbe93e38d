"""Precomputed PLC training windows: what the MAE-free concealer plays, beside the clean log-mel.

The residual PLC model (:class:`audiomae.plc_model.ResidualPLCMAE`) is asked to *correct* the
concealer's own continuation rather than to invent a lost packet from nothing. Its input is
the log-mel of what the ``lpc`` concealer (the same streaming concealer with the MAE switched
off) plays over a window with a drawn loss pattern; its target is the clean log-mel. Running
that concealer costs ~2 ms per lost packet in Python, far more than a training step of the
tiny model per window, so windows are built once into shards and reused for many epochs
(with level shifts, which the continuation follows exactly, applied at training time).

Each shard is an ``.npz`` of plain arrays (loaded with ``allow_pickle=False``):

    clean    (N, F, T) float16   log-mel of the clean window (natural log of mel power)
    played   (N, F, T) float16   log-mel of what ``lpc`` / ``lpc-la{k}`` played over it
    lost     (N, P) bool         the loss pattern, one flag per packet column
    target   (N,) int16          the packet the concealer renders (the last of the forced burst)
    lookahead (N,) int8          0 causal, k: k packets of lookahead
    group    (N,) int16          index into the pool's source groups (``pool.json``)

Windows are P = ``context_packets`` packets long, as in the streaming concealer, and each is
concealed after ``preroll`` received packets, so that the concealer has history as it does in
a stream. The clean audio is augmented first (``audiomentations``: gain, pitch shift, tempo,
low-level noise, band-limiting; plus a mild synthetic room), so both sides see the same voice.
"""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from audiomae.audio import SAMPLE_RATE, SAMPLES_PER_PACKET, atomic_write, load_audio
from audiomae.config import FeatureConfig
from audiomae.data import find_audio
from audiomae.features import LogMel
from audiomae.train.plc import PLCMaskSettings, draw_loss_window
from audiomae.train.wave_augment import augment_wave, make_augmenter

POOL_FORMAT = 1


@dataclass(frozen=True)
class SourceGroup:
    """A set of audio files drawn with probability proportional to ``weight``.

    ``path``: a folder (recursive), or the shared ``MANIFEST.tsv`` with ``prefix`` selecting
    rows whose path starts with it (e.g. ``speechocean762/``)."""

    name: str
    path: str
    weight: float = 1.0
    prefix: str | None = None
    max_hours: float | None = None  # keep a random subset of about this many hours (data-size curves)
    every: int = 1  # of the sorted files, every ``every``-th from ``offset``, at most ``count``
    offset: int = 0
    count: int | None = None

    def files(self, seed: int) -> tuple[list[Path], float]:
        """(files, hours) of this group."""
        path = Path(self.path)
        if path.is_dir():
            found = [(p, None) for p in find_audio(path)]
        else:
            found = []
            with open(path, newline="") as fh:
                for row in csv.DictReader(fh, delimiter="\t"):
                    if self.prefix and not row["path"].startswith(self.prefix):
                        continue
                    found.append((path.parent / row["path"], float(row["duration_s"])))
        found = found[self.offset :: self.every][: self.count]
        if not found:
            raise FileNotFoundError(f"source group {self.name!r}: no audio under {self.path}")
        rng = np.random.default_rng([seed, len(found)])
        order = rng.permutation(len(found))
        files, seconds = [], 0.0
        for i in order:
            p, dur = found[i]
            if dur is None:
                import soundfile as sf

                dur = sf.info(str(p)).duration
            if self.max_hours is not None and seconds >= self.max_hours * 3600:
                break
            files.append(p)
            seconds += dur
        return files, seconds / 3600


@dataclass(frozen=True)
class PoolSettings:
    groups: tuple[SourceGroup, ...]
    n_windows: int = 20000
    shard_size: int = 1000
    context_packets: int = 24
    preroll: int = 8
    windows_per_visit: int = 4  # windows cut from one decoded (and augmented) file
    augment: float = 0.7  # probability that a visit is augmented
    masks: PLCMaskSettings = field(default_factory=PLCMaskSettings)
    seed: int = 0


def conceal_window(
    wave: np.ndarray, lost: np.ndarray, lookahead: int, preroll: int, concealers: dict
) -> np.ndarray:
    """What the MAE-free concealer plays over ``wave`` ((preroll + P) * 320 samples) when the
    last P packets follow ``lost``; returns the last P packets of its output."""
    from audiomae.plc.offline import conceal

    flags = np.concatenate([np.zeros(preroll, dtype=bool), lost])
    lossy = wave * ~np.repeat(flags, SAMPLES_PER_PACKET)
    if lookahead not in concealers:
        from audiomae.plc import make_concealer

        concealers[lookahead] = make_concealer("lpc", lookahead=lookahead)
    out = conceal(lossy.astype(np.float32), flags, method=concealers[lookahead])
    return out[preroll * SAMPLES_PER_PACKET :]


def save_shard(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """One shard of plain arrays, written atomically."""

    def write(tmp):
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    atomic_write(path, write, suffix=".npz")


def build_pool(
    s: PoolSettings, out_dir: str | os.PathLike, progress: bool = True, worker: int = 0, workers: int = 1
) -> Path:
    """Write ``ceil(n_windows / shard_size)`` shards to ``out_dir``; shards already there are
    kept (the build resumes), each written atomically. ``worker`` of ``workers`` builds every
    ``workers``-th shard, so that processes can share the work."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files, hours = [], []
    for g in s.groups:
        f, h = g.files(s.seed)
        files.append(f)
        hours.append(h)
    meta = {
        "format": POOL_FORMAT,
        "settings": asdict(s),
        "groups": [{"name": g.name, "files": len(f), "hours": h} for g, f, h in zip(s.groups, files, hours)],
        "features": asdict(FeatureConfig()),
    }
    if worker == 0:
        atomic_write(out / "pool.json", lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=1)))
    frontend = LogMel(FeatureConfig(), backend="torch")
    weights = np.array([g.weight for g in s.groups], dtype=np.float64)
    weights /= weights.sum()
    augment = make_augmenter()
    n_shards = -(-s.n_windows // s.shard_size)
    p = s.context_packets
    seg = (s.preroll + p) * SAMPLES_PER_PACKET
    concealers: dict = {}
    t0 = time.time()
    for k in range(n_shards):
        path = out / f"shard_{k:04d}.npz"
        if path.exists() or k % workers != worker:
            continue
        rng = np.random.default_rng([s.seed, k])
        clean, played, lost_all, targets, lookaheads, groups = [], [], [], [], [], []
        while len(clean) < s.shard_size:
            gi = int(rng.choice(len(weights), p=weights))
            file = files[gi][int(rng.integers(len(files[gi])))]
            wave = load_audio(file)
            if rng.random() < s.augment:
                wave = augment_wave(augment, wave, rng, SAMPLE_RATE)
            if wave.size < seg:
                continue
            for _ in range(s.windows_per_visit):
                start = int(rng.integers(0, wave.size - seg + 1))
                w = wave[start : start + seg].astype(np.float32)
                if np.sqrt(np.mean(w[-p * SAMPLES_PER_PACKET :] ** 2)) < 1e-4:
                    continue  # digital silence teaches nothing
                lost, target, la = draw_loss_window(p, s.masks, rng)
                heard = conceal_window(w, lost, la, s.preroll, concealers)
                clean.append(w[-p * SAMPLES_PER_PACKET :])
                played.append(heard)
                lost_all.append(lost)
                targets.append(target)
                lookaheads.append(la)
                groups.append(gi)
        n = s.shard_size
        with torch.no_grad():
            c = frontend(torch.from_numpy(np.stack(clean[:n]))).numpy().astype(np.float16)
            h = frontend(torch.from_numpy(np.stack(played[:n]))).numpy().astype(np.float16)
        frames = p * (SAMPLES_PER_PACKET // FeatureConfig().hop_length)
        arrays = dict(
            clean=c[..., :frames],
            played=h[..., :frames],
            lost=np.stack(lost_all[:n]),
            target=np.asarray(targets[:n], dtype=np.int16),
            lookahead=np.asarray(lookaheads[:n], dtype=np.int8),
            group=np.asarray(groups[:n], dtype=np.int16),
        )
        save_shard(path, arrays)
        if progress:
            print(f"shard {k + 1}/{n_shards} written ({time.time() - t0:.0f} s)", flush=True)
    return out


def load_pool(directory: str | os.PathLike, groups: list[str] | None = None) -> dict[str, np.ndarray]:
    """All shards of a pool, concatenated (optionally only windows of the named groups)."""
    directory = Path(directory)
    meta = json.loads((directory / "pool.json").read_text())
    if meta.get("format") != POOL_FORMAT:
        raise ValueError(f"{directory}: pool format {meta.get('format')} != {POOL_FORMAT}")
    shards = sorted(directory.glob("shard_*.npz"))
    if not shards:
        raise FileNotFoundError(f"{directory}: no shard_*.npz files")
    parts: dict[str, list[np.ndarray]] = {}
    for path in shards:
        with np.load(path, allow_pickle=False) as z:
            for key in z.files:
                parts.setdefault(key, []).append(z[key])
    pool = {k: np.concatenate(v) for k, v in parts.items()}
    if groups is not None:
        names = [g["name"] for g in meta["groups"]]
        unknown = set(groups) - set(names)
        if unknown:
            raise ValueError(f"{directory}: unknown groups {sorted(unknown)}; the pool has {names}")
        keep = np.isin(pool["group"], [names.index(g) for g in groups])
        pool = {k: v[keep] for k, v in pool.items()}
    return pool
