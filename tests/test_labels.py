import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiomae.labels import (
    LabelSet,
    fix_length,
    from_csv,
    from_folders,
    from_pattern,
    load_clips,
    pattern_regex,
)


def _wav(path: Path, seconds: float = 0.2, sr: int = 8000, f0: float = 300.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * f0 * t)).astype(np.float32), sr)
    return path


def test_folders(tmp_path):
    for cls, n in (("dog", 2), ("cat", 3)):
        for i in range(n):
            _wav(tmp_path / cls / f"{i}.wav")
    ls = from_folders(tmp_path)
    assert ls.classes == ("cat", "dog")
    assert ls.counts() == {"cat": 3, "dog": 2}
    assert ls.targets().tolist() == [0, 0, 0, 1, 1]


def test_folders_empty_class_is_an_error(tmp_path):
    _wav(tmp_path / "dog" / "a.wav")
    (tmp_path / "cat").mkdir()
    with pytest.raises(ValueError, match="cat"):
        from_folders(tmp_path)


def test_csv_single_and_multilabel(tmp_path):
    _wav(tmp_path / "a.wav")
    _wav(tmp_path / "b.wav")
    (tmp_path / "single.csv").write_text("a.wav,dog\nb.wav,cat\n")
    ls = from_csv(tmp_path / "single.csv")
    assert not ls.multilabel and ls.classes == ("cat", "dog")
    assert ls.targets().tolist() == [1, 0]

    (tmp_path / "multi.csv").write_text("a.wav,dog,bark\nb.wav,cat\n")
    ml = from_csv(tmp_path / "multi.csv")
    assert ml.multilabel and ml.classes == ("bark", "cat", "dog")
    assert ml.targets().tolist() == [[1, 0, 1], [0, 1, 0]]


def test_csv_header_metadata_and_split(tmp_path):
    rows = ["path,label,speaker"]
    for i in range(6):
        _wav(tmp_path / f"{i}.wav")
        rows.append(f"{i}.wav,{'yes' if i % 2 else 'no'},s{i // 2}")
    (tmp_path / "l.csv").write_text("\n".join(rows) + "\n")
    ls = from_csv(tmp_path / "l.csv")
    train, test = ls.split_by("speaker", ["s1"])
    assert len(train) == 4 and len(test) == 2
    assert set(test.column("speaker")) == {"s1"} and "s1" not in train.column("speaker")
    with pytest.raises(ValueError, match="s9"):
        ls.split_by("speaker", ["s9"])


def test_csv_unknown_label_and_missing_file(tmp_path):
    _wav(tmp_path / "a.wav")
    (tmp_path / "l.csv").write_text("a.wav,dgo\ngone.wav,dog\n")
    with pytest.warns(UserWarning, match="gone.wav"):
        with pytest.raises(ValueError, match="unknown label.*dgo"):
            from_csv(tmp_path / "l.csv", classes=["cat", "dog"])


def test_unknown_label_in_labelset_names_the_file(tmp_path):
    ls = from_csv(_csv(tmp_path, "x.wav,cat\n"))
    with pytest.raises(ValueError, match="x.wav.*unknown label 'cat'"):
        ls.with_classes(["dog"])
    with pytest.raises(ValueError, match="unknown label 'bird'"):
        ls.class_index("bird")


def _csv(tmp_path: Path, text: str) -> Path:
    _wav(tmp_path / "x.wav")
    (tmp_path / "l.csv").write_text(text)
    return tmp_path / "l.csv"


def test_pattern_fsdd_names_and_speaker_split(tmp_path):
    for digit in range(3):
        for speaker in ("george", "lucas"):
            for take in range(2):
                _wav(tmp_path / f"{digit}_{speaker}_{take}.wav")
    _wav(tmp_path / "README.wav")
    with pytest.warns(UserWarning, match="1 files"):
        ls = from_pattern(tmp_path, "{digit}_{speaker}_{take}.wav", label="digit")
    assert ls.classes == ("0", "1", "2") and len(ls) == 12
    assert ls.clips[0].get("speaker") in {"george", "lucas"}
    train, test = ls.split_by("speaker", ["lucas"])
    assert set(test.column("speaker")) == {"lucas"} and len(train) == len(test) == 6
    with pytest.raises(ValueError, match="no field 'word'"):
        from_pattern(tmp_path, "{digit}_{speaker}_{take}.wav", label="word")
    (tmp_path / "README.wav").unlink()
    with pytest.raises(ValueError, match="unknown label"):
        from_pattern(tmp_path, "{digit}_{speaker}_{take}.wav", label="digit", classes=["0", "1"])


def test_pattern_regex_handles_underscores_in_last_field():
    m = pattern_regex("{digit}_{speaker}_{take}.wav").fullmatch("7_nicolas_49.wav")
    assert m.groupdict() == {"digit": "7", "speaker": "nicolas", "take": "49"}
    assert pattern_regex("{a}-{b}.flac").fullmatch("x-y.wav") is None


def test_subsample_is_stratified_and_seeded(tmp_path):
    for cls in ("a", "b"):
        for i in range(10):
            _wav(tmp_path / cls / f"{i}.wav", seconds=0.05)
    ls = from_folders(tmp_path)
    sub = ls.subsample(0.1, seed=3)
    assert sub.counts() == {"a": 1, "b": 1}
    assert sub == ls.subsample(0.1, seed=3)
    ls.check_nonempty()
    with pytest.raises(ValueError, match="without any clips.*'b'"):
        ls.filter(lambda c: c.labels[0] == "a").check_nonempty()


def test_load_clips_resamples_pads_and_skips_unreadable(tmp_path):
    _wav(tmp_path / "a" / "ok.wav", seconds=0.5, sr=8000)
    (tmp_path / "a" / "bad.wav").write_bytes(b"not a wav file")
    ls = from_folders(tmp_path)
    with pytest.warns(UserWarning, match="bad.wav"):
        waves, kept = load_clips(ls, clip_seconds=1.0, sample_rate=16000, progress=False)
    assert waves.shape == (1, 16000) and waves.dtype == torch.float32
    assert [c.path.name for c in kept.clips] == ["ok.wav"]
    # Centred: the 0.5 s tone sits between 0.25 s and 0.75 s of zeros.
    assert float(waves[0, :3000].abs().max()) == 0.0 and float(waves[0, 5000:11000].abs().max()) > 0.1


def test_fix_length_crops_centre():
    x = np.arange(10, dtype=np.float32)
    assert fix_length(x, 4).tolist() == [3, 4, 5, 6]
    assert fix_length(x, 12).tolist() == [0, *range(10), 0]


def test_single_label_set_rejects_two_labels(tmp_path):
    from audiomae.labels import Clip

    with pytest.raises(ValueError, match="single-label"):
        LabelSet((Clip(tmp_path / "x.wav", ("a", "b")),), ("a", "b"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LabelSet((Clip(tmp_path / "x.wav", ("a", "b")),), ("a", "b"), multilabel=True)
