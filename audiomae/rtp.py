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

Network input is hostile. :class:`SourceFilter` decides which datagrams belong to the stream
being played, as RFC 3550 (appendix A.1) validates sources: a new SSRC is played only after
``MIN_SEQUENTIAL`` packets in sequence (or at once when its sender report announced it), one
stray packet or a flood of them cannot take the receiver over, a jump in sequence numbers
beyond ``MAX_DROPOUT`` (or longer than the wall clock since the last packet allows) is dropped
unless the next packet confirms it, which restarts the source where the stream left off
instead of concealing thousands of packets; only the played source's BYE ends the session. A
payload that does not decode is concealed as a lost packet.
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
# Source validation, RFC 3550 appendix A.1 (its constants).
MIN_SEQUENTIAL = 2  # packets in sequence before an unannounced SSRC is played
MAX_DROPOUT = 3000  # a larger jump ahead needs confirmation (a restart of the source)
MAX_MISORDER = 100  # ... and so does one further behind
MAX_CANDIDATES = 16  # SSRCs on probation at once (the oldest is forgotten)
MAX_HELD = 32  # packets kept per SSRC on probation, played once it is accepted
# Concealment a gap may cost: what the wall clock since the last packet allows at 1.5x real
# time, plus one second; a longer jump is a restart, not a loss.
GAP_SLACK_PACKETS = 50
GAP_RATE = 1.5 * SAMPLE_RATE / SAMPLES_PER_PACKET


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
    packets handed to the concealer as lost (lost + late); ``malformed``: payloads that did not
    decode (concealed too); ``foreign``: RTP datagrams not of the played stream (ignored)."""

    received: int = 0
    lost: int = 0
    late: int = 0
    duplicates: int = 0
    concealed: int = 0
    malformed: int = 0
    foreign: int = 0

    def line(self) -> str:
        counts = dataclasses.asdict(self)
        rare = {k: counts.pop(k) for k in ("malformed", "foreign")}
        return ", ".join(f"{k} {v}" for k, v in {**counts, **{k: v for k, v in rare.items() if v}}.items())


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

    @property
    def newest(self) -> int | None:
        """The extended sequence number of the newest packet put (or declared)."""
        return self._highest

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


def _seq_delta(seq: int, ref: int) -> int:
    """Signed distance of 16-bit ``seq`` from ``ref`` (-32768 .. 32767)."""
    d = (seq - ref) & 0xFFFF
    return d - 0x10000 if d >= 0x8000 else d


@dataclass
class _Candidate:
    seq: int  # its newest sequence number
    probation: int  # packets in sequence still needed
    held: list[tuple[int, int, bytes]]  # (seq, timestamp, payload), played once accepted


class SourceFilter:
    """Which RTP packets belong to the stream being played (RFC 3550 appendix A.1).

    ``offer(ssrc, seq, ts, payload)`` returns the packets now to be played, as ``(seq, ts,
    payload)`` in the played stream's numbering: none for a foreign or unconfirmed packet,
    several when a source is accepted (the packets it sent while on probation, in sequence
    order) or a restart is confirmed. A restarted source is renumbered to continue where the
    stream left off, so its jump costs no concealment. ``announce(ssrc, ts)`` records a sender
    report's start of stream: that SSRC is accepted with its first packet."""

    def __init__(self, ticks: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.ticks, self.clock = ticks, clock
        self.ssrc: int | None = None
        self.announced: dict[int, int] = {}  # ssrc -> RTP timestamp of its first packet
        self._candidates: dict[int, _Candidate] = {}
        self._max = self._max_ts = 0  # newest packet of the played source (its own numbering)
        self._last_time = 0.0  # when it arrived
        self._bad: tuple[int, tuple[int, int, bytes]] | None = None  # (expected next seq, packet)
        self._seq_offset = 0
        self._ts_offset = 0

    def announce(self, ssrc: int, ts: int) -> None:
        if ssrc not in self.announced and len(self.announced) >= MAX_CANDIDATES:
            self.announced.pop(next(iter(self.announced)))
        self.announced[ssrc] = ts

    def map_ts(self, ts: int) -> int:
        """A timestamp of the played source in the played stream's numbering."""
        return (ts + self._ts_offset) & 0xFFFFFFFF

    def max_gap(self) -> int:
        """The most packets a gap may conceal now (see :data:`GAP_RATE`)."""
        return GAP_SLACK_PACKETS + int((self.clock() - self._last_time) * GAP_RATE)

    def offer(self, ssrc: int, seq: int, ts: int, payload: bytes) -> list[tuple[int, int, bytes]]:
        if self.ssrc is None:
            return self._probation(ssrc, (seq, ts, payload))
        if ssrc != self.ssrc:
            return []
        d = _seq_delta(seq, self._max)
        if -MAX_MISORDER <= d <= min(MAX_DROPOUT, self.max_gap()):
            if d > 0:
                self._newest(seq, ts)
            return [self._mapped((seq, ts, payload))]
        if self._bad is not None and seq == self._bad[0]:  # two in sequence: a restart
            first = self._bad[1]
            # Renumber the source so that its packet after the jump follows the newest before it.
            self._seq_offset += self._max + 1 - first[0]
            self._ts_offset += self._max_ts + self.ticks - first[1]
            self._newest(seq, ts)
            return [self._mapped(first), self._mapped((seq, ts, payload))]
        self._bad = ((seq + 1) & 0xFFFF, (seq, ts, payload))
        return []

    def _newest(self, seq: int, ts: int) -> None:
        self._max, self._max_ts, self._last_time, self._bad = seq, ts, self.clock(), None

    def _mapped(self, packet: tuple[int, int, bytes]) -> tuple[int, int, bytes]:
        seq, ts, payload = packet
        return (seq + self._seq_offset) & 0xFFFF, self.map_ts(ts), payload

    def _probation(self, ssrc: int, packet: tuple[int, int, bytes]) -> list[tuple[int, int, bytes]]:
        seq = packet[0]
        cand = self._candidates.get(ssrc)
        if cand is None:
            if len(self._candidates) >= MAX_CANDIDATES:
                self._candidates.pop(next(iter(self._candidates)))
            cand = self._candidates[ssrc] = _Candidate(seq, MIN_SEQUENTIAL - 1, [])
        elif seq == (cand.seq + 1) & 0xFFFF:
            cand.probation -= 1
        else:
            cand.probation = MIN_SEQUENTIAL - 1
        cand.seq = seq
        cand.held = [*cand.held[-(MAX_HELD - 1) :], packet]
        if cand.probation > 0 and ssrc not in self.announced:
            return []
        self.ssrc = ssrc
        self._newest(seq, packet[1])
        self._candidates.clear()
        near = [p for p in cand.held if -MAX_MISORDER <= _seq_delta(p[0], seq) <= 0]
        return sorted(near, key=lambda p: _seq_delta(p[0], seq))


class _L16Sink:
    def __init__(self, concealer) -> None:
        self.concealer, self.lookahead = concealer, concealer.lookahead

    def push(self, payload: bytes | None) -> np.ndarray:
        if payload is None:
            return self.concealer.push(None)
        if len(payload) != 2 * SAMPLES_PER_PACKET:
            raise ValueError(f"an L16 payload of {len(payload)} bytes; expected {2 * SAMPLES_PER_PACKET}")
        pcm = np.frombuffer(payload, dtype=">i2")
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

    Ends at the played source's RTCP BYE, or after ``idle_timeout`` seconds without a packet
    (waits up to ``first_timeout`` for the first one). Returns the audio ``(n * 320,)`` float32
    of packets 0 .. n-1 of the stream, aligned with what was sent, and the statistics. Which
    datagrams belong to the stream: :class:`SourceFilter`."""
    rtp = _aiortc()
    ticks = _ticks(payload)
    pt = PAYLOADS[payload][0]
    buffer = JitterBuffer(depth)
    sources = SourceFilter(ticks)
    sink = _sink(payload, concealer)
    out: list[np.ndarray] = []
    ends: dict[int, int] = {}  # ssrc -> the timestamp after its last packet (sender reports)
    anchor: tuple[int, int] | None = None  # (extended seq, timestamp) of a played packet

    def play(items):
        for index, data in items:
            if on_packet is not None:
                on_packet(index, data)
            try:
                out.append(sink.push(data))
            except ValueError:  # a payload that does not decode is a lost packet
                buffer.stats.malformed += 1
                buffer.stats.concealed += 1
                out.append(sink.push(None))

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
            if _control(rtp, data, sources, ends, started=anchor is not None):
                break
            continue
        try:
            packet = rtp.RtpPacket.parse(data)
        except ValueError:
            continue
        due = (
            []
            if packet.payload_type != pt
            else sources.offer(packet.ssrc, packet.sequence_number, packet.timestamp, packet.payload)
        )
        if packet.payload_type != pt or sources.ssrc not in (None, packet.ssrc):
            buffer.stats.foreign += 1
        for seq, ts, body in due:
            if anchor is None:
                anchor = (buffer.extend(seq), ts)
                if sources.ssrc in sources.announced:  # the sender said where the stream starts
                    start = seq_of(sources.map_ts(sources.announced[sources.ssrc]))
                    if 0 <= anchor[0] - start <= MAX_DROPOUT:
                        buffer.start_at(start)
            play(buffer.put(seq, body))
    last = None
    if anchor is None:  # every packet was lost: the sender's reports still tell the stream
        known = [s for s in ends if s in sources.announced]
        if known:
            anchor = (0, sources.announced[known[-1]])
            buffer.start_at(0)
            last = min(seq_of(ends[known[-1]]) - 1, MAX_DROPOUT)
    elif sources.ssrc in ends:
        last = min(seq_of(sources.map_ts(ends[sources.ssrc])) - 1, buffer.newest + sources.max_gap())
    play(buffer.end(last))
    out.append(sink.flush())
    audio = np.concatenate(out) if out else np.zeros(0, dtype=np.float32)
    delay = sink.lookahead * SAMPLES_PER_PACKET
    return audio[delay:], buffer.stats


def _control(rtp, data: bytes, sources: SourceFilter, ends: dict[int, int], started: bool) -> bool:
    """Take what an RTCP datagram says about the streams: a sender report with no packets sent
    announces a stream's first timestamp (only before one was played), a later one the timestamp
    after its last packet (``ends``). Returns whether it holds a BYE of the played source (of an
    announced one while none plays). An unreadable datagram says nothing."""
    try:
        packets = rtp.RtcpPacket.parse(data)
    except ValueError:
        return False
    bye = False
    for p in packets:
        if isinstance(p, rtp.RtcpSrPacket):
            if p.sender_info.packet_count == 0 and not started:
                sources.announce(p.ssrc, p.sender_info.rtp_timestamp)
            elif p.sender_info.packet_count and (p.ssrc == sources.ssrc or p.ssrc in sources.announced):
                if p.ssrc not in ends and len(ends) >= MAX_CANDIDATES:
                    ends.pop(next(iter(ends)))
                ends[p.ssrc] = p.sender_info.rtp_timestamp
        elif isinstance(p, rtp.RtcpByePacket):
            playing = sources.ssrc
            bye = bye or any(s == playing or (playing is None and s in sources.announced) for s in p.sources)
    return bye


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


__all__ = [
    "JitterBuffer",
    "PAYLOADS",
    "ReceiveStats",
    "SourceFilter",
    "l16_quantise",
    "receive",
    "rtp_packets",
    "send",
]
