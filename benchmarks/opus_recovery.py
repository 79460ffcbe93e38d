"""How well an Opus receiver decodes the packets that follow a burst of lost ones.

    python benchmarks/opus_recovery.py [--data ../shared/data/librispeech/train] [--files 8]
        [--every 20] [--condition ge20b3] [--modes reencode,plc]

SILK codes each packet against the decoder state the previous packets left behind, so after a
loss the first received packets decode differently from the loss-free stream. For each decoder
mode of :class:`~audiomae.plc.baselines.OpusDecodedConcealer` (MAE concealment, causal) this
compares the received packets after each burst with the same packets of the ``oracle`` decoder
(which also decodes the lost payloads: the loss-free decoding, with the same concealment in the
gaps) and prints, per position after the burst, the median SNR against it and the median and
mean level difference (dB).
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from audiomae.audio import SAMPLE_RATE, SAMPLES_PER_PACKET, load_audio
from audiomae.data import find_audio
from audiomae.eval.plc_benchmark import trace_seed
from audiomae.loss_models import draw_loss, parse_condition
from audiomae.plc import conceal
from audiomae.plc.mae import MAEConcealer
from audiomae.plc.opus import OpusDecodedConcealer

P = SAMPLES_PER_PACKET


def recovery_errors(
    clean: np.ndarray, lost: np.ndarray, modes: list[str], after: int = 4, make_inner=MAEConcealer
) -> dict[tuple[str, int], list[tuple[float, float]]]:
    """(SNR dB, level difference dB) against the ``oracle`` decoder for the ``after`` received
    packets following each burst, keyed by (mode, position after the burst, 1 = first)."""
    outs = {
        m: conceal(
            clean * ~np.repeat(lost, P), lost, OpusDecodedConcealer(make_inner(), decoder=m), clean=clean
        )
        for m in ["oracle", *modes]
    }
    found: dict[tuple[str, int], list[tuple[float, float]]] = collections.defaultdict(list)
    since = None  # received packets since the last burst ended (None: no burst yet)
    for t, gone in enumerate(lost):
        if gone:
            since = 0
            continue
        if since is None:
            continue
        since += 1
        if since > after:
            continue
        ref = outs["oracle"][t * P : (t + 1) * P].astype(np.float64)
        energy = float(ref @ ref) + 1e-9
        for m in modes:
            y = outs[m][t * P : (t + 1) * P].astype(np.float64)
            d = y - ref
            snr = 10 * np.log10(energy / (float(d @ d) + 1e-9))
            found[(m, since)].append((snr, 10 * np.log10((float(y @ y) + 1e-9) / energy)))
    return found


def main(argv: list[str] | None = None) -> dict[tuple[str, int], list[tuple[float, float]]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/librispeech/train")
    )
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--every", type=int, default=20, help="take every Nth file of --data (sorted)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--condition", default="ge20b3")
    ap.add_argument("--modes", default="reencode,plc", help="decoder modes compared with the loss-free one")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    modes = [m for m in args.modes.split(",") if m]
    bad = [m for m in modes if m not in OpusDecodedConcealer.DECODER_MODES or m == "oracle"]
    if bad:
        ap.error(f"unknown decoder modes {bad}; choose from reencode, plc, skip")
    spec = parse_condition(args.condition)
    files = find_audio(args.data)[:: args.every][: args.files]
    found: dict[tuple[str, int], list[tuple[float, float]]] = collections.defaultdict(list)
    for path in tqdm(files, desc="opus recovery", unit="file"):
        x = load_audio(path)[: int(args.seconds * SAMPLE_RATE)]
        x = x[: x.size // P * P]
        lost = draw_loss(spec, x.size // P, trace_seed(path, args.condition))  # the benchmark's traces
        for key, vals in recovery_errors(x, lost, modes).items():
            found[key].extend(vals)
    print(f"\n{len(files)} files of {args.data}, first {args.seconds:g} s each, {args.condition}\n")
    print("| decoder | packet after burst | packets | median SNR (dB) | level diff median / mean (dB) |")
    print("|---|---:|---:|---:|---:|")
    for (mode, k), vals in sorted(found.items()):
        snr, level = np.array(vals).T
        levels = f"{np.median(level):.2f} / {level.mean():.2f}"
        print(f"| {mode} | {k} | {len(vals)} | {np.median(snr):.1f} | {levels} |")
    return found


if __name__ == "__main__":
    main()
