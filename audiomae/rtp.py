"""RTP over UDP for the streaming concealer: a sender, a jitter buffer and a receiver.

Packets are 20 ms of 16 kHz mono audio, one per RTP packet, as L16 (16-bit big-endian PCM,
RFC 3551; clock 16 kHz) or Opus (RFC 7587; clock 48 kHz). RTCP shares the port (rtcp-mux,
RFC 5761): the sender opens the stream with a sender report (SR) and closes it with an SR and a
BYE, so the receiver knows where the stream starts and ends even when its first or last packets
are lost.

The wire format (RTP and RTCP packets) is aiortc's (``pip install 'audiomae[rtp]'``).
aiortc's jitter buffer is not used: it assembles video frames and skips a gap without saying
so, while a concealer has to be handed every lost packet in its place.

    sender: packets -> loss / reorder / duplicate -> UDP -> JitterBuffer -> concealer -> audio

The :class:`JitterBuffer` releases packets in sequence order as soon as they are next; a
missing packet is waited for until ``depth`` newer packets have arrived, then released as lost
(``None``) to the concealer; a packet that arrives after that is counted late and dropped.
Playout is driven by arrivals, which suits a receiver writing a file and keeps the output
independent of timing: a clip sent with a loss trace and any reordering within ``depth``
packets comes out as the offline ``conceal()`` of that trace.
"""

from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from audiomae.audio import SAMPLE_RATE, SAMPLES_PER_PACKET

PAYLOADS = {"l16": (96, SAMPLE_RATE), "opus": (111, 48_000)}  # name -> (payload type, RTP clock)
MAX_DATAGRAM = 2048


def _aiortc():
    try:
        from aiortc import rtp
    except ImportError as exc:
        raise ImportError(f"RTP needs aiortc ({exc.name} is missing): pip install 'audiomae[rtp]'") from exc
    return rtp


def _ticks(payload: str) -> int:
    """RTP timestamp units per 20 ms packet."""
    if payload not in PAYLOADS:
        raise ValueError(f"unknown payload {payload!r}; choose from {', '.join(PAYLOADS)}")
    return PAYLOADS[payload][1] * SAMPLES_PER_PACKET // SAMPLE_RATE


@dataclass
class ReceiveStats:
    """``received``: distinct packets that arrived in time; ``lost``: never arrived; ``late``:
    arrived after their turn (dropped); ``duplicates``: extra copies (dropped); ``concealed``:
    packets handed to the concealer as lost (lost + late)."""

    received: int = 0
    lost: int = 0
    late: int = 0
    duplicates: int = 0
    concealed: int = 0

    def line(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in dataclasses.asdict(self).items())


class JitterBuffer:
    """Orders packets by 16-bit RTP sequence number (wrap-around handled).

    ``put(seq, payload)`` and ``end(last)`` return the packets now due, in order, as
    ``(index, payload or None)`` with ``index`` counted from the stream's first packet."""

    def __init__(self, depth: int = 3) -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1 packet, got {depth}")
        self.depth = depth
        self.stats = ReceiveStats()
        self._first: int | None = None  # extended sequence number of packet 0
        self._next: int | None = None  # next to release
        self._highest: int | None = None
        self._pending: dict[int, bytes] = {}
        self._released_lost: set[int] = set()  # recent ones, to tell late from duplicate

    def extend(self, seq: int) -> int:
        """Extended (unwrapped) sequence number of 16-bit ``seq``, nearest the newest seen."""
        if self._highest is None:
            return seq
        delta = (seq - self._highest) & 0xFFFF
        return self._highest + (delta - 0x10000 if delta >= 0x8000 else delta)

    def start_at(self, seq: int) -> None:
        """Declare packet 0 of the stream (known from the sender's report) before any arrives."""
        if self._first is None:
            self._first = self._next = self._highest = seq

    def put(self, seq: int, payload: bytes) -> list[tuple[int, bytes | None]]:
        ext = self.extend(seq & 0xFFFF)
        if self._first is None:
            self._first = self._next = ext
        if ext < self._next:
            if ext in self._released_lost:
                self.stats.late += 1
            else:
                self.stats.duplicates += 1
            return []
        if ext in self._pending:
            self.stats.duplicates += 1
            return []
        self._pending[ext] = bytes(payload)
        self.stats.received += 1
        self._highest = ext if self._highest is None else max(self._highest, ext)
        return self._release(self._highest - self.depth)

    def end(self, last: int | None = None) -> list[tuple[int, bytes | None]]:
        """Release everything up to extended sequence number ``last`` (default the newest)."""
        if self._next is None:
            return []
        return self._release(self._highest if last is None else last)

    def _release(self, lost_until: int) -> list[tuple[int, bytes | None]]:
        out = []
        while self._next in self._pending or self._next <= lost_until:
            payload = self._pending.pop(self._next, None)
            if payload is None:
                self.stats.lost += 1
                self.stats.concealed += 1
                self._released_lost.add(self._next)
                if len(self._released_lost) > 4096:
                    self._released_lost = {s for s in self._released_lost if s > self._next - 2048}
            out.append((self._next - self._first, payload))
            self._next += 1
        return out


