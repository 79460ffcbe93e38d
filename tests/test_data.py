import numpy as np
import pytest
import soundfile as sf
import torch

from audiomae.data import AudioDataset, find_audio, in_validation, read_manifest


def _write(path, seconds, sr=16000, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    x = 0.1 * np.random.default_rng(seed).standard_normal(int(seconds * sr)).astype(np.float32)
    sf.write(str(path), x, sr)
    return x


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "audio"
    _write(root / "a.wav", 1.0, seed=1)
    _write(root / "sub" / "b.flac", 0.5, seed=2)
    _write(root / "sub" / "deeper" / "c.wav", 2.0, sr=8000, seed=3)
    (root / "notes.txt").write_text("not audio")
    return root


def test_folder_is_recursive_and_sorted(folder):
    files = find_audio(folder)
    assert [p.name for p in files] == ["a.wav", "b.flac", "c.wav"]
    ds = AudioDataset(folder, clip_seconds=0.75)
    assert len(ds) == 3
    assert all(ds[i].shape == (12000,) and ds[i].dtype == torch.float32 for i in range(3))


def test_short_file_is_zero_padded_and_rate_converted(folder):
    ds = AudioDataset(folder, clip_seconds=0.75, random_crop=False)
    b = ds[1]  # 0.5 s file
    assert torch.all(b[8000:] == 0) and b[:8000].abs().sum() > 0
    whole = AudioDataset(folder, clip_seconds=None)
    assert len(whole[2]) == 32000  # 2 s at 8 kHz resampled to 16 kHz


def test_crops_depend_on_seed_epoch_and_index_only(folder):
    ds = AudioDataset(folder, clip_seconds=0.25, seed=3)
    first = ds[0].clone()
    assert torch.equal(AudioDataset(folder, clip_seconds=0.25, seed=3)[0], first)
    ds.set_epoch(1)
    assert not torch.equal(ds[0], first)
    ds.set_epoch(0)
    assert torch.equal(ds[0], first)


def test_manifest_lines_and_csv(folder, tmp_path):
    plain = tmp_path / "list.txt"
    plain.write_text(f"# comment\n{folder / 'a.wav'}\n\naudio/sub/b.flac\n")
    items = read_manifest(plain)
    assert [it.path.name for it in items] == ["a.wav", "b.flac"] and items[0].label is None
    labelled = tmp_path / "labels.csv"
    labelled.write_text("path,label\naudio/a.wav,dog\naudio/sub/b.flac,cat\n")
    ds = AudioDataset(labelled, clip_seconds=0.5, return_labels=True)
    assert ds.classes == ["cat", "dog"]
    wave, label = ds[0]
    assert wave.shape == (8000,) and label == 1
    bad = tmp_path / "bad.csv"
    bad.write_text("a.wav,x,y\n")
    with pytest.raises(ValueError, match="bad.csv:1"):
        read_manifest(bad)


def test_unreadable_file_skipped_with_one_warning(folder):
    (folder / "broken.wav").write_bytes(b"RIFF not really a wav file")
    with pytest.warns(UserWarning, match="broken.wav") as record:
        ds = AudioDataset(folder, clip_seconds=0.5)
    assert len([w for w in record if "broken.wav" in str(w.message)]) == 1
    assert len(ds) == 3 and list(ds.bad) == [folder / "broken.wav"]


def test_empty_and_unreadable_datasets_are_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no audio files found"):
        AudioDataset(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.wav").write_bytes(b"garbage")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no readable audio"):
        AudioDataset(tmp_path / "bad")
    with pytest.raises(FileNotFoundError, match="manifest not found"):
        AudioDataset(tmp_path / "missing.txt")


def test_validation_split_is_fixed_and_disjoint(tmp_path):
    root = tmp_path / "many"
    for i in range(30):
        _write(root / f"f{i:02d}.wav", 0.1, seed=i)
    train = AudioDataset(root, clip_seconds=0.1, split="train", val_fraction=0.3)
    val = AudioDataset(root, clip_seconds=0.1, split="val", val_fraction=0.3)
    names_t = {it.path.name for it in train.items}
    names_v = {it.path.name for it in val.items}
    assert not names_t & names_v and len(names_t | names_v) == 30 and 3 <= len(names_v) <= 18
    assert all(in_validation(root / n, 0.3) for n in names_v)


def test_crops_per_file_repeats_files_with_their_own_crops(folder):
    once = AudioDataset(folder, clip_seconds=0.25, seed=3)
    ds = AudioDataset(folder, clip_seconds=0.25, seed=3, crops_per_file=4)
    assert len(ds) == 12
    assert torch.equal(ds[0], once[0])  # the first round is the plain dataset's
    crops = [ds[0 + 3 * k] for k in range(4)]  # file a.wav, four times
    assert all(not torch.equal(crops[0], c) for c in crops[1:])
    assert all(ds.waveform(i) is ds.waveform(i % 3) for i in range(12))
    with pytest.raises(ValueError, match="crops_per_file"):
        AudioDataset(folder, clip_seconds=0.25, crops_per_file=0)
