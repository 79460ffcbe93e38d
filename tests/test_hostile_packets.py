"""Hostile packets: nothing a caller pushes jams the stream.

Every concealer validates a packet once (``StreamingConcealer.check_packet``), after which the
samples it computes with are finite float32 in [-1, 1]; a push that raises leaves the stream as
it was, so the caller can go on with the next packet.
"""

import numpy as np
import pytest

from audiomae.audio import SAMPLES_PER_PACKET as P
from audiomae.plc import make_concealer
from audiomae.plc.base import StreamingConcealer

# A causal and a lookahead variant of each family of concealer state (none, G.711 buffers, the
# MAE concealer's ring buffers and renderer).
METHODS = [("zero", None), ("g711", None), ("lpc", 0), ("lpc", 1), ("mae", 0), ("mae", 1)]


def _make(method, lookahead):
    return make_concealer(method) if lookahead is None else make_concealer(method, lookahead=lookahead)


def _stream(n=14, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n * P) / 16000
    x = (0.3 * np.sin(2 * np.pi * 180 * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    lost = np.zeros(n, bool)
    lost[[i for i in (4, 5, 9) if i < n]] = True  # a burst and a single loss, so the MAE path runs
    return [None if lost[i] else x[i * P : (i + 1) * P] for i in range(n)]


def _run(c, packets):
    return np.concatenate([c.push(p) for p in packets] + [c.flush()])


@pytest.mark.parametrize(
    "bad",
    [
        np.full(P, 1e300, np.float64),  # finite, but inf once cast to float32
        np.full(P, 1e30, np.float32),  # finite float32 whose square overflows the log-mel
        np.full(P, -3.0, np.float32),
        np.where(np.arange(P) % 2, 1e20, -1e20).astype(np.float64),
    ],
    ids=["f64-1e300", "f32-1e30", "minus3", "alternating-1e20"],
)
@pytest.mark.parametrize("method,lookahead", METHODS)
def test_out_of_range_packets_are_clipped_and_the_stream_goes_on(method, lookahead, bad):
    c = _make(method, lookahead)
    packets = _stream()
    packets[3] = bad
    out = _run(c, packets)
    assert np.isfinite(out).all() and np.abs(out).max() <= 1.0
    assert out.size == (len(packets) + c.lookahead) * P


def test_a_clipped_packet_is_the_same_as_full_scale():
    a, b = _stream(), _stream()
    a[3], b[3] = np.full(P, 1e300), np.ones(P, np.float32)
    assert np.array_equal(_run(make_concealer("lpc"), a), _run(make_concealer("lpc"), b))


@pytest.mark.parametrize("method,lookahead", METHODS)
def test_a_rejected_packet_leaves_the_stream_as_it_was(method, lookahead):
    packets = _stream()
    ref = _run(_make(method, lookahead), packets)
    c = _make(method, lookahead)
    out = []
    for i, p in enumerate(packets):
        if i == 6:
            with pytest.raises(ValueError, match="packet 6: contains NaN or inf"):
                c.push(np.full(P, np.nan, np.float32))
        out.append(c.push(p))
    out.append(c.flush())
    assert np.array_equal(np.concatenate(out), ref)


@pytest.mark.parametrize("fail_at", [2, 4, 5])  # received, first lost, second lost (MAE pass)
@pytest.mark.parametrize("method,lookahead", METHODS)
def test_a_concealment_that_raises_leaves_the_stream_as_it_was(method, lookahead, fail_at):
    # The failing call first runs the real concealment, so the method's state has moved on
    # when it raises: the push must roll it back, delay line included.
    packets = _stream()
    ref = _run(_make(method, lookahead), packets)
    c = _make(method, lookahead)
    real = c._conceal
    calls = {"n": 0}

    def flaky(window):
        result = real(window)
        calls["n"] += 1
        if calls["n"] == fail_at + 1 - (c.lookahead or 0):
            raise RuntimeError("renderer failed")
        return result

    c._conceal = flaky
    out = []
    for p in packets:
        try:
            out.append(c.push(p))
        except RuntimeError:
            out.append(c.push(p))  # the same packet again, as a receiver would retry
    out.append(c.flush())
    assert calls["n"] > fail_at
    assert np.array_equal(np.concatenate(out), ref)


def test_a_failed_flush_leaves_the_stream_as_it_was():
    packets = _stream(8)
    ref = _run(make_concealer("lpc", lookahead=2), packets)
    c = make_concealer("lpc", lookahead=2)
    head = [c.push(p) for p in packets]
    real, state = c._conceal, {"failed": False}

    def once(window):
        result = real(window)
        if not state["failed"]:
            state["failed"] = True
            raise RuntimeError("boom")
        return result

    c._conceal = once
    with pytest.raises(RuntimeError):
        c.flush()
    assert np.array_equal(np.concatenate(head + [c.flush()]), ref)


class _Counter(StreamingConcealer):
    def __init__(self):
        super().__init__()
        self._seen = []
        self._rng = np.random.default_rng(0)

    def _conceal(self, window):
        self._seen.append(window[0] is None)
        noise = self._rng.standard_normal(P).astype(np.float32) * 0.01
        if len(self._seen) == 3 and not getattr(self, "_failed", False):
            self._failed = True
            self._extra = "created by the failed call"
            raise RuntimeError("third call fails once")
        return noise


def test_rollback_covers_containers_generators_and_new_attributes():
    c = _Counter()
    c.push(None), c.push(None)
    with pytest.raises(RuntimeError):
        c.push(None)
    assert c._seen == [True, True] and not hasattr(c, "_extra")
    ref = _Counter()
    ref._failed = True
    expected = [ref.push(None) for _ in range(3)]
    c._failed = True
    assert np.array_equal(c.push(None), expected[2])


@pytest.mark.parametrize("value", [1.5, "1", True, -1, None.__class__])
def test_lookahead_must_be_a_whole_number_of_packets(value):
    with pytest.raises(ValueError, match="lookahead must be"):
        make_concealer("mae", lookahead=value)
    with pytest.raises(ValueError, match="lookahead must be"):
        make_concealer("lpc", lookahead=value)


def test_numpy_integer_lookahead_is_accepted():
    assert make_concealer("lpc", lookahead=np.int64(1)).lookahead == 1


# ---- the RTP receive path: datagrams from the network ------------------------------------------
def _sender_report(ssrc: int, ts: int, count: int, bye_for: list[int] | None = None) -> bytes:
    from aiortc import rtp as wire

    info = wire.RtcpSenderInfo(
        ntp_timestamp=0, rtp_timestamp=ts & 0xFFFFFFFF, packet_count=count, octet_count=0
    )
    out = bytes(wire.RtcpSrPacket(ssrc=ssrc, sender_info=info))
    return out + (bytes(wire.RtcpByePacket(sources=bye_for)) if bye_for else b"")


def _rtp(ssrc: int, seq: int, ts: int, payload: bytes, pt: int = 96) -> bytes:
    from aiortc import rtp as wire

    packet = wire.RtpPacket(
        payload_type=pt, sequence_number=seq & 0xFFFF, timestamp=ts & 0xFFFFFFFF, ssrc=ssrc
    )
    packet.payload = payload
    return bytes(packet.serialize())


def _stream_datagrams(payload: str = "l16", lost=(7, 8, 30)):
    """A 1.2 s clip as the sender sends it: (start report, packets but the lost, end report + BYE),
    the stream's (ssrc, first seq, first ts, ticks) and its packets."""
    from audiomae.audio import load_audio
    from audiomae.plc.demo import demo_clip_path
    from audiomae.rtp import _ticks, rtp_packets

    clip = load_audio(demo_clip_path())[: 60 * P]
    packets, ssrc, seq0, ts0 = rtp_packets(clip, payload, seed=4)
    ticks, n = _ticks(payload), len(packets)
    body = [p for i, p in enumerate(packets) if i not in lost]
    return (
        [_sender_report(ssrc, ts0, 0)],
        body,
        [_sender_report(ssrc, ts0 + n * ticks, n, bye_for=[ssrc])],
        (ssrc, seq0, ts0, ticks),
    )


def _receive(datagrams, payload: str = "l16", method: str = "lpc"):
    import socket
    import threading
    import time

    rtp = pytest.importorskip("audiomae.rtp")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    result = {}
    thread = threading.Thread(
        target=lambda: result.update(
            zip(("audio", "stats"), rtp.receive(sock, make_concealer(method), payload, idle_timeout=1.0))
        )
    )
    thread.start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        for i, data in enumerate(datagrams):
            tx.sendto(data, sock.getsockname())
            if i % 32 == 31:
                time.sleep(0.002)  # a paced sender: the receive buffer never overflows
    thread.join(timeout=120)
    sock.close()
    assert not thread.is_alive()
    return result["audio"], result["stats"]


@pytest.fixture(scope="module")
def stream_alone():
    start, body, end, _ = _stream_datagrams()
    return _receive(start + body + end)


def test_rtp_hijack_one_stray_datagram_does_not_take_the_receiver_over(stream_alone):
    import struct

    start, body, end, _ = _stream_datagrams()
    stray = struct.pack("!BBHII", 0x80, 96, 5, 0, 0xDEADBEEF) + b"\0\1\2\3"
    audio, stats = _receive([stray, *start, *body, *end])
    np.testing.assert_array_equal(audio, stream_alone[0])
    assert stats.received == stream_alone[1].received and stats.lost == 3


def test_rtp_hijack_a_random_flood_then_the_stream_equals_the_stream_alone(stream_alone):
    rng = np.random.default_rng(0)
    flood = [rng.bytes(int(rng.integers(1, 200))) for _ in range(3000)]
    # ... and datagrams that parse as RTP of the stream's payload type, from made-up sources
    flood += [
        _rtp(int(rng.integers(1, 2**32)), int(rng.integers(0, 2**16)), 0, bytes(2 * P)) for _ in range(300)
    ]
    rng.shuffle(flood)
    start, body, end, _ = _stream_datagrams()
    audio, _ = _receive([*flood, *start, *body, *end])
    np.testing.assert_array_equal(audio, stream_alone[0])


def test_rtp_foreign_bye_does_not_end_the_session(stream_alone):
    start, body, end, (ssrc, *_) = _stream_datagrams()
    foreign_bye = _sender_report(ssrc ^ 1, 0, 5, bye_for=[ssrc ^ 1])
    audio, _ = _receive([*start, *body[:20], foreign_bye, *body[20:], *end])
    np.testing.assert_array_equal(audio, stream_alone[0])


def test_rtp_sequence_jump_of_one_packet_is_dropped(stream_alone):
    start, body, end, (ssrc, seq0, ts0, ticks) = _stream_datagrams()
    jumps = [_rtp(ssrc, seq0 + 30000, ts0 + 30000 * ticks, bytes(2 * P))]  # RFC 3550: > MAX_DROPOUT
    jumps += [_rtp(ssrc, seq0 + 2900, ts0 + 2900 * ticks, bytes(2 * P))]  # within it, but 58 s at once
    made_up = [_rtp(ssrc ^ 2, seq0 + 32000 + i, 0, bytes(2 * P)) for i in range(11)]
    audio, _ = _receive([*start, *body[:20], jumps[0], *body[20:30], jumps[1], *made_up, *body[30:], *end])
    np.testing.assert_array_equal(audio, stream_alone[0])


def test_rtp_sequence_jump_confirmed_is_a_restart_not_a_long_loss(stream_alone):
    start, body, end, (ssrc, *_) = _stream_datagrams(lost=())
    from aiortc import rtp as wire

    def shifted(data: bytes) -> bytes:  # the sender restarted its numbering 20000 packets on
        p = wire.RtpPacket.parse(data)
        return _rtp(p.ssrc, p.sequence_number + 20000, p.timestamp + 12345, p.payload)

    audio, stats = _receive([*start, *body[:25], *map(shifted, body[25:])])
    whole, _ = _receive([*start, *body])
    assert stats.lost == 0 and audio.size == whole.size
    np.testing.assert_array_equal(audio, whole)


def test_rtp_bad_opus_payload_is_a_lost_packet():
    pytest.importorskip("opuslib_next")
    start, body, end, (ssrc, seq0, ts0, ticks) = _stream_datagrams("opus", lost=())
    bad = _rtp(ssrc, seq0 + 10, ts0 + 10 * ticks, bytes(80), pt=111)  # decodes to 10 ms
    audio, stats = _receive([*start, *body[:10], bad, *body[11:], *end], payload="opus")
    whole, _ = _receive([*start, *body, *end], payload="opus")
    assert stats.malformed == 1 and stats.concealed == 1
    assert audio.size == whole.size and np.isfinite(audio).all()


@pytest.mark.parametrize(
    "argv, word",
    [(["--port", "70000"], "--port"), (["--port", "0", "--method", "opus"], "clean signal")],
)
def test_rtp_receive_options_are_checked_at_start(tmp_path, capsys, argv, word):
    from audiomae.cli import main

    try:
        code = main(["rtp-receive", *argv, "-o", str(tmp_path / "r.wav"), "--timeout", "0.1"])
    except SystemExit as exc:  # argparse's usage error
        code = exc.code
    assert code == 2 and word in capsys.readouterr().err
    assert not (tmp_path / "r.wav").exists()
