"""Make the reference fixtures in this folder by running the original code (see ../README.md).

    OMP_NUM_THREADS=1 /tmp/refvenv/bin/python tests/data/reference/make_fixtures.py \
        --reference /tmp/refwork/AudioMAE \
        --kaldi /tmp/refvenv/lib/python3.11/site-packages/torchaudio/compliance/kaldi.py

Not a test and not part of the package: it needs the reference checkout, timm 0.3.2 and
torchaudio's kaldi.py, none of which the project depends on.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import types
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent
SR = 16000
AUDIOSET_MEAN, AUDIOSET_STD = -4.2677393, 4.5689974  # main_finetune_as.py norm_stats['audioset']


def _stub(name: str) -> types.ModuleType:
    class Stub(types.ModuleType):
        def __getattr__(self, attr):
            if attr.startswith("__"):
                raise AttributeError(attr)
            return type(attr, (), {})

    module = sys.modules[name] = Stub(name)
    return module


def shims() -> None:
    """What the 2022 code needs on torch 2.13 / numpy 2 (none of it runs in the fixtures):
    torchvision (imported by timm 0.3.2's data pipeline) and torchaudio (imported by the reference's
    util modules) are stubbed, torch._six.inf and np.float are restored."""
    tv = _stub("torchvision")
    tv.transforms = _stub("torchvision.transforms")
    tv.transforms.functional = _stub("torchvision.transforms.functional")
    tv.datasets = _stub("torchvision.datasets")
    if "torchaudio" not in sys.modules:
        _stub("torchaudio")
    six = types.ModuleType("torch._six")
    six.inf = math.inf
    sys.modules["torch._six"] = six
    np.float = float  # util/pos_embed.py: np.arange(..., dtype=np.float)


def load_kaldi(path: str):
    """torchaudio's compliance/kaldi.py, loaded on its own: its fbank is plain torch (the module
    imports torchaudio only for mfcc's DCT), and torchaudio's compiled extension does not load
    on this torch."""
    if "torchaudio" not in sys.modules:
        _stub("torchaudio")
    spec = importlib.util.spec_from_file_location("torchaudio_kaldi", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def clips() -> dict[str, np.ndarray]:
    """Two deterministic test signals: 6 s of a chirp, harmonic bursts, noise, a DC offset and a
    stretch of constant samples (silent frames, which hit Kaldi's log floor), and 8123 samples of
    louder noise and a tone."""
    rng = np.random.default_rng(35)
    t = np.arange(6 * SR) / SR
    chirp = 0.3 * np.sin(2 * np.pi * (100 * t + (6000 - 100) / (2 * 6) * t**2))
    bursts = sum(0.1 / k * np.sin(2 * np.pi * 220 * k * t) for k in range(1, 8)) * (
        np.sin(2 * np.pi * 1.5 * t) > 0
    )
    a = chirp + bursts + 0.01 * rng.standard_normal(t.size) + 0.05
    a[40000:48000] = 0.05
    tb = np.arange(8123) / SR
    b = 0.5 * rng.standard_normal(tb.size) * np.hanning(tb.size) + 0.3 * np.sin(2 * np.pi * 1234.5 * tb)
    return {"a": a.astype(np.float32), "b": b.astype(np.float32)}


def reference_fbank(kaldi, wave: np.ndarray):
    """dataset.py AudiosetDataset._wav2fbank, without the pad/cut (waveform as torchaudio.load gives it)."""
    import torch

    w = torch.from_numpy(wave)[None]
    w = w - w.mean()
    return kaldi.fbank(
        w,
        htk_compat=True,
        sample_frequency=SR,
        use_energy=False,
        window_type="hanning",
        num_mel_bins=128,
        dither=0.0,
        frame_shift=10,
    )


def make_fbank_fixture(kaldi) -> None:
    out = {}
    for name, wave in clips().items():
        out[f"wave_{name}"] = wave
        out[f"fbank_{name}"] = reference_fbank(kaldi, wave).numpy()
    np.savez_compressed(OUT / "kaldi_fbank.npz", **out)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--reference", required=True, help="checkout of facebookresearch/AudioMAE")
    p.add_argument("--kaldi", required=True, help="torchaudio/compliance/kaldi.py")
    args = p.parse_args()
    kaldi = load_kaldi(args.kaldi)
    make_fbank_fixture(kaldi)
    shims()
    sys.path.insert(0, args.reference)
    if "models" in globals():
        pass


if __name__ == "__main__":
    main()
