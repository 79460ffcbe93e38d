"""Audio constants and I/O.

Every module takes its sample rate, packet size and hop from here, so the packet
geometry lives in one place. Audio inside the library is mono float32 in [-1, 1].
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
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


def find_audio(
    root: str | os.PathLike, extensions: Sequence[str] = AUDIO_EXTENSIONS, required: bool = False
) -> list[Path]:
    """Audio files under the folder ``root`` (recursive, sorted), by extension (any case).

    FileNotFoundError when ``root`` is not a folder; with ``required``, ValueError when it
    holds no audio file."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"audio folder not found: {root}")
    exts = {e.lower() for e in extensions}
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in exts and p.is_file())
    if required and not files:
        raise ValueError(f"{root}: no audio files ({', '.join(extensions)})")
    return files


def validate_waveform(audio: np.ndarray, name: str = "audio") -> np.ndarray:
    """Return ``audio`` as float32 in [-1, 1] after checking dtype and finiteness; raise ValueError.

    Integers are scaled to [-1, 1]. Finite float samples beyond full scale are clipped to it,
    in their own precision, so the float32 result is always finite (a float64 1e300 becomes
    1.0, not inf) and what the library computes with is what was checked.
    """
    audio = np.asarray(audio)
    if audio.dtype.kind not in "fiu":
        raise ValueError(f"{name}: unsupported sample dtype {audio.dtype}")
    if audio.size == 0:
        raise ValueError(f"{name}: empty audio (0 samples)")
    if audio.dtype.kind in "iu":
        info = np.iinfo(audio.dtype)
        return (audio.astype(np.float32) / float(max(abs(info.min), info.max))).astype(np.float32, copy=False)
    if not np.all(np.isfinite(audio)):
        raise ValueError(f"{name}: contains NaN or inf samples")
    return np.clip(audio, -1.0, 1.0).astype(np.float32, copy=False)


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


# Audio files the library writes (16-bit PCM): extension -> soundfile format.
AUDIO_OUTPUT_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".aiff": "AIFF", ".aif": "AIFF"}


def audio_output_format(path: str | os.PathLike) -> str:
    """The soundfile format for writing ``path``, by extension; ValueError naming the file and the
    extensions that work."""
    ext = Path(path).suffix.lower()
    if ext not in AUDIO_OUTPUT_FORMATS:
        raise ValueError(
            f"{path}: cannot write audio as {ext or 'a file without extension'}; "
            f"use one of {', '.join(AUDIO_OUTPUT_FORMATS)}"
        )
    return AUDIO_OUTPUT_FORMATS[ext]


def check_outputs(
    outputs: dict[str, str | os.PathLike],
    inputs: list[str | os.PathLike] | tuple = (),
    audio: tuple[str, ...] | list[str] = (),
    directories: tuple[str, ...] | list[str] = (),
) -> dict[str, Path]:
    """Check, before any work starts, that a command can write its outputs.

    ``outputs`` maps a label (the option, e.g. ``"-o"``) to a path; labels in ``audio`` must have
    an audio extension (:data:`AUDIO_OUTPUT_FORMATS`); labels in ``directories`` are folders the
    command writes into. Each output must not be an input (the same file, also through
    symbolic or hard links) nor another output, must not be an existing directory (a folder
    output: an existing non-directory), must not lie under an existing file, and its folder (or
    the nearest existing folder above it) must accept a new file. Raises ValueError naming the
    option and the path; returns the labels' paths.
    """
    inputs = [Path(p) for p in inputs]
    checked: dict[str, Path] = {}
    for label, raw in outputs.items():
        path = Path(raw)
        where = f"{label} {path}"
        if str(raw) == "":
            raise ValueError(f"{label}: empty path")
        for other in inputs:
            if _same_file(path, other):
                raise ValueError(
                    f"{where}: is the input {other}; choose another output, inputs are never overwritten"
                )
        for other_label, other in checked.items():
            if _same_file(path, other):
                raise ValueError(f"{where}: is also {other_label}; give each output its own path")
        is_dir = label in directories
        if path.exists() or path.is_symlink():
            if is_dir and not path.is_dir():
                raise ValueError(f"{where}: exists and is not a directory")
            if not is_dir and path.is_dir():
                raise ValueError(f"{where}: is a directory; give a file name")
        if label in audio:
            audio_output_format(path)
        folder = path if is_dir else path.parent
        existing = folder
        while not existing.exists():
            if existing.is_symlink():
                raise ValueError(f"{where}: {existing} is a broken link")
            existing = existing.parent
        if not existing.is_dir():
            raise ValueError(f"{where}: {existing} is a file, not a directory")
        _probe_writable(existing, where)
        checked[label] = path
    return checked


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def _probe_writable(folder: Path, where: str) -> None:
    # Creating a file is the only test that sees read-only mounts, ACLs and quotas alike.
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".audiomae-probe-")
    except OSError as exc:
        raise ValueError(f"{where}: cannot write in {folder} ({exc.strerror})") from None
    os.close(fd)
    os.unlink(tmp)


