import librosa
import numpy as np
import pytest
import torch

from audiomae.config import FeatureConfig
from audiomae.features import LogMel, compute_norm_stats, pad_frames, patchify, unpatchify


def librosa_logmel(x: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    mel = librosa.feature.melspectrogram(
        y=x.astype(np.float64),
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.win_length,
        center=True,
        pad_mode="constant",
        power=2.0,
        n_mels=cfg.n_mels,
        fmin=cfg.f_min,
        fmax=cfg.fmax,
    )
    return np.log(np.maximum(mel, cfg.log_floor))


@pytest.mark.parametrize("backend", ["nnaudio", "torch"])
@pytest.mark.parametrize("cfg", [FeatureConfig(), FeatureConfig.audioset()])
def test_matches_librosa_float64(backend, cfg, voiced_signal):
    ours = LogMel(cfg, backend=backend)(torch.from_numpy(voiced_signal)).numpy()
    ref = librosa_logmel(voiced_signal, cfg)
    assert ours.shape == ref.shape == (cfg.n_mels, cfg.num_frames(len(voiced_signal)))
    # Compare where the signal has energy: log of near-zero power amplifies float32 noise.
    loud = ref > ref.max() - 60 / 4.343
    assert np.max(np.abs(ours - ref)[loud]) < 1e-3


def test_backends_agree(voiced_signal):
    x = torch.from_numpy(voiced_signal)
    a, b = LogMel(backend="nnaudio")(x), LogMel(backend="torch")(x)
    assert torch.allclose(a, b, atol=1e-3)


def test_batch_equals_per_item():
    torch.manual_seed(0)
    waves = torch.randn(3, 8000) * 0.1
    fe = LogMel()
    batched = fe(waves)
    for i in range(3):
        assert torch.allclose(batched[i], fe(waves[i]), atol=1e-5)


def test_unknown_backend_and_bad_shape():
    with pytest.raises(ValueError, match="backend"):
        LogMel(backend="nope")
    with pytest.raises(ValueError, match="shape"):
        LogMel()(torch.zeros(1, 1, 100))


def test_norm_stats(voiced_signal):
    fe = LogMel()
    stats = compute_norm_stats([voiced_signal, voiced_signal[:8000]], fe)
    x = stats.normalize(fe(torch.from_numpy(voiced_signal)))
    assert abs(float(x.mean())) < 0.2 and 0.8 < float(x.std()) < 1.2
    assert torch.allclose(stats.denormalize(x), fe(torch.from_numpy(voiced_signal)), atol=1e-4)
    with pytest.raises(ValueError):
        compute_norm_stats([], fe)


@pytest.mark.parametrize("geom", [(16, 2), (16, 16), (8, 4), (80, 1)])
def test_patchify_round_trip(geom):
    pf, pt = geom
    spec = torch.randn(2, 80, 32)
    patches = patchify(spec, pf, pt)
    assert patches.shape == (2, (80 // pf) * (32 // pt), pf * pt)
    assert torch.equal(unpatchify(patches, 80, pf, pt), spec)


def test_patch_order_is_time_major():
    # A lost packet (one time column) must be a contiguous run of grid_f tokens.
    spec = torch.zeros(1, 80, 8)
    spec[..., 2:4] = 1.0  # second 2-frame column
    patches = patchify(spec, 16, 2)
    hot = patches.abs().sum(-1)[0].nonzero().flatten().tolist()
    assert hot == [5, 6, 7, 8, 9]


def test_patchify_rejects_bad_geometry_and_pads():
    with pytest.raises(ValueError):
        patchify(torch.zeros(1, 80, 31), 16, 2)
    padded = pad_frames(torch.zeros(1, 80, 31), 2)
    assert padded.shape[-1] == 32
