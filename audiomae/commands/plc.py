"""``audiomae simulate | conceal | eval-plc``: packet loss, concealment and the PLC benchmark."""

from __future__ import annotations

import argparse
from pathlib import Path

from audiomae.commands import add_model_argument, model_option, nonnegative_int, positive_float, positive_int
from audiomae.plc.base import listed_methods, methods_help

# The benchmark's default methods and the list in --help, from the registry.
DEFAULT_METHODS = ",".join(listed_methods("eval"))
METHODS_HELP = methods_help()
LIBOPUS_DEEP_HELP = (
    "libopus >= 1.5 built with deep PLC, for opus-deep (default $AUDIOMAE_LIBOPUS_DEEP; README, "
    "'Opus deep PLC')"
)
DEFAULT_CONDITIONS = "ge05b1.5,ge10b2,ge20b3"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="drop packets from a clean file; write the lossy audio and its trace")
    p.add_argument("clean", help="clean audio file (resampled to 16 kHz mono)")
    p.add_argument(
        "--loss",
        required=True,
        help="loss model: ge:RATE:BURST (Gilbert-Elliott), bernoulli:RATE, or a condition name like ge10b2",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed for the loss pattern (default 0)")
    p.add_argument("-o", "--output", required=True, help="lossy audio to write (lost packets zeroed)")
    p.add_argument("--trace", required=True, help="trace file to write (one 0/1 per 20 ms packet, 1 = lost)")
    p.set_defaults(func=run_simulate)

    p = sub.add_parser("conceal", help="conceal the lost packets of a lossy file given its trace")
    p.add_argument("lossy", help="lossy audio file")
    p.add_argument("--trace", required=True, help="trace file (one 0/1 per 20 ms packet, 1 = lost)")
    p.add_argument("-o", "--output", required=True, help="concealed audio to write")
    # The default is the concealer that scores best on the dev benchmark (README, Results): with the
    # bundled model, the MAE concealer's signal path without the MAE's prediction.
    p.add_argument(
        "--method",
        default="lpc",
        help=f"concealment method (default lpc; mae applies the MAE's prediction): {METHODS_HELP}",
    )
    p.add_argument(
        "--lookahead",
        type=nonnegative_int,
        default=None,
        help="packets of lookahead, for methods that take it",
    )
    p.add_argument("--clean", default=None, help="the sender's clean file: required by opus and opus-fec")
    p.add_argument("--libopus-deep", metavar="PATH", default=None, help=LIBOPUS_DEEP_HELP)
    add_model_argument(p)
    p.set_defaults(func=run_conceal)

    p = sub.add_parser("eval-plc", help="benchmark concealment methods over files and loss conditions")
    p.add_argument(
        "inputs", nargs="+", metavar="PATH", help="audio files or directories (searched recursively)"
    )
    p.add_argument(
        "--methods",
        default=None,
        help=f"comma-separated methods (default {DEFAULT_METHODS}, opus-deep only where its library is "
        f"given) from: {METHODS_HELP}",
    )
    p.add_argument("--libopus-deep", metavar="PATH", default=None, help=LIBOPUS_DEEP_HELP)
    add_model_argument(p)
    p.add_argument(
        "--conditions",
        default=DEFAULT_CONDITIONS,
        help=f"comma-separated loss conditions geRbB / berR (default {DEFAULT_CONDITIONS})",
    )
    p.add_argument("--out", required=True, help="directory for results.csv, results.md and results.png")
    p.add_argument("--max-files", type=positive_int, default=None, help="use only the first N files (sorted)")
    p.add_argument(
        "--max-seconds", type=positive_float, default=None, help="use only the first S seconds of each file"
    )
    p.add_argument("--seed", type=int, default=0, help="mixed into every trace seed (default 0)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "--html",
        action="store_true",
        help="also write index.html, a listening page: every method's audio and spectrogram for the "
        "first --html-clips files under each condition, and the scores",
    )
    p.add_argument(
        "--html-clips", type=positive_int, default=2, help="files per condition on the page (default 2)"
    )
    p.set_defaults(func=run_eval_plc)


def run_simulate(args: argparse.Namespace) -> int:
    from audiomae.audio import audio_writer, check_outputs, load_audio, write_all
    from audiomae.loss_models import (
        apply_loss,
        as_loss_spec,
        draw_loss,
        mean_burst_length,
        n_packets,
        trace_text,
    )

    spec = as_loss_spec(args.loss)
    out = check_outputs({"-o": args.output, "--trace": args.trace}, inputs=[args.clean], audio=["-o"])
    clean = load_audio(args.clean)
    lost = draw_loss(spec, n_packets(clean.size), args.seed)
    lossy = apply_loss(clean, lost)
    text = trace_text(lost)
    # Both files or neither: a trace without its audio (or the reverse) would mislead.
    write_all(
        [(out["-o"], audio_writer(out["-o"], lossy)), (out["--trace"], lambda t: Path(t).write_text(text))]
    )
    print(
        f"{args.output}: {lost.sum()} of {lost.size} packets lost ({100 * lost.mean():.1f} %, "
        f"mean burst {mean_burst_length(lost):.2f}) under {spec.name}; trace {args.trace}"
    )
    return 0


def run_conceal(args: argparse.Namespace) -> int:
    from audiomae.audio import check_outputs, load_audio, save_audio
    from audiomae.loss_models import check_trace_length, read_trace
    from audiomae.plc import conceal

    _use_libopus_deep(args)
    # Read and check everything before writing anything, so a bad input leaves no output file.
    inputs = [args.lossy, args.trace] + ([args.clean] if args.clean else [])
    check_outputs({"-o": args.output}, inputs=inputs, audio=["-o"])
    lost = read_trace(args.trace)
    lossy = load_audio(args.lossy)
    lost = check_trace_length(lost, lossy.size)
    clean = load_audio(args.clean) if args.clean else None
    model = model_option(args.model, [args.method])
    options = {} if model is None else {"model": model}
    out = conceal(lossy, lost, method=args.method, lookahead=args.lookahead, clean=clean, **options)
    save_audio(args.output, out)
    print(f"{args.output}: concealed {int(lost.sum())} of {lost.size} packets with {args.method}")
    return 0


def _collect(inputs: list[str]) -> list[Path]:
    from audiomae.audio import find_audio

    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files.extend(find_audio(path, required=True))
        elif path.exists():
            files.append(path)
        else:
            raise FileNotFoundError(f"not found: {path}")
    return files


def _split(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def _use_libopus_deep(args: argparse.Namespace) -> None:
    if args.libopus_deep is not None:
        from audiomae.plc.opus_deep import set_library

        set_library(args.libopus_deep)


def run_eval_plc(args: argparse.Namespace) -> int:
    from audiomae.eval.plc_benchmark import run_plc_benchmark
    from audiomae.plc.opus_deep import skip_if_unavailable

    _use_libopus_deep(args)
    # A default list runs opus-deep where its library is given; a list the user wrote that names it
    # without one fails with how to get it.
    methods = (
        _split(args.methods) if args.methods is not None else skip_if_unavailable(_split(DEFAULT_METHODS))
    )
    model = model_option(args.model, methods)
    files = _collect(args.inputs)
    if args.max_files is not None:
        files = files[: args.max_files]
    run_plc_benchmark(
        files,
        methods,
        _split(args.conditions),
        args.out,
        seed=args.seed,
        max_seconds=args.max_seconds,
        progress=not args.no_progress,
        model=model,
        html_clips=args.html_clips if args.html else 0,
    )
    print((Path(args.out) / "results.md").read_text(), end="")
    if args.html:
        print(f"listen: {Path(args.out) / 'index.html'}")
    return 0