def write_all(writes: list[tuple]) -> list[Path]:
    """Write several files all or none: each ``(path, write_fn)`` (or ``(path, write_fn, suffix)``:
    the temporary file's extension, default the target's) calls ``write_fn(tmp_path)`` on a
    temporary file beside ``path``; only when every one has succeeded are they renamed into
    place. Any failure (Ctrl-C included) removes the temporary files and the folders it created,
    and leaves every path as it was, so readers never see a partial file or half of a command's
    outputs. A writer's own error type for a failed write (a full disk, say) becomes an OSError
    naming the file."""
    staged: list[tuple[str, Path]] = []
    created: list[Path] = []
    try:
        for path, write_fn, *suffix in writes:
            path = Path(path)
            created += _make_parents(path.parent)
            ext = suffix[0] if suffix and suffix[0] else path.suffix
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=ext)
            os.close(fd)
            staged.append((tmp, path))
            _call_writer(write_fn, tmp, path)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        # mkstemp creates 0600 files; give the results the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        for tmp, _ in staged:
            os.chmod(tmp, 0o666 & ~umask)
        for tmp, path in staged:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in staged:
            if os.path.exists(tmp):
                os.unlink(tmp)
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if still empty
        raise
    return [path for _, path in staged]


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; returns those it created, outermost first."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()][::-1]
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def _call_writer(write_fn, tmp: str, path: Path) -> None:
    try:
        write_fn(tmp)
    except (OSError, ValueError, TypeError, KeyboardInterrupt):
        raise
    except Exception as exc:  # e.g. soundfile's LibsndfileError on a full disk
        import errno

        full = os.statvfs(path.parent).f_bavail == 0
        code = errno.ENOSPC if full else errno.EIO
        raise OSError(code, os.strerror(code) if full else f"cannot write ({exc})", str(path)) from exc


def regular_file(path: str | os.PathLike, what: str, max_bytes: int | None = None) -> int:
    """Size of ``path`` after checking that it is a regular file of at most ``max_bytes`` (links
    are followed: a link to a device or a directory is refused, so no read can hang or never end)."""
    import stat

    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing {what}") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read {what} ({exc.strerror})") from exc
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{path}: {what} is not a regular file")
    if max_bytes is not None and st.st_size > max_bytes:
        raise ValueError(f"{path}: {what} is {st.st_size} bytes, more than the {max_bytes} allowed")
    return st.st_size


def first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line (its type's name if it has none)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, as 64 lowercase hex digits."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write(path: str | os.PathLike, write_fn, suffix: str | None = None) -> Path:
    """Call ``write_fn(tmp_path)`` then rename into place, so readers never see a partial file."""
    return write_all([(path, write_fn, suffix)])[0]


def audio_writer(path: str | os.PathLike, audio: np.ndarray, sr: int = SAMPLE_RATE):
    """Check ``audio`` for ``path`` now and return ``write_fn(tmp)`` writing it as 16-bit PCM
    (for :func:`write_all`)."""
    import soundfile as sf

    audio = validate_waveform(np.asarray(audio), name=str(path))
    if audio.ndim > 2:
        raise ValueError(f"{path}: expected (samples,) or (samples, channels), got {audio.shape}")
    fmt = audio_output_format(path)
    return lambda tmp: sf.write(tmp, audio, sr, subtype="PCM_16", format=fmt)


def save_audio(path: str | os.PathLike, audio: np.ndarray, sr: int = SAMPLE_RATE) -> Path:
    """Write mono (or (S, C)) float audio as 16-bit PCM (wav/flac/aiff by extension), atomically."""
    return write_all([(path, audio_writer(path, audio, sr))])[0]
