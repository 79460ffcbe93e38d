"""Model and front-end speed on this CPU.

Prints (1) forward+backward time per step of the small and base presets at batch 8 with mask
ratio 0.0 and 0.8, and (2) log-mel throughput of nnAudio, torch.stft and librosa on a batch of
10 s clips.

    python benchmarks/bench_model.py [--threads 2] [--steps 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from audiomae.config import FeatureConfig
from audiomae.features import LogMel
from audiomae.masking import random_mask
from audiomae.model import AudioMAE


def time_it(fn, steps: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def encoder_step(model: AudioMAE, spec: torch.Tensor, ratio: float):
    """Encoder forward+backward only: the part masking makes cheaper."""
    gen = torch.Generator().manual_seed(0)
    gt, gf = model.grid(spec)

    def step() -> None:
        model.zero_grad()
        model.encode(spec, random_mask(spec.shape[0], gt, gf, ratio, gen)).square().mean().backward()

    return step


def train_step(model: AudioMAE, opt: torch.optim.Optimizer, spec: torch.Tensor, ratio: float):
    """Full MAE step (encoder + decoder + AdamW)."""
    gen = torch.Generator().manual_seed(0)
    gt, gf = model.grid(spec)

    def step() -> None:
        out = model(spec, random_mask(spec.shape[0], gt, gf, ratio, gen))
        # With nothing masked the MAE loss is empty; back-propagate through every prediction.
        loss = out.loss if ratio > 0 else out.pred.square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def bench_models(steps: int, batch: int, seconds: float) -> list[tuple]:
    rows = []
    for preset in ("small", "base"):
        model = AudioMAE.from_preset(preset)
        cfg = model.cfg
        frames = min(int(seconds * 100) // cfg.patch_t * cfg.patch_t, cfg.max_frames)
        spec = torch.randn(batch, cfg.n_mels, frames)
        gt, gf = model.grid(spec)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        enc = {r: time_it(encoder_step(model, spec, r), steps) for r in (0.0, 0.8)}
        full = {r: time_it(train_step(model, opt, spec, r), steps) for r in (0.0, 0.8)}
        size = f"{model.num_params() / 1e6:.1f}M"
        rows.append((preset, size, f"{cfg.patch_f}x{cfg.patch_t}", gt * gf, enc, full))
    return rows


def bench_frontends(batch: int, seconds: float, steps: int) -> list[tuple[str, float]]:
    import librosa

    cfg = FeatureConfig()
    wave = torch.randn(batch, int(seconds * cfg.sample_rate)) * 0.1
    audio_seconds = batch * seconds
    rows = []
    for backend in ("nnaudio", "torch"):
        fe = LogMel(cfg, backend=backend)
        with torch.no_grad():
            t = time_it(lambda fe=fe: fe(wave), steps)
        rows.append((backend, audio_seconds / t))
    np_wave = wave.numpy()

    def run_librosa():
        for x in np_wave:
            mel = librosa.feature.melspectrogram(
                y=x,
                sr=cfg.sample_rate,
                n_fft=cfg.n_fft,
                hop_length=cfg.hop_length,
                win_length=cfg.win_length,
                n_mels=cfg.n_mels,
                pad_mode="constant",
            )
            np.log(np.maximum(mel, cfg.log_floor))

    rows.append(("librosa", audio_seconds / time_it(run_librosa, max(1, steps // 2))))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.12, help="clip length (s) for the model steps")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}\n")

    print(
        "| preset | params | patch | patches/clip | encoder f+b mask 0 / 0.8 (s) | encoder speed-up "
        "| full step mask 0 / 0.8 (s) | full speed-up |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for preset, params, patch, n, enc, full in bench_models(args.steps, args.batch, args.seconds):
        print(
            f"| {preset} | {params} | {patch} | {n} | {enc[0.0]:.2f} / {enc[0.8]:.2f} | "
            f"{enc[0.0] / enc[0.8]:.1f}x | {full[0.0]:.2f} / {full[0.8]:.2f} | {full[0.0] / full[0.8]:.1f}x |"
        )

    print("\n| log-mel backend | audio seconds / second (batch of 10 s clips) | vs librosa |")
    print("|---|---|---|")
    rows = bench_frontends(args.batch, 10.0, args.steps)
    ref = dict(rows)["librosa"]
    for name, rate in rows:
        print(f"| {name} | {rate:,.0f} | {rate / ref:.1f}x |")


if __name__ == "__main__":
    main()
