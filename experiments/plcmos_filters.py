"""How PLCMOS scores loss-free audio after a codec or a plain filter (a check on the metric).

    python experiments/plcmos_filters.py [--data ../shared/data/librispeech/dev] [--seconds 15]

PLCMOS is non-intrusive: it scores the degraded signal alone, so anything that changes the
whole signal moves it, not only concealment. For each file (first ``--seconds``) this prints
PLCMOS of the clean audio, of the same audio through Opus at 64 kb/s with no loss (what the
``opus`` rows of the PLC benchmark start from), and of the clean audio through a 4th-order
Butterworth high-pass at 60 / 100 Hz and an 8th-order low-pass at 7 kHz, with the paired mean
difference to clean and its standard error.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from scipy.signal import butter, sosfilt
from tqdm import tqdm

from audiomae.audio import SAMPLE_RATE, SAMPLES_PER_PACKET, load_audio
from audiomae.data import find_audio
from audiomae.eval.metrics import plcmos
from audiomae.plc import conceal
from audiomae.plc.opus import OpusConcealer

FILTERS = {
    "high-pass 60 Hz": butter(4, 60, "highpass", fs=SAMPLE_RATE, output="sos"),
    "high-pass 100 Hz": butter(4, 100, "highpass", fs=SAMPLE_RATE, output="sos"),
    "low-pass 7 kHz": butter(8, 7000, "lowpass", fs=SAMPLE_RATE, output="sos"),
}


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/librispeech/dev")
    )
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--files", type=int, default=None, help="first N files only")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    files = find_audio(args.data)[: args.files]
    scores: dict[str, list[float]] = {"clean": [], "Opus 64 kb/s, no loss": [], **{k: [] for k in FILTERS}}
    for path in tqdm(files, desc="plcmos", unit="file"):
        x = load_audio(path)[: int(args.seconds * SAMPLE_RATE)]
        x = x[: x.size // SAMPLES_PER_PACKET * SAMPLES_PER_PACKET]
        coded = conceal(x, np.zeros(x.size // SAMPLES_PER_PACKET, bool), OpusConcealer(), clean=x)
        scores["clean"].append(plcmos(x))
        scores["Opus 64 kb/s, no loss"].append(plcmos(coded))
        for name, sos in FILTERS.items():
            scores[name].append(plcmos(sosfilt(sos, x).astype(np.float32)))
    clean = np.array(scores["clean"])
    print(f"\n{len(files)} files of {args.data}, first {args.seconds:g} s each\n")
    print("| audio | PLCMOS | minus clean | s.e. | files higher |\n|---|---:|---:|---:|---:|")
    for name, vals in scores.items():
        d = np.array(vals) - clean
        se = d.std(ddof=1) / np.sqrt(d.size) if d.size > 1 else float("nan")
        print(f"| {name} | {np.mean(vals):.3f} | {d.mean():+.3f} | {se:.3f} | {(d > 0).sum()} / {d.size} |")
    return scores


if __name__ == "__main__":
    main()
