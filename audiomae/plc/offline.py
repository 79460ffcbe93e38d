"""Offline concealment of a whole signal, built on the streaming concealer (same output)."""

from __future__ import annotations

import numpy as np

from audiomae.audio import SAMPLES_PER_PACKET, validate_waveform
from audiomae.loss_models import check_trace_length
from audiomae.plc.base import StreamingConcealer, UnsupportedOptionError, make_concealer


def conceal(
    lossy: np.ndarray,
    lost: np.ndarray,
    method: str | StreamingConcealer = "g711",
    lookahead: int | None = None,
    clean: np.ndarray | None = None,
    **kwargs,
) -> np.ndarray:
    """Conceal the lost packets of ``lossy`` ``(S,)``; returns ``(S,)`` float32 aligned with the input.

    Args:
        lossy: received audio at SAMPLE_RATE; samples of lost packets are ignored.
        lost: ``(n,)`` bool per packet, ``n >= ceil(S / SAMPLES_PER_PACKET)`` (extra ignored).
        method: a registered name (see ``available_methods()``) or a concealer instance.
        lookahead: packets of lookahead, passed to the method's factory when given.
        clean: the sender's signal ``(S,)``; required by codec simulations (``opus``,
            ``opus-fec``), which encode it themselves and apply the loss to the payloads.
        **kwargs: further options for the method's factory (e.g. ``bitrate=32000``).

    The signal is padded to whole packets, pushed packet by packet (None where lost),
    flushed, and the ``lookahead`` packets of delay are trimmed off.
    """
    audio = validate_waveform(lossy, "lossy")
    if audio.ndim != 1:
        raise ValueError(f"lossy: expected mono audio of shape (samples,), got {audio.shape}")
    flags = check_trace_length(lost, audio.size)
    if isinstance(method, StreamingConcealer):
        if lookahead is not None or kwargs:
            raise ValueError("lookahead and method options apply only when method is given by name")
        concealer = method
        concealer.reset()
        name = type(method).__name__
    else:
        concealer = build_concealer(method, lookahead, **kwargs)
        name = method

    if concealer.requires_source:
        if clean is None:
            raise ValueError(
                f"method {name!r} simulates the codec at the sender and needs the clean signal: "
                "pass clean= (CLI: --clean clean.wav)"
            )
        source = validate_waveform(clean, "clean")
        if source.shape != audio.shape:
            raise ValueError(f"clean has {source.size} samples but lossy has {audio.size}; they must match")
        concealer.set_source(source)

    n = flags.size
    padded = np.zeros(n * SAMPLES_PER_PACKET, dtype=np.float32)
    padded[: audio.size] = audio
    out = []
    for t in range(n):
        packet = None if flags[t] else padded[t * SAMPLES_PER_PACKET : (t + 1) * SAMPLES_PER_PACKET]
        out.append(concealer.push(packet))
    delay = concealer.lookahead * SAMPLES_PER_PACKET
    out.append(concealer.flush())
    return np.concatenate(out)[delay : delay + audio.size]


def build_concealer(method: str, lookahead: int | None = None, **kwargs) -> StreamingConcealer:
    """``make_concealer(method, **kwargs)`` with ``lookahead`` where given; a method with a fixed
    delay is accepted when asked for exactly that delay (ValueError otherwise)."""
    if lookahead is None:
        return make_concealer(method, **kwargs)
    try:
        return make_concealer(method, lookahead=lookahead, **kwargs)
    except UnsupportedOptionError:
        # A method with a fixed delay (g711: 0, opus-fec: 1) is fine when asked for exactly that.
        concealer = make_concealer(method, **kwargs)
        if concealer.lookahead != lookahead:
            raise ValueError(
                f"method {method!r} has a fixed lookahead of {concealer.lookahead} packets; "
                f"lookahead {lookahead} is not available"
            ) from None
        return concealer
