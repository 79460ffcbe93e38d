"""PLC quality benchmark: every method x loss condition on the LibriSpeech dev subset.

    python benchmarks/bench_plc.py [--data ../shared/data/librispeech/dev] [--max-files N]
        [--methods zero,g711,opus,opus-fec,opus-deep,mae,mae-la1,lpc,lpc-la1,opus+mae,opus+mae-la1,
                   opus+lpc,opus+lpc-la1]
        [--libopus-deep PATH]
        [--conditions ber0,ge05b1.5,ge10b2,ge20b3]

Writes results.csv / results.md / results.png to --out and prints the markdown table
(PESQ-WB, STOI, PLCMOS, LSD over lost packets; means over files). Traces are seeded per
file and condition, so every method sees the same losses and reruns are identical.

``ber0`` (no loss) is the reference: the clean files for the concealers that work on received
audio, the codec alone for the Opus methods (at 64 kb/s Opus coding by itself moves PLCMOS).
``opus+mae`` runs the MAE concealer on Opus-decoded audio: the like-for-like comparison with
``opus`` (the same codec with its own PLC). ``lpc`` / ``lpc-la1`` are the MAE concealer with the
MAE switched off: the paired table's ``mae`` vs ``lpc`` rows show what the prediction adds.
``opus-deep`` is ``opus`` decoded by a libopus >= 1.5 with its deep (neural) PLC; it runs when that
library is given (``--libopus-deep`` or ``$AUDIOMAE_LIBOPUS_DEEP``; README, "Opus deep PLC") and
the default method list skips it, with a note, when not.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from audiomae.data import find_audio
from audiomae.eval.plc_benchmark import run_plc_benchmark
from audiomae.plc.base import listed_methods
from audiomae.plc.opus_deep import set_library, skip_if_unavailable, unavailable_reason

DEFAULT_METHODS = ",".join(listed_methods("bench"))  # the methods registered for the dev benchmark


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/librispeech/dev")
    )
    parser.add_argument("--methods", default=None, help=f"default {DEFAULT_METHODS}")
    parser.add_argument("--libopus-deep", metavar="PATH", default=None, help="libopus >= 1.5 with deep PLC")
    parser.add_argument("--conditions", default="ber0,ge05b1.5,ge10b2,ge20b3")
    parser.add_argument("--max-files", type=int, default=None)
    parser.add_argument("--max-seconds", type=float, default=None)
    parser.add_argument("--out", default="benchmarks/results/plc")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (one torch thread each)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    files = find_audio(args.data)[: args.max_files]
    if not files:
        raise SystemExit(f"no audio under {args.data}")
    if args.libopus_deep is not None:
        try:
            set_library(args.libopus_deep)
        except ValueError as exc:
            raise SystemExit(f"--libopus-deep: {exc}") from None
    # Named in --methods, opus-deep without its library is an error; in the default list, a note.
    methods = args.methods.split(",") if args.methods else skip_if_unavailable(DEFAULT_METHODS.split(","))
    if "opus-deep" in methods and (reason := unavailable_reason()):
        raise SystemExit(f"opus-deep: {reason}")
    conditions = args.conditions.split(",")
    run_plc_benchmark(
        files, methods, conditions, args.out, seed=args.seed, max_seconds=args.max_seconds, workers=args.jobs
    )
    print(f"{len(files)} files from {args.data}\n")
    print((Path(args.out) / "results.md").read_text())


if __name__ == "__main__":
    main()