class _L16Sink:
    def __init__(self, concealer) -> None:
        self.concealer, self.lookahead = concealer, concealer.lookahead

    def push(self, payload: bytes | None) -> np.ndarray:
        if payload is None:
            return self.concealer.push(None)
        pcm = np.frombuffer(payload, dtype=">i2")
        if pcm.size != SAMPLES_PER_PACKET:
            return self.concealer.push(None)  # a malformed payload is concealed like a lost one
        return self.concealer.push(pcm.astype(np.float32) / 32768.0)

    def flush(self) -> np.ndarray:
        return self.concealer.flush()


def _sink(payload: str, concealer):
    if payload == "l16":
        return _L16Sink(concealer)
    from audiomae.plc.opus import OpusReceiver

    return OpusReceiver(concealer)


def l16_quantise(audio: np.ndarray) -> np.ndarray:
    """What an L16 stream carries of ``audio``: 16-bit samples, as float32."""
    return (np.clip(np.round(np.asarray(audio) * 32768.0), -32768, 32767) / 32768.0).astype(np.float32)


def receive(
    sock: socket.socket,
    concealer,
    payload: str = "l16",
    depth: int = 3,
    idle_timeout: float = 2.0,
    first_timeout: float = 30.0,
    on_packet: Callable[[int, bytes | None], None] | None = None,
) -> tuple[np.ndarray, ReceiveStats]:
    """Receive one RTP stream on the bound UDP ``sock`` and conceal its lost packets.

    Ends at the sender's RTCP BYE, or after ``idle_timeout`` seconds without a packet (waits up
    to ``first_timeout`` for the first one). Returns the audio ``(n * 320,)`` float32 of packets
    0 .. n-1 of the stream, aligned with what was sent, and the statistics."""
    rtp = _aiortc()
    ticks = _ticks(payload)
    pt = PAYLOADS[payload][0]
    buffer = JitterBuffer(depth)
    sink = _sink(payload, concealer)
    out: list[np.ndarray] = []
    ssrc = start_ts = end_ts = None
    anchor: tuple[int, int] | None = None  # (extended seq, timestamp) of a received packet

    def play(items):
        for index, data in items:
            if on_packet is not None:
                on_packet(index, data)
            out.append(sink.push(data))

    def seq_of(ts: int) -> int:
        """The extended sequence number of the packet with RTP timestamp ``ts``."""
        delta = (ts - anchor[1]) & 0xFFFFFFFF
        return anchor[0] + (delta - 2**32 if delta >= 2**31 else delta) // ticks

    # Room for a burst (~2 KB of kernel memory per datagram): what overflows is lost.
    sock.setsockopt(
        socket.SOL_SOCKET,
        socket.SO_RCVBUF,
        max(1 << 20, sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)),
    )
    sock.settimeout(first_timeout)
    while True:
        try:
            data = sock.recv(MAX_DATAGRAM)
        except TimeoutError:
            break
        sock.settimeout(idle_timeout)
        if rtp.is_rtcp(data):
            bye, start, end = _control(rtp, data, ssrc, started=anchor is not None)
            start_ts = start_ts if start is None else start
            end_ts = end_ts if end is None else end
            if bye:
                break
            continue
        try:
            packet = rtp.RtpPacket.parse(data)
        except ValueError:
            continue
        if packet.payload_type != pt or (ssrc is not None and packet.ssrc != ssrc):
            continue
        ssrc = packet.ssrc
        if anchor is None:
            anchor = (buffer.extend(packet.sequence_number), packet.timestamp)
            if start_ts is not None:  # the sender said where the stream starts
                buffer.start_at(seq_of(start_ts))
        play(buffer.put(packet.sequence_number, packet.payload))
    if anchor is None and start_ts is not None and end_ts is not None:  # every packet was lost
        anchor = (0, start_ts)
        buffer.start_at(0)
    last = None if end_ts is None or anchor is None else seq_of(end_ts) - 1
    play(buffer.end(last))
    out.append(sink.flush())
    audio = np.concatenate(out) if out else np.zeros(0, dtype=np.float32)
    delay = sink.lookahead * SAMPLES_PER_PACKET
    return audio[delay:], buffer.stats


def _control(rtp, data: bytes, ssrc: int | None, started: bool) -> tuple[bool, int | None, int | None]:
    """What an RTCP datagram says about the stream ``ssrc`` (None: any): (BYE seen, the RTP timestamp
    of its first packet (only before one was received), the timestamp after its last packet);
    None for what it does not say. An unreadable datagram says nothing."""
    try:
        packets = rtp.RtcpPacket.parse(data)
    except ValueError:
        return False, None, None
    bye, start, end = False, None, None
    for p in packets:
        if isinstance(p, rtp.RtcpSrPacket) and ssrc in (None, p.ssrc):
            if p.sender_info.packet_count == 0 and not started:
                start = p.sender_info.rtp_timestamp  # the stream's first packet
            elif p.sender_info.packet_count:
                end = p.sender_info.rtp_timestamp  # the timestamp after the last packet
        bye = bye or isinstance(p, rtp.RtcpByePacket)
    return bye, start, end


