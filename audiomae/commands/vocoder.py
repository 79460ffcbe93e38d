"""``audiomae resynth IN -o OUT``: waveform -> log-mel -> vocoder -> waveform (copy synthesis)."""

from __future__ import annotations

import argparse

from audiomae.commands import int_in_range

# Kept in step with audiomae.vocoder.COPY_SYNTHESIS_ITERS (tested); a literal here keeps
# `audiomae --help` from importing torch.
DEFAULT_ITERS = 32
MAX_ITERS = 1000  # far past where Griffin-Lim stops improving; bounds the work a command line asks for


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("resynth", help="re-synthesise audio from its log-mel (vocoder round trip)")
    p.add_argument("input", help="input audio file (resampled to 16 kHz mono)")
    p.add_argument("-o", "--output", required=True, help="output audio file (.wav / .flac)")
    p.add_argument(
        "--vocoder",
        choices=("griffinlim", "neural"),
        default=None,
        help="renderer: griffinlim, fast Griffin-Lim from PGHI phase (the default: the best "
        "quality, RTF about 0.03 on one thread) or neural, the bundled learned vocoder (about 6x "
        "faster, lower quality); --checkpoint alone selects neural",
    )
    p.add_argument("--checkpoint", help="neural vocoder checkpoint directory (default: the bundled weights)")
    p.add_argument(
        "--iters",
        type=int_in_range(1, MAX_ITERS),
        default=DEFAULT_ITERS,
        help=f"Griffin-Lim iterations, 1 to {MAX_ITERS} (default: {DEFAULT_ITERS})",
    )
    p.set_defaults(func=run)


def vocoder_choice(args: argparse.Namespace) -> str:
    """The renderer ``args`` ask for: ``--vocoder``, else neural with a ``--checkpoint``, else griffinlim."""
    if args.vocoder is not None:
        return args.vocoder
    return "neural" if args.checkpoint else "griffinlim"


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from audiomae.audio import check_outputs, load_audio, save_audio
    from audiomae.features import LogMel
    from audiomae.vocoder import GriffinLim, Vocoder, load_default_vocoder

    check_outputs({"-o": args.output}, inputs=[args.input], audio=["-o"])
    choice = vocoder_choice(args)
    if choice == "griffinlim":
        if args.checkpoint:
            raise ValueError("--checkpoint applies to the neural vocoder only")
        vocoder = GriffinLim(n_iter=args.iters)
        label = f"griffinlim, {args.iters} iterations"
    else:
        vocoder = Vocoder.from_pretrained(args.checkpoint) if args.checkpoint else load_default_vocoder()
        label = "neural"
    wave = load_audio(args.input, sr=vocoder.feature_cfg.sample_rate)
    with torch.no_grad():
        mel = LogMel(vocoder.feature_cfg)(torch.from_numpy(wave))
        out = vocoder(mel.unsqueeze(0))[0].clamp(-1.0, 1.0).numpy()
    # (T - 1) * hop samples come back; pad the tail so the output lines up with the input.
    out = np.pad(out, (0, max(0, wave.size - out.size)))[: wave.size]
    save_audio(args.output, out, sr=vocoder.feature_cfg.sample_rate)
    print(f"{args.input} -> {args.output} ({label}, {wave.size / vocoder.feature_cfg.sample_rate:.2f} s)")
    return 0
