"""Phase-gradient heuristic integration (PGHI; Prusa, Balazs and Sondergaard 2017): an STFT
phase estimated from the magnitude alone, used to start Griffin-Lim near a consistent phase.

For a Gaussian window ``exp(-pi * n**2 / gamma)`` (a Hann window of length L is close to one with
``gamma = 0.25645 * L**2``) the log-magnitude ``s`` fixes both phase derivatives: a sinusoid at
``f0`` gives every bin of its lobe ``s(f) = -pi * gamma * (f - f0)**2``, so the phase advances in
time at ``f0 = f + s_f / (2 * pi * gamma)``; an impulse gives ``d phase / d f = -gamma * s_t``.
The derivatives are integrated outwards from the loudest bins (a max-heap), so the phase of each
bin comes from its most reliable neighbour.
"""

from __future__ import annotations

import heapq
import math

import numpy as np
import torch

from audiomae.config import FeatureConfig

HANN_GAMMA = 0.25645  # Gaussian fit of a Hann window, times win_length ** 2 (Prusa et al. 2017)


def _integrate(s: np.ndarray, tgrad: np.ndarray, fgrad: np.ndarray, tol: float) -> np.ndarray:
    # s, tgrad, fgrad: (K, T). Cells below tol are left at phase 0 (the caller randomises them).
    nk, nt = s.shape
    phase = np.zeros((nk, nt))
    done = s < tol
    order = np.argsort(-s.ravel())
    heap = [(0.0, 0, 0)]
    heap.pop()
    for flat in order:
        k0, t0 = flat // nt, flat % nt
        if done[k0, t0]:
            continue
        done[k0, t0] = True
        heapq.heappush(heap, (-s[k0, t0], k0, t0))
        while heap:
            _, k, t = heapq.heappop(heap)
            if t + 1 < nt and not done[k, t + 1]:
                phase[k, t + 1] = phase[k, t] + 0.5 * (tgrad[k, t] + tgrad[k, t + 1])
                done[k, t + 1] = True
                heapq.heappush(heap, (-s[k, t + 1], k, t + 1))
            if t >= 1 and not done[k, t - 1]:
                phase[k, t - 1] = phase[k, t] - 0.5 * (tgrad[k, t] + tgrad[k, t - 1])
                done[k, t - 1] = True
                heapq.heappush(heap, (-s[k, t - 1], k, t - 1))
            if k + 1 < nk and not done[k + 1, t]:
                phase[k + 1, t] = phase[k, t] + 0.5 * (fgrad[k, t] + fgrad[k + 1, t])
                done[k + 1, t] = True
                heapq.heappush(heap, (-s[k + 1, t], k + 1, t))
            if k >= 1 and not done[k - 1, t]:
                phase[k - 1, t] = phase[k, t] - 0.5 * (fgrad[k, t] + fgrad[k - 1, t])
                done[k - 1, t] = True
                heapq.heappush(heap, (-s[k - 1, t], k - 1, t))
    return phase


_compiled = None


def _integrator():
    # A Python heap over every STFT cell is ~100x too slow for real time; numba (a librosa
    # dependency, so present wherever the mel filterbank is) compiles it once per machine.
    global _compiled
    if _compiled is None:
        try:
            import numba
        except ImportError as exc:
            raise ImportError("PGHI needs numba: pip install 'audiomae[train]'") from exc
        _compiled = numba.njit(cache=True)(_integrate)
    return _compiled


def pghi(
    magnitude: torch.Tensor,
    cfg: FeatureConfig | None = None,
    tol_db: float = 50.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Unit phasors ``(B, n_fft // 2 + 1, T)`` for STFT magnitude ``(B, n_fft // 2 + 1, T)``.

    The phase is in :func:`audiomae.vocoder.stft`'s convention (frames centred on ``t * hop``,
    FFT origin at the frame start). Bins more than ``tol_db`` below the utterance's peak get
    random phase from ``generator``: their derivatives are noise.
    """
    cfg = cfg or FeatureConfig()
    n, hop = cfg.n_fft, cfg.hop_length
    gamma = HANN_GAMMA * cfg.win_length**2
    s = magnitude.detach().double().cpu().clamp_min(1e-10).log()
    k = torch.arange(s.shape[1], dtype=s.dtype).view(1, -1, 1)
    ds_f = torch.zeros_like(s)
    ds_f[:, 1:-1] = (s[:, 2:] - s[:, :-2]) * (n / 2)  # per unit of normalised frequency
    ds_t = torch.zeros_like(s)
    ds_t[..., 1:-1] = (s[..., 2:] - s[..., :-2]) / (2 * hop)  # per sample
    tgrad = 2 * math.pi * hop * (k / n + ds_f / (2 * math.pi * gamma))  # radians per frame
    fgrad = -gamma * ds_t / n  # radians per bin
    integrate = _integrator()
    phase = torch.empty_like(s)
    tol = math.log(10) * tol_db / 20
    for i in range(s.shape[0]):
        peak = float(s[i].max())
        phase[i] = torch.from_numpy(integrate(s[i].numpy(), tgrad[i].numpy(), fgrad[i].numpy(), peak - tol))
    # The derivatives are for a window centred at the FFT origin; torch.stft's origin is the
    # frame start, n_fft / 2 earlier, which turns bin k by pi * k.
    phase = (phase + math.pi * k).float()
    rand = torch.rand(phase.shape, generator=generator) * (2 * math.pi)
    quiet = s < s.amax(dim=(1, 2), keepdim=True) - tol
    phase = torch.where(quiet, rand, phase)
    return torch.polar(torch.ones_like(phase), phase).to(magnitude.device)
