"""Audio constants and I/O.

Every module takes its sample rate, packet size and hop from here, so the packet
geometry lives in one place. Audio inside the library is mono float32 in [-1, 1].
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000
PACKET_MS = 20
HOP_MS = 10
WIN_MS = 25
N_FFT = 512

SAMPLES_PER_PACKET = SAMPLE_RATE * PACKET_MS // 1000  # 320
HOP_LENGTH = SAMPLE_RATE * HOP_MS // 1000  # 160
WIN_LENGTH = SAMPLE_RATE * WIN_MS // 1000  # 400
FRAMES_PER_PACKET = PACKET_MS // HOP_MS  # 2


def _check_constants() -> None:
    # A packet must be a whole number of samples and of STFT hops, or patch columns
    # would straddle packet boundaries and a lost packet would not be a masked column.
    if SAMPLE_RATE * PACKET_MS % 1000:
        raise ValueError("PACKET_MS does not give a whole number of samples")
    if SAMPLE_RATE * HOP_MS % 1000:
        raise ValueError("HOP_MS does not give a whole number of samples")
    if PACKET_MS % HOP_MS:
        raise ValueError("a packet must hold a whole number of hops")
    if WIN_LENGTH > N_FFT:
        raise ValueError("window longer than the FFT")


_check_constants()

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif")


def validate_waveform(audio: np.ndarray, name: str = "audio") -> np.ndarray:
    """Return ``audio`` as float32 after checking dtype and finiteness; raise ValueError."""
    audio = np.asarray(audio)
    if audio.dtype.kind not in "fiu":
        raise ValueError(f"{name}: unsupported sample dtype {audio.dtype}")
    if audio.dtype.kind in "iu":
        info = np.iinfo(audio.dtype)
        audio = audio.astype(np.float32) / float(max(abs(info.min), info.max))
    audio = audio.astype(np.float32, copy=False)
    if audio.size == 0:
        raise ValueError(f"{name}: empty audio (0 samples)")
    if not np.all(np.isfinite(audio)):
        raise ValueError(f"{name}: contains NaN or inf samples")
    return audio


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Average channels: ``(S,)`` or ``(S, C)`` (soundfile layout) -> ``(S,)``."""
    if audio.ndim == 1:
        return audio
    if audio.ndim == 2:
        return audio.mean(axis=1, dtype=np.float32)
    raise ValueError(f"expected (samples,) or (samples, channels), got shape {audio.shape}")


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling (soxr, high quality) along the last axis to
    ``ceil(S * target_sr / orig_sr)`` samples, as ``librosa.resample(res_type="soxr_hq")``
    computes it; a no-op when the rates agree."""
    if orig_sr == target_sr:
        return audio
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"invalid sample rates {orig_sr} -> {target_sr}")
    import soxr

    n = int(np.ceil(audio.shape[-1] * float(target_sr) / orig_sr))

    def one(x: np.ndarray) -> np.ndarray:
        y = soxr.resample(x, orig_sr, target_sr, quality="soxr_hq")
        return np.pad(y[:n], (0, max(0, n - y.size)))

    return np.apply_along_axis(one, -1, audio).astype(np.float32)


def load_audio(path: str | os.PathLike, sr: int | None = SAMPLE_RATE, mono: bool = True) -> np.ndarray:
    """Read a file into float32; resample to ``sr`` (None keeps the file's rate) and mix to mono.

    Raises FileNotFoundError for a missing file and ValueError, naming the file, for
    anything unreadable, empty or non-finite.
    """
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"audio file not found: {path}")
    if path.is_dir():
        raise ValueError(f"{path}: is a directory, expected an audio file")
    try:
        audio, file_sr = sf.read(str(path), dtype="float32", always_2d=False)
    except Exception as exc:  # soundfile raises several types for corrupt input
        raise ValueError(f"{path}: cannot read audio ({exc})") from exc
    audio = validate_waveform(audio, name=str(path))
    if mono:
        audio = to_mono(audio)
    if sr is not None:
        audio = resample(audio, file_sr, sr)
    return audio


def audio_duration(path: str | os.PathLike) -> float:
    """Duration in seconds from the file header (no decoding)."""
    import soundfile as sf

    info = sf.info(str(path))
    return info.frames / info.samplerate


def atomic_write(path: str | os.PathLike, write_fn, suffix: str | None = None) -> Path:
    """Call ``write_fn(tmp_path)`` then rename into place, so readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix or path.suffix)
    os.close(fd)
    try:
        write_fn(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def save_audio(path: str | os.PathLike, audio: np.ndarray, sr: int = SAMPLE_RATE) -> Path:
    """Write mono (or (S, C)) float audio as 16-bit PCM (wav/flac by extension), atomically."""
    import soundfile as sf

    audio = validate_waveform(np.asarray(audio), name=str(path))
    if audio.ndim > 2:
        raise ValueError(f"{path}: expected (samples,) or (samples, channels), got {audio.shape}")
    audio = np.clip(audio, -1.0, 1.0)
    fmt = Path(path).suffix.lstrip(".").upper() or "WAV"
    if fmt not in sf.available_formats():
        raise ValueError(f"{path}: unsupported output format '{fmt}'")
    return atomic_write(path, lambda tmp: sf.write(tmp, audio, sr, subtype="PCM_16", format=fmt))
