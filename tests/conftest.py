import numpy as np
import pytest
import torch

from audiomae.audio import SAMPLE_RATE


@pytest.fixture(autouse=True)
def _small_threads():
    # Tests run on 2-core CI machines next to each other; one thread keeps timings stable.
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


def voiced(seconds: float = 1.0, f0: float = 140.0, sr: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """A speech-like test signal: harmonic tone with a slow amplitude envelope plus light noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 12))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2
    return (0.2 * env * x + 0.003 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture
def voiced_signal():
    return voiced()
