import numpy as np
import pytest
import torch
from conftest import voiced

from audiomae.audio import SAMPLES_PER_PACKET
from audiomae.config import ModelConfig
from audiomae.features import NormStats
from audiomae.model import AudioMAE
from audiomae.plc import conceal, make_concealer
from audiomae.plc.dsp import period_near
from audiomae.plc.mae import (
    FADE,
    LPC_DEFAULTS,
    RECOVERY_RAMP_AFTER,
    ConcealerConfig,
    MAEConcealer,
    PitchGuidedRenderer,
    int8_copy,
    lpc_continuation,
)
from audiomae.vocoder import Vocoder

P = SAMPLES_PER_PACKET


@pytest.fixture(scope="module")
def parts():
    torch.manual_seed(0)
    cfg = ModelConfig(
        enc_dim=32, enc_depth=1, enc_heads=2, dec_dim=32, dec_depth=1, dec_heads=2, max_frames=32
    )
    model = AudioMAE(cfg, norm=NormStats(mean=-11.5, std=4.5)).eval()
    vocoder = Vocoder.from_preset("tiny").eval()
    return model, vocoder


def make(parts, lookahead=0, **cfg):
    model, vocoder = parts
    return MAEConcealer(
        model, vocoder, lookahead=lookahead, config=ConcealerConfig(context_packets=12, **cfg)
    )


def lossy_signal(seconds=1.0, rate=0.3, seed=0):
    x = voiced(seconds, seed=seed)
    n = len(x) // P
    lost = np.random.default_rng(seed).random(n) < rate
    lost[:3] = False
    y = x.copy()
    for i in np.flatnonzero(lost):
        y[i * P : (i + 1) * P] = 0
    return x, y, lost


@pytest.mark.parametrize("lookahead", [0, 1, 2])
def test_streaming_equals_offline_and_delay(parts, lookahead):
    _, lossy, lost = lossy_signal()
    offline = conceal(lossy, lost, make(parts, lookahead))
    c = make(parts, lookahead)
    outs = [c.push(None if lost[i] else lossy[i * P : (i + 1) * P]) for i in range(len(lost))]
    outs.append(c.flush())
    stream = np.concatenate(outs)
    assert stream.size == lossy.size + lookahead * P
    assert np.all(stream[: lookahead * P] == 0)
    np.testing.assert_array_equal(stream[lookahead * P :], offline)


def test_received_packets_pass_through_except_recovery_fade(parts):
    _, lossy, lost = lossy_signal()
    out = conceal(lossy, lost, make(parts))
    fade = FADE
    burst = 0
    for i in range(len(lost)):
        seg, ref = out[i * P : (i + 1) * P], lossy[i * P : (i + 1) * P]
        if not lost[i]:
            start = fade if burst else 0
            if burst >= RECOVERY_RAMP_AFTER:  # may ramp up to the packet's level
                loud = np.abs(ref[start:]) > 1e-3
                gain = seg[start:][loud] / ref[start:][loud]
                assert np.all((gain > 0) & (gain <= 1 + 1e-6)) and np.all(np.diff(gain) > -1e-5)
            else:
                np.testing.assert_array_equal(seg[start:], ref[start:])
            burst = 0
        else:
            burst += 1
            assert np.abs(seg).max() > 0  # something was rendered into the gap


def test_causal_output_ignores_the_future(parts):
    _, lossy, lost = lossy_signal(seed=1)
    t = 30
    changed = lossy.copy()
    changed[(t + 1) * P :] = np.random.default_rng(5).standard_normal(changed.size - (t + 1) * P) * 0.3
    other_lost = lost.copy()
    other_lost[t + 1 :] = ~other_lost[t + 1 :]
    a = conceal(lossy, lost, make(parts))
    b = conceal(changed, other_lost, make(parts))
    np.testing.assert_array_equal(a[: (t + 1) * P], b[: (t + 1) * P])


