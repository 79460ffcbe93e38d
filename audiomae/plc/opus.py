"""The Opus codec: its own PLC and FEC as baselines, other concealers on Opus-decoded audio, and
the receiving end of a real Opus stream.

:class:`OpusConcealer` simulates the codec (it encodes the sender's signal itself);
:class:`OpusDecodedConcealer` runs another concealer on the decoded audio; :class:`OpusReceiver`
conceals a live stream of payloads. libopus comes from ``opuslib-next-bundled`` (the eval extra).
"""

from __future__ import annotations

import math

import numpy as np

from audiomae.audio import SAMPLE_RATE, SAMPLES_PER_PACKET, validate_waveform
from audiomae.plc.base import StreamingConcealer, make_concealer, register_concealer
from audiomae.plc.baselines import G711Concealer
from audiomae.plc.mae import lpc_factory, mae_factory


def _import_opus():
    try:
        import opuslib_next
    except ImportError as exc:
        raise ImportError(
            "the Opus baselines need opuslib-next-bundled: pip install 'audiomae[eval]'"
        ) from exc
    return opuslib_next


class OpusConcealer(StreamingConcealer):
    """The Opus codec (libopus via opuslib_next) with its own PLC, optionally in-band FEC.

    This is a codec simulation, so it needs the sender's signal: ``set_source(clean)``
    encodes every packet, lost or not, as the sender would (it cannot know what the network
    will drop); ``push`` then only says which payloads arrived, and the output is what an
    Opus receiver plays: decoded audio for received packets, the decoder's PLC for lost
    ones, or with ``fec=True`` the low-bitrate redundant copy carried in packet ``t + 1``
    (hence ``lookahead = 1``). Scores therefore include coding at ``bitrate``.

    The encoder's algorithmic delay (``codec_delay`` samples, 104 = 6.5 ms at 16 kHz in
    libopus 1.6) is removed by feeding the encoder a signal advanced by that much, so decoded
    packet ``t`` lines up sample for sample with input packet ``t`` and PESQ is fair.

    For receivers built on it (:class:`OpusDecodedConcealer`, :class:`OpusReceiver`):
    ``payloads`` (the stream, one payload per packet), ``decoder`` (the libopus decoder, stateful:
    decode in stream order), ``new_encoder()`` (an encoder with the sender's settings).
    """

    requires_source = True

    def __init__(
        self, bitrate: int = 64000, fec: bool = False, packet_loss_perc: int = 20, complexity: int = 10
    ) -> None:
        super().__init__()
        if not 6000 <= bitrate <= 510000:
            raise ValueError(f"Opus bitrate must be in [6000, 510000] bit/s, got {bitrate}")
        if not 0 <= packet_loss_perc <= 100:
            raise ValueError(f"packet_loss_perc must be in [0, 100], got {packet_loss_perc}")
        if not 0 <= complexity <= 10:
            raise ValueError(f"Opus complexity must be in [0, 10], got {complexity}")
        self._opus = _import_opus()
        self.bitrate = int(bitrate)
        self.fec = bool(fec)
        self.packet_loss_perc = int(packet_loss_perc)
        self.complexity = int(complexity)
        self.lookahead = 1 if self.fec else 0
        self.decoder = self._opus.Decoder(SAMPLE_RATE, 1)
        self.payloads: list[bytes] | None = None

    def new_encoder(self):
        """A fresh libopus encoder with this codec's settings (bitrate, complexity, FEC)."""
        enc = self._opus.Encoder(SAMPLE_RATE, 1, self._opus.APPLICATION_VOIP)
        enc.bitrate = self.bitrate
        enc.complexity = self.complexity
        if self.fec:
            enc.inband_fec = 1
            # The encoder only spends bits on redundancy when told to expect loss.
            enc.packet_loss_perc = self.packet_loss_perc
        return enc

    @property
    def codec_delay(self) -> int:
        """The encoder's algorithmic delay in samples (its OPUS_GET_LOOKAHEAD)."""
        return int(self.new_encoder().lookahead)

    def encode_stream(self, clean: np.ndarray) -> list[bytes]:
        """Sender side: one Opus payload per packet of ``clean`` ``(S,)``, delay-compensated."""
        x = validate_waveform(clean, "clean")
        if x.ndim != 1:
            raise ValueError(f"clean: expected mono audio of shape (samples,), got {x.shape}")
        enc = self.new_encoder()
        delay = int(enc.lookahead)
        n = math.ceil(x.size / SAMPLES_PER_PACKET)
        advanced = np.zeros(n * SAMPLES_PER_PACKET + delay, dtype=np.float32)
        advanced[: x.size] = np.clip(x, -1.0, 1.0)
        advanced = advanced[delay:]
        return [
            enc.encode_float(advanced[i : i + SAMPLES_PER_PACKET].tobytes(), SAMPLES_PER_PACKET)
            for i in range(0, n * SAMPLES_PER_PACKET, SAMPLES_PER_PACKET)
        ]

    def set_source(self, clean: np.ndarray) -> None:
        """Encode the sender's signal; then push one packet (or None if lost) per payload."""
        self.payloads = self.encode_stream(clean)
        self.reset()

    def _reset(self) -> None:
        self.decoder.reset_state()

    def _conceal(self, window: list[np.ndarray | None]) -> np.ndarray:
        if self.payloads is None:
            raise ValueError(
                "OpusConcealer simulates the codec and needs the sender's signal: call "
                "set_source(clean) first (conceal(..., clean=...) does this)"
            )
        t, n = self.emit_index, len(self.payloads)
        if t >= n:
            raise ValueError(f"packet {t}: the source given to set_source has only {n} packets")
        if window[0] is None and self.fec and t + 1 < n and window[1] is not None:
            pcm = self.decoder.decode_float(self.payloads[t + 1], SAMPLES_PER_PACKET, decode_fec=True)
            return np.frombuffer(pcm, dtype=np.float32)
        return self.decode(t, window[0] is not None)

    def _snapshot(self) -> dict:
        # The libopus decoder changes in place: a failed push goes back to a copy of it.
        saved = super()._snapshot()
        saved["decoder"] = self.clone_decoder()
        return saved

    def clone_decoder(self):
        """An independent copy of the decoder in its current state (a libopus decoder state is one
        block of memory without pointers, so a byte copy is a full copy)."""
        import ctypes

        from opuslib_next.api import decoder as api

        twin = self._opus.Decoder(SAMPLE_RATE, 1)
        ctypes.memmove(twin.decoder_state, self.decoder.decoder_state, api.libopus_get_size(1))
        return twin

    def decode(self, t: int, received: bool) -> np.ndarray:
        """Receiver side: decode payload ``t`` (the decoder's own PLC where not ``received``).
        Calls must follow the stream order: the decoder keeps state across packets."""
        # An empty payload asks libopus for its packet-loss concealment.
        pcm = self.decoder.decode_float(self.payloads[t] if received else b"", SAMPLES_PER_PACKET)
        return np.frombuffer(pcm, dtype=np.float32)


