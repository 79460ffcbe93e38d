"""Vocoder copy-synthesis quality and speed on LibriSpeech dev.

Each dev file -> log-mel (the project's front end) -> Griffin-Lim / neural vocoder -> PESQ-WB,
STOI and log-spectral distance against the original, plus the single-thread real-time factor
(synthesis time / audio duration, ``torch.set_num_threads(1)``) and the time of one
:meth:`Vocoder.synthesize_window` call as a concealer makes it (one 20 ms packet plus the
exact context). Prints a markdown table.

    python benchmarks/bench_vocoder.py [--max-files N] [--checkpoint DIR] [--gl-iters 32]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

from audiomae.audio import FRAMES_PER_PACKET, SAMPLE_RATE, load_audio
from audiomae.eval.metrics import lsd_lost, pesq_wb, stoi
from audiomae.features import LogMel
from audiomae.vocoder import GriffinLim, Vocoder, griffin_lim, load_default_vocoder

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "librispeech" / "dev"


def score(ref: np.ndarray, deg: np.ndarray) -> dict[str, float]:
    ref = ref[: deg.size]
    return {
        "pesq": pesq_wb(ref, deg),
        "stoi": stoi(ref, deg),
        "lsd": lsd_lost(ref, deg, np.ones(ref.size // 320 + 1, dtype=bool)),
    }


def window_call_ms(vocoder: Vocoder, repeats: int = 50) -> float:
    left, right = vocoder.context_frames
    mel = torch.randn(1, vocoder.cfg.n_mels, left + FRAMES_PER_PACKET + right) - 6.0
    vocoder.synthesize_window(mel, left, left + FRAMES_PER_PACKET)
    start = time.perf_counter()
    for _ in range(repeats):
        vocoder.synthesize_window(mel, left, left + FRAMES_PER_PACKET)
    return (time.perf_counter() - start) / repeats * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(DEFAULT_DATA), help="folder of 16 kHz speech files")
    p.add_argument("--max-files", type=int, default=None, help="first N files (default: all)")
    p.add_argument("--checkpoint", help="neural vocoder checkpoint (default: the bundled weights)")
    p.add_argument("--gl-iters", type=int, default=32, help="Griffin-Lim iterations")
    p.add_argument(
        "--refine",
        type=int,
        default=8,
        help="also score the neural output refined by N Griffin-Lim iterations",
    )
    args = p.parse_args()
    torch.set_num_threads(1)

    files = sorted(Path(args.data_dir).glob("*.flac")) + sorted(Path(args.data_dir).glob("*.wav"))
    if not files:
        raise FileNotFoundError(f"no .flac/.wav files in {args.data_dir}")
    files = files[: args.max_files]
    neural = (Vocoder.from_pretrained(args.checkpoint) if args.checkpoint else load_default_vocoder()).eval()
    vocoders = {
        f"Griffin-Lim ({args.gl_iters} it)": GriffinLim(n_iter=args.gl_iters),
        "neural (Vocos-style)": neural,
    }
    if args.refine:

        def refined(mel: torch.Tensor) -> torch.Tensor:
            # The neural magnitude, and its phase as the start of a few Griffin-Lim steps.
            spec = neural.spectrum(mel)
            start = neural(mel)
            return griffin_lim(mel, neural.feature_cfg, args.refine, magnitude=spec.abs(), init_audio=start)

        vocoders[f"neural + {args.refine} GL it"] = refined
    frontend = LogMel(neural.feature_cfg)
    scores = {name: [] for name in vocoders}
    seconds = {name: 0.0 for name in vocoders}
    audio_s = 0.0
    from tqdm.auto import tqdm

    for path in tqdm(files, desc="files"):
        wave = load_audio(path)
        audio_s += wave.size / SAMPLE_RATE
        with torch.no_grad():
            mel = frontend(torch.from_numpy(wave)).unsqueeze(0)
            for name, vocoder in vocoders.items():
                start = time.perf_counter()
                out = vocoder(mel)[0].clamp(-1, 1).numpy()
                seconds[name] += time.perf_counter() - start
                scores[name].append(score(wave, out))

    def mean(name: str, key: str) -> float:
        vals = [s[key] for s in scores[name] if not math.isnan(s[key])]
        return float(np.mean(vals)) if vals else float("nan")

    print(f"\n{len(files)} files, {audio_s:.0f} s of audio from {args.data_dir}; 1 thread\n")
    print("| vocoder | PESQ-WB | STOI | LSD (dB) | RTF (1 thread) |")
    print("|---|---|---|---|---|")
    for name in vocoders:
        rtf = seconds[name] / audio_s
        cells = f"{mean(name, 'pesq'):.2f} | {mean(name, 'stoi'):.3f} | {mean(name, 'lsd'):.2f} | {rtf:.4f}"
        print(f"| {name} | {cells} |")
    left, right = neural.context_frames
    print(
        f"\nneural synthesize_window, one 20 ms packet + {left} left / {right} right context frames: "
        f"{window_call_ms(neural):.2f} ms per call; {neural.num_params() / 1e6:.2f} M parameters "
        f"({neural.num_params() * 4 / 1e6:.1f} MB float32)"
    )


if __name__ == "__main__":
    main()