@pytest.mark.parametrize("lpc", [False, True], ids=["mae", "lpc"])
@pytest.mark.parametrize("pattern", ["all", "burst", "random"])
def test_no_nan_or_clipping(parts, pattern, lpc):
    x = voiced(2.0) * 4.0  # loud input, near full scale
    x = np.clip(x, -1, 1)
    n = len(x) // P
    if pattern == "all":
        lost = np.ones(n, bool)
    elif pattern == "burst":
        lost = np.zeros(n, bool)
        lost[20:70] = True  # a 1 s burst
    else:
        lost = np.random.default_rng(3).random(n) < 0.5
    settings = LPC_DEFAULTS if lpc else {}
    for lookahead in (0, 1):
        out = conceal(x, lost, make(parts, lookahead=lookahead, **settings))
        assert np.isfinite(out).all() and np.abs(out).max() <= 1.0


def test_long_burst_fades_to_comfort_noise(parts):
    rng = np.random.default_rng(0)
    x = voiced(2.0) + 0.01 * rng.standard_normal(32000).astype(np.float32)
    n = len(x) // P
    lost = np.zeros(n, bool)
    lost[30:90] = True
    concealer = make(parts)
    out = conceal(x, lost, concealer)
    cfg = concealer.cfg  # the defaults resolved for this lookahead
    deep = out[(30 + cfg.full_level_packets + cfg.fade_packets + 2) * P : 90 * P]
    background = np.percentile([np.sqrt(np.mean(x[i * P : (i + 1) * P] ** 2)) for i in range(30)], 10)
    level = np.sqrt(np.mean(deep**2))
    assert 0.5 * background < level < 2.0 * background
    silent = conceal(x, lost, make(parts, comfort_noise=False))[(30 + 10) * P : 90 * P]
    assert np.abs(silent).max() == 0


def test_bad_packets_rejected(parts):
    c = make(parts)
    with pytest.raises(ValueError, match="320"):
        c.push(np.zeros(160, np.float32))
    with pytest.raises(ValueError, match="NaN"):
        c.push(np.full(P, np.nan, np.float32))
    with pytest.raises(ValueError, match="integer"):
        c.push(np.zeros(P, np.int16))


def test_config_errors(parts):
    model, vocoder = parts
    with pytest.raises(ValueError, match="lookahead"):
        MAEConcealer(model, vocoder, lookahead=-1)
    with pytest.raises(ValueError, match="exceeds"):
        MAEConcealer(model, vocoder, config=ConcealerConfig(context_packets=40))


@pytest.mark.parametrize("renderer", ["griffinlim", "pitch"])
def test_griffin_lim_renderers_fill_gaps(parts, renderer):
    from audiomae.plc.mae import GriffinLimRenderer, PitchGuidedRenderer

    model, _ = parts
    _, lossy, lost = lossy_signal(seed=2)
    render = GriffinLimRenderer(n_iter=4) if renderer == "griffinlim" else PitchGuidedRenderer(n_iter=2)
    c = MAEConcealer(model, render, config=ConcealerConfig(context_packets=12))
    out = conceal(lossy, lost, c)
    gaps = np.concatenate([out[i * P : (i + 1) * P] for i in np.flatnonzero(lost)])
    assert np.isfinite(out).all() and np.sqrt(np.mean(gaps**2)) > 1e-3


def test_registry_names(parts):
    model, vocoder = parts
    c = make_concealer("mae-la1", model=model, vocoder=vocoder, config=ConcealerConfig(context_packets=12))
    assert isinstance(c, MAEConcealer) and c.lookahead == 1


