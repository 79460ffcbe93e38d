"""``audiomae resynth IN -o OUT``: waveform -> log-mel -> vocoder -> waveform (copy synthesis)."""

from __future__ import annotations

import argparse

from audiomae.commands import positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("resynth", help="re-synthesise audio from its log-mel (vocoder round trip)")
    p.add_argument("input", help="input audio file (resampled to 16 kHz mono)")
    p.add_argument("-o", "--output", required=True, help="output audio file (.wav / .flac)")
    p.add_argument(
        "--vocoder", choices=("neural", "griffinlim"), default="neural", help="renderer (default: neural)"
    )
    p.add_argument("--checkpoint", help="vocoder checkpoint directory (default: the bundled weights)")
    p.add_argument("--iters", type=positive_int, default=64, help="Griffin-Lim iterations (default: 64)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from audiomae.audio import check_outputs, load_audio, save_audio
    from audiomae.features import LogMel
    from audiomae.vocoder import GriffinLim, Vocoder, load_default_vocoder

    check_outputs({"-o": args.output}, inputs=[args.input], audio=["-o"])
    if args.vocoder == "griffinlim":
        if args.checkpoint:
            raise ValueError("--checkpoint applies to the neural vocoder only")
        vocoder = GriffinLim(n_iter=args.iters)
    else:
        vocoder = Vocoder.from_pretrained(args.checkpoint) if args.checkpoint else load_default_vocoder()
    wave = load_audio(args.input, sr=vocoder.feature_cfg.sample_rate)
    with torch.no_grad():
        mel = LogMel(vocoder.feature_cfg)(torch.from_numpy(wave))
        out = vocoder(mel.unsqueeze(0))[0].clamp(-1.0, 1.0).numpy()
    # (T - 1) * hop samples come back; pad the tail so the output lines up with the input.
    out = np.pad(out, (0, max(0, wave.size - out.size)))[: wave.size]
    save_audio(args.output, out, sr=vocoder.feature_cfg.sample_rate)
    print(
        f"{args.input} -> {args.output} ({args.vocoder}, {wave.size / vocoder.feature_cfg.sample_rate:.2f} s)"
    )
    return 0
