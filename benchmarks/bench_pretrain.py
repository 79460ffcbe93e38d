"""Pretraining throughput on this machine, fp32 beside bf16 autocast, against its matmul peak.

    python benchmarks/bench_pretrain.py [--presets tiny small base] [--steps 3] [--threads 2]
                                        [--precisions fp32 bf16] [--compile]

Batch 8, random 80% masking, one AdamW step per iteration (features, forward, backward,
update). tiny/small use the speech geometry (80 mel, 2 s, 16x2 patches), base the paper's
(128 mel, 10.24 s, 16x16 patches, 1024 frames). Each configuration runs in its own process
so peak resident memory (ru_maxrss) belongs to it alone; compile failures are reported.

Achieved TFLOP/s = matmul and attention FLOPs of one step (forward + backward, counted by
torch's FlopCounterMode on the untimed warm-up step) / step time, and its share of the peak
measured on the spot: the best 2048^3 matmul in fp32 and in bf16 at the same thread count,
timed before the table and again in each configuration's process (the highest counts, so a
busy moment does not shrink it). The header says whether the CPU has AMX, which decides what
``precision: auto`` trains in, and AVX512-BF16.
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


def matmul_peak(dtype_name: str, n: int = 2048, seconds: float = 1.0) -> float:
    """Best FLOP/s of an ``n``^3 matmul in ``dtype_name`` over about ``seconds``."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b  # warm-up: kernel selection, page faults
    best, t_end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < t_end or best == float("inf"):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def _flop_counter():
    """FlopCounterMode that also counts the CPU flash-attention kernels (torch leaves them out)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

    aten = torch.ops.aten

    # FlopCounterMode hands custom formulas the shapes of the tensor arguments.
    def fwd(query, key, value, *args, out_shape=None, **kwargs):
        return sdpa_flop_count(query, key, value)

    def bwd(grad_out, query, key, value, *args, out_shape=None, **kwargs):
        return sdpa_backward_flop_count(grad_out, query, key, value)

    custom = {
        aten._scaled_dot_product_flash_attention_for_cpu: fwd,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: bwd,
    }
    return FlopCounterMode(display=False, custom_mapping=custom)


def measure(preset: str, precision: str, compile_: bool, steps: int, batch: int, threads: int) -> dict:
    import resource

    import torch

    sys.path.insert(0, str(ROOT))
    from audiomae.config import FeatureConfig
    from audiomae.model import AudioMAE
    from audiomae.train.precision import autocast
    from audiomae.train.pretrain import MAEPretrainTask

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    geo = GEOMETRY[preset]
    model = AudioMAE.from_preset(preset, features=FeatureConfig(n_mels=geo["n_mels"]), **geo["overrides"])
    task = MAEPretrainTask(model, mask_ratio=0.8)
    wave = 0.1 * torch.randn(batch, int(geo["seconds"] * 16000))
    n_patches = model.grid(task.spectrogram(wave))[0] * model.cfg.grid_f
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    device = torch.device("cpu")
    result = {
        "preset": preset,
        "precision": precision,
        "compile": compile_,
        "params_m": model.num_params() / 1e6,
        "patches": n_patches,
    }

    def step(i: int) -> None:
        with autocast(precision, device):
            loss, _ = task.training_step(wave, i)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    try:
        counter = _flop_counter()
        with counter:  # eager, untimed: warms up the allocator and the kernels
            step(0)
        result["flop_step"] = counter.get_total_flops()
        if compile_:
            t_compile = time.perf_counter()
            model.compile()
            step(1)  # compilation, not timed
            result["compile_s"] = time.perf_counter() - t_compile
        t0 = time.perf_counter()
        for i in range(steps):
            step(2 + i)
        dt = (time.perf_counter() - t0) / steps
        result.update(step_s=dt, steps_s=1 / dt, patches_s=batch * n_patches / dt)
        result["flops"] = result["flop_step"] / dt
        result["peak"] = matmul_peak(precision)  # beside the timed steps, under the same load
    except Exception as exc:  # report, don't crash the table: compile needs a working toolchain
        result["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def _cpu_flag(flag: str) -> bool:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in ln.split(":", 1)[-1].split() for ln in text.splitlines() if ln.startswith("flags"))


def _cells(r: dict, peak: float) -> list[str]:
    if "error" in r:
        return [f"failed: {r['error']}", "", ""]
    return [
        f"{r['steps_s']:.3g}",
        f"{r['patches_s']:.0f}",
        f"{r['flops'] / 1e12:.3f} ({r['flops'] / peak:.0%})",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["tiny", "small", "base"], choices=sorted(GEOMETRY))
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (minutes per row)")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # child process: "preset:precision:compile"
    args = ap.parse_args()
    if args.one:
        preset, precision, comp = args.one.split(":")
        print(json.dumps(measure(preset, precision, comp == "1", args.steps, args.batch, args.threads)))
        return

    import torch

    sys.path.insert(0, str(ROOT))
    from audiomae.train.precision import cpu_amx, resolve_precision

    torch.set_num_threads(args.threads)
    peaks = {p: matmul_peak(p) for p in ("fp32", "bf16")}
    table: list[tuple[str, bool, dict[str, dict]]] = []
    for preset in args.presets:
        for comp in (False, True) if args.compile else (False,):
            rows: dict[str, dict] = {}
            for p in args.precisions:
                cmd = [sys.executable, __file__, "--one", f"{preset}:{p}:{int(comp)}"]
                cmd += [
                    "--steps",
                    str(args.steps),
                    "--batch",
                    str(args.batch),
                    "--threads",
                    str(args.threads),
                ]
                out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
                lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
                if lines:
                    rows[p] = json.loads(lines[-1])
                    peaks[p] = max(peaks[p], rows[p].get("peak", 0.0))
                else:
                    rows[p] = {"error": (out.stderr.strip().splitlines() or ["no output"])[-1][:100]}
            table.append((preset, comp, rows))

    auto, why = resolve_precision("auto", torch.device("cpu"))
    print(
        f"batch {args.batch}, mask 0.8, {args.threads} thread(s), mean of {args.steps} steps after "
        f"one warm-up; torch {torch.__version__}, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}, AMX: {cpu_amx() or 'none'}, "
        f"AVX512-BF16: {'yes' if _cpu_flag('avx512_bf16') else 'no'}\n"
        f"matmul peak (2048^3): fp32 {peaks['fp32'] / 1e12:.3f} TFLOP/s, bf16 "
        f"{peaks['bf16'] / 1e12:.3f} TFLOP/s ({peaks['bf16'] / peaks['fp32']:.1f}x); "
        f"precision auto here: {auto}, {why.removeprefix('auto: ')}\n"
    )
    cols = []
    for p in args.precisions:
        cols += [f"{p} steps/s", f"{p} patches/s", f"{p} TFLOP/s (of peak)"]
    both = set(args.precisions) == {"fp32", "bf16"}
    if both:
        cols.append("bf16 / fp32 speed")
    head = ["preset", "params", "patches/clip", "GFLOP/step", "compile", *cols, "compile s", "peak RSS MB"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for preset, comp, rows in table:
        ok = [r for r in rows.values() if "error" not in r]
        first = ok[0] if ok else {}
        cells = [
            preset,
            f"{first['params_m']:.1f} M" if first else "",
            str(first.get("patches", "")),
            f"{first['flop_step'] / 1e9:.1f}" if "flop_step" in first else "",
            "yes" if comp else "no",
        ]
        for p in args.precisions:
            cells += _cells(rows[p], peaks[p])
        if both:
            timed = all("step_s" in rows[p] for p in ("fp32", "bf16"))
            cells.append(f"{rows['fp32']['step_s'] / rows['bf16']['step_s']:.2f}x" if timed else "")
        cells.append(" / ".join(f"{r['compile_s']:.0f}" for r in ok if "compile_s" in r))
        cells.append(" / ".join(f"{r['peak_rss_mb']:.0f}" for r in ok))
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