def test_lpc_methods_are_the_mae_concealer_without_the_mae(parts):
    model, vocoder = parts
    _, lossy, lost = lossy_signal(seconds=1.2, rate=0.3, seed=2)
    for name, lookahead in (("lpc", 0), ("lpc-la1", 1)):
        c = make_concealer(name, model=model, vocoder=vocoder, config=ConcealerConfig(context_packets=12))
        assert isinstance(c, MAEConcealer) and c.lookahead == lookahead
        assert c.cfg.mae_from_packet is None and c.cfg.context_packets == 12  # the rest as given
        c.predict_logmel = lambda *a, **k: pytest.fail("the lpc methods never run the MAE")
        out = conceal(lossy, lost, c)
        assert np.isfinite(out).all() and np.abs(out).max() <= 1.0
        reference = make(parts, lookahead, mae_from_packet=None)
        np.testing.assert_array_equal(out, conceal(lossy, lost, reference))
    # Without a config: the lpc defaults (two packets at full level), the bundled model's features.
    assert make_concealer("lpc").cfg == ConcealerConfig(mae_from_packet=None, full_level_packets=2)


def test_top_level_api_is_the_offline_concealer():
    import audiomae
    from audiomae.plc import conceal

    assert audiomae.conceal is conceal and "conceal" in dir(audiomae)
    with pytest.raises(AttributeError, match="no attribute"):
        audiomae.not_a_thing  # noqa: B018


def _glide(n: int, f0: float = 140.0, f1: float = 155.0, sr: int = 16000) -> np.ndarray:
    """Harmonic tone whose pitch glides from f0 to f1 over ``n`` samples (phase-continuous)."""
    f = np.linspace(f0, f1, n)
    phase = 2 * np.pi * np.cumsum(f) / sr
    return (0.3 * sum(np.sin(k * phase) / k for k in range(1, 8))).astype(np.float32)


def test_bridge_lands_in_phase_with_the_audio_after_the_gap(parts):
    x = _glide(4000)
    t = 3000  # played up to t, lose [t, t + P), receive from t + P
    c = make(parts, lookahead=1)
    c.state.played = x[t - c.state.played.size : t].copy()
    bridge = c._bridge(P, x[t + P : t + 2 * P])
    assert bridge is not None and bridge.shape == (P,)
    plain = c._continuation(2 * P)
    truth, after = x[t : t + P], x[t + P : t + 2 * P]
    # The plain repetition of the last period drifts out of phase with the gliding pitch; the
    # bridge is read slightly faster so that it meets the received audio where it resumes.
    assert np.mean((bridge - truth) ** 2) < 0.7 * np.mean((plain[:P] - truth) ** 2)
    seam = abs(float(bridge[-1]) - float(after[0]))
    step = np.abs(np.diff(x)).max()
    assert seam < 2 * step
    assert abs(float(bridge[0]) - float(x[t])) < 2 * step  # and starts where the played audio ends


