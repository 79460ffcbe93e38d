"""Per-packet compute of the streaming concealers with one thread.

    python benchmarks/bench_streaming.py [--methods mae,mae-la1,g711] [--seconds 30]
        [--backends torch,onnx]

For each loss condition, pushes a LibriSpeech dev file (or the bundled demo clip) through
each concealer packet by packet and reports mean / p50 / p99 milliseconds for received and
lost packets, and the real-time factor (compute time / audio time). Methods built on the MAE
concealer run once per backend: torch (the MAE in int8) and onnx (the ONNX export in fp32 on
onnxruntime, no torch); the others once (backend "-"). Targets for the MAE
concealer: lost packet mean <= 5 ms, p99 <= 15 ms; received packet mean <= 1 ms.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from audiomae.audio import SAMPLES_PER_PACKET, load_audio
from audiomae.loss_models import apply_loss, draw_loss, n_packets
from audiomae.plc import make_concealer
from audiomae.plc.base import UnsupportedOptionError
from audiomae.plc.demo import demo_clip_path


def load_clip(data: str | None, seconds: float) -> np.ndarray:
    if data and Path(data).exists():
        from audiomae.data import find_audio

        audio = np.concatenate([load_audio(f) for f in find_audio(data)[:20]])
    else:
        audio = load_audio(demo_clip_path())
    reps = int(np.ceil(seconds * 16000 / audio.size))
    return np.tile(audio, reps)[: int(seconds * 16000)]


def runs(methods: list[str], backends: list[str]):
    """(method, backend) pairs: each backend for the MAE concealer's methods, one run with
    backend "-" for the methods that have none."""
    for method in methods:
        for i, backend in enumerate(backends):
            try:
                make_concealer(method, backend=backend)
            except UnsupportedOptionError:
                if i == 0:
                    yield method, "-"
                continue
            yield method, backend


def time_packets(
    method: str, backend: str, clean: np.ndarray, lost: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    c = make_concealer(method, **({} if backend == "-" else {"backend": backend}))
    if c.requires_source:
        c.set_source(clean)
    lossy = apply_loss(clean, lost)
    times = np.zeros(lost.size)
    for i in range(lost.size):
        packet = None if lost[i] else lossy[i * SAMPLES_PER_PACKET : (i + 1) * SAMPLES_PER_PACKET]
        start = time.perf_counter()
        c.push(packet)
        times[i] = time.perf_counter() - start
    # Lookahead concealers emit packet t when t + k arrives: attribute the time to packet t.
    times = np.roll(times, -c.lookahead)
    return times * 1000.0, lost


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/librispeech/dev")
    )
    parser.add_argument(
        "--methods", default="mae,mae-la1,lpc,lpc-la1,g711,opus,opus+mae,opus+mae-la1,opus+lpc,opus+lpc-la1"
    )
    parser.add_argument("--conditions", default="ge05b1.5,ge10b2,ge20b3")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--backends", default="torch,onnx", help="for the MAE concealer's methods")
    args = parser.parse_args()
    torch.set_num_threads(1)
    clean = load_clip(args.data, args.seconds)
    n = n_packets(clean.size)
    print(
        f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, 1 thread, "
        f"{args.seconds:.0f} s of speech ({n} packets)\n"
    )
    print(
        "| method | backend | condition | lost % | received mean / p50 / p99 (ms) "
        "| lost mean / p50 / p99 (ms) | max (ms) | RTF |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for method, backend in runs(args.methods.split(","), args.backends.split(",")):
        for cond in args.conditions.split(","):
            lost = draw_loss(cond, n, 0)
            ms, lost = time_packets(method, backend, clean, lost)
            ms, lost = ms[5:-5], lost[5:-5]  # skip start-up and the lookahead wrap-around
            rec, los = ms[~lost], ms[lost]

            def stats(x):
                return (
                    f"{x.mean():.2f} / {np.percentile(x, 50):.2f} / {np.percentile(x, 99):.2f}"
                    if x.size
                    else "-"
                )

            rtf = ms.sum() / (ms.size * 20.0)
            print(
                f"| {method} | {backend} | {cond} | {100 * lost.mean():.1f} | {stats(rec)} | "
                f"{stats(los)} | {ms.max():.1f} | {rtf:.3f} |"
            )


if __name__ == "__main__":
    main()
