"""Vocoder copy-synthesis quality and speed on LibriSpeech dev.

Each dev file -> log-mel (the project's front end) -> fast Griffin-Lim at a few iteration
counts (from random phase on the NNLS magnitude; from PGHI phase on the flat-start NNLS
magnitude, the `resynth` default) / the neural vocoder -> PESQ-WB, STOI and log-spectral
distance against the original, DNSMOS SIG / OVRL (non-intrusive, Microsoft's P.835 model from
``speechmos``) of the output, and the single-thread real-time factor (synthesis time / audio duration,
``torch.set_num_threads(1)``; each file's time is the fastest of ``--timing-repeats`` runs),
as CPU time (the compute, which other jobs on a shared machine do not inflate much) and as
wall-clock time (which also counts waiting for a core).
Two reference rows: the original audio (DNSMOS only) and Griffin-Lim from the original's true
STFT magnitude instead of the mel (the phase-retrieval ceiling: what the mel inversion costs is
the gap between that row and the same count from the log-mel). Also times one
:meth:`Vocoder.synthesize_window` call as a concealer makes it (one 20 ms packet plus the
exact context). Prints a markdown table.

    python benchmarks/bench_vocoder.py [--max-files N] [--checkpoint DIR] [--gl-iters 16 32 64]
        [--pghi-iters 32]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

from audiomae.audio import FRAMES_PER_PACKET, SAMPLE_RATE, load_audio
from audiomae.eval.metrics import lsd_lost, pesq_wb, stoi
from audiomae.features import LogMel, _padded_window
from audiomae.vocoder import (
    COPY_SYNTHESIS_ITERS,
    GriffinLim,
    Vocoder,
    griffin_lim,
    load_default_vocoder,
    stft,
)

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "librispeech" / "dev"


def dnsmos_scorer():
    """``score(wave) -> {"sig": ..., "ovrl": ...}``: speechmos's DNSMOS (P.835, not personalised)
    on one onnxruntime thread, so it neither competes with nor spins beside the timed synthesis."""
    try:
        import onnxruntime as ort
        from speechmos import dnsmos
    except ImportError as exc:
        raise ImportError("DNSMOS needs speechmos and onnxruntime: pip install 'audiomae[eval]'") from exc

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    models = Path(dnsmos.__file__).parent / "dnsmos_models"
    model = dnsmos.DNSMOS.__new__(dnsmos.DNSMOS)  # its __init__ takes no session options
    model.primary_model_path = str(models / "sig_bak_ovr.onnx")
    model.onnx_sess = ort.InferenceSession(model.primary_model_path, opts)
    model.p808_onnx_sess = ort.InferenceSession(str(models / "model_v8.onnx"), opts)

    def score(wave: np.ndarray) -> dict[str, float]:
        result = model(np.clip(wave, -1.0, 1.0).astype(np.float32), SAMPLE_RATE, False)
        return {"sig": float(result["sig_mos"]), "ovrl": float(result["ovrl_mos"])}

    return score


def score(ref: np.ndarray, deg: np.ndarray) -> dict[str, float]:
    ref = ref[: deg.size]
    return {
        "pesq": pesq_wb(ref, deg),
        "stoi": stoi(ref, deg),
        "lsd": lsd_lost(ref, deg, np.ones(ref.size // 320 + 1, dtype=bool)),
    }


def from_mel(vocoder):
    """A mel -> waveform vocoder as a ``(mel, original) -> waveform`` synthesiser."""
    return lambda mel, wave: vocoder(mel)


def window_call_ms(vocoder: Vocoder, repeats: int = 50) -> float:
    left, right = vocoder.context_frames
    mel = torch.randn(1, vocoder.cfg.n_mels, left + FRAMES_PER_PACKET + right) - 6.0
    vocoder.synthesize_window(mel, left, left + FRAMES_PER_PACKET)
    start = time.perf_counter()
    for _ in range(repeats):
        vocoder.synthesize_window(mel, left, left + FRAMES_PER_PACKET)
    return (time.perf_counter() - start) / repeats * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(DEFAULT_DATA), help="folder of 16 kHz speech files")
    p.add_argument("--max-files", type=int, default=None, help="first N files (default: all)")
    p.add_argument("--checkpoint", help="neural vocoder checkpoint (default: the bundled weights)")
    p.add_argument(
        "--gl-iters",
        type=int,
        nargs="*",
        default=[16, 32, 64],
        help="iteration counts of Griffin-Lim from random phase on the NNLS magnitude",
    )
    p.add_argument(
        "--pghi-iters",
        type=int,
        nargs="*",
        default=[COPY_SYNTHESIS_ITERS],
        help="iteration counts of Griffin-Lim started from PGHI phase on the flat-start NNLS magnitude",
    )
    p.add_argument(
        "--true-iters",
        type=int,
        default=COPY_SYNTHESIS_ITERS,
        help="iterations of the true-magnitude Griffin-Lim row (0: leave it out)",
    )
    p.add_argument(
        "--refine",
        type=int,
        default=0,
        help="also score the neural output refined by N Griffin-Lim iterations (0: leave it out)",
    )
    p.add_argument(
        "--timing-repeats",
        type=int,
        default=3,
        help="synthesise each file this many times and time the fastest (the outputs are identical)",
    )
    args = p.parse_args()
    torch.set_num_threads(1)

    files = sorted(Path(args.data_dir).glob("*.flac")) + sorted(Path(args.data_dir).glob("*.wav"))
    if not files:
        raise FileNotFoundError(f"no .flac/.wav files in {args.data_dir}")
    files = files[: args.max_files]
    neural = (Vocoder.from_pretrained(args.checkpoint) if args.checkpoint else load_default_vocoder()).eval()
    cfg = neural.feature_cfg
    window = _padded_window(cfg)
    # name -> synthesise(mel (1, F, T), original (1, S)) -> (1, (T - 1) * hop)
    vocoders = {}
    if args.true_iters:

        def true_magnitude(mel: torch.Tensor, wave: torch.Tensor) -> torch.Tensor:
            magnitude = stft(wave, cfg, window)[..., : mel.shape[-1]].abs()
            gen = torch.Generator().manual_seed(0)
            return griffin_lim(mel, cfg, args.true_iters, magnitude=magnitude, generator=gen)

        true_name = f"Griffin-Lim from the true STFT magnitude, random start ({args.true_iters} it)"
        vocoders[true_name] = true_magnitude
    for n_iter in args.gl_iters:
        plain = GriffinLim(cfg, n_iter, method="nnls", n_inversion_iter=30, init_phase="random")
        vocoders[f"Griffin-Lim, random start, NNLS, {n_iter} it"] = from_mel(plain)
    for n_iter in args.pghi_iters:
        default = " (`resynth` default)" if n_iter == COPY_SYNTHESIS_ITERS else ""
        pghi_gl = GriffinLim(cfg, n_iter, method="flat", n_inversion_iter=60, init_phase="pghi")
        vocoders[f"Griffin-Lim, PGHI start, flat-start NNLS, {n_iter} it{default}"] = from_mel(pghi_gl)
    vocoders["neural, bundled (`--vocoder neural`)" if not args.checkpoint else "neural"] = from_mel(neural)
    if args.refine:

        def refined(mel: torch.Tensor, wave: torch.Tensor) -> torch.Tensor:
            # The neural magnitude, and its phase as the start of a few Griffin-Lim steps.
            spec = neural.spectrum(mel)
            start = neural(mel)
            return griffin_lim(mel, cfg, args.refine, magnitude=spec.abs(), init_audio=start)

        vocoders[f"neural + {args.refine} GL it"] = refined
    frontend = LogMel(cfg)
    dnsmos = dnsmos_scorer()
    original = "the original audio"
    scores = {name: [] for name in [original, *vocoders]}
    cpu_s = {name: 0.0 for name in vocoders}
    wall_s = {name: 0.0 for name in vocoders}
    audio_s = 0.0
    from tqdm.auto import tqdm

    for path in tqdm(files, desc="files"):
        wave = load_audio(path)
        audio_s += wave.size / SAMPLE_RATE
        scores[original].append(dnsmos(wave))
        with torch.no_grad():
            x = torch.from_numpy(wave).unsqueeze(0)
            mel = frontend(x[0]).unsqueeze(0)
            for name, synthesise in vocoders.items():
                # The fastest of a few runs: other jobs on a shared machine only ever add time.
                cpu, wall = [], []
                for _ in range(args.timing_repeats):
                    start, start_cpu = time.perf_counter(), time.process_time()
                    out = synthesise(mel, x)[0].clamp(-1, 1).numpy()
                    cpu.append(time.process_time() - start_cpu)
                    wall.append(time.perf_counter() - start)
                cpu_s[name] += min(cpu)
                wall_s[name] += min(wall)
                scores[name].append(score(wave, out) | dnsmos(out))

    def mean(name: str, key: str, digits: int) -> str:
        vals = [s[key] for s in scores[name] if key in s and not math.isnan(s[key])]
        return f"{np.mean(vals):.{digits}f}" if vals else "-"

    print(f"\n{len(files)} files, {audio_s:.0f} s of audio from {args.data_dir}; 1 thread\n")
    print("| vocoder | PESQ-WB | STOI | LSD (dB) | DNSMOS SIG / OVRL | RTF, 1 thread: CPU / wall |")
    print("|---|---|---|---|---|---|")
    for name in scores:
        rtf = f"{cpu_s[name] / audio_s:.4f} / {wall_s[name] / audio_s:.4f}" if name in cpu_s else "-"
        cells = [mean(name, "pesq", 2), mean(name, "stoi", 3), mean(name, "lsd", 2)]
        cells += [f"{mean(name, 'sig', 2)} / {mean(name, 'ovrl', 2)}", rtf]
        print(f"| {name} | {' | '.join(cells)} |")
    left, right = neural.context_frames
    print(
        f"\nneural synthesize_window, one 20 ms packet + {left} left / {right} right context frames: "
        f"{window_call_ms(neural):.2f} ms per call; {neural.num_params() / 1e6:.2f} M parameters "
        f"({neural.num_params() * 4 / 1e6:.1f} MB float32)"
    )


if __name__ == "__main__":
    main()
