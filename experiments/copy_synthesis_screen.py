"""Screen copy-synthesis variants (log-mel -> waveform) on a few LibriSpeech dev files.

Two measures: how far each mel -> linear magnitude estimate is from the true STFT magnitude
(log-spectral error in dB over bins within 60 dB of each file's peak), and PESQ-WB / STOI / CPU
RTF of fast Griffin-Lim from the estimate, one thread (``--iters`` iterations). Variant names:

- ``true``, ``true<HZ``: the true STFT magnitude (everywhere, below HZ; the mel estimate above).
- ``nnlsN``: pseudo-inverse then N multiplicative (Lee-Seung) updates (``nnls30``: what random-
  phase Griffin-Lim used); ``flatN`` / ``bpN`` / ``pinvfloorN``: N updates from a flat start /
  the filterbank back-projection / the pseudo-inverse floored at 1% of it; ``sharp2_N``: the
  NNLS estimate squared before N updates; ``l1_X``: updates with an L1 penalty; ``klN`` /
  ``isN``: Kullback-Leibler / Itakura-Saito updates from a flat start.
- ``_dcX`` / ``_nyq``: DC (Nyquist), which no mel filter weighs, set to X times bin 1's power
  (bin 255's) instead of silence.
- phase start: random (no suffix), ``linphase`` (each bin advanced by its centre frequency),
  ``_pghi`` (PGHI's instantaneous frequency integrated along time only), ``_heap`` (full PGHI:
  time and frequency derivatives integrated outwards from the loudest bins).
- ``melgl*``: mel-consistent Griffin-Lim: from iteration ``sS`` on (every ``eE``, ``stK``
  updates, blended ``bB``), the target magnitude is the rebuilt spectrum's, rescaled by
  multiplicative updates toward the input mel.
- ``m0.9`` / ``m1.1``: Griffin-Lim momentum instead of 0.99.
- ``library``: ``audiomae.vocoder.GriffinLim(n_iter=--iters)``, what ``resynth`` runs.

    OMP_NUM_THREADS=1 python experiments/copy_synthesis_screen.py [--files 8] [--variants ...]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

from audiomae.audio import SAMPLE_RATE, load_audio
from audiomae.config import FeatureConfig
from audiomae.eval.metrics import pesq_wb, stoi
from audiomae.features import LogMel, _padded_window, mel_filterbank
from audiomae.vocoder import GriffinLim, griffin_lim, istft, mel_to_linear_power, pghi, stft

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "librispeech" / "dev"


def lin_phase(cfg: FeatureConfig, nbins: int, t: int) -> torch.Tensor:
    k = torch.arange(nbins, dtype=torch.float32).unsqueeze(1)
    frames = torch.arange(t, dtype=torch.float32).unsqueeze(0)
    phase = 2 * math.pi * k * cfg.hop_length / cfg.n_fft * frames
    return torch.polar(torch.ones_like(phase), phase).unsqueeze(0)


def pghi_time(magnitude: torch.Tensor, cfg: FeatureConfig, floor_db: float = 50.0) -> torch.Tensor:
    """Unit phasors ``(B, K, T)`` from integrating each bin's instantaneous frequency over time.

    The instantaneous frequency comes from the log-magnitude's slope across frequency, as for
    a Gaussian window (PGHI, Prusa et al. 2017; gamma = 0.25645 * win_length ** 2 for Hann):
    a sinusoid at f0 gives every bin of its lobe s(f) = -pi * gamma * (f - f0) ** 2, so
    f0 = f + s'(f) / (2 * pi * gamma). Phase is integrated relative to the window centre
    (all bins of a stationary lobe then agree) and shifted to torch.stft's frame start.
    """
    n = cfg.n_fft
    gamma = 0.25645 * cfg.win_length**2
    s = magnitude.clamp_min(1e-10).log()
    k = torch.arange(s.shape[1], dtype=s.dtype).view(1, -1, 1)
    ds = torch.zeros_like(s)
    ds[:, 1:-1] = (s[:, 2:] - s[:, :-2]) * (n / 2)
    corr = ds / (2 * math.pi * gamma)
    # Bins far below the frame's peak carry no reliable slope: their bin centre frequency.
    quiet = s < s.amax(dim=1, keepdim=True) - floor_db / 20 * math.log(10)
    corr = torch.where(quiet, torch.zeros_like(corr), corr).clamp(-2 / n, 2 / n)
    f = k / n + corr
    step = math.pi * cfg.hop_length * (f[..., 1:] + f[..., :-1])
    phase = torch.cat([torch.zeros_like(f[..., :1]), step.cumsum(-1)], dim=-1)
    phase = phase + math.pi * k
    return torch.polar(torch.ones_like(phase), phase)


def mel_gl(
    mel: torch.Tensor,
    cfg: FeatureConfig,
    n_iter: int,
    start: int = 0,
    every: int = 1,
    steps: int = 1,
    momentum: float = 0.99,
    init: str = "random",
    blend: float = 1.0,
    magnitude: torch.Tensor | None = None,
) -> torch.Tensor:
    """Fast Griffin-Lim whose target magnitude follows the rebuilt spectrum, kept mel-consistent."""
    fb = mel_filterbank(cfg)
    target = mel.exp()
    if magnitude is None:
        magnitude = mel_to_linear_power(mel, cfg).sqrt()
    window = _padded_window(cfg)
    t = mel.shape[-1]
    if init == "linphase":
        angles = lin_phase(cfg, magnitude.shape[1], t)
    elif init == "pghi":
        angles = pghi_time(magnitude, cfg)
    elif init == "heap":
        angles = pghi(magnitude, cfg, generator=torch.Generator().manual_seed(0))
    else:
        gen = torch.Generator().manual_seed(0)
        rand = torch.rand(magnitude.shape, generator=gen) * (2 * math.pi)
        angles = torch.polar(torch.ones_like(rand), rand)
    prev = torch.zeros_like(angles)
    fbt = fb.T.contiguous()
    for i in range(n_iter):
        wave = istft(magnitude * angles, cfg, window)
        rebuilt = stft(wave, cfg, window)[..., :t]
        if i >= start and (i - start) % every == 0:
            p = rebuilt.abs().square().clamp_min(cfg.log_floor)
            for _ in range(steps):
                p = p * (fbt @ target) / (fbt @ (fb @ p)).clamp_min(1e-12)
            new = p.sqrt()
            magnitude = new if blend >= 1.0 else (new**blend) * (magnitude ** (1 - blend))
        angles = rebuilt - prev * (momentum / (1.0 + momentum))
        angles = angles / angles.abs().clamp_min(1e-16)
        prev = rebuilt
    return istft(magnitude * angles, cfg, window)


def true_magnitude(mel: torch.Tensor, wave: torch.Tensor) -> torch.Tensor:
    cfg = FeatureConfig()
    return stft(wave, cfg, _padded_window(cfg))[..., : mel.shape[-1]].abs()


def variants(cfg: FeatureConfig, n_iter: int) -> dict:
    def nnls(k):
        def run(mel, wave):
            mag = mel_to_linear_power(mel, cfg, n_iter=k).sqrt()
            gen = torch.Generator().manual_seed(0)
            return griffin_lim(mel, cfg, n_iter, magnitude=mag, generator=gen)

        return run

    def true_mag(mel, wave):
        mag = true_magnitude(mel, wave)
        gen = torch.Generator().manual_seed(0)
        return griffin_lim(mel, cfg, n_iter, magnitude=mag, generator=gen)

    def hybrid(hz):
        def run(mel, wave):
            true = true_magnitude(mel, wave)
            est = mel_to_linear_power(mel, cfg).sqrt()
            cut = int(hz / cfg.sample_rate * cfg.n_fft)
            mag = torch.cat([true[:, :cut], est[:, cut:]], dim=1)
            gen = torch.Generator().manual_seed(0)
            return griffin_lim(mel, cfg, n_iter, magnitude=mag, generator=gen)

        return run

    def inv(
        start: str,
        k: int,
        l1: float = 0.0,
        sharpen: float = 1.0,
        phase: str = "random",
        div: str = "euc",
        dc: float = 0.0,
        nyq: float = 0.0,
    ):
        fb = mel_filterbank(cfg)

        def run(mel, wave):
            target = mel.exp()
            if start == "flat":
                p = (
                    torch.ones(1, fb.shape[1], mel.shape[-1])
                    * target.mean(1, keepdim=True)
                    / fb.sum(1).mean()
                )
            elif start == "bp":
                p = (fb.T @ target) / (fb.T @ fb.sum(1, keepdim=True)).clamp_min(1e-12)
            elif start == "pinvfloor":
                p = mel_to_linear_power(mel, cfg, method="pinv")
                p = torch.maximum(
                    p, 1e-2 * (fb.T @ target) / (fb.T @ fb.sum(1, keepdim=True)).clamp_min(1e-12)
                )
            else:
                p = mel_to_linear_power(mel, cfg, n_iter=30)
            p = p**sharpen
            numer = fb.T @ target
            ones = fb.T @ torch.ones_like(target)
            for _ in range(k):
                if div == "kl":
                    p = p * (fb.T @ (target / (fb @ p).clamp_min(1e-20))) / ones.clamp_min(1e-12)
                    continue
                if div == "is":
                    m = (fb @ p).clamp_min(1e-20)
                    p = p * ((fb.T @ (target / m**2)) / (fb.T @ (1 / m)).clamp_min(1e-30)).sqrt()
                    continue
                den = fb.T @ (fb @ p)
                p = p * numer / (den + l1 * den.mean(1, keepdim=True)).clamp_min(1e-12)
            if dc:
                p = p.clone()
                p[:, 0] = dc * p[:, 1]
            if nyq:
                p[:, -1] = nyq * p[:, -2]
            mag = p.clamp_min(cfg.log_floor).sqrt()
            if phase in ("pghi", "heap"):
                return mel_gl(mel, cfg, n_iter, start=n_iter, init=phase, magnitude=mag)
            gen = torch.Generator().manual_seed(0)
            return griffin_lim(mel, cfg, n_iter, magnitude=mag, generator=gen)

        return run

    return {
        "library": lambda mel, wave: GriffinLim(cfg, n_iter)(mel),
        "true": true_mag,
        "true<500": hybrid(500),
        "true<250": hybrid(250),
        "flat200": inv("flat", 200),
        "flat30": inv("flat", 30),
        "flat100": inv("flat", 100),
        "bp30": inv("bp", 30),
        "flat30_pghi": inv("flat", 30, phase="pghi"),
        "nnls30_dc1": inv("nnls", 0, dc=1.0),
        "flat60_pghi_dc1": inv("flat", 60, phase="pghi", dc=1.0),
        "flat60_pghi_dc.5": inv("flat", 60, phase="pghi", dc=0.5),
        "flat60_pghi_dc.25": inv("flat", 60, phase="pghi", dc=0.25),
        "flat60_pghi_dc2": inv("flat", 60, phase="pghi", dc=2),
        "flat60_pghi_dc1_nyq": inv("flat", 60, phase="pghi", dc=1, nyq=1),
        "flat30_pghi_dc1": inv("flat", 30, phase="pghi", dc=1.0),
        "nnls30_pghi_dc1": inv("nnls", 0, phase="pghi", dc=1.0),
        "flat30_dc1": inv("flat", 30, dc=1.0),
        "flat30_heap_dc1": inv("flat", 30, phase="heap", dc=1.0),
        "flat60_heap_dc1": inv("flat", 60, phase="heap", dc=1.0),
        "flat30_heap": inv("flat", 30, phase="heap"),
        "nnls30_heap": inv("nnls", 0, phase="heap"),
        "heap_true": lambda mel, wave: mel_gl(
            mel, cfg, n_iter, start=n_iter, init="heap", magnitude=true_magnitude(mel, wave)
        ),
        "kl30_pghi": inv("flat", 30, phase="pghi", div="kl"),
        "kl60_pghi": inv("flat", 60, phase="pghi", div="kl"),
        "is30_pghi": inv("flat", 30, phase="pghi", div="is"),
        "is60_pghi": inv("flat", 60, phase="pghi", div="is"),
        "flat60_pghi": inv("flat", 60, phase="pghi"),
        "flat200_pghi": inv("flat", 200, phase="pghi"),
        "bp100": inv("bp", 100),
        "bp400": inv("bp", 400),
        "pinvfloor30": inv("pinvfloor", 30),
        "pinvfloor100": inv("pinvfloor", 100),
        "sharp2_30": inv("nnls", 30, sharpen=2.0),
        "sharp2_100": inv("nnls", 100, sharpen=2.0),
        "l1_0.1": inv("nnls", 100, l1=0.1),
        "l1_0.5": inv("nnls", 100, l1=0.5),
        "true<1k": hybrid(1000),
        "true<2k": hybrid(2000),
        "true<4k": hybrid(4000),
        "nnls30": nnls(30),
        "nnls200": nnls(200),
        "melgl": lambda mel, wave: mel_gl(mel, cfg, n_iter),
        "melgl_s8": lambda mel, wave: mel_gl(mel, cfg, n_iter, start=8),
        "melgl_s16": lambda mel, wave: mel_gl(mel, cfg, n_iter, start=16),
        "melgl_st3": lambda mel, wave: mel_gl(mel, cfg, n_iter, steps=3),
        "melgl_e4": lambda mel, wave: mel_gl(mel, cfg, n_iter, every=4),
        "melgl_b05": lambda mel, wave: mel_gl(mel, cfg, n_iter, blend=0.5),
        "linphase": lambda mel, wave: mel_gl(mel, cfg, n_iter, start=n_iter, init="linphase"),
        "pghi": lambda mel, wave: mel_gl(mel, cfg, n_iter, start=n_iter, init="pghi"),
        "pghi_true": lambda mel, wave: mel_gl(
            mel, cfg, n_iter, start=n_iter, init="pghi", magnitude=true_magnitude(mel, wave)
        ),
        "pghi_melgl48": lambda mel, wave: mel_gl(mel, cfg, n_iter, start=48, init="pghi"),
        "pghi_melgl_end": lambda mel, wave: mel_gl(mel, cfg, n_iter, start=n_iter - 2, init="pghi"),
        "pghi_m0.9": lambda mel, wave: mel_gl(mel, cfg, n_iter, start=n_iter, init="pghi", momentum=0.9),
        "pghi_m1.1": lambda mel, wave: mel_gl(mel, cfg, n_iter, start=n_iter, init="pghi", momentum=1.1),
        "melgl_lin": lambda mel, wave: mel_gl(mel, cfg, n_iter, init="linphase"),
    }


def log_spectral_error(est: torch.Tensor, true: torch.Tensor) -> float:
    """RMS dB difference of two magnitudes over bins within 60 dB of the true peak."""
    e = 20 * torch.log10(est.clamp_min(1e-5))
    r = 20 * torch.log10(true.clamp_min(1e-5))
    keep = r > r.max() - 60
    return float((e - r)[keep].square().mean().sqrt())


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(DATA), help="folder of 16 kHz speech files")
    p.add_argument("--files", type=int, default=8)
    p.add_argument("--iters", type=int, default=64)
    p.add_argument("--variants", nargs="+", default=None)
    p.add_argument("--inversion", action="store_true", help="also the magnitude error table")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cfg = FeatureConfig()
    files = sorted(Path(args.data_dir).glob("*.flac")) + sorted(Path(args.data_dir).glob("*.wav"))
    files = files[:: max(1, len(files) // args.files)][: args.files]
    frontend = LogMel(cfg)
    window = _padded_window(cfg)
    table = variants(cfg, args.iters)
    names = args.variants or list(table)
    res = {n: {"pesq": [], "stoi": [], "cpu": 0.0} for n in names}
    lse = {}
    audio_s = 0.0
    for path in files:
        wave = load_audio(path)
        audio_s += wave.size / SAMPLE_RATE
        x = torch.from_numpy(wave).unsqueeze(0)
        with torch.no_grad():
            mel = frontend(x[0]).unsqueeze(0)
            if args.inversion:
                true = stft(x, cfg, window)[..., : mel.shape[-1]].abs()
                for k in (0, 30, 100, 300):
                    est = mel_to_linear_power(mel, cfg, method="pinv" if k == 0 else "nnls", n_iter=k)
                    lse.setdefault(f"nnls{k}", []).append(log_spectral_error(est.sqrt(), true))
            for n in names:
                start = time.process_time()
                out = table[n](mel, x)[0].clamp(-1, 1).numpy()
                res[n]["cpu"] += time.process_time() - start
                res[n]["pesq"].append(pesq_wb(wave[: out.size], out))
                res[n]["stoi"].append(stoi(wave[: out.size], out))
        print(path.name, {n: round(res[n]["pesq"][-1], 2) for n in names}, flush=True)
    for k, v in lse.items():
        print(f"inversion {k}: {np.mean(v):.2f} dB")
    print(f"\n{len(files)} files, {audio_s:.0f} s, {args.iters} iterations, 1 thread\n")
    print("| variant | PESQ-WB | STOI | CPU RTF |\n|---|---|---|---|")
    for n in names:
        r = res[n]
        print(f"| {n} | {np.mean(r['pesq']):.2f} | {np.mean(r['stoi']):.3f} | {r['cpu'] / audio_s:.4f} |")
    return res


if __name__ == "__main__":
    main()