def rtp_packets(
    audio: np.ndarray, payload: str = "l16", seed: int = 0, bitrate: int = 64000
) -> tuple[list[bytes], int, int, int]:
    """The RTP packets of ``audio`` (padded to whole 20 ms packets): (packets, ssrc, first
    sequence number, first timestamp), with a random ssrc and starting numbers from ``seed``."""
    rtp = _aiortc()
    ticks = _ticks(payload)
    rng = np.random.default_rng(seed)
    ssrc, seq0, ts0 = (int(rng.integers(lo, hi)) for lo, hi in ((1, 2**32), (0, 2**16), (0, 2**32)))
    n = -(-audio.size // SAMPLES_PER_PACKET)
    padded = np.zeros(n * SAMPLES_PER_PACKET, dtype=np.float32)
    padded[: audio.size] = audio
    frames = padded.reshape(n, SAMPLES_PER_PACKET)
    if payload == "l16":
        pcm = np.clip(np.round(frames * 32768.0), -32768, 32767).astype(">i2")
        payloads = [row.tobytes() for row in pcm]
    else:  # the sender of the Opus simulations (delay-compensated, so packet t decodes to t)
        from audiomae.plc.opus import OpusConcealer

        payloads = OpusConcealer(bitrate=bitrate).encode_stream(np.asarray(audio, dtype=np.float32))
    pt = PAYLOADS[payload][0]
    packets = [
        bytes(
            rtp.RtpPacket(
                payload_type=pt,
                marker=int(i == 0),
                sequence_number=(seq0 + i) & 0xFFFF,
                timestamp=(ts0 + i * ticks) & 0xFFFFFFFF,
                ssrc=ssrc,
                payload=p,
            ).serialize()
        )
        for i, p in enumerate(payloads)
    ]
    return packets, ssrc, seq0, ts0


def send(
    audio: np.ndarray,
    address: tuple[str, int],
    lost: np.ndarray | None = None,
    payload: str = "l16",
    seed: int = 0,
    reorder: float = 0.0,
    duplicate: float = 0.0,
    interval: float = SAMPLES_PER_PACKET / SAMPLE_RATE,
) -> int:
    """Send ``audio`` as an RTP stream to ``address``, dropping the packets ``lost`` marks (the
    network's loss), swapping neighbours with probability ``reorder`` and sending copies with
    probability ``duplicate``; one datagram every ``interval`` seconds (default 20 ms: real
    time). Opens and closes the stream with RTCP (SR; SR + BYE). Returns the datagrams sent."""
    rtp = _aiortc()
    packets, ssrc, _, ts0 = rtp_packets(audio, payload, seed)
    n = len(packets)
    lost = np.zeros(n, dtype=bool) if lost is None else np.asarray(lost, dtype=bool)[:n]
    if lost.size < n:
        raise ValueError(f"the loss trace covers {lost.size} packets; the audio has {n}")
    rng = np.random.default_rng([seed, 1])
    # (send slot, packet): packet i leaves at slot i, as a real-time sender sends it, unless it
    # swaps places with packet i + 1 (never moved twice: at most one slot late); a copy follows
    # its original.
    order = list(range(n))
    i = 0
    while i < n - 1:
        if not (lost[i] or lost[i + 1]) and rng.random() < reorder:
            order[i], order[i + 1] = order[i + 1], order[i]
            i += 1
        i += 1
    wire = []
    for slot, i in enumerate(order):
        if lost[i]:
            continue
        wire.append((slot, packets[i]))
        if rng.random() < duplicate:
            wire.append((slot, packets[i]))

    def report(ts: int, count: int, bye: bool) -> bytes:
        info = rtp.RtcpSenderInfo(
            ntp_timestamp=0, rtp_timestamp=ts & 0xFFFFFFFF, packet_count=count, octet_count=0
        )
        out = bytes(rtp.RtcpSrPacket(ssrc=ssrc, sender_info=info))
        return out + (bytes(rtp.RtcpByePacket(sources=[ssrc])) if bye else b"")

    ticks = _ticks(payload)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(report(ts0, 0, False), address)
        start = time.monotonic()
        for slot, data in wire:
            time.sleep(max(0.0, start + slot * interval - time.monotonic()))
            sock.sendto(data, address)
        sock.sendto(report(ts0 + n * ticks, n, True), address)
    return len(wire) + 2


__all__ = ["JitterBuffer", "PAYLOADS", "ReceiveStats", "l16_quantise", "receive", "rtp_packets", "send"]
