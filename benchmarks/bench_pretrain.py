"""Pretraining throughput on this machine: clips/s and patches/s per preset, eager vs torch.compile.

    python benchmarks/bench_pretrain.py [--presets tiny small base] [--steps 3] [--threads 2]

Batch 8, random 80% masking, one AdamW step per iteration (features, forward, backward,
update). tiny/small use the speech geometry (80 mel, 2 s, 16x2 patches), base the paper's
(128 mel, 10.24 s, 16x16 patches). Each configuration runs in its own process so peak
resident memory (ru_maxrss) belongs to it alone; compile failures are caught and reported.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GEOMETRY = {
    "tiny": dict(n_mels=80, seconds=2.0, overrides={}),
    "small": dict(n_mels=80, seconds=2.0, overrides={}),
    "base": dict(n_mels=128, seconds=10.24, overrides={"max_frames": 1024}),
}


def measure(preset: str, compile_: bool, steps: int, batch: int, threads: int) -> dict:
    import resource

    import torch

    sys.path.insert(0, str(ROOT))
    from audiomae.config import FeatureConfig
    from audiomae.model import AudioMAE
    from audiomae.train.pretrain import MAEPretrainTask

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    geo = GEOMETRY[preset]
    model = AudioMAE.from_preset(preset, features=FeatureConfig(n_mels=geo["n_mels"]), **geo["overrides"])
    task = MAEPretrainTask(model, mask_ratio=0.8)
    wave = 0.1 * torch.randn(batch, int(geo["seconds"] * 16000))
    n_patches = model.grid(task.spectrogram(wave))[0] * model.cfg.grid_f
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    result = {
        "preset": preset,
        "compile": compile_,
        "params_m": model.num_params() / 1e6,
        "patches": n_patches,
    }
    t_compile = time.perf_counter()
    try:
        if compile_:
            model.compile()
        for step in range(steps + 1):  # the first step (compilation, allocator warm-up) is not timed
            if step == 1:
                t0 = time.perf_counter()
            loss, _ = task.training_step(wave, step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step == 0:
                result["first_step_s"] = time.perf_counter() - t_compile
        dt = (time.perf_counter() - t0) / steps
        result.update(step_s=dt, clips_s=batch / dt, patches_s=batch * n_patches / dt)
    except Exception as exc:  # report, don't crash the table: compile needs a working toolchain
        result["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["tiny", "small", "base"], choices=sorted(GEOMETRY))
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # child process: "preset:compile"
    args = ap.parse_args()
    if args.one:
        preset, comp = args.one.split(":")
        print(json.dumps(measure(preset, comp == "1", args.steps, args.batch, args.threads)))
        return
    print(
        f"batch {args.batch}, mask 0.8, {args.threads} threads, "
        f"mean of {args.steps} steps after one warm-up\n"
    )
    print(
        "| preset | params | patches/clip | compile | step s | clips/s | patches/s "
        "| first step s | peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for preset in args.presets:
        for comp in (False,) if args.no_compile else (False, True):
            cmd = [sys.executable, __file__, "--one", f"{preset}:{int(comp)}"]
            cmd += ["--steps", str(args.steps), "--batch", str(args.batch), "--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
            if not lines:
                err = (out.stderr.strip().splitlines() or ["no output"])[-1][:100]
                print(f"| {preset} | | | {'yes' if comp else 'no'} | failed: {err} | | | | |")
                continue
            r = json.loads(lines[-1])
            head = f"| {preset} | {r['params_m']:.1f} M | {r['patches']} | {'yes' if comp else 'no'} |"
            if "error" in r:
                print(f"{head} failed: {r['error']} | | | | {r['peak_rss_mb']:.0f} |")
            else:
                print(
                    f"{head} {r['step_s']:.2f} | {r['clips_s']:.1f} | {r['patches_s']:.0f} | "
                    f"{r['first_step_s']:.1f} | {r['peak_rss_mb']:.0f} |"
                )


if __name__ == "__main__":
    main()
