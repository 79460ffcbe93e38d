import numpy as np
import pytest
import soundfile as sf

from audiomae import audio
from audiomae.audio import load_audio, save_audio


def test_constants_are_consistent():
    assert audio.SAMPLES_PER_PACKET == audio.SAMPLE_RATE * audio.PACKET_MS // 1000 == 320
    assert audio.FRAMES_PER_PACKET * audio.HOP_LENGTH == audio.SAMPLES_PER_PACKET


def test_save_load_round_trip(tmp_path, voiced_signal):
    path = save_audio(tmp_path / "a.wav", voiced_signal)
    back = load_audio(path)
    assert back.dtype == np.float32 and back.shape == voiced_signal.shape
    assert np.max(np.abs(back - voiced_signal)) < 1e-4  # 16-bit quantisation


def test_resample_and_mono(tmp_path):
    t = np.arange(8000) / 8000
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t)], axis=1) * 0.5
    sf.write(tmp_path / "s.wav", stereo, 8000)
    x = load_audio(tmp_path / "s.wav")
    assert x.ndim == 1 and abs(len(x) - 16000) <= 2
    spec = np.abs(np.fft.rfft(x))
    assert abs(np.argmax(spec) * 16000 / len(x) - 440) < 2


@pytest.mark.parametrize(
    "make, error, words",
    [
        (lambda p: None, FileNotFoundError, "not found"),
        (lambda p: p.write_bytes(b"RIFF1234garbage"), ValueError, "cannot read"),
        (lambda p: sf.write(p, np.zeros(0), 16000), ValueError, "empty"),
        (lambda p: sf.write(p, np.array([0.1, np.nan, 0.2]), 16000, subtype="FLOAT"), ValueError, "NaN"),
    ],
)
def test_bad_input_names_file_and_problem(tmp_path, make, error, words):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(error) as info:
        load_audio(path)
    assert "bad.wav" in str(info.value) and words in str(info.value)


def test_save_rejects_bad_audio_and_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="NaN"):
        save_audio(tmp_path / "out.wav", np.array([0.0, np.inf], dtype=np.float32))
    with pytest.raises(ValueError, match="dtype"):
        save_audio(tmp_path / "out.wav", np.array(["a"]))
    assert list(tmp_path.iterdir()) == []


def test_find_audio_recurses_by_extension_and_names_failures(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/b/x.WAV", "a/y.flac", "z.ogg", "notes.txt", "a/b/c.wav.bak"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "folder.wav").mkdir()  # a directory, not a file
    found = audio.find_audio(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a/b/x.WAV", "a/y.flac", "z.ogg"]
    assert audio.find_audio(tmp_path, extensions=(".FLAC",)) == [tmp_path / "a" / "y.flac"]
    (tmp_path / "empty").mkdir()
    assert audio.find_audio(tmp_path / "empty") == []
    with pytest.raises(ValueError, match="empty: no audio files"):
        audio.find_audio(tmp_path / "empty", required=True)
    with pytest.raises(FileNotFoundError, match="audio folder not found"):
        audio.find_audio(tmp_path / "missing")