class OpusDecodedConcealer(StreamingConcealer):
    """Another concealer (``inner``) run on Opus-decoded audio: the like-for-like comparison with
    Opus' own PLC (:class:`OpusConcealer`), which always includes the codec's coding.

    The sender encodes ``set_source(clean)`` at ``bitrate``; the receiver decodes each received
    payload on arrival and plays ``inner``'s concealment, computed from the decoded audio, for
    the lost ones. ``lookahead`` is ``inner``'s. What the decoder does at a lost packet:

    * ``"plc"`` (a real receiver): runs its own PLC, output discarded, to keep its state in step;
    * ``"skip"``: nothing, it decodes the next received payload as if it followed directly;
    * ``"oracle"`` (a diagnostic, not a receiver): decodes the lost payload anyway, so received
      packets are exactly the loss-free decoding;
    * ``"reencode"``: a local Opus encoder follows the played audio, and the decoder decodes its
      payload of the concealed packet, so the decoder's state continues from the concealment
      that was played rather than from its own PLC. With lookahead, the packets after a lost
      one are shown to ``inner`` as a copy of the decoder running its own PLC would decode
      them (the concealment they should follow is not made yet).

    With SILK (libopus at 64 kb/s wideband) the first packet after a loss depends on the
    decoder's own concealment ("plc") or on stale state ("skip"); "oracle" shows what that costs.
    """

    requires_source = True

    DECODER_MODES = ("plc", "skip", "oracle", "reencode")

    def __init__(
        self, inner: StreamingConcealer, bitrate: int = 64000, complexity: int = 10, decoder: str = "plc"
    ) -> None:
        super().__init__()
        if decoder not in self.DECODER_MODES:
            raise ValueError(f"decoder must be one of {self.DECODER_MODES}, got {decoder!r}")
        self.decoder = decoder
        if inner.requires_source:
            raise ValueError("the inner concealer must work on received audio alone")
        self.inner = inner
        self.lookahead = inner.lookahead
        self.codec = OpusConcealer(bitrate=bitrate, complexity=complexity)
        self._decoded: dict[int, np.ndarray] = {}
        self._next = 0

    def set_source(self, clean: np.ndarray) -> None:
        self.codec.set_source(clean)
        self.reset()

    def _reset(self) -> None:
        self.codec.reset()
        self.inner.reset()
        self._decoded.clear()
        self._next = 0  # next packet to decode, in stream order
        if self.decoder == "reencode":
            self._encoder = self.codec.new_encoder()
            # Like the sender, the local encoder gets the played audio advanced by its delay:
            # ``_skip`` samples still to drop, ``_pending`` samples of the next frame.
            self._skip = int(self._encoder.lookahead)
            self._pending = np.zeros(0, dtype=np.float32)

    def _conceal_reencoding(self, window: list[np.ndarray | None], t: int, n: int) -> np.ndarray:
        arrived = [p is not None and t + j < n for j, p in enumerate(window)]
        # A payload the decoder rejects (libopus leaves its state as it was) counts as lost,
        # as in any receiver: the concealment, re-encoded, takes its place.
        view = [self._decode_or_none(self.codec.decoder, t, warn=True) if arrived[0] else None]
        if len(window) > 1:
            preview = self.codec.clone_decoder()
            if view[0] is None:
                preview.decode_float(b"", SAMPLES_PER_PACKET)
            for j in range(1, len(window)):
                pcm = self._decode_or_none(preview, t + j) if arrived[j] else None
                if pcm is None and t + j < n:
                    preview.decode_float(b"", SAMPLES_PER_PACKET)
                view.append(pcm)
        out = self.inner.step(view)
        self._follow(out, view[0] is None)
        return out

    def _decode_or_none(self, decoder, t: int, warn: bool = False) -> np.ndarray | None:
        try:
            pcm = decoder.decode_float(self.codec.payloads[t], SAMPLES_PER_PACKET)
        except self.codec._opus.OpusError as exc:
            if warn:
                import warnings

                warnings.warn(
                    f"packet {t}: the Opus decoder rejects it ({exc}); concealed as lost", stacklevel=5
                )
            return None
        return np.frombuffer(pcm, dtype=np.float32)

    def _follow(self, played: np.ndarray, lost: bool) -> None:
        """Feed the local encoder what was played; after a lost packet, decode its payload."""
        frame = SAMPLES_PER_PACKET
        drop = min(self._skip, played.size)
        self._skip -= drop
        self._pending = np.concatenate([self._pending, played[drop:]])
        while self._pending.size >= frame:
            self._encoder.encode_float(self._pending[:frame].tobytes(), frame)
            self._pending = self._pending[frame:]
        if lost:
            # The frame of this packet also holds the encoder's look-ahead into the next one,
            # not played yet: the inner concealer's continuation of what it played (or the
            # concealment's mirror image) stands in for it.
            need = frame - self._pending.size
            extrapolate = getattr(self.inner, "extrapolate", None)
            ext = extrapolate(need) if extrapolate else np.resize(played[::-1], need)
            ext = np.asarray(ext, dtype=np.float32)
            payload = self._encoder.encode_float(np.concatenate([self._pending, ext]).tobytes(), frame)
            self.codec.decoder.decode_float(payload, frame)
            self._pending = np.zeros(0, dtype=np.float32)
            self._skip = need

    def _conceal(self, window: list[np.ndarray | None]) -> np.ndarray:
        if self.codec.payloads is None:
            raise ValueError(f"{type(self).__name__} simulates the codec: call set_source(clean) first")
        t, n = self.emit_index, len(self.codec.payloads)
        if self.decoder == "reencode":
            return self._conceal_reencoding(window, t, n)
        # Decode every packet that arrived since the last call (beyond the stream's end: nothing).
        for j in range(self._next - t, len(window)):
            arrived = window[j] is not None
            if t + j < n and (arrived or self.decoder != "skip"):
                self._decoded[t + j] = self.codec.decode(t + j, arrived or self.decoder == "oracle")
            self._next = t + j + 1
        decoded = [self._decoded.get(t + j) if p is not None else None for j, p in enumerate(window)]
        self._decoded.pop(t, None)
        return self.inner.step(decoded)


