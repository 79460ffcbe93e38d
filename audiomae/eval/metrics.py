"""Quality metrics for concealed speech: PESQ-WB, STOI, PLCMOS and LSD over lost packets.

Each wrapper takes mono float arrays ``(S,)``, imports its library lazily, and turns the
library's "cannot score this" cases (silent reference, too short) into ``nan`` with a
RuntimeWarning that says which metric is not defined and why, so one bad clip does not stop a
benchmark (which reports the reasons per file).
"""

from __future__ import annotations

import warnings

import numpy as np

from audiomae.audio import HOP_LENGTH, N_FFT, SAMPLE_RATE, SAMPLES_PER_PACKET, WIN_LENGTH, resample

_SILENCE = 1e-6  # peak amplitude below which a reference counts as silent
# Shortest clips each metric is defined for: PESQ needs a quarter of a second; STOI 30 frames of
# 256 samples at 10 kHz, half overlapping (29 * 128 + 256 samples); PLCMOS's network 0.1 s.
MIN_SECONDS = {"PESQ": 0.25, "STOI": (29 * 128 + 256) / 10_000, "PLCMOS": 0.1}


def _too_short(n_samples: int, sr: int, metric: str) -> bool:
    need = MIN_SECONDS[metric]
    if n_samples < need * sr:
        warnings.warn(
            f"{metric}: not defined for a {n_samples / sr:.3f} s clip (it needs at least {need:.3f} s); "
            "returning nan",
            RuntimeWarning,
            stacklevel=3,
        )
        return True
    return False


