import warnings

import numpy as np
import pytest

from audiomae.audio import SAMPLE_RATE, SAMPLES_PER_PACKET
from audiomae.eval.metrics import lsd_lost, pesq_wb, plcmos, stoi
from audiomae.loss_models import apply_loss


def speechlike(seconds=3.0, seed=0):
    """Harmonic tone with a gliding pitch and syllable-rate envelope, plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    phase = 2 * np.pi * np.cumsum(130 + 40 * np.sin(2 * np.pi * 0.8 * t)) / SAMPLE_RATE
    x = sum(np.sin(k * phase) / k for k in range(1, 20))
    env = np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None)
    return (0.15 * env * x + 0.002 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def pair():
    ref = speechlike()
    lost = np.zeros(-(-ref.size // SAMPLES_PER_PACKET), bool)
    lost[20:24] = lost[80:83] = True
    return ref, apply_loss(ref, lost), lost


def test_pesq_matches_library(pair):
    pesq = pytest.importorskip("pesq")
    ref, deg, _ = pair
    assert pesq_wb(ref, deg) == pytest.approx(pesq.pesq(SAMPLE_RATE, ref, deg, "wb"))


def test_stoi_matches_library(pair):
    pystoi = pytest.importorskip("pystoi")
    ref, deg, _ = pair
    assert stoi(ref, deg) == pytest.approx(pystoi.stoi(ref, deg, SAMPLE_RATE))
    assert stoi(ref, deg, extended=True) == pytest.approx(pystoi.stoi(ref, deg, SAMPLE_RATE, extended=True))


def test_plcmos_matches_library_and_is_reproducible(pair):
    speechmos_plcmos = pytest.importorskip("speechmos.plcmos")
    _, deg, _ = pair
    np.random.seed(123)
    expected = speechmos_plcmos.run(deg, sr=SAMPLE_RATE)["plcmos"]
    np.random.seed(5)
    before = np.random.get_state()[1].copy()
    assert plcmos(deg, seed=123) == pytest.approx(expected, rel=1e-5)
    assert np.array_equal(np.random.get_state()[1], before)  # caller's random state untouched
    assert plcmos(deg) == plcmos(deg)


def test_lsd_lost():
    rng = np.random.default_rng(0)
    ref = (0.1 * rng.standard_normal(SAMPLE_RATE)).astype(np.float32)
    lost = np.zeros(SAMPLE_RATE // SAMPLES_PER_PACKET, bool)
    lost[10:13] = True
    assert lsd_lost(ref, ref, lost) == 0.0
    # Damage outside the lost packets does not count; inside it does.
    outside = ref.copy()
    outside[30 * SAMPLES_PER_PACKET : 40 * SAMPLES_PER_PACKET] = 0
    assert lsd_lost(ref, outside, lost) == 0.0
    inside = apply_loss(ref, lost)
    assert lsd_lost(ref, inside, lost) > 20
    assert lsd_lost(ref, 0.5 * ref, lost) == pytest.approx(20 * np.log10(2), rel=1e-6)
    assert np.isnan(lsd_lost(ref, inside, np.zeros_like(lost)))
    with pytest.raises(ValueError, match="needs 50"):
        lsd_lost(ref, ref, lost[:20])


def test_edge_cases_give_nan_with_warning():
    silent = np.zeros(SAMPLE_RATE, np.float32)
    noise = np.random.default_rng(0).standard_normal(SAMPLE_RATE).astype(np.float32) * 0.1
    with pytest.warns(RuntimeWarning, match="silent"):
        assert np.isnan(pesq_wb(silent, noise))
    with pytest.warns(RuntimeWarning, match="silent"):
        assert np.isnan(stoi(silent, noise))
    with pytest.warns(RuntimeWarning, match="PESQ: not defined for a 0.062 s clip"):
        assert np.isnan(pesq_wb(noise[:1000], noise[:1000]))
    with pytest.raises(ValueError, match="must match"):
        pesq_wb(noise, noise[:-1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isfinite(plcmos(silent))


@pytest.mark.parametrize("seconds", [0.005, 0.05, 0.3])
def test_metrics_on_short_clips_say_which_is_undefined_and_why(seconds):
    # Below each metric's minimum the library used to fail inside pystoi or onnxruntime, or
    # report STOI 0.000 (pystoi's 1e-5) for FSDD-length digits.
    x = np.random.default_rng(1).standard_normal(int(seconds * SAMPLE_RATE)).astype(np.float32) * 0.1
    for name, fn, args in (("PESQ", pesq_wb, (x, x)), ("STOI", stoi, (x, x)), ("PLCMOS", plcmos, (x,))):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = fn(*args)
        if seconds < {"PESQ": 0.25, "STOI": 0.3968, "PLCMOS": 0.1}[name]:
            assert np.isnan(value), name
            assert any(f"{name}: not defined for a {seconds:.3f} s clip" in str(w.message) for w in caught)
        else:
            assert np.isfinite(value), name


def test_stoi_of_a_clip_that_is_mostly_silence_is_undefined_not_zero():
    x = np.zeros(SAMPLE_RATE, np.float32)
    x[:1600] = np.random.default_rng(2).standard_normal(1600) * 0.1  # 0.1 s of sound in 1 s
    with pytest.warns(RuntimeWarning, match="STOI: not defined for this clip: fewer than 30 frames"):
        assert np.isnan(stoi(x, x))
