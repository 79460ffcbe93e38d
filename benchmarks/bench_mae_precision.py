"""The concealer's MAE pass in fp32, int8 and bf16 on this CPU: time per pass and quality.

    python benchmarks/bench_mae_precision.py [--data ../shared/data/librispeech/dev] [--files 10]
                                             [--windows 20] [--threads 1] [--model DIR]

Times exactly the call the streaming concealer makes for a lost packet: ``reconstruct`` of
its ``context_packets`` window with the lost columns masked, predicting only the columns it
renders (causal layout: a burst of 1-3 packets ends at the packet being concealed, the next
one is unknown). Each precision runs the same windows: fp32 (the model as trained), int8
(``int8_copy``: dynamic int8 linear layers, the concealer's default) and bf16 (bf16 autocast
around the fp32 model). Quality: MSE of the predicted log-mel of the lost columns against the
clean log-mel (normalised domain, what PLC fine-tuning minimises) and the RMS difference from
the fp32 prediction in dB of power. The header says whether the CPU has AMX / AVX512-BF16.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def windows(data: str | None, files: int, per_file: int, n_packets: int, seed: int = 0):
    """(clean wave, lossy wave (lost packets zeroed, as the concealer's MAE sees them), lost
    (n_packets,) bool, columns) for concealment calls."""
    from audiomae.audio import SAMPLES_PER_PACKET, load_audio

    rng = np.random.default_rng(seed)
    length = n_packets * SAMPLES_PER_PACKET
    sources = []
    if data and Path(data).is_dir():
        paths = sorted(p for p in Path(data).rglob("*") if p.suffix in (".flac", ".wav", ".ogg"))
        sources = [load_audio(p) for p in paths[:files]]
    if not sources:  # no data folder: speech-like synthetic clips
        from audiomae.train.pretrain import SyntheticSpeech

        synth = SyntheticSpeech(files, 4.0)
        sources = [synth[i].numpy() for i in range(files)]
    out = []
    for audio in sources:
        for _ in range(per_file):
            start = int(rng.integers(0, max(1, audio.size - length)))
            wave = np.zeros(length, np.float32)
            seg = audio[start : start + length]
            wave[: seg.size] = seg
            target = n_packets - 2  # causal: the packet after the concealed one is not known yet
            burst = int(rng.integers(1, 4))
            lost = np.zeros(n_packets, bool)
            lost[target - burst + 1 :] = True
            lossy = wave * ~np.repeat(lost, SAMPLES_PER_PACKET)
            out.append((wave, lossy.astype(np.float32), lost, (target, target + 1)))
    return out


def run(models: dict, items, frontend, repeats: int) -> dict[str, tuple[float, list[torch.Tensor]]]:
    """Per precision: median seconds per pass and the predictions of the lost columns. The
    precisions take turns on every window, so a busy moment of a shared machine hits all alike."""
    from audiomae.masking import packet_loss_mask

    def ctx(precision: str):
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")

    cfg = models["fp32"].cfg
    times: dict[str, list[float]] = {p: [] for p in models}
    preds: dict[str, list[torch.Tensor]] = {p: [] for p in models}
    with torch.inference_mode():
        prepared = []
        for _, lossy, lost, cols in items:
            spec = models["fp32"].norm.normalize(frontend(torch.from_numpy(lossy).unsqueeze(0)))
            spec = spec[..., : lost.size * cfg.patch_t]  # whole packets, as the concealer cuts it
            mask = packet_loss_mask(torch.from_numpy(lost).unsqueeze(0), cfg.grid_f)
            prepared.append((spec, mask, cols))
        for r in range(repeats + 1):  # the first round warms up and keeps the predictions
            for spec, mask, cols in prepared:
                for p, model in models.items():
                    t = time.perf_counter()
                    with ctx(p):
                        rec = model.reconstruct(spec, mask, cols)
                    if r:
                        times[p].append(time.perf_counter() - t)
                    else:
                        frames = slice(cols[0] * cfg.patch_t, cols[1] * cfg.patch_t)
                        preds[p].append(rec[..., frames].float())
    return {p: (float(np.median(times[p])), preds[p]) for p in models}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "librispeech" / "dev"))
    ap.add_argument("--files", type=int, default=10)
    ap.add_argument("--windows", type=int, default=20, help="windows per file")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", default=None, help="a PLC checkpoint (default: the bundled one)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(ROOT))
    from audiomae.features import LogMel
    from audiomae.model import AudioMAE
    from audiomae.plc.mae import ConcealerConfig, int8_copy, load_default_plc_model
    from audiomae.train.precision import cpu_amx

    model = (AudioMAE.from_pretrained(args.model) if args.model else load_default_plc_model()).eval()
    n_packets = ConcealerConfig().context_packets
    items = windows(args.data, args.files, args.windows, n_packets)
    frontend = LogMel(model.feature_cfg, backend="torch")
    with torch.inference_mode():
        clean = []
        for wave, _, _, cols in items:
            spec = model.norm.normalize(frontend(torch.from_numpy(wave).unsqueeze(0)))
            clean.append(spec[..., cols[0] * model.cfg.patch_t : cols[1] * model.cfg.patch_t])
    models = {"fp32": model, "int8": int8_copy(model), "bf16": model}
    results = run(models, items, frontend, args.repeats)

    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    print(
        f"{type(model).__name__} {model.num_params() / 1e6:.2f} M params, {len(items)} causal windows of "
        f"{n_packets} packets, {args.threads} thread(s), median over {args.repeats} rounds of every "
        f"window, precisions taking turns; "
        f"torch {torch.__version__}, AMX: {cpu_amx() or 'none'}, "
        f"AVX512-BF16: {'yes' if 'avx512_bf16' in flags else 'no'}\n"
    )
    print("| MAE pass | ms / pass | vs fp32 | MSE vs clean (lost columns) | RMS diff from fp32, dB |")
    print("|---|---|---|---|---|")
    base_t, base_pred = results["fp32"]
    db = 10 / math.log(10) * model.norm.std  # normalised log-mel (natural log of power) -> dB
    for p, (t, pred) in results.items():
        mse = float(torch.stack([(a - c).square().mean() for a, c in zip(pred, clean)]).mean())
        diff = float(torch.stack([(a - b).square().mean() for a, b in zip(pred, base_pred)]).mean().sqrt())
        print(f"| {p} | {t * 1e3:.2f} | {base_t / t:.2f}x | {mse:.4f} | {diff * db:.3f} |")


if __name__ == "__main__":
    main()