class OpusReceiver:
    """The receiving end of a real Opus stream (16 kHz mono, one 20 ms payload per packet) with
    the lost packets concealed by ``concealer`` (default: the bundled MAE, causal).

    ``push(payload)`` takes the packet's payload (``None`` if lost) and returns 320 float32
    samples, delayed by ``concealer.lookahead`` packets; ``flush()`` returns the delayed rest and
    starts a new stream. The decoder follows the concealment as in
    ``OpusDecodedConcealer(decoder="reencode")``: a local encoder with the sender's ``bitrate``
    and ``complexity`` re-encodes what was played.
    """

    def __init__(
        self, concealer: StreamingConcealer | None = None, bitrate: int = 64000, complexity: int = 10
    ) -> None:
        if concealer is None:
            concealer = make_concealer("mae")
        self._stream = OpusDecodedConcealer(
            concealer, bitrate=bitrate, complexity=complexity, decoder="reencode"
        )
        self.lookahead = self._stream.lookahead
        self._arrived = np.zeros(SAMPLES_PER_PACKET, dtype=np.float32)  # stands for "received"
        self.reset()

    def reset(self) -> None:
        self._stream.codec.payloads = []
        self._stream.reset()

    def push(self, payload: bytes | None) -> np.ndarray:
        payloads = self._stream.codec.payloads
        if payload is not None:
            self._check(payload, len(payloads))
        payloads.append(b"" if payload is None else bytes(payload))
        out = self._stream.push(None if payload is None else self._arrived)
        # The packet just played is never decoded again: drop its payload, so a long call
        # holds only the payloads still in the delay line.
        if self._stream.emit_index:
            payloads[self._stream.emit_index - 1] = b""
        return out

    def flush(self) -> np.ndarray:
        out = self._stream.flush()
        self.reset()
        return out

    def _check(self, payload, t: int) -> None:
        """Raise ValueError for what is not a 20 ms Opus packet (one that is well formed but that
        the decoder rejects is concealed like a lost packet, with a warning, when decoded)."""
        from opuslib_next.api import decoder as api

        codec = self._stream.codec
        if not isinstance(payload, (bytes, bytearray)) or not payload:
            raise ValueError(f"packet {t}: expected a non-empty Opus payload (bytes) or None")
        payload = bytes(payload)
        try:
            samples = api.get_nb_samples(codec.decoder.decoder_state, payload, len(payload))
        except codec._opus.OpusError as exc:
            raise ValueError(f"packet {t}: not a valid Opus packet ({exc})") from None
        if samples != SAMPLES_PER_PACKET:
            raise ValueError(
                f"packet {t}: decodes to {samples} samples at {SAMPLE_RATE} Hz; expected 20 ms "
                f"({SAMPLES_PER_PACKET}-sample) packets"
            )


