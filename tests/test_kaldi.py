"""The Kaldi fbank front end against torchaudio.compliance.kaldi.fbank (stored fixture, see
tests/data/README.md) and its own properties."""

from pathlib import Path

import numpy as np
import pytest
import torch

from audiomae.config import FeatureConfig
from audiomae.features import LogMel, make_frontend
from audiomae.kaldi import KaldiFbank, fix_frames

FIXTURE = Path(__file__).parent / "data" / "reference" / "kaldi_fbank.npz"


@pytest.fixture(scope="module")
def stored():
    with np.load(FIXTURE) as data:
        return {k: data[k] for k in data.files}


@pytest.mark.parametrize("clip", ["a", "b"])
def test_matches_torchaudio_fixture(stored, clip):
    fe = KaldiFbank(FeatureConfig.kaldi_fbank(target_frames=None))
    ours = fe(torch.from_numpy(stored[f"wave_{clip}"])).numpy()
    ref = stored[f"fbank_{clip}"].T  # torchaudio gives (T, F)
    assert ours.shape == ref.shape
    err = np.abs(ours - ref)
    # Bins more than 20 nepers (87 dB) below their frame's loudest sit at float32 rounding noise
    # (pre-emphasis leaves little below 50 Hz): identical arithmetic matches them too, but another
    # CPU's FFT / matmul kernels may move them in the last bits, so they get a looser bound.
    floor = ref < ref.max(axis=0, keepdims=True) - 20
    assert err[~floor].max() < 1e-4
    assert err.max() < 1e-2
    if clip == "a":  # constant samples make frames of zeros: Kaldi's floor, float32 epsilon
        assert np.isclose(ref.min(), np.log(np.finfo(np.float32).eps))


def test_target_frames_cut_and_pad(stored):
    wave = torch.from_numpy(stored["wave_a"])
    full = KaldiFbank(FeatureConfig.kaldi_fbank(target_frames=None))(wave)
    assert full.shape == (128, 598)
    cut = make_frontend(FeatureConfig.kaldi_fbank(target_frames=256))(wave)
    assert torch.equal(cut, full[:, :256])
    padded = make_frontend(FeatureConfig.kaldi_fbank())(wave)
    assert padded.shape == (128, 1024)
    assert torch.equal(padded[:, :598], full) and not padded[:, 598:].any()
    assert torch.equal(fix_frames(full[None], 598)[0], full)


def test_batch_equals_per_item(stored):
    fe = KaldiFbank(FeatureConfig.kaldi_fbank())
    a = torch.from_numpy(stored["wave_a"])
    waves = torch.stack([a[:16000], a[30000:46000] * 3])
    batched = fe(waves)
    for i in range(2):
        assert torch.allclose(batched[i], fe(waves[i]), atol=1e-5)


def test_mean_removed_and_num_frames():
    cfg = FeatureConfig.kaldi_fbank(target_frames=None)
    fe = KaldiFbank(cfg)
    wave = torch.randn(16000, generator=torch.Generator().manual_seed(0)) * 0.1
    assert torch.allclose(fe(wave), fe(wave + 0.3), atol=1e-4)  # the clip's mean is removed
    assert fe(wave).shape[-1] == cfg.num_frames(16000) == 98
    assert FeatureConfig.kaldi_fbank().num_frames(16000) == 1024


def test_config_checks():
    with pytest.raises(ValueError, match="frontend"):
        FeatureConfig(frontend="mfcc")
    with pytest.raises(ValueError, match="center=False"):
        FeatureConfig(frontend="kaldi", n_mels=128)
    with pytest.raises(ValueError, match="target_frames"):
        FeatureConfig(target_frames=100)
    with pytest.raises(ValueError, match="make_frontend"):
        LogMel(FeatureConfig.kaldi_fbank())
    with pytest.raises(ValueError, match="kaldi"):
        KaldiFbank(FeatureConfig())
    with pytest.raises(ValueError, match="frame"):
        KaldiFbank(FeatureConfig.kaldi_fbank())(torch.zeros(399))
    assert isinstance(make_frontend(FeatureConfig()), LogMel)
