"""Speech parameters per frame (audiomae.plc.params) and the continuation that follows them."""

import numpy as np
import pytest

from audiomae.audio import HOP_LENGTH, SAMPLE_RATE
from audiomae.plc.dsp import find_pitch, lpc_continuation, period_near
from audiomae.plc.mae import ConcealerConfig, ConcealerHooks, MAEConcealer
from audiomae.plc.params import (
    BAND_EDGES_HZ,
    FrameParams,
    band_energies,
    band_weights,
    extract_params,
    shape_frames,
    steered_continuation,
)
from audiomae.runtime.features import stft

pytest.importorskip("librosa")


def harmonic_tone(f0: float, seconds: float = 1.0, top: float = 8000.0, seed: int = 0) -> np.ndarray:
    """Harmonics of ``f0`` up to ``top`` Hz with amplitudes 1/h and random phases."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    phases = np.random.default_rng(seed).uniform(0, 2 * np.pi, 200)
    harmonics = [h for h in range(1, 200) if h * f0 < top]
    return 0.1 * sum(np.sin(2 * np.pi * h * f0 * t + phases[h]) / h for h in harmonics)


def highpassed_noise(cutoff: float, n: int, seed: int = 1) -> np.ndarray:
    from scipy.signal import firwin, lfilter

    white = np.random.default_rng(seed).standard_normal(n)
    return lfilter(firwin(255, cutoff, pass_zero=False, fs=SAMPLE_RATE), [1.0], white)


@pytest.mark.parametrize("f0", [110.0, 180.0, 260.0])
def test_pitch_of_a_harmonic_tone(f0):
    params = extract_params(harmonic_tone(f0))
    inner = params.period[5:-5]
    assert np.isfinite(inner).mean() > 0.95
    assert np.nanmedian(inner) == pytest.approx(SAMPLE_RATE / f0, rel=0.02)


def test_frames_and_shapes():
    x = harmonic_tone(150.0, seconds=0.5)
    params = extract_params(x)
    frames = 1 + x.size // HOP_LENGTH
    assert params.period.shape == params.cutoff.shape == params.level_db.shape == (frames,)
    assert params.band_db.shape == (frames, len(BAND_EDGES_HZ))
    only = params.only("period", "level_db")
    assert only.given == ("period", "level_db") and only.cutoff is None
    with pytest.raises(ValueError):
        params.only("pitch")


def test_voicing_of_noise_and_tone():
    noise = extract_params(0.1 * np.random.default_rng(0).standard_normal(SAMPLE_RATE))
    assert np.mean(noise.cutoff == 0) > 0.9
    assert np.isfinite(noise.period).mean() < 0.1
    tone = extract_params(harmonic_tone(140.0))
    assert np.median(tone.cutoff[5:-5]) >= 6000
    # Harmonics below 1.5 kHz, noise above 2 kHz: the cut-off lands between them.
    mixed = harmonic_tone(140.0, top=1500.0) + 0.05 * highpassed_noise(2000.0, SAMPLE_RATE)
    assert np.median(extract_params(mixed).cutoff[5:-5]) in (1500.0, 2000.0)


def test_band_energies_against_direct_computation():
    from audiomae.config import FeatureConfig

    x = np.random.default_rng(2).standard_normal(4000) * np.linspace(0.01, 1.0, 4000)
    bands = band_energies(x)
    power = np.abs(stft(x, FeatureConfig())) ** 2  # (bins, T)
    freqs = np.arange(power.shape[0]) * SAMPLE_RATE / FeatureConfig().n_fft
    frame = 12
    # Band 5 (1 kHz) directly: its triangle from 800 to 1200 Hz.
    tri = np.clip(1 - np.abs(freqs - 1000.0) / 200.0, 0, 1)
    assert bands[frame, 5] == pytest.approx(float(tri @ power[:, frame]), rel=1e-9)
    # The bands partition every bin: they add up to the frame energy.
    np.testing.assert_allclose(band_weights().sum(0), 1.0, atol=1e-12)
    np.testing.assert_allclose(bands.sum(1), power.sum(0), rtol=1e-9)
    params = extract_params(x)
    np.testing.assert_allclose(params.level_db, 10 * np.log10(power.sum(0) + 1e-10), atol=1e-9)


def _history_and_period(seconds: float = 0.05):
    x = (
        harmonic_tone(150.0, seconds=seconds) + 0.001 * highpassed_noise(100.0, int(seconds * SAMPLE_RATE))
    ).astype(np.float32)
    return x, find_pitch(x)


@pytest.mark.parametrize("noise_above", [3000.0, 1000.0, None])
def test_a_constant_contour_plays_the_lpc_continuation(noise_above):
    history, period = _history_and_period()
    frames = 120
    cutoff = np.full(frames, 8000.0 if noise_above is None else noise_above)
    kwargs = {"order": 24, "decay": True, "noise_above": noise_above}
    plain = lpc_continuation(history, period, 960, rng=np.random.default_rng([0, 3]), **kwargs)
    for given in (
        FrameParams(period=np.full(frames, 93.0), cutoff=cutoff),
        FrameParams(period=np.full(frames, 93.0)),
        FrameParams(cutoff=np.full(frames, np.nan)),  # NaN: the concealer's own cut-off
    ):
        steered = steered_continuation(
            history, period, 960, given, start=800, rng=np.random.default_rng([0, 3]), **kwargs
        )
        np.testing.assert_allclose(steered, plain, atol=1e-5)


def test_the_period_follows_the_contour():
    history, period = _history_and_period()
    rising = FrameParams(period=np.where(np.arange(200) < 10, 100.0, 115.0))  # +15% from frame 10 on
    out = steered_continuation(history, period, 1600, rising, start=800, order=24)
    assert period_near(out[1000:], period, spread=0.3) == pytest.approx(1.15 * period, abs=2)


def test_voicing_cutoff_turns_harmonics_into_noise():
    from scipy.signal import firwin, lfilter

    history, period = _history_and_period()

    def periodicity_above_2khz(cutoff):
        given = FrameParams(period=np.full(200, 100.0), cutoff=np.full(200, cutoff))
        out = steered_continuation(
            history, period, 1600, given, start=800, order=24, rng=np.random.default_rng(0)
        )
        y = lfilter(firwin(255, 2000.0, pass_zero=False, fs=SAMPLE_RATE), [1.0], out)[400:]
        return max(
            float(y[lag:] @ y[:-lag]) / np.sqrt(float(y[lag:] @ y[lag:]) * float(y[:-lag] @ y[:-lag]))
            for lag in range(period - 1, period + 2)
        )

    assert periodicity_above_2khz(8000.0) > 0.95
    assert periodicity_above_2khz(1000.0) < 0.3
    assert periodicity_above_2khz(0.0) < 0.3


@pytest.mark.parametrize("field", ["band_db", "level_db"])
def test_shaping_reaches_the_given_energies(field):
    history, period = _history_and_period()
    cont = lpc_continuation(history, period, 960, order=24)
    start, frames = 800, 200
    target = band_energies(np.concatenate([history, cont]))
    target_db = 10 * np.log10(target + 1e-10) + np.linspace(-6, 6, len(BAND_EDGES_HZ))  # a tilt
    given = (
        FrameParams(band_db=target_db[:frames])
        if field == "band_db"
        else FrameParams(level_db=np.full(frames, 15.0))
    )
    out = shape_frames(history, cont, given, start)
    got = 10 * np.log10(band_energies(np.concatenate([history, out])) + 1e-10)
    inner = slice(7, 10)  # frames centred inside the continuation, away from its ends
    if field == "band_db":
        np.testing.assert_allclose(got[inner], target_db[inner], atol=1.5)
    else:
        np.testing.assert_allclose(10 * np.log10((10 ** (got[inner] / 10)).sum(1)), 15.0, atol=1.0)
    # Before the continuation nothing changes.
    np.testing.assert_allclose(got[:3], 10 * np.log10(target[:3] + 1e-10), atol=1e-3)


def test_max_boost_db_zero_only_lowers_bands():
    history, period = _history_and_period()
    cont = lpc_continuation(history, period, 960, order=24)
    start, frames = 800, 200
    own = 10 * np.log10(band_energies(np.concatenate([history, cont])) + 1e-10)
    target_db = own + np.where(np.arange(len(BAND_EDGES_HZ)) < 9, 8.0, -8.0)  # low bands up, high down
    given = FrameParams(band_db=target_db[:frames], max_boost_db=0.0)
    out = shape_frames(history, cont, given, start)
    got = 10 * np.log10(band_energies(np.concatenate([history, out])) + 1e-10)
    inner = slice(7, 10)
    np.testing.assert_allclose(got[inner, 11:], target_db[inner, 11:], atol=1.5)  # lowered as asked
    assert (got[inner, :6] < own[inner, :6] + 1.5).all()  # not raised (a little leaks from the cut bands)


class _Given(ConcealerHooks):
    def __init__(self, params):
        self.given = params

    def params(self, start, n):
        return self.given


def test_the_concealer_follows_given_params_through_its_hook():
    x = np.tile(harmonic_tone(150.0, seconds=0.5), 2).astype(np.float32)
    lost = np.zeros(x.size // 320, dtype=bool)
    lost[10:13] = True
    from audiomae.plc import conceal

    config = ConcealerConfig(mae_from_packet=None, full_level_packets=2)
    plain = conceal(x, lost, MAEConcealer(config=config))
    params = extract_params(x)
    same = conceal(x, lost, MAEConcealer(config=config, hooks=ConcealerHooks()))
    np.testing.assert_array_equal(same, plain)  # a hook that gives nothing changes nothing
    louder = FrameParams(level_db=params.level_db + 6.0)
    steered = conceal(x, lost, MAEConcealer(config=config, hooks=_Given(louder)))
    np.testing.assert_array_equal(steered[: 10 * 320], plain[: 10 * 320])
    gap = slice(10 * 320 + 40, 12 * 320)
    ratio = np.sqrt(np.mean(steered[gap] ** 2) / np.mean(plain[gap] ** 2))
    assert ratio > 1.5
