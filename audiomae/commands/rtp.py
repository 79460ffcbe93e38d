"""``audiomae rtp-receive | rtp-send``: a real receive path, RTP over UDP with packet loss."""

from __future__ import annotations

import argparse

from audiomae.commands import add_model_argument, model_option, nonnegative_int, positive_float, positive_int


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"must be HOST:PORT, got {text!r}")
    return host, int(port)


def _port(text: str) -> int:
    port = nonnegative_int(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 0-65535, got {text!r}")
    return port


def _share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text!r}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rtp-receive", help="receive an RTP stream, conceal its lost packets, write the audio")
    p.add_argument("--port", type=_port, required=True, help="UDP port to listen on (0: a free one, printed)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("-o", "--output", required=True, help="audio file to write")
    p.add_argument("--payload", choices=["l16", "opus"], default="l16", help="RTP payload (default l16)")
    p.add_argument("--method", default="lpc", help="concealment method (default lpc; see audiomae conceal)")
    p.add_argument("--lookahead", type=nonnegative_int, default=None, help="packets of lookahead")
    add_model_argument(p)
    p.add_argument(
        "--depth", type=positive_int, default=3, help="jitter buffer: packets waited for a gap (default 3)"
    )
    p.add_argument(
        "--timeout", type=positive_float, default=2.0, help="seconds without packets that end the stream"
    )
    p.set_defaults(func=run_receive)

    p = sub.add_parser("rtp-send", help="send a file as an RTP stream, dropping packets by a loss model")
    p.add_argument("input", help="audio file (resampled to 16 kHz mono)")
    p.add_argument("--to", type=_address, required=True, metavar="HOST:PORT", help="where to send")
    p.add_argument("--payload", choices=["l16", "opus"], default="l16", help="RTP payload (default l16)")
    p.add_argument("--loss", default=None, help="loss model, as audiomae simulate (default: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the loss, reordering and RTP numbers")
    p.add_argument("--reorder", type=_share, default=0.0, help="share of packets swapped with the next")
    p.add_argument("--duplicate", type=_share, default=0.0, help="share of packets sent twice")
    p.add_argument("--trace", default=None, help="write the loss trace (one 0/1 per packet) here")
    p.add_argument(
        "--interval-ms",
        type=float,
        default=20.0,
        help="milliseconds between datagrams (default 20: real time)",
    )
    p.set_defaults(func=run_send)


def _need_aiortc(command: str) -> None:
    from audiomae.rtp import _aiortc

    try:
        _aiortc()
    except ImportError as exc:  # one line, as the CLI's other errors
        raise SystemExit(f"audiomae {command}: error: {exc}") from None


def run_receive(args: argparse.Namespace) -> int:
    import socket

    from audiomae.audio import audio_writer, check_outputs, write_all
    from audiomae.plc.offline import build_concealer
    from audiomae.rtp import receive

    _need_aiortc("rtp-receive")
    check_outputs({"-o": args.output}, audio=["-o"])
    from audiomae.plc.base import method_info

    if method_info(args.method).needs_source:
        raise ValueError(
            f"--method {args.method}: simulates the codec at the sender and needs the clean signal; "
            "a receiver conceals with a PCM method (lpc, mae, g711, ...; --payload opus decodes Opus)"
        )
    model = model_option(args.model, [args.method])
    options = {} if model is None else {"model": model}
    # Before listening: loading a model takes a while.
    concealer = build_concealer(args.method, args.lookahead, **options)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((args.host, args.port))
        host, port = sock.getsockname()[:2]
        print(f"listening on {host}:{port} ({args.payload}, {args.method})", flush=True)
        audio, stats = receive(
            sock, concealer, payload=args.payload, depth=args.depth, idle_timeout=args.timeout
        )
    write_all([(args.output, audio_writer(args.output, audio))])
    print(f"{args.output}: {audio.size / 16000:.2f} s; {stats.line()}")
    return 0


def run_send(args: argparse.Namespace) -> int:
    from audiomae.audio import load_audio
    from audiomae.loss_models import as_loss_spec, draw_loss, n_packets, write_trace
    from audiomae.rtp import send

    _need_aiortc("rtp-send")
    audio = load_audio(args.input)
    n = n_packets(audio.size)
    lost = draw_loss(as_loss_spec(args.loss), n, args.seed) if args.loss else None
    if args.trace:
        import numpy as np

        write_trace(args.trace, np.zeros(n, dtype=bool) if lost is None else lost)
    sent = send(
        audio,
        args.to,
        lost,
        payload=args.payload,
        seed=args.seed,
        reorder=args.reorder,
        duplicate=args.duplicate,
        interval=args.interval_ms / 1000,
    )
    dropped = 0 if lost is None else int(lost.sum())
    print(f"sent {n} packets to {args.to[0]}:{args.to[1]} as {sent} datagrams; {dropped} dropped")
    return 0