def _on_opus(make_inner):
    def make(bitrate: int = 64000, **kwargs) -> OpusDecodedConcealer:
        # The decoder continues from the re-encoded concealment (PLCMOS: experiments/tune_concealer.md).
        return OpusDecodedConcealer(make_inner(**kwargs), bitrate=bitrate, decoder="reencode")

    return make


_CODEC = {"group": "baseline", "note": "simulate the codec and need --clean", "needs_source": True}
register_concealer(
    "opus", lambda **kw: OpusConcealer(fec=False, **kw), lists=("demo", "eval", "bench"), **_CODEC
)
register_concealer(
    "opus-fec", lambda **kw: OpusConcealer(fec=True, **kw), lists=("demo", "eval", "bench"), **_CODEC
)
_ON_OPUS = {"group": "on-opus", "note": "simulate the codec and need --clean", "needs_source": True}
register_concealer("opus+g711", lambda **kw: OpusDecodedConcealer(G711Concealer(), **kw), **_ON_OPUS)
_MAE_ON_OPUS = {"lists": ("demo", "bench"), "takes_model": True, **_ON_OPUS}
register_concealer("opus+mae", _on_opus(mae_factory(0)), **_MAE_ON_OPUS)
register_concealer("opus+mae-la1", _on_opus(mae_factory(1)), **_MAE_ON_OPUS)
register_concealer("opus+lpc", _on_opus(lpc_factory(0)), lists=("bench",), ablation_of="opus+mae", **_ON_OPUS)
register_concealer(
    "opus+lpc-la1", _on_opus(lpc_factory(1)), lists=("bench",), ablation_of="opus+mae-la1", **_ON_OPUS
)

__all__ = ["OpusConcealer", "OpusDecodedConcealer", "OpusReceiver"]
