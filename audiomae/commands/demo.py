"""``audiomae demo``: the main job on bundled data, offline."""

from __future__ import annotations

import argparse

from audiomae.commands import add_model_argument, model_option, positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="simulate packet loss on a bundled clip, conceal it with every method, score and plot",
        description="Writes clean/lossy/<method>.wav, the loss trace, demo.png and a listening page "
        "(index.html: every signal's player and spectrogram side by side) to --out, and prints PESQ-WB, "
        "STOI, PLCMOS and log-spectral distance over the lost packets.",
    )
    p.add_argument("--out", default="audiomae_demo", help="output folder (default: %(default)s)")
    p.add_argument("--condition", default="ge10b2", help="loss condition geRbB (default: %(default)s)")
    p.add_argument("--methods", default=",".join(_defaults()), help="comma-separated (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="loss trace seed")
    p.add_argument("--clip", default=None, help="use this audio file instead of the bundled clip")
    p.add_argument("--no-metrics", action="store_true", help="skip scoring (faster)")
    p.add_argument("--threads", type=positive_int, default=1, help="torch threads (default: %(default)s)")
    add_model_argument(p)
    p.set_defaults(func=run)


def _defaults():
    from audiomae.plc.demo import DEFAULT_METHODS

    return DEFAULT_METHODS


def run(args: argparse.Namespace) -> int:
    import torch

    from audiomae.plc.demo import format_table, run_demo

    torch.set_num_threads(args.threads)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise ValueError(f"--methods {args.methods!r}: no method named")
    model = model_option(args.model, methods)
    result = run_demo(
        args.out, args.condition, methods, args.seed, args.clip, metrics=not args.no_metrics, model=model
    )
    lost = result.lost
    print(f"\n{args.condition}: {lost.mean():.1%} of {lost.size} packets lost; files in {args.out}/")
    table = format_table(result)
    if table:
        print(table)
    print(f"plot: {result.out_dir / 'demo.png'}")
    print(f"listen: {result.out_dir / 'index.html'}")
    return 0