def test_backward_bridge_ends_on_the_audio_after_the_gap(parts):
    # The pitch glides faster than the forward warp can follow within one packet: cross-faded
    # into the packet after the gap extrapolated backwards, the gap's end matches what follows.
    x = _glide(4000, 140.0, 180.0)
    t = 3000
    truth, after = x[t : t + P], x[t + P : t + 2 * P]
    c = make(parts, lookahead=1)
    c.state.played = x[t - c.state.played.size : t].copy()
    bridge = c._bridge(P, after)
    assert bridge.shape == (P,) and bridge.dtype == np.float32
    end = slice(-P // 4, None)
    assert np.mean((bridge[end] - truth[end]) ** 2) < 0.01 * np.mean(truth[end] ** 2)  # within -20 dB
    # The backward part's period comes from the packet after the gap, searched near the played one.
    period = round(16000 / 175)
    y = np.tile(
        np.sin(2 * np.pi * np.arange(period) / period) + 0.3 * np.sin(6 * np.pi * np.arange(period) / period),
        4,
    )
    assert period_near(y[:P], period + 10) == period
    assert period_near(y[:P], 200, spread=0.1) in range(180, 221)  # stays within the search range


def test_bridge_follows_the_level_and_bridges_noise_too(parts):
    x = _glide(4000, 140.0, 140.0)
    t = 3000
    c = make(parts, lookahead=1)
    c.state.played = x[t - c.state.played.size : t].copy()
    louder = 2.0 * x[t + P : t + 2 * P]
    bridge = c._bridge(P, louder)
    rms = lambda a: float(np.sqrt(np.mean(a**2)))  # noqa: E731
    assert 1.6 < rms(bridge[-80:]) / rms(bridge[:80]) < 2.2
    noise = np.random.default_rng(0).standard_normal(P).astype(np.float32) * 0.1
    assert c._bridge(P, noise).shape == (P,)  # every gap whose end is in view is bridged


def test_lookahead_bridge_changes_only_gaps_that_end_in_view(parts):
    x = voiced(1.0)
    lost = np.zeros(len(x) // P, bool)
    lost[[10, 20, 21, 30, 31, 32, 33, 34, 35]] = True
    lossy = x.copy()
    for i in np.flatnonzero(lost):
        lossy[i * P : (i + 1) * P] = 0
    model = parts[0]
    # The untrained toy MAE's log-mel is noise; a renderer that ignores it (0 dB band-gain
    # limit) isolates what the bridge does to the waveform.
    renderer = PitchGuidedRenderer(model.feature_cfg, n_iter=0, max_gain_db=0.0)

    def run(**cfg):
        c = MAEConcealer(model, renderer, lookahead=1, config=ConcealerConfig(context_packets=12, **cfg))
        return conceal(lossy, lost, c)

    on, off = run(), run(bridge=False)
    err = lambda y, i: float(np.mean((y[i * P : (i + 2) * P] - x[i * P : (i + 2) * P]) ** 2))  # noqa: E731
    assert err(on, 10) < 0.5 * err(off, 10)  # single loss, next packet seen: bridged
    np.testing.assert_array_equal(on[30 * P : 34 * P], off[30 * P : 34 * P])  # end not in view yet


def test_bridged_packets_skip_the_mae(parts):
    x = voiced(0.6)
    lost = np.zeros(len(x) // P, bool)
    lost[[10, 11, 20]] = True  # a 2-packet burst (its 2nd packet bridged) and a single loss (bridged)
    lossy = np.where(np.repeat(lost, P)[: x.size], 0, x).astype(np.float32)
    c = MAEConcealer(parts[0], parts[1], lookahead=1, config=ConcealerConfig(context_packets=12))
    seen = []
    c.predict_logmel = lambda *a, _predict=c.predict_logmel, **k: seen.append(1) or _predict(*a, **k)
    conceal(lossy, lost, c)
    # Every lost packet here is bridged or the first of its burst: none asks the MAE.
    assert len(seen) == 0


def test_lpc_continuation_continues_a_voiced_signal():
    x = _glide(4000, 140.0, 140.0) + 0.002 * np.random.default_rng(0).standard_normal(4000).astype(np.float32)
    t, period = 3000, round(16000 / 140)
    y = lpc_continuation(x[t - 800 : t], period, P)
    truth = x[t : t + P]
    assert y.shape == (P,) and y.dtype == np.float32
    assert np.mean((y - truth) ** 2) < 0.05 * np.mean(truth**2)
    step = np.abs(np.diff(x)).max()
    assert abs(float(y[0]) - float(x[t])) < 2 * step  # joins the history without a seam


def test_extrapolate_continues_what_was_played(parts):
    x = _glide(12 * P, 140.0, 140.0)
    c = make(parts)
    for t in range(10):
        c.push(x[t * P : (t + 1) * P])
    y = c.extrapolate(P // 2)
    truth = x[10 * P : 10 * P + P // 2]
    assert y.shape == (P // 2,) and np.mean((y - truth) ** 2) < 0.05 * np.mean(truth**2)


def test_lpc_continuation_noise_above_keeps_the_low_harmonics_and_the_high_band_level():
    sr, f0 = 16000, 140.0
    phase = 2 * np.pi * f0 * np.arange(4000) / sr
    x = (0.05 * sum(np.sin(k * phase) / np.sqrt(k) for k in range(1, 55))).astype(np.float32)  # to 7.6 kHz
    x += 0.001 * np.random.default_rng(0).standard_normal(x.size).astype(np.float32)
    h, period = x[2200:3000], round(sr / f0)
    pure = lpc_continuation(h, period, 3 * P)
    mixed = lpc_continuation(h, period, 3 * P, noise_above=3000.0, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(
        mixed, lpc_continuation(h, period, 3 * P, noise_above=3000.0, rng=np.random.default_rng(1))
    )

    def band(y, lo, hi):
        spec = np.fft.rfft(y.astype(np.float64))
        f = np.fft.rfftfreq(y.size, 1 / sr)
        spec[(f < lo) | (f >= hi)] = 0
        return np.fft.irfft(spec, y.size)

    def periodicity(y):
        a, b = y[period:], y[:-period]
        return float(a @ b / np.sqrt((a @ a) * (b @ b)))

    low_pure, low_mixed = band(pure, 0, 2500), band(mixed, 0, 2500)
    assert np.mean((low_mixed - low_pure) ** 2) < 0.05 * np.mean(low_pure**2)  # harmonics below kept
    high_pure, high_mixed = band(pure, 3200, 8000), band(mixed, 3200, 8000)
    assert 0.5 < np.mean(high_mixed**2) / np.mean(high_pure**2) < 2.0  # the same power above the cut
    assert periodicity(high_pure) > 0.9 and periodicity(high_mixed) < 0.3  # but noise, not harmonics
    # A longer continuation from the same generator state starts with the same samples (the
    # concealer may ask twice in one packet), excitation noise included.
    longer = lpc_continuation(h, period, 5 * P, noise_above=3000.0, rng=np.random.default_rng(2))
    shorter = lpc_continuation(h, period, 2 * P, noise_above=3000.0, rng=np.random.default_rng(2))
    np.testing.assert_allclose(longer[: 2 * P], shorter, atol=1e-6)


def test_lpc_continuation_decay_follows_a_fading_residual_only():
    x = _glide(4000, 140.0, 140.0) + 0.002 * np.random.default_rng(0).standard_normal(4000).astype(np.float32)
    period = round(16000 / 140)
    envelope = np.exp(np.linspace(0.0, -3.0, 800)).astype(np.float32)  # fades ~26 dB over 50 ms
    fading = x[2200:3000] * envelope
    steady, decayed = (
        lpc_continuation(fading, period, 3 * P),
        lpc_continuation(fading, period, 3 * P, decay=True),
    )
    np.testing.assert_array_equal(decayed[:period], steady[:period])  # the first period is the same
    last = slice(3 * P - period, 3 * P)
    assert np.sum(decayed[last] ** 2) < 0.2 * np.sum(steady[last] ** 2)  # later ones keep fading
    rising = x[2200:3000] * envelope[::-1]  # a residual gaining energy is repeated as it is
    np.testing.assert_array_equal(
        lpc_continuation(rising, period, 3 * P, decay=True), lpc_continuation(rising, period, 3 * P)
    )


def test_recovery_ramp_glues_a_loud_packet_after_a_burst(parts):
    x = _glide(40 * P, 140.0, 150.0)
    x[: 6 * P] = 0.0  # a quiet start sets the comfort-noise level low
    lost = np.zeros(40, bool)
    lost[[10, 20, 21, 22, 23, 24, 25]] = True  # a single loss, then a burst that fades to noise
    lossy = x * ~np.repeat(lost, P)
    ramped, plain = (conceal(lossy, lost, make(parts, recovery_ramp=n)) for n in (160, 0))
    np.testing.assert_array_equal(ramped[: 20 * P], plain[: 20 * P])  # no ramp after a single loss
    start = slice(26 * P + 40, 26 * P + 80)  # after the cross-fade, inside the 160-sample ramp
    assert np.sum(ramped[start] ** 2) < 0.5 * np.sum(plain[start] ** 2)
    np.testing.assert_array_equal(ramped[26 * P + 160 :], plain[26 * P + 160 :])  # then untouched
    with pytest.raises(ValueError, match="recovery_ramp"):
        ConcealerConfig(recovery_ramp=P + 1)


def test_lpc_continuation_edge_cases():
    assert not lpc_continuation(np.zeros(800), 100, P).any()  # silence stays silent
    with pytest.raises(ValueError, match="period"):
        lpc_continuation(np.ones(100), 200, P)


def test_renderer_gain_groups_share_one_gain_per_group(parts):
    features = parts[0].feature_cfg
    guide = voiced(0.1)
    frames = guide.size // features.hop_length
    probe = PitchGuidedRenderer(features, n_iter=0)
    guide_mel = probe._fb @ probe._stft(guide, frames).abs().square()
    tilt = torch.linspace(-1.0, 1.0, guide_mel.shape[1])[None, :, None]  # +-4.3 dB across the bands
    mel = guide_mel.clamp_min(1e-8).log() + tilt
    unknown = np.zeros(frames, bool)

    def rendered(**kw):
        r = PitchGuidedRenderer(features, n_iter=0, max_gain_db=12.0, **kw)
        return r.render(mel, 0, frames, guide, unknown, guide=guide)

    def residual(out):  # what is left after the best single scale of the guide (away from the edges)
        out, ref = out[400:1200], guide[400:1200]
        c = float(out @ ref / (ref @ ref))
        return float(np.sum((out - c * ref) ** 2) / np.sum(out**2))

    assert residual(rendered(gain_groups=1)) < 1e-4  # one broadband gain: a scaled copy
    assert residual(rendered(gain_groups=None)) > 3e-3  # per-band gains reshape the spectrum
    assert residual(rendered()) > 1e-3  # and so do the default 4 band groups, more coarsely
    with pytest.raises(ValueError, match="gain_groups"):
        PitchGuidedRenderer(features, gain_groups=0)


def test_renderer_follows_the_predicted_level(parts):
    features = parts[0].feature_cfg
    guide = voiced(0.1)
    frames = guide.size // features.hop_length
    probe = PitchGuidedRenderer(features, n_iter=0)
    log_guide = (probe._fb @ probe._stft(guide, frames).abs().square()).clamp_min(1e-8).log()
    unknown = np.zeros(frames, bool)

    def power_ratio(offset, **kw):  # rendered power / guide power, away from the edges
        r = PitchGuidedRenderer(features, n_iter=0, max_gain_db=12.0, **kw)
        out = r.render(log_guide + offset, 0, frames, guide, unknown, guide=guide)
        return float(np.mean(out[400:1200] ** 2) / np.mean(guide[400:1200] ** 2))

    # A prediction 4.3 dB louder (offset 1 in natural-log power) or quieter than the guide.
    assert power_ratio(1.0) == pytest.approx(np.e, rel=0.1)
    assert power_ratio(-1.0) == pytest.approx(1 / np.e, rel=0.1)


def test_known_frames_are_those_whose_window_misses_every_lost_sample():
    from audiomae.plc.render import known_frames

    lost = np.zeros(8, bool)
    lost[3] = True  # samples 960..1279; frame i's 400-sample window is centred on 160 i
    unknown = np.flatnonzero(~known_frames(lost, 2, hop=160, win_length=400))
    # frame 5 reaches 40 samples into the gap, 6-7 are the gap's own, 8 straddles its end and
    # frame 9 (centre 1440) still starts 40 samples before the gap ends
    np.testing.assert_array_equal(unknown, [5, 6, 7, 8, 9])


def test_int8_mae_matches_fp32_closely_and_leaves_the_model_alone(parts, monkeypatch):
    model = parts[0]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    q = int8_copy(model)
    assert q is not model and any("quantized" in type(m).__module__ for m in q.modules())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    _, lossy, lost = lossy_signal(rate=0.2, seed=3)
    packets = [None if bad else lossy[i * P : (i + 1) * P] for i, bad in enumerate(lost)]
    c8, c32 = make(parts, mae_from_packet=1), make(parts, int8=False, mae_from_packet=1)
    assert c32.model is model and c8.model is not model
    out8 = np.concatenate([c8.push(p) for p in packets])
    out32 = np.concatenate([c32.push(p) for p in packets])
    err = np.sqrt(np.mean((out8 - out32) ** 2)) / np.sqrt(np.mean(out32**2))
    assert 0 < err < 0.1  # different arithmetic, same concealment
    # A torch without quantised kernels: fp32 with a warning, not an error.
    import torch.ao.quantization as tq

    def broken(*a, **k):
        raise RuntimeError("no quantized engine")

    monkeypatch.setattr(tq, "quantize_dynamic", broken)
    with pytest.warns(UserWarning, match="int8 MAE unavailable"):
        assert int8_copy(model) is model


def test_mae_shapes_lost_packets_from_the_configured_burst_position(parts):
    model, vocoder = parts
    torch.manual_seed(1)
    other = AudioMAE(model.cfg, norm=model.norm).eval()  # same shape, different weights
    _, lossy, _ = lossy_signal(seconds=1.2, rate=0.0)
    lost = np.zeros(len(lossy) // P, dtype=bool)
    lost[[20, 30, 31, 32]] = True  # one single loss, one 3-packet burst
    for i in np.flatnonzero(lost):
        lossy[i * P : (i + 1) * P] = 0

    def run(m, **cfg):
        c = MAEConcealer(m, vocoder, config=ConcealerConfig(context_packets=12, **cfg))
        return conceal(lossy, lost, c)

    a, b = run(model), run(other)  # default: the MAE from the 2nd lost packet of a burst on
    single, burst_first, burst_rest = slice(20 * P, 21 * P), slice(30 * P, 31 * P), slice(31 * P, 33 * P)
    np.testing.assert_array_equal(a[single], b[single])
    np.testing.assert_array_equal(a[burst_first], b[burst_first])
    assert not np.allclose(a[burst_rest], b[burst_rest])
    a1, b1 = run(model, mae_from_packet=1), run(other, mae_from_packet=1)
    assert not np.allclose(a1[single], b1[single])
    # None (the ``lpc`` method): no lost packet depends on the MAE.
    np.testing.assert_array_equal(run(model, mae_from_packet=None), run(other, mae_from_packet=None))
    with pytest.raises(ValueError, match="mae_from_packet"):
        ConcealerConfig(mae_from_packet=0)


def test_reset_replaces_the_stream_state(parts):
    from audiomae.plc.mae import StreamState

    _, lossy, lost = lossy_signal(seed=2)
    c = make(parts, lookahead=1)
    first = conceal(lossy, lost, c)
    state = c.state
    assert isinstance(state, StreamState) and not state.levels  # conceal() ends with flush -> reset
    for i in range(8):
        c.push(None if lost[i] else lossy[i * P : (i + 1) * P])
    assert c.state.levels
    c.reset()
    assert c.state is not state and not c.state.levels and c.state.burst == 0 and c.state.tail is None
    np.testing.assert_array_equal(conceal(lossy, lost, c), first)  # a fresh state: the same output


def test_hooks_see_each_mae_window_and_may_replace_a_lost_packet(parts):
    from audiomae.plc.mae import FADE, ConcealerHooks

    x = voiced(1.0)
    lost = np.zeros(len(x) // P, bool)
    lost[[20, 30, 31, 32]] = True
    lossy = x * ~np.repeat(lost, P)[: x.size]
    seen, asked = [], []

    class Hooks(ConcealerHooks):
        def logmel(self, window, predicted):
            seen.append((window.index, window.burst, window.start, window.wave.size))
            return predicted

        def replace(self, packet):
            asked.append((packet.index, packet.burst, packet.bridged, packet.size))
            return np.full(packet.size, 0.5, np.float32) if packet.index == 31 else None

    plain = conceal(lossy, lost, make(parts, mae_from_packet=1))
    c = MAEConcealer(
        parts[0], parts[1], config=ConcealerConfig(context_packets=12, mae_from_packet=1), hooks=Hooks()
    )
    out = conceal(lossy, lost, c)
    assert [(t, b) for t, b, _, _ in seen] == [(20, 1), (30, 1), (31, 2), (32, 3)]
    assert all(start == (t - c.history_packets) * P and size == 12 * P for t, _, start, size in seen)
    assert asked == [(t, b, False, P + FADE) for t, b in ((20, 1), (30, 1), (31, 2), (32, 3))]
    np.testing.assert_array_equal(out[: 31 * P], plain[: 31 * P])  # a hook that returns None changes nothing
    np.testing.assert_array_equal(out[31 * P + FADE : 32 * P], 0.5)  # the replacement, after the cross-fade


def test_reshape_hook_gets_each_rendering_and_what_it_returns_is_played():
    from audiomae.plc.mae import FADE, LPC_DEFAULTS, ConcealerHooks

    x = voiced(1.0)
    lost = np.zeros(len(x) // P, bool)
    lost[[20, 30, 31]] = True
    lossy = x * ~np.repeat(lost, P)[: x.size]
    asked = []

    class Hooks(ConcealerHooks):
        def reshape(self, packet, audio):
            asked.append((packet.index, packet.burst, packet.bridged, audio.size))
            return audio * 0 if packet.index == 20 else audio

    config = ConcealerConfig(**LPC_DEFAULTS)
    plain = conceal(lossy, lost, MAEConcealer(lookahead=1, config=config))
    out = conceal(lossy, lost, MAEConcealer(lookahead=1, config=config, hooks=Hooks()))
    # With one packet of lookahead a gap's last packet is bridged to the packet after it.
    assert asked == [(20, 1, True, P + FADE), (30, 1, False, P + FADE), (31, 2, True, P + FADE)]
    np.testing.assert_array_equal(out[20 * P + FADE : 21 * P], 0.0)  # bridged: no fade, no comfort noise
    np.testing.assert_array_equal(out[22 * P :], plain[22 * P :])  # unchanged audio plays as before


@pytest.fixture
def no_model_loading(monkeypatch):
    """Every way a concealer gets its model's weights raises."""
    import audiomae.plc.models as models
    import audiomae.runtime.model as runtime

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    for module, name in (
        (models, "_cached_default_model"),
        (models, "load_default_plc_model"),
        (models, "int8_copy"),
        (runtime, "load_default_onnx_model"),
    ):
        monkeypatch.setattr(module, name, refuse)
    monkeypatch.setattr(AudioMAE, "from_pretrained", classmethod(refuse))
    monkeypatch.setattr(runtime.OnnxPLCModel, "__init__", refuse)


@pytest.mark.parametrize("backend", [None, "onnx"])
@pytest.mark.parametrize("method", ["lpc", "lpc-la1"])
def test_model_free_methods_load_no_model(no_model_loading, method, backend):
    """``lpc`` is the MAE concealer with the MAE switched off: building and running it neither
    loads the model nor makes its int8 copy (its geometry comes from the config)."""
    x = voiced(1.0)
    lost = np.zeros(50, bool)
    lost[[5, 12, 13, 14, 30, 31, 32, 33, 34, 35, 36, 37, 38, 45]] = True
    lossy = np.where(np.repeat(lost, P), 0, x).astype(np.float32)
    concealer = make_concealer(method, backend=backend)
    y = conceal(lossy, lost, concealer)
    assert y.shape == x.shape and np.abs(y[np.repeat(lost, P)]).max() > 0.01
    assert not concealer._model.loaded


def test_the_model_is_loaded_when_the_concealer_is_built_if_it_runs():
    """A method that runs its model loads it up front, not at the first lost packet (a receive
    path would stall there); the geometry read from the config is the loaded model's."""
    from audiomae.plc.models import ModelSpec

    concealer = make_concealer("mae")
    assert concealer._model.loaded
    assert concealer.spec == ModelSpec.of(concealer.model)
    assert concealer.spec == ModelSpec.of(make_concealer("mae", backend="onnx").model)