def _pair(ref: np.ndarray, deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref, deg = np.asarray(ref, dtype=np.float64), np.asarray(deg, dtype=np.float64)
    if ref.ndim != 1 or deg.ndim != 1:
        raise ValueError(f"expected mono signals of shape (samples,), got {ref.shape} and {deg.shape}")
    if ref.size != deg.size:
        raise ValueError(f"reference has {ref.size} samples but degraded has {deg.size}; they must match")
    if ref.size == 0:
        raise ValueError("empty signals")
    if not (np.isfinite(ref).all() and np.isfinite(deg).all()):
        raise ValueError("signals contain NaN or inf")
    return ref, deg


def _silent(ref: np.ndarray, metric: str) -> bool:
    if np.max(np.abs(ref)) < _SILENCE:
        warnings.warn(f"{metric}: reference is silent; returning nan", RuntimeWarning, stacklevel=3)
        return True
    return False


def _import(module: str, package: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{module} needs {package}: pip install 'audiomae[eval]'") from exc


def pesq_wb(ref: np.ndarray, deg: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    """Wide-band PESQ (ITU-T P.862.2, MOS-LQO 1.04-4.64). Signals at another rate are resampled to 16 kHz."""
    ref, deg = _pair(ref, deg)
    if _too_short(ref.size, sr, "PESQ"):
        return float("nan")
    if sr != 16000:
        ref, deg = resample(ref, sr, 16000), resample(deg, sr, 16000)
    if _silent(ref, "PESQ"):
        return float("nan")
    pesq = _import("pesq", "pesq")
    try:
        return float(pesq.pesq(16000, ref, deg, "wb"))
    except (pesq.NoUtterancesError, pesq.BufferTooShortError) as exc:
        warnings.warn(f"PESQ: cannot score ({type(exc).__name__}: {exc}); returning nan", RuntimeWarning, 2)
        return float("nan")


def stoi(ref: np.ndarray, deg: np.ndarray, sr: int = SAMPLE_RATE, extended: bool = False) -> float:
    """Short-time objective intelligibility (0-1); ``extended=True`` gives ESTOI."""
    ref, deg = _pair(ref, deg)
    if _too_short(ref.size, sr, "STOI") or _silent(ref, "STOI"):
        return float("nan")
    pystoi = _import("pystoi", "pystoi")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(pystoi.stoi(ref, deg, sr, extended=extended))
    for w in caught:
        if "Not enough STFT frames" in str(w.message):
            # pystoi returns 1e-5 here, which reads as "unintelligible": it is undefined.
            warnings.warn(
                f"STOI: not defined for this clip: fewer than 30 frames ({MIN_SECONDS['STOI']:.3f} s) are "
                "left once STOI drops the frames 40 dB below the loudest; returning nan",
                RuntimeWarning,
                stacklevel=2,
            )
            return float("nan")
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return value


def plcmos(deg: np.ndarray, sr: int = SAMPLE_RATE, seed: int = 0) -> float:
    """PLCMOS v2 (Microsoft, non-intrusive, roughly 1-5) of the concealed signal ``(S,)``.

    The model averages over randomly drawn rater embeddings from numpy's global generator;
    it is seeded with ``seed`` for the call and restored afterwards, so scores are
    reproducible and the caller's random state is untouched. (speechmos runs on
    onnxruntime, so torch's generator plays no part.)
    """
    deg = np.asarray(deg, dtype=np.float64)
    if deg.ndim != 1 or deg.size == 0 or not np.isfinite(deg).all():
        raise ValueError(f"PLCMOS: expected a finite mono signal (samples,), got shape {deg.shape}")
    if _too_short(deg.size, sr, "PLCMOS"):
        return float("nan")
    if sr != 16000:
        deg = resample(deg, sr, 16000)
    module = _import("speechmos.plcmos", "speechmos and onnxruntime")
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        result = module.run(np.clip(deg, -1.0, 1.0).astype(np.float32), sr=16000)
    finally:
        np.random.set_state(state)
    return float(result["plcmos"])


def _power_spectrogram(x: np.ndarray) -> np.ndarray:
    """(S,) -> (T, F) power, centred frames every HOP_LENGTH samples (frame i at i * hop)."""
    pad = N_FFT // 2
    xp = np.pad(x, pad)
    n_frames = 1 + x.size // HOP_LENGTH
    need = (n_frames - 1) * HOP_LENGTH + N_FFT
    if xp.size < need:
        xp = np.pad(xp, (0, need - xp.size))
    frames = np.lib.stride_tricks.sliding_window_view(xp, N_FFT)[::HOP_LENGTH][:n_frames]
    window = np.zeros(N_FFT)
    start = (N_FFT - WIN_LENGTH) // 2
    window[start : start + WIN_LENGTH] = np.hanning(WIN_LENGTH + 2)[1:-1]
    return np.abs(np.fft.rfft(frames * window, axis=1)) ** 2


def lsd_lost(ref: np.ndarray, deg: np.ndarray, lost: np.ndarray) -> float:
    """Log-spectral distance in dB over the STFT frames centred inside lost packets.

    Frames are N_FFT-point, WIN_LENGTH Hann windows every HOP_LENGTH samples, centred at
    ``i * HOP_LENGTH``; a frame counts when its centre falls in a lost packet. Per frame
    ``sqrt(mean_f (10 log10 P_ref - 10 log10 P_deg)^2)``, averaged over frames, with powers
    floored 80 dB below the reference's peak over those frames. ``nan`` when no packet is lost.
    """
    ref, deg = _pair(ref, deg)
    flags = np.asarray(lost, dtype=bool)
    need = -(-ref.size // SAMPLES_PER_PACKET)
    if flags.ndim != 1 or flags.size < need:
        raise ValueError(
            f"loss trace has {flags.size} packets but the audio ({ref.size} samples) needs {need}"
        )
    n_frames = 1 + ref.size // HOP_LENGTH
    # The last frame may be centred on the sample just past the end: it belongs to the last packet.
    packet_of_frame = np.minimum(np.arange(n_frames) * HOP_LENGTH // SAMPLES_PER_PACKET, need - 1)
    selected = flags[packet_of_frame]
    if not selected.any():
        return float("nan")
    p_ref, p_deg = _power_spectrogram(ref)[selected], _power_spectrogram(deg)[selected]
    # Floor both at 80 dB below the reference's peak so empty bins (between harmonics,
    # digital silence) do not dominate the distance with differences nobody can hear.
    floor = max(float(p_ref.max()), 1e-20) * 1e-8
    diff = 10.0 * np.log10(np.maximum(p_ref, floor)) - 10.0 * np.log10(np.maximum(p_deg, floor))
    return float(np.mean(np.sqrt(np.mean(diff**2, axis=1))))
