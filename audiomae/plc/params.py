"""Speech parameters per 10 ms frame, and a continuation that follows given ones.

What the LPC continuation (:func:`~audiomae.plc.dsp.lpc_continuation`) decides by fixed rules
can instead be given, frame by frame: the pitch period, the frequency up to which the
excitation is harmonic (voicing), the energy of fine frequency bands and the frame level. These
are the parameters Opus' deep PLC predicts every 10 ms; :func:`extract_params` measures them on
a signal, :func:`steered_continuation` plays a continuation that follows them:

* **pitch** (``period``): the repeated period of the LPC residual is read at a varying rate,
  so its period follows the given contour's shape, anchored at the period the concealer found
  (the contour's ratio to its value where the continuation starts). A tracker's octave (or
  the G.711 search's multiple of the period) therefore does not matter, only how the period
  moves.
* **voicing** (``cutoff``): harmonics up to the frame's cut-off, noise of the same power above
  it, instead of the concealer's fixed cut-off.
* **bands** (``band_db``): the continuation's STFT is scaled so each of :data:`BAND_EDGES_HZ`'s
  18 triangular bands (Opus' / LPCNet's band layout) has the given energy.
* **level** (``level_db``): one gain per frame so the frame's energy is the given one (implied
  by ``band_db``: the bands add up to the level).

Frame ``k`` is centred on sample ``k * hop`` (the log-mel front end's frames, 10 ms hop); a
:class:`FrameParams` field left None is not given, and the concealer's own rule holds for it.

The pitch tracker is pYIN (``librosa.pyin``; Mauch & Dixon, 2014): YIN's difference function
gives pitch candidates per frame and a hidden Markov model picks a smooth path through them
with a voiced / unvoiced state. Plain YIN decides frame by frame and jumps an octave where the
difference function has two near-equal dips; the concealer's own G.711 search looks only at
5-15 ms (no period under 5 ms, which many female voices have) and has no voicing decision.
Extraction runs offline (oracles, training targets), so pYIN's cost (about 0.6 s per second of
audio on one thread) does not matter; it needs the ``train`` extra (librosa).

The voicing cut-off follows MELP's band voicing: the signal is split into the bands of
:data:`VOICING_EDGES_HZ`; a band is voiced where its normalised correlation one pitch period
apart (best of the three lags around it) reaches :data:`VOICING_THRESHOLD`; the cut-off is the
top edge of the run of voiced bands from the lowest one up (0 in unvoiced frames).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np

from audiomae.audio import HOP_LENGTH, SAMPLE_RATE
from audiomae.config import FeatureConfig

# Centres of Opus' (LPCNet's) 18 triangular bands at 16 kHz: 200 Hz apart up to 1.6 kHz, wider above.
BAND_EDGES_HZ = (
    0,
    200,
    400,
    600,
    800,
    1000,
    1200,
    1400,
    1600,
    2000,
    2400,
    2800,
    3200,
    4000,
    4800,
    5600,
    6800,
    8000,
)
# Upper edges of the bands whose periodicity decides the voicing cut-off (the first starts at 0 Hz).
VOICING_EDGES_HZ = (500, 1000, 1500, 2000, 2500, 3000, 4000, 5000, 6000, 8000)
VOICING_THRESHOLD = 0.5  # a band's correlation one period apart from which it counts as harmonic
VOICING_WINDOW = 320  # samples (20 ms) correlated around each frame's centre
PITCH_FMIN, PITCH_FMAX = 60.0, 400.0  # pYIN's search range in Hz
PITCH_FRAME = 1024  # pYIN's analysis frame (64 ms: at least three periods of the lowest pitch)
FIELDS = ("period", "cutoff", "band_db", "level_db")
_DB_FLOOR = 1e-10  # power floor before taking dB (-100 dB)


@dataclass(frozen=True)
class FrameParams:
    """Speech parameters per frame; frame ``k`` of the arrays is centred on sample
    ``(first + k) * hop`` of the stream. A field that is None is not given.

    ``period``: ``(T,)`` pitch period in samples, NaN where unvoiced.
    ``cutoff``: ``(T,)`` Hz up to which the excitation is harmonic (0: noise only; NaN: the
    concealer's own cut-off in that frame).
    ``band_db``: ``(T, len(BAND_EDGES_HZ))`` energy of each band, dB of STFT power.
    ``level_db``: ``(T,)`` frame energy, dB of STFT power (the bands' sum).
    ``trust``: ``(T,)`` how far each frame's band or level gains are applied, 0 to 1 (a
    predicted energy applied as far as its predictor is confident); None: fully. A frame whose
    target is NaN keeps its own energy.
    ``max_boost_db``: the most a band or level gain may raise the continuation (0: it may only
    lower it); None: up to the shaping's own limit.
    """

    period: np.ndarray | None = None
    cutoff: np.ndarray | None = None
    band_db: np.ndarray | None = None
    level_db: np.ndarray | None = None
    first: int = 0
    hop: int = HOP_LENGTH
    trust: np.ndarray | None = None
    max_boost_db: float | None = None

    def only(self, *fields: str) -> FrameParams:
        """A copy that gives only ``fields`` (names in :data:`FIELDS`)."""
        unknown = set(fields) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown parameters {sorted(unknown)}; known: {FIELDS}")
        return dataclasses.replace(self, **{f: None for f in FIELDS if f not in fields})

    @property
    def given(self) -> tuple[str, ...]:
        return tuple(f for f in FIELDS if getattr(self, f) is not None)


@functools.lru_cache(maxsize=4)
def band_weights(n_fft: int = FeatureConfig.n_fft, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``(bands, n_fft // 2 + 1)`` triangular band weights over STFT bins: band ``b`` peaks at
    ``BAND_EDGES_HZ[b]`` and falls to zero at its neighbours, and each bin's weights add up to
    one (so the band energies add up to the frame energy, and band gains interpolate smoothly)."""
    freqs = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    edges = np.asarray(BAND_EDGES_HZ, dtype=np.float64) * sample_rate / 16000
    weights = np.zeros((edges.size, freqs.size))
    for b, centre in enumerate(edges):
        rise = (freqs - edges[b - 1]) / (centre - edges[b - 1]) if b else np.ones_like(freqs)
        fall = (edges[b + 1] - freqs) / (edges[b + 1] - centre) if b + 1 < edges.size else np.ones_like(freqs)
        weights[b] = np.clip(np.minimum(rise, fall), 0.0, 1.0)
    weights.setflags(write=False)
    return weights


def _features(sample_rate: int) -> FeatureConfig:
    return FeatureConfig(sample_rate=sample_rate, hop_length=sample_rate // 100, win_length=sample_rate // 40)


def band_energies(x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``(1 + S // hop, bands)`` band energies (STFT power, linear) of ``x`` ``(S,)``: the
    log-mel front end's centred STFT (25 ms Hann, 10 ms hop) weighted by :func:`band_weights`."""
    from audiomae.runtime.features import stft

    cfg = _features(sample_rate)
    power = np.abs(stft(x, cfg)) ** 2  # (bins, T)
    return (band_weights(cfg.n_fft, sample_rate) @ power).T


def track_pitch(x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``(1 + S // hop,)`` pitch period in samples per 10 ms frame of ``x``, NaN where pYIN
    finds it unvoiced (see the module's notes on the tracker)."""
    try:
        import librosa
    except ImportError as exc:  # pragma: no cover - librosa comes with the train extra
        raise ImportError("the pitch tracker needs librosa: pip install 'audiomae[train]'") from exc
    f0, voiced, _ = librosa.pyin(
        np.asarray(x, dtype=np.float32),
        fmin=PITCH_FMIN,
        fmax=PITCH_FMAX,
        sr=sample_rate,
        frame_length=PITCH_FRAME * sample_rate // 16000,
        hop_length=sample_rate // 100,
        center=True,
    )
    return np.where(voiced, sample_rate / f0, np.nan)


def voicing_cutoff(x: np.ndarray, period: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``(T,)`` harmonic cut-off in Hz per frame of ``x``, given its pitch ``period`` ``(T,)``
    (samples, NaN where unvoiced): the top of the run of voiced bands (see the module's notes)."""
    from scipy.signal import fftconvolve, firwin

    x = np.asarray(x, dtype=np.float64)
    hop, half = sample_rate // 100, VOICING_WINDOW * sample_rate // 32000
    edges = np.asarray(VOICING_EDGES_HZ, dtype=np.float64) * sample_rate / 16000
    pad = half + int(sample_rate / PITCH_FMIN) + 2
    bands = []
    for lo, hi in zip(np.concatenate([[0.0], edges[:-1]]), edges, strict=True):
        if lo == 0:
            taps = firwin(255, hi, fs=sample_rate)
        elif hi >= sample_rate / 2:
            taps = firwin(255, lo, pass_zero=False, fs=sample_rate)
        else:
            taps = firwin(255, [lo, hi], pass_zero=False, fs=sample_rate)
        bands.append(np.pad(fftconvolve(x, taps, mode="same"), pad))
    bands = np.stack(bands)  # (bands, pad + S + pad)
    cutoff = np.zeros(period.size)
    for k, p in enumerate(period):
        if not np.isfinite(p):
            continue
        centre = pad + k * hop
        seg = bands[:, centre - half : centre + half]
        best = np.full(len(bands), -1.0)
        for lag in range(int(round(p)) - 1, int(round(p)) + 2):
            ref = bands[:, centre - half - lag : centre + half - lag]
            num = np.einsum("bs,bs->b", seg, ref)
            den = np.sqrt(np.einsum("bs,bs->b", seg, seg) * np.einsum("bs,bs->b", ref, ref)) + 1e-12
            best = np.maximum(best, num / den)
        voiced = np.cumprod(best >= VOICING_THRESHOLD)  # the run from the lowest band up
        cutoff[k] = edges[int(voiced.sum()) - 1] if voiced[0] else 0.0
    return cutoff


def extract_params(x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> FrameParams:
    """Pitch period, voicing cut-off, band energies and level of ``x`` ``(S,)`` per 10 ms frame
    (``1 + S // hop`` frames, frame ``k`` centred on sample ``k * hop``)."""
    x = np.asarray(x, dtype=np.float64)
    period = track_pitch(x, sample_rate)
    bands = band_energies(x, sample_rate)
    frames = bands.shape[0]
    period = np.pad(period, (0, max(0, frames - period.size)), constant_values=np.nan)[:frames]
    return FrameParams(
        period=period,
        cutoff=voicing_cutoff(x, period, sample_rate),
        band_db=10 * np.log10(bands + _DB_FLOOR),
        level_db=10 * np.log10(bands.sum(1) + _DB_FLOOR),
        hop=sample_rate // 100,
    )


def _frame_track(values: np.ndarray, params: FrameParams, start: int, n: int) -> np.ndarray:
    """``values`` (one per frame of ``params``) linearly interpolated to stream samples
    ``[start, start + n)``; NaN frames are skipped (the nearest valid ones are held)."""
    centres = (params.first + np.arange(values.size)) * params.hop
    ok = np.isfinite(values)
    if not ok.any():
        return np.full(n, np.nan)
    return np.interp(start + np.arange(n), centres[ok], values[ok])


def _frame_weights(params: FrameParams, start: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The frames of ``params`` whose hat functions (linear interpolation between frame
    centres) reach stream samples ``[start, start + n)``, and their ``(frames, n)`` weights."""
    t = (start + np.arange(n)) / params.hop - params.first  # position in frames
    count = len(params.cutoff)
    lo = int(np.clip(np.floor(t[0]), 0, count - 1))
    hi = int(np.clip(np.ceil(t[-1]), 0, count - 1))
    frames = np.arange(lo, hi + 1)
    weights = np.clip(1.0 - np.abs(np.clip(t, 0, count - 1)[None, :] - frames[:, None]), 0.0, 1.0)
    return frames, weights


def steered_continuation(
    history: np.ndarray,
    period: int,
    n: int,
    params: FrameParams,
    start: int,
    order: int = 16,
    analysis: int = 480,
    sample_rate: int = SAMPLE_RATE,
    rng: np.random.Generator | None = None,
    decay: bool = False,
    noise_above: float | None = None,
    max_gain_db: float = 24.0,
) -> np.ndarray:
    """:func:`~audiomae.plc.dsp.lpc_continuation` of ``history`` (same arguments) following
    the parameters ``params`` gives for stream samples ``[start, start + n)`` (``history``
    ends at stream sample ``start``).

    Given a ``period`` contour, the repeated residual period is read at the rate that makes its
    period ``period * contour(t) / contour(start)``; given a ``cutoff``, each frame keeps the
    harmonics below its own cut-off (noise of the same power above) instead of ``noise_above``;
    given ``band_db`` or ``level_db``, each frame centred in the continuation is scaled in the
    STFT domain to that energy (gains limited to +-``max_gain_db``). With a constant contour and
    cut-off it plays what :func:`lpc_continuation` plays (to float rounding)."""
    from audiomae.plc.dsp import lpc_continuation

    if params.period is None and params.cutoff is None:
        out = lpc_continuation(
            history, period, n, order, analysis, sample_rate, rng=rng, decay=decay, noise_above=noise_above
        )
    else:
        out = _warped_continuation(
            history, period, n, params, start, order, analysis, sample_rate, rng, decay, noise_above
        )
    if params.band_db is not None or params.level_db is not None:
        out = shape_frames(history, out, params, start, sample_rate, max_gain_db)
    return out


def _warped_continuation(
    history, period, n, params, start, order, analysis, sample_rate, rng, decay, noise_above
) -> np.ndarray:
    from scipy.signal import lfilter

    from audiomae.plc.dsp import highpass_taps, lpc_source

    h = np.asarray(history, dtype=np.float64)
    source = lpc_source(h, period, order, analysis, sample_rate)
    if source is None:  # silence: nothing to model
        return np.zeros(n, dtype=np.float32)
    inverse, residual, state, cycle = source

    # The period at each sample: the found one, moved as the given contour moves.
    periods = np.full(n, float(period))
    if params.period is not None:
        contour = _frame_track(params.period, params, start, n)
        if np.isfinite(contour[0]):
            periods = period * np.clip(contour / contour[0], 0.5, 2.0)
    phase = np.concatenate([[0.0], np.cumsum(1.0 / periods[:-1])])  # in periods

    # Harmonic k of the cycle, evaluated at the phase: the cycle itself where the phase advances
    # one sample per sample (the inverse DFT of its spectrum).
    spectrum = np.fft.rfft(cycle)
    k = np.arange(spectrum.size)
    coef = spectrum * np.where((k == 0) | (2 * k == period), 1.0, 2.0) / period
    if params.cutoff is not None:
        frames, weights = _frame_weights(params, start, n)
        cutoffs = np.asarray(params.cutoff, dtype=np.float64)[frames]
        cutoffs = np.where(np.isnan(cutoffs), np.inf if noise_above is None else float(noise_above), cutoffs)
    else:
        frames, weights = np.zeros(1, dtype=int), np.ones((1, n))
        cutoffs = np.array([np.inf if noise_above is None else float(noise_above)])
    # Per frame: which harmonics stay periodic (at the frame's period; those the warp would
    # lift above Nyquist are dropped), and the power the others leave to the noise.
    frame_period = np.array([periods[np.argmax(w)] for w in weights])
    below = 2 * k[None, :] <= frame_period[:, None]
    if params.cutoff is None and noise_above is not None:
        cut = np.full((1, 1), int(round(float(noise_above) * period / sample_rate)))  # as lpc_continuation
    else:
        cut = np.where(cutoffs >= sample_rate / 2, np.inf, np.round(cutoffs * frame_period / sample_rate))[
            :, None
        ]
    keep = (k[None, :] < cut) & below
    removed = (k[None, :] >= cut) & below & (k[None, :] > 0)  # the noise has no DC
    mask = weights.T @ keep.astype(np.float64)  # (n, harmonics)
    periodic = np.real(np.exp(2j * np.pi * phase[:, None] * k[None, :]) * mask @ coef)

    high = np.zeros(n)
    power = 2.0 * (np.abs(spectrum[None, :]) ** 2 * removed).sum(1) / period**2  # per frame
    if (power > 0).any():
        # The noise generator's seed is drawn from ``rng`` as lpc_continuation draws it.
        noise_rng = np.random.default_rng((rng or np.random.default_rng(0)).integers(2**62, size=2)[0])
        taps = [
            highpass_taps(float(c), sample_rate) if 0 < c < sample_rate / 2 else np.ones(1) for c in cutoffs
        ]
        longest = max(t.size for t in taps)
        white = noise_rng.standard_normal(n + longest - 1)
        for j, t in enumerate(taps):
            if power[j] > 0:
                band = lfilter(t, [1.0], white[longest - t.size :])[t.size - 1 :]
                high += weights[j] * band * np.sqrt(power[j] / float(t @ t))
    excitation = periodic + high
    if decay and h.size >= 2 * period:
        e1 = float(residual[-period:] @ residual[-period:]) + 1e-12
        e2 = float(residual[-2 * period : -period] @ residual[-2 * period : -period]) + 1e-12
        excitation = excitation * np.sqrt(min(e1, e2) / e2) ** np.floor(phase + 1e-9)
    out, _ = lfilter([1.0], inverse, excitation, zi=state)
    return out.astype(np.float32)


def shape_frames(
    history: np.ndarray,
    cont: np.ndarray,
    params: FrameParams,
    start: int,
    sample_rate: int = SAMPLE_RATE,
    max_gain_db: float = 24.0,
) -> np.ndarray:
    """``cont`` (which follows ``history``, from stream sample ``start``) with each STFT frame
    centred in it scaled to ``params``' band energies (``band_db``) or, without them, to its
    level (``level_db``); phase kept, gains limited to +-``max_gain_db``. Frames before
    ``start`` keep their gain of one, so the seam with ``history`` stays as it was."""
    from audiomae.runtime.features import istft, stft

    cfg = _features(sample_rate)
    hop = cfg.hop_length
    if start % hop:
        raise ValueError(f"the continuation must start on a frame centre (a multiple of {hop}), got {start}")
    context = min(np.asarray(history).size // hop, 3) * hop  # the frames around the seam see history
    x = np.concatenate([np.asarray(history, dtype=np.float64)[history.size - context :], cont])
    spec = stft(x, cfg)  # (bins, T); frame j centred on stream sample start - context + j * hop
    stream_frames = (start - context) // hop + np.arange(spec.shape[1]) - params.first
    given = params.band_db if params.band_db is not None else params.level_db
    total = len(given)
    cols = np.flatnonzero(
        (np.arange(spec.shape[1]) * hop >= context) & (stream_frames < total) & (stream_frames >= 0)
    )
    if not cols.size:
        return cont
    weights = band_weights(cfg.n_fft, sample_rate)
    power = np.abs(spec[:, cols]) ** 2
    limit = 10 ** (max_gain_db / 10)
    top = limit if params.max_boost_db is None else min(limit, 10 ** (params.max_boost_db / 10))
    if params.band_db is not None:
        target = 10 ** (
            np.asarray(params.band_db, dtype=np.float64)[stream_frames[cols]].T / 10
        )  # (bands, F)
        gain = np.clip(target / (weights @ power + _DB_FLOOR), 1 / limit, top)
        bin_gain = weights.T @ gain
    else:
        target = 10 ** (np.asarray(params.level_db, dtype=np.float64)[stream_frames[cols]] / 10)
        bin_gain = np.clip(target / (power.sum(0) + _DB_FLOOR), 1 / limit, top)[None, :]
    bin_gain = np.where(np.isfinite(bin_gain), bin_gain, 1.0)
    if params.trust is not None:
        bin_gain = bin_gain ** np.clip(np.asarray(params.trust, dtype=np.float64)[stream_frames[cols]], 0, 1)
    spec[:, cols] *= np.sqrt(bin_gain)
    return istft(spec, cfg, x.size)[0, context:].astype(np.float32)


__all__ = [
    "BAND_EDGES_HZ",
    "FIELDS",
    "FrameParams",
    "VOICING_EDGES_HZ",
    "band_energies",
    "band_weights",
    "extract_params",
    "shape_frames",
    "steered_continuation",
    "track_pitch",
    "voicing_cutoff",
]
