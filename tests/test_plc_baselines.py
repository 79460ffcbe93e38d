import numpy as np
import pytest
import scipy.signal

from audiomae.audio import SAMPLE_RATE, SAMPLES_PER_PACKET
from audiomae.loss_models import apply_loss, draw_loss
from audiomae.plc import (
    G711Concealer,
    OpusConcealer,
    StreamingConcealer,
    ZeroConcealer,
    available_methods,
    conceal,
    make_concealer,
)

P = SAMPLES_PER_PACKET
MS = SAMPLE_RATE // 1000
METHODS = ["zero", "g711", "opus", "opus-fec"]


def harmonic(seconds=1.0, f0=150.0, amp=0.1):
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (amp * sum(np.sin(2 * np.pi * f0 * k * t + k) / k for k in range(1, 10))).astype(np.float32)


def bandpass_noise(seconds=1.0, seed=0):
    rng = np.random.default_rng(seed)
    sos = scipy.signal.butter(4, [300, 3400], "bandpass", fs=SAMPLE_RATE, output="sos")
    return (0.3 * scipy.signal.sosfilt(sos, rng.standard_normal(int(seconds * SAMPLE_RATE)))).astype(
        np.float32
    )


def rms(x):
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def stream(concealer, audio, lost, clean=None):
    """Push packet by packet and return the raw (delayed) stream plus flush."""
    if concealer.requires_source:
        concealer.set_source(clean if clean is not None else audio)
    out = []
    for t, is_lost in enumerate(lost):
        out.append(concealer.push(None if is_lost else audio[t * P : (t + 1) * P]))
    return np.concatenate(out + [concealer.flush()])


