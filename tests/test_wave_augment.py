import random

import numpy as np
import pytest
import torch

from audiomae.train.data import DataSettings, SyntheticSpeech, audio_datasets
from audiomae.train.wave_augment import AugmentedClips, augment_wave, make_augmenter


class _Labelled(torch.utils.data.Dataset):
    def __init__(self, base):
        self.base = base

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        return self.base[i], i % 3


def test_augmented_clips_are_a_pure_function_of_seed_epoch_and_index():
    base = SyntheticSpeech(6, 0.5, seed=1, vary=False)
    a, b = AugmentedClips(base, 1.0, seed=4), AugmentedClips(base, 1.0, seed=4)
    x = a[2]
    assert x.shape == base[2].shape and x.dtype == torch.float32
    assert torch.equal(x, b[2])
    assert not torch.equal(x, base[2])  # p = 1: every clip goes through the chain
    a.set_epoch(1)
    assert not torch.equal(a[2], x)  # a new epoch draws anew
    assert float(a[2].abs().max()) <= 0.99 + 1e-6


def test_augmentation_leaves_global_random_states_alone():
    base = SyntheticSpeech(2, 0.5, seed=1)
    random.seed(7)
    np.random.seed(7)
    AugmentedClips(base, 1.0)[0]
    assert random.random() == random.Random(7).random()
    assert np.random.random() == np.random.RandomState(7).random_sample()


def test_probability_zero_passes_clips_and_labels_through():
    base = _Labelled(SyntheticSpeech(4, 0.25, seed=2, vary=False))
    ds = AugmentedClips(base, 0.0)
    wave, label = ds[1]
    assert torch.equal(wave, base[1][0]) and label == 1
    wave, label = AugmentedClips(base, 1.0)[1]
    assert wave.shape == base[1][0].shape and label == 1


def test_bad_probability_is_refused():
    with pytest.raises(ValueError, match="augment must be a probability"):
        AugmentedClips(SyntheticSpeech(1, 0.25), 1.5)


def test_augment_wave_keeps_rate_and_limits_peak():
    rng = np.random.default_rng(0)
    loud = (np.sin(np.arange(8000) / 5.0) * 3.0).astype(np.float32)
    out = augment_wave(make_augmenter(), loud, rng, room=1.0)
    assert out.dtype == np.float32 and abs(out.size - loud.size) <= loud.size * 0.12
    assert np.max(np.abs(out)) <= 0.99 + 1e-6


def test_pretraining_data_settings_wrap_the_training_clips(tmp_path):
    import soundfile as sf

    for name in ("a", "b"):
        sf.write(tmp_path / f"{name}.wav", np.random.default_rng(0).standard_normal(16000) * 0.1, 16000)
    train, val = audio_datasets(DataSettings(train=str(tmp_path), val=str(tmp_path), augment=0.5), 16000, 0)
    assert isinstance(train, AugmentedClips) and not isinstance(val, AugmentedClips)
    assert train.waveform(0).size == 16000  # whole files for the normalisation statistics
    plain, _ = audio_datasets(DataSettings(train=str(tmp_path), val=str(tmp_path)), 16000, 0)
    assert not isinstance(plain, AugmentedClips)
