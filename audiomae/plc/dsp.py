"""Signal processing shared by the concealers: pitch search, LPC continuation, fades.

Plain functions on numpy arrays (float samples at ``SAMPLE_RATE``), no concealer state.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from audiomae.audio import SAMPLE_RATE

# G.711 Appendix I's pitch search, in ms (scaled from its 8 kHz to any rate).
PITCH_MIN_MS = 5.0
PITCH_MAX_MS = 15.0
PITCH_CORR_MS = 20.0  # the stretch of history correlated with itself one period earlier
COARSE_RATE = 4000  # the coarse search runs at 4 kHz (every rate // 4000-th sample and lag)
_MIN_POWER = 250.0 / 80 / 32768.0**2  # App. I CORRMINPOWER, per correlation term, float scale


def raised_cosine(n: int) -> np.ndarray:
    """Raised-cosine fade-in of ``n`` samples; ``1 - raised_cosine(n)`` is the matching fade-out
    (the two sum to one)."""
    return (0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)).astype(np.float32)


def linear_crossfade(fade_out: np.ndarray, fade_in: np.ndarray) -> np.ndarray:
    """Linear overlap-add as in G.711 App. I: the last sample is all ``fade_in``."""
    w = np.arange(1, fade_out.size + 1) / fade_out.size
    return (1.0 - w) * fade_out + w * fade_in


def find_pitch(history: np.ndarray, sample_rate: int = SAMPLE_RATE) -> int:
    """Pitch period in samples (5-15 ms) maximising the normalised cross-correlation.

    The last 20 ms of ``history`` is correlated with the history ``P`` samples earlier; the
    coarse search runs at 4 kHz (every ``rate // 4000``-th sample and lag), the fine search at
    full rate around the coarse best. Ties go to the shorter period, as in G.711 App. I.
    """
    ms = sample_rate / 1000.0
    pitch_min, pitch_max = round(PITCH_MIN_MS * ms), round(PITCH_MAX_MS * ms)
    corr_len = round(PITCH_CORR_MS * ms)
    h = np.asarray(history, dtype=np.float64)
    end = h.size
    target = h[end - corr_len :]

    def score(pitch: int, step: int) -> float:
        ref = h[end - corr_len - pitch : end - pitch : step]
        energy = max(float(ref @ ref), _MIN_POWER * ref.size)
        return float(target[::step] @ ref) / math.sqrt(energy)

    def best(pitches: range, step: int) -> int:
        # Scanning from the longest period with >= keeps the shortest of equal scores.
        top, top_score = pitches[0], -math.inf
        for p in pitches:
            s = score(p, step)
            if s >= top_score:
                top, top_score = p, s
        return top

    d = max(1, sample_rate // COARSE_RATE)
    coarse = best(range(pitch_max, pitch_min - 1, -d), d)
    lo, hi = max(pitch_min, coarse - (d - 1)), min(pitch_max, coarse + (d - 1))
    return best(range(hi, lo - 1, -1), 1)


def period_near(x: np.ndarray, guess: int, spread: float = 0.2, min_overlap: int = 80) -> int:
    """The lag within ``guess`` +-``spread`` at which ``x`` best correlates with itself
    (normalised), keeping ``min_overlap`` samples of overlap; ``guess`` if none fits."""
    x = np.asarray(x, dtype=np.float64)
    lags = range(max(2, int(guess * (1 - spread))), min(x.size - min_overlap, int(guess * (1 + spread))) + 1)
    best, best_score = guess, -np.inf
    for lag in lags:
        a, b = x[lag:], x[:-lag]
        score = float(a @ b) / (np.sqrt(float(a @ a) * float(b @ b)) + 1e-12)
        if score > best_score:
            best, best_score = lag, score
    return best


def lpc_source(history: np.ndarray, period: int, order: int, analysis: int, sample_rate: int):
    """What a continuation of ``history`` repeats: (inverse filter, LPC residual of ``history``,
    the synthesis filter's state at its end, the residual's last ``period`` samples); None for
    silence (nothing to model)."""
    from scipy.signal import lfilter, lfiltic

    h = np.asarray(history, dtype=np.float64)
    if not 0 < period <= h.size - order:
        raise ValueError(f"need a period in (0, {h.size - order}] samples for this history, got {period}")
    inverse = lpc_inverse_filter(h, order, analysis, sample_rate)
    if inverse is None:
        return None
    residual = lfilter(inverse, [1.0], h)
    return inverse, residual, lfiltic([1.0], inverse, h[::-1][:order]), residual[-period:]


def lpc_continuation(
    history: np.ndarray,
    period: int,
    n: int,
    order: int = 16,
    analysis: int = 480,
    sample_rate: int = SAMPLE_RATE,
    rng: np.random.Generator | None = None,
    decay: bool = False,
    noise_above: float | None = None,
) -> np.ndarray:
    """``n`` samples continuing ``history`` by linear prediction with a pitch-periodic excitation.

    An LPC filter of ``order`` is fitted to the last ``analysis`` samples (Hann window, 60 Hz
    Gaussian lag window, 0.994 bandwidth expansion); the last ``period`` samples of the history's
    residual are repeated and run through the synthesis filter starting from the history's
    last samples, so the output joins the history without a seam, keeps its spectral envelope,
    and the filter's ringing smooths each wrap of the period.

    ``decay``: the repeated period loses energy, period by period, at the rate the residual's
    last period lost against the one before (CELT's PLC does this; a rising residual repeats
    as it is). ``noise_above`` (Hz): the repeated period keeps only its harmonics below this
    frequency; above it the excitation is noise from ``rng`` with the same power there (a mixed
    excitation, as MELP vocoders use: exactly repeated high harmonics sound buzzy). A longer
    continuation from the same ``rng`` state begins with the same samples."""
    source = lpc_source(history, period, order, analysis, sample_rate)
    if source is None:  # silence: nothing to model
        return np.zeros(n, dtype=np.float32)
    from scipy.signal import lfilter

    inverse, residual, state, cycle = source
    high = 0.0  # the noise above the cut-off, if any
    if noise_above is not None:
        # The noise generator's seed is the first of two numbers drawn from ``rng``.
        noise_rng = np.random.default_rng((rng or np.random.default_rng(0)).integers(2**62, size=2)[0])
        cycle, high = _mixed_excitation(cycle, n, float(noise_above), sample_rate, noise_rng)
    excitation = np.resize(cycle, n) + high
    if decay and residual.size >= 2 * period:
        # A residual whose last period is weaker than the one before it keeps losing energy at
        # that rate, period by period (never gaining).
        e1 = float(residual[-period:] @ residual[-period:]) + 1e-12
        e2 = float(residual[-2 * period : -period] @ residual[-2 * period : -period]) + 1e-12
        excitation = excitation * np.sqrt(min(e1, e2) / e2) ** (np.arange(n) // period)
    out, _ = lfilter([1.0], inverse, excitation, zi=state)
    return out.astype(np.float32)


def lpc_inverse_filter(h: np.ndarray, order: int, analysis: int, sample_rate: int) -> np.ndarray | None:
    """The LPC analysis filter ``[1, -a1, ..., -a_order]`` of the last ``analysis`` samples of
    ``h``, or None where they are silent."""
    from scipy.linalg import solve_toeplitz

    seg = h[-min(h.size, analysis) :] * np.hanning(min(h.size, analysis))
    r = np.array([seg[: seg.size - k] @ seg[k:] for k in range(order + 1)])
    if r[0] <= 1e-10 * seg.size:
        return None
    r = r * np.exp(-0.5 * (2 * np.pi * 60.0 * np.arange(order + 1) / sample_rate) ** 2)
    r[0] *= 1.0001  # white-noise correction keeps the system well conditioned
    a = solve_toeplitz(r[:order], r[1:]) * 0.994 ** np.arange(1, order + 1)
    return np.concatenate([[1.0], -a])


def _mixed_excitation(
    cycle: np.ndarray, n: int, cutoff: float, sample_rate: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``cycle`` low-passed at ``cutoff`` (its harmonics above it removed) and ``n`` samples of
    high-passed noise with the power the cycle had above the cut-off."""
    from scipy.signal import lfilter

    period = cycle.size
    spectrum = np.fft.rfft(cycle)
    cut = int(round(cutoff * period / sample_rate))
    power = 2.0 * float(np.sum(np.abs(spectrum[cut:]) ** 2)) / period**2  # mean power above the cut
    spectrum[cut:] = 0.0
    taps = highpass_taps(cutoff, sample_rate)
    white = rng.standard_normal(n + taps.size - 1)
    high = lfilter(taps, [1.0], white)[taps.size - 1 :] * np.sqrt(power / float(taps @ taps))
    return np.fft.irfft(spectrum, period), high


@functools.lru_cache
def highpass_taps(cutoff: float, sample_rate: int) -> np.ndarray:
    """Taps of a linear-phase FIR high-pass (63 taps, ~0.8 kHz transition at 16 kHz)."""
    from scipy.signal import firwin

    return firwin(63, cutoff, pass_zero=False, fs=sample_rate)


__all__ = [
    "find_pitch",
    "highpass_taps",
    "linear_crossfade",
    "lpc_continuation",
    "lpc_inverse_filter",
    "period_near",
    "raised_cosine",
]