# -- G.711 Appendix I -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def g711_long_loss():
    x = harmonic()
    lost = np.zeros(x.size // P, bool)
    lost[20:25] = True  # 100 ms, longer than the 60 ms after which G.711 goes silent
    return x, conceal(apply_loss(x, lost), lost, "g711"), 20 * P


def test_g711_continues_the_pitch(g711_long_loss):
    x, y, start = g711_long_loss
    first = slice(start, start + 10 * MS)
    assert np.corrcoef(x[first], y[first])[0, 1] > 0.95
    assert G711Concealer().find_pitch(x[:780].astype(float)) in (106, 107)  # 150 Hz = 106.7 samples


@pytest.mark.parametrize("ms,gain", [(5, 1.0), (20, 0.8), (30, 0.6), (40, 0.4), (50, 0.2)])
def test_g711_attenuation(g711_long_loss, ms, gain):
    x, y, start = g711_long_loss
    c = start + ms * MS
    win = slice(c - 53, c + 54)  # one pitch period centred on the instant
    assert rms(y[win]) / rms(x[win]) == pytest.approx(gain, abs=0.04)


def test_g711_silent_after_60ms(g711_long_loss):
    x, y, start = g711_long_loss
    assert np.all(y[start + 60 * MS : start + 100 * MS] == 0)


@pytest.mark.parametrize("n_lost,overlap_ms", [(1, 8), (2, 10), (5, 10)])
def test_g711_recovery_overlap_length(n_lost, overlap_ms):
    # 4 ms + 4 ms per extra 10 ms of erasure, at most 10 ms, inside the first good packet.
    x = harmonic(0.5)
    lost = np.zeros(x.size // P, bool)
    lost[10 : 10 + n_lost] = True
    y = conceal(apply_loss(x, lost), lost, "g711")
    back = (10 + n_lost) * P
    assert np.array_equal(y[back + overlap_ms * MS :], x[back + overlap_ms * MS :])
    assert np.array_equal(y[: 10 * P], x[: 10 * P])
    assert np.abs(y[back : back + overlap_ms * MS] - x[back : back + overlap_ms * MS]).max() > 0


def test_zero_concealer():
    x = harmonic(0.2)
    lost = np.zeros(10, bool)
    lost[3] = True
    y = conceal(apply_loss(x, lost), lost, "zero")
    assert np.array_equal(y, apply_loss(x, lost))
    assert isinstance(make_concealer("zero"), ZeroConcealer)


# -- streaming contract (all methods) ---------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_streaming_equals_offline(method):
    x = bandpass_noise(0.6)
    lost = draw_loss("ge20b3", x.size // P, seed=1)
    offline = conceal(apply_loss(x, lost), lost, method, clean=x)
    c = make_concealer(method)
    raw = stream(c, apply_loss(x, lost), lost, clean=x)
    k = c.lookahead * P
    assert raw.size == x.size + k
    assert np.array_equal(raw[k:], offline)
    assert offline.dtype == np.float32 and offline.shape == x.shape


@pytest.mark.parametrize("method,lookahead", [("zero", 0), ("g711", 0), ("opus", 0), ("opus-fec", 1)])
def test_output_length_and_delay(method, lookahead):
    x = bandpass_noise(0.2)
    c = make_concealer(method)
    assert c.lookahead == lookahead
    if c.requires_source:
        c.set_source(x)
    first = c.push(x[:P])
    assert first.shape == (P,) and first.dtype == np.float32
    if lookahead:
        assert not first.any()
    for t in range(1, 5):
        assert c.push(x[t * P : (t + 1) * P]).shape == (P,)
    assert c.flush().shape == (lookahead * P,)
    odd = x[: 7 * P + 123]
    assert conceal(odd, np.zeros(8, bool), method, clean=odd).shape == odd.shape


@pytest.mark.parametrize("method", ["zero", "g711", "opus"])
def test_causal_methods_ignore_the_future(method):
    x = bandpass_noise(0.5)
    n = x.size // P
    a = draw_loss("ge20b3", n, seed=3)
    b = a.copy()
    b[12:] = ~b[12:]  # a different future from packet 12 on
    ya = conceal(apply_loss(x, a), a, method, clean=x)
    xb = x.copy()
    xb[12 * P :] *= -0.5
    yb = conceal(apply_loss(xb, b), b, method, clean=x)
    assert np.array_equal(ya[: 12 * P], yb[: 12 * P])


def test_opus_fec_uses_exactly_one_packet_of_future():
    x = bandpass_noise(0.5)
    n = x.size // P
    a = np.zeros(n, bool)
    a[10] = True
    b = a.copy()
    b[11] = True  # packet 11 lost too: no FEC copy for packet 10
    ya = conceal(apply_loss(x, a), a, "opus-fec", clean=x)
    yb = conceal(apply_loss(x, b), b, "opus-fec", clean=x)
    assert np.array_equal(ya[: 10 * P], yb[: 10 * P])
    assert not np.array_equal(ya[10 * P : 11 * P], yb[10 * P : 11 * P])
    # FEC recovers the lost packet better than plain PLC does.
    err = [rms(y[10 * P : 11 * P] - x[10 * P : 11 * P]) for y in (ya, yb)]
    assert err[0] < err[1]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("pattern", ["random", "all", "burst1s"])
def test_no_nan_or_clipping_under_heavy_loss(method, pattern):
    x = np.clip(harmonic(2.0, f0=190, amp=0.5), -0.99, 0.99)  # near full scale
    n = x.size // P
    if pattern == "random":
        lost = np.random.default_rng(0).random(n) < 0.5
    elif pattern == "all":
        lost = np.ones(n, bool)
    else:
        lost = np.zeros(n, bool)
        lost[25:75] = True
    y = conceal(apply_loss(x, lost), lost, method, clean=x)
    assert np.isfinite(y).all() and np.abs(y).max() <= 1.0
    if pattern == "burst1s":
        # Long bursts fade out instead of looping a buzz (libopus fades to quiet noise,
        # about -26 dB here; G.711 App. I to silence).
        assert rms(y[60 * P : 74 * P]) < (0.1 * rms(x) if method.startswith("opus") else 1e-9)


@pytest.mark.parametrize(
    "packet,match",
    [
        (np.zeros(160, np.float32), f"packet 0: expected {P} samples .20 ms at 16000 Hz., got 160"),
        (np.zeros(P, np.int16), r"packet 0: integer samples \(int16\)"),
        (np.zeros((P, 1), np.float32), "packet 0: expected a 1-D array"),
        (np.full(P, np.nan, np.float32), "packet 0: contains NaN"),
        (np.zeros(P, np.complex64), "packet 0: expected float32 or float64"),
    ],
)
def test_bad_packets_are_rejected(packet, match):
    with pytest.raises(ValueError, match=match):
        G711Concealer().push(packet)


def test_bad_packet_error_names_its_index():
    c = ZeroConcealer()
    for _ in range(12):
        c.push(np.zeros(P, np.float64))
    with pytest.raises(ValueError, match="packet 12: expected 320 samples"):
        c.push(np.zeros(P - 1))


def test_opus_is_aligned_with_its_input():
    x = bandpass_noise(1.0)
    y = conceal(x, np.zeros(x.size // P, bool), "opus", clean=x)
    core = slice(1000, x.size - 1000)
    lags = range(-20, 21)
    xc = [np.dot(x[core], np.roll(y, -lag)[core]) for lag in lags]
    assert list(lags)[int(np.argmax(xc))] == 0
    assert np.corrcoef(x, y)[0, 1] > 0.9
    assert OpusConcealer().codec_delay > 0


def test_opus_needs_the_clean_signal():
    x = bandpass_noise(0.1)
    with pytest.raises(ValueError, match="needs the clean signal"):
        conceal(x, np.zeros(5, bool), "opus")
    with pytest.raises(ValueError, match="set_source"):
        OpusConcealer().push(x[:P])


# -- base class and registry ----------------------------------------------------------------


class _Probe(StreamingConcealer):
    """Outputs, as a constant packet, how many of its window's packets arrived; records each
    window as the packets' ids (packet t holds samples t / 100)."""

    lookahead = 2

    def __init__(self):
        super().__init__()
        self.windows = []

    def _conceal(self, window):
        self.windows.append([None if p is None else round(100 * float(p[0])) for p in window])
        return np.full(P, 0.1 * (window[0] is not None) + 0.01 * self.emit_index, np.float32)


def test_base_delay_line_shows_packets_t_to_t_plus_k():
    c = _Probe()
    outs = [c.push(np.full(P, t / 100)) for t in range(5)]
    assert not outs[0].any() and not outs[1].any()
    assert c.windows[0] == [0, 1, 2]
    tail = c.flush()
    assert tail.shape == (2 * P,)
    assert c.windows[-2:] == [[3, 4, None], [4, None, None]]  # after the end looks lost
    assert c.emit_index == 0  # flush resets for the next stream


def test_base_short_stream_keeps_alignment():
    c = _Probe()
    assert not c.push(np.zeros(P)).any()
    out = c.flush()  # one packet pushed into a 2-packet delay: [zeros, packet 0]
    assert not out[:P].any() and out[P:].max() == pytest.approx(0.1)


def test_base_clips_and_removes_nan():
    class Wild(StreamingConcealer):
        def _conceal(self, window):
            return np.array([np.nan, 3.0, -3.0] + [0.0] * (P - 3))

    y = Wild().push(None)
    assert y.dtype == np.float32 and np.isfinite(y).all() and y[1] == 1.0 and y[2] == -1.0


def test_registry():
    assert set(METHODS) <= set(available_methods())
    with pytest.raises(ValueError, match="unknown concealment method 'nope'.*g711"):
        make_concealer("nope")
    with pytest.raises(ValueError, match="does not accept"):
        make_concealer("g711", lookahead=2)
    with pytest.raises(ValueError, match="fixed lookahead of 0"):
        conceal(np.zeros(P, np.float32), np.zeros(1, bool), "g711", lookahead=1)
    assert conceal(np.zeros(P, np.float32), np.zeros(1, bool), "g711", lookahead=0).shape == (P,)


def test_registry_metadata_gives_the_lists_the_help_and_the_ablations():
    from audiomae.plc.base import ablations, baseline_methods, listed_methods, method_info, methods_help

    listed = listed_methods()
    assert sorted(listed) == available_methods()
    assert listed[:2] == ["zero", "g711"] and set(baseline_methods()) >= set(METHODS)
    for name in ("demo", "eval", "bench"):
        chosen = listed_methods(name)
        assert chosen and chosen == [m for m in listed if name in method_info(m).lists]
    assert "mae" in listed_methods("eval") and "mae-la2" not in listed_methods("demo")
    for method, ablation in ablations().items():
        assert method_info(ablation).ablation_of == method and method in listed
    assert ablations()["mae"] == "lpc"
    text = methods_help()
    assert all(m in text for m in listed) and "--clean" in text
    with pytest.raises(ValueError, match="unknown concealment method 'nope'"):
        method_info("nope")


def test_step_conceals_one_packet_from_a_given_window_and_moves_on():
    class Wild(StreamingConcealer):
        lookahead = 1

        def _conceal(self, window):
            return np.full(P, np.inf if window[1] is None else 0.25 * self.emit_index)

    c = Wild()
    assert c.step([None, np.zeros(P, np.float32)]).max() == 0.0 and c.emit_index == 1
    assert c.step([None, np.zeros(P, np.float32)]).max() == 0.25 and c.emit_index == 2
    wild = c.step([None, None])  # inf clipped to full scale, as push does
    assert wild.dtype == np.float32 and np.all(wild == 1.0)


def test_every_listed_method_is_found_by_name_in_a_fresh_process():
    # Importing any part of audiomae.plc registers every built-in method: asking for one by name
    # right after importing only the registry's module finds it.
    import subprocess
    import sys

    code = (
        "from audiomae.plc.base import listed_methods, make_concealer\n"
        "from audiomae.plc.opus_deep import LibopusDeepUnavailable\n"
        "names = listed_methods()\n"
        "assert len(names) >= 15, names\n"
        "for name in names:\n"
        "    try:\n"
        "        make_concealer(name)\n"
        "    except LibopusDeepUnavailable:\n"  # found by name; its library is optional
        "        pass\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# -- another concealer on Opus-decoded audio --------------------------------------------------


@pytest.mark.parametrize("lookahead", [0, 1])
def test_concealer_on_opus_decoded_audio_plays_the_codec_where_packets_arrive(lookahead):
    from audiomae.plc.opus import OpusDecodedConcealer

    x = harmonic(1.0)
    n = x.size // P
    lost = np.zeros(n, bool)
    lost[[5, 6, 20, 30, 31, 32]] = True
    inner = _Arrivals() if lookahead else G711Concealer()
    wrapped = OpusDecodedConcealer(inner)
    assert wrapped.lookahead == lookahead
    y = conceal(apply_loss(x, lost), lost, wrapped, clean=x)
    assert y.shape == x.shape
    opus = conceal(apply_loss(x, lost), lost, "opus", clean=x)
    if not lookahead:
        # Received packets are the decoder's output (after G.711's recovery overlap-add); the
        # lost ones are G.711's, not libopus' PLC.
        for t in range(n):
            seg = slice(t * P, (t + 1) * P)
            if not lost[t] and not lost[t - 1]:
                np.testing.assert_array_equal(y[seg], opus[seg])
            if lost[t]:
                assert not np.allclose(y[seg], opus[seg])
    else:
        # The inner concealer saw the arrivals of the packet and the one after it.
        expected = [(not lost[t]) + (t + 1 < n and not lost[t + 1]) for t in range(n)]
        np.testing.assert_array_equal(y[::P], np.asarray(expected, np.float32) / 2)


class _Arrivals(StreamingConcealer):
    """Lookahead 1; outputs, as a constant packet, half the number of its window's arrivals."""

    lookahead = 1

    def _conceal(self, window):
        return np.full(P, sum(p is not None for p in window) / 2, np.float32)


def test_concealer_on_opus_decoded_audio_needs_the_clean_signal():
    from audiomae.plc.opus import OpusDecodedConcealer

    with pytest.raises(ValueError, match="needs the clean signal"):
        conceal(np.zeros(P * 5, np.float32), np.zeros(5, bool), "opus+g711")
    with pytest.raises(ValueError, match="inner concealer"):
        OpusDecodedConcealer(OpusConcealer())


def test_oracle_decoder_gives_the_loss_free_decoding_where_packets_arrive():
    from audiomae.plc.opus import OpusDecodedConcealer

    x = harmonic(1.0)
    n = x.size // P
    lost = np.zeros(n, bool)
    lost[[5, 6, 20, 30, 31, 32]] = True
    loss_free = conceal(x, np.zeros(n, bool), "opus", clean=x)
    y = conceal(apply_loss(x, lost), lost, OpusDecodedConcealer(G711Concealer(), decoder="oracle"), clean=x)
    for t in range(n):
        if lost[t]:
            continue
        # past G.711's recovery overlap-add (at most a few ms), the packet is the decoder's
        seg = slice(t * P + P // 2, (t + 1) * P)
        np.testing.assert_array_equal(y[seg], loss_free[seg])
    # "skip": the decoder never hears of the loss, so it decodes differently from "plc" only
    # from the first lost packet on.
    args = (apply_loss(x, lost), lost)
    skip = conceal(*args, OpusDecodedConcealer(G711Concealer(), decoder="skip"), clean=x)
    plc = conceal(*args, OpusDecodedConcealer(G711Concealer(), decoder="plc"), clean=x)
    np.testing.assert_array_equal(skip[: 5 * P], plc[: 5 * P])
    assert not np.array_equal(skip[7 * P : 8 * P], plc[7 * P : 8 * P])
    with pytest.raises(ValueError, match="decoder must be one of"):
        OpusDecodedConcealer(G711Concealer(), decoder="magic")


def test_reencoding_the_concealment_keeps_the_decoders_recovery_closer_to_loss_free():
    from importlib.resources import files

    from audiomae.audio import load_audio
    from audiomae.plc.opus import OpusDecodedConcealer

    x = load_audio(str(files("audiomae") / "assets" / "demo_speech.flac"))[: 150 * P]
    n = x.size // P
    lost = np.zeros(n, bool)
    starts = np.arange(20, n - 10, 15)
    lost[starts] = lost[starts + 1] = True
    loss_free = conceal(x, np.zeros(n, bool), "opus", clean=x)

    def recovery_level_db(mode):
        y = conceal(apply_loss(x, lost), lost, OpusDecodedConcealer(G711Concealer(), decoder=mode), clean=x)
        seg = [slice(t * P + P // 4, (t + 1) * P) for t in starts + 2]  # past G.711's overlap-add
        return np.median([20 * np.log10(rms(y[s]) / rms(loss_free[s])) for s in seg])

    # SILK's first packet after its own PLC comes out ~3 dB quiet; decoding the re-encoded
    # concealment instead keeps it within ~1 dB of the loss-free decoding.
    assert abs(recovery_level_db("reencode")) < 0.6 * abs(recovery_level_db("plc"))
    # With lookahead the packet after a gap is shown as the decoder would decode it after its
    # own PLC, by a byte copy of the decoder: the copy decodes exactly as the original would.
    codec = OpusConcealer()
    codec.set_source(x)
    for t in range(30):
        codec.decode(t, t % 7 != 3)
    twin = codec.clone_decoder()
    for t in range(30, 40):
        received = t != 33
        a = codec.decode(t, received)
        b = np.frombuffer(twin.decode_float(codec.payloads[t] if received else b"", P), np.float32)
        np.testing.assert_array_equal(a, b)
    y = conceal(apply_loss(x, lost), lost, OpusDecodedConcealer(_Arrivals(), decoder="reencode"), clean=x)
    expected = [(not lost[t]) + (t + 1 < n and not lost[t + 1]) for t in range(n)]
    np.testing.assert_array_equal(y[::P], np.asarray(expected, np.float32) / 2)


@pytest.mark.parametrize("method", ["opus+mae", "opus+mae-la1", "opus+lpc"])
def test_opus_receiver_on_real_payloads_matches_the_simulation(method):
    from importlib.resources import files

    from audiomae.audio import load_audio
    from audiomae.plc import make_concealer
    from audiomae.plc.opus import OpusReceiver

    x = load_audio(str(files("audiomae") / "assets" / "demo_speech.flac"))[: 60 * P]
    n = x.size // P
    lost = np.zeros(n, bool)
    lost[[10, 11, 25, 40, 41, 42]] = True
    payloads = OpusConcealer().encode_stream(x)  # what the sender puts on the wire
    receiver = OpusReceiver(make_concealer(method.removeprefix("opus+")))
    out = [receiver.push(None if lost[t] else payloads[t]) for t in range(n)]
    held = [t for t, p in enumerate(receiver._stream.codec.payloads) if p]
    assert held == [t for t in range(n - receiver.lookahead, n) if not lost[t]]  # only the delay line
    y = np.concatenate(out + [receiver.flush()])[receiver.lookahead * P :][: x.size]
    expected = conceal(apply_loss(x, lost), lost, method, clean=x)
    np.testing.assert_array_equal(y, expected)


def test_opus_receiver_rejects_bad_payloads():
    from audiomae.plc.opus import OpusReceiver

    receiver = OpusReceiver(G711Concealer())
    receiver.push(OpusConcealer().encode_stream(harmonic(0.02))[0])
    with pytest.raises(ValueError, match="packet 1: expected a non-empty Opus payload"):
        receiver.push(b"")
    with pytest.raises(ValueError, match="packet 1: expected a non-empty Opus payload"):
        receiver.push(np.zeros(P, np.float32))
    long_packet = OpusConcealer().new_encoder().encode_float(np.zeros(2 * P, np.float32).tobytes(), 2 * P)
    with pytest.raises(ValueError, match="packet 1: decodes to 640 samples"):
        receiver.push(long_packet)
    with pytest.raises(ValueError, match="packet 1: not a valid Opus packet"):
        receiver.push(b"\x03")  # code 3 without its frame-count byte
    # well-formed but undecodable: concealed as lost, with a warning; the stream goes on
    with pytest.warns(UserWarning, match="packet 1: the Opus decoder rejects it"):
        out = receiver.push(b"\x4b\x41")
    assert out.shape == (P,) and np.isfinite(out).all()
    assert receiver.push(None).shape == (P,)
