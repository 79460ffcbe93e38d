"""Sweep the MAE concealer's burst handling on a tuning set kept apart from the dev benchmark.

    python benchmarks/tune_concealer.py [--data ../shared/data/librispeech/train] [--files 12]
        [--conditions ge10b2,ge20b3] [--out runs/tune_concealer]

Variants (``fLpP[gG][-la1[nb]][-pitch]``): L packets at full level, then a fade over P packets into
comfort noise; G the renderer's band-gain limit in dB (default 6); ``-la1`` one packet of
lookahead, ``nb`` without bridging the gap to the packet after it; ``-pitch`` the waveform
pitch-period continuation instead of the LPC one. The shipped settings are f1p2 and f1p2-la1.
G.711, Opus PLC and Opus FEC are scored alongside. ``--variants`` picks a subset.
Every 20th file of ``--data`` (sorted), first 10 s of each; prints mean
PESQ-WB and PLCMOS per condition and variant.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import numpy as np
import torch

from audiomae.data import find_audio
from audiomae.eval.plc_benchmark import run_plc_benchmark
from audiomae.plc.base import register_concealer
from audiomae.plc.mae import ConcealerConfig, MAEConcealer, PitchGuidedRenderer, load_default_plc_model

# name: (full-level packets, fade packets, band-gain limit dB or None, lookahead, bridge, continuation)
VARIANTS = {
    "f1p2": (1, 2, None, 0, True, "lpc"),
    "f1p4": (1, 4, None, 0, True, "lpc"),
    "f2p3": (2, 3, None, 0, True, "lpc"),
    "f0p2": (0, 2, None, 0, True, "lpc"),
    "f1p2g3": (1, 2, 3.0, 0, True, "lpc"),
    "f1p2g12": (1, 2, 12.0, 0, True, "lpc"),
    "f1p2-pitch": (1, 2, None, 0, True, "pitch"),
    "f1p2-la1": (1, 2, None, 1, True, "lpc"),
    "f1p2-la1nb": (1, 2, None, 1, False, "lpc"),
    "f1p2-la1-pitch": (1, 2, None, 1, True, "pitch"),
}


def _factory(full: int, fade: int, gain_db: float | None, lookahead: int, bridge: bool, continuation: str):
    def make(lookahead_arg: int | None = None) -> MAEConcealer:
        renderer = None
        if gain_db is not None:
            renderer = PitchGuidedRenderer(
                load_default_plc_model().feature_cfg, n_iter=0, max_gain_db=gain_db
            )
        cfg = ConcealerConfig(
            full_level_packets=full, fade_packets=fade, bridge=bridge, continuation=continuation
        )
        return MAEConcealer(vocoder=renderer, lookahead=lookahead, config=cfg)

    return make


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/librispeech/train")
    )
    ap.add_argument("--files", type=int, default=12)
    ap.add_argument("--conditions", default="ge10b2,ge20b3")
    ap.add_argument("--out", default="runs/tune_concealer")
    ap.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    args = ap.parse_args()
    torch.set_num_threads(1)
    for name in args.variants:
        register_concealer(f"mae-{name}", _factory(*VARIANTS[name]))
    files = find_audio(args.data)[::20][: args.files]
    methods = ["g711", "opus", "opus-fec"] + [f"mae-{n}" for n in args.variants]
    # One process: the variants are registered here, not in spawned workers.
    rows = run_plc_benchmark(files, methods, args.conditions.split(","), args.out, max_seconds=10, workers=1)
    scores = collections.defaultdict(list)
    for r in rows:
        scores[(r["condition"], r["method"])].append((r["pesq"], r["plcmos"]))
    print(f"\n{len(files)} files of {args.data}, first 10 s each\n")
    print("| condition | method | PESQ-WB | PLCMOS |\n|---|---|---|---|")
    for (cond, method), vals in sorted(scores.items()):
        pesq, plcmos = np.nanmean(np.array(vals, dtype=float), axis=0)
        print(f"| {cond} | {method} | {pesq:.3f} | {plcmos:.3f} |")


if __name__ == "__main__":
    main()
