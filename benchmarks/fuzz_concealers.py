"""Random loss patterns over speech and edge signals: every concealer must return finite audio of
the input's length inside [-1, 1] without raising.

    python benchmarks/fuzz_concealers.py [--patterns 2500] [--seed 7] [--methods zero,g711,lpc,...]

Signals (2 s each): the bundled speech clip, digital silence, a full-scale 200 Hz square wave,
0 dBFS noise, DC at 0.9, clicks. Patterns: Bernoulli at a random rate, Gilbert-Elliott with
random rate and burst length, 100% loss, one burst of 1-60 packets. Prints each failure and the
count; exits 1 when any failed.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

DEFAULT_METHODS = "zero,g711,lpc,lpc-la1,mae,mae-la1"


def signals(rng: np.random.Generator, seconds: float = 2.0) -> dict[str, np.ndarray]:
    from audiomae.audio import SAMPLE_RATE, load_audio
    from audiomae.plc.demo import demo_clip_path

    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    speech = load_audio(demo_clip_path())[:n]
    return {
        "speech": np.pad(speech, (0, n - speech.size)),
        "silence": np.zeros(n, np.float32),
        "square": np.sign(np.sin(2 * np.pi * 200 * t)).astype(np.float32),
        "noise 0 dBFS": np.clip(rng.standard_normal(n), -1, 1).astype(np.float32),
        "dc": np.full(n, 0.9, np.float32),
        "clicks": (np.arange(n) % 800 == 0).astype(np.float32),
    }


def draw_pattern(packets: int, rng: np.random.Generator) -> tuple[str, np.ndarray]:
    from audiomae.loss_models import gilbert_elliott

    kind = int(rng.integers(4))
    if kind == 0:
        rate = rng.uniform(0, 1)
        return f"bernoulli {rate:.2f}", rng.random(packets) < rate
    if kind == 1:
        rate = rng.uniform(0.01, 0.6)
        burst = max(rng.uniform(1, 20), rate / (1 - rate) + 1e-3)
        return f"ge {rate:.2f} / {burst:.1f}", gilbert_elliott(packets, rate, burst, rng)
    if kind == 2:
        return "all lost", np.ones(packets, bool)
    lost = np.zeros(packets, bool)
    start, length = int(rng.integers(packets)), int(rng.integers(1, 60))
    lost[start : start + length] = True
    return f"burst of {length} at {start}", lost


def fuzz(patterns: int, seed: int, methods: list[str], out=sys.stdout) -> int:
    """Run ``patterns`` (signal, pattern, method) cases; returns the number of failures."""
    from audiomae.audio import SAMPLES_PER_PACKET
    from audiomae.plc import conceal

    rng = np.random.default_rng(seed)
    sigs = signals(rng)
    names = list(sigs)
    failures = 0
    for i in range(patterns):
        name, method = names[i % len(names)], methods[i % len(methods)]
        x = sigs[name]
        what, lost = draw_pattern(-(-x.size // SAMPLES_PER_PACKET), rng)
        lossy = np.where(np.repeat(lost, SAMPLES_PER_PACKET)[: x.size], 0, x).astype(np.float32)
        try:
            y = conceal(lossy, lost, method=method)
            problem = (
                f"shape {y.shape}"
                if y.shape != x.shape
                else "NaN or inf"
                if not np.isfinite(y).all()
                else f"peak {np.abs(y).max():.3f}"
                if np.abs(y).max() > 1.0
                else None
            )
        except Exception as exc:  # a fuzzer reports every failure, whatever it is
            problem = f"{type(exc).__name__}: {exc}"
        if problem:
            failures += 1
            print(f"FAIL {method} on {name}, {what}: {problem}", file=out)
    return failures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patterns", type=int, default=2500)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--methods", default=DEFAULT_METHODS)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    t0 = time.time()
    failures = fuzz(args.patterns, args.seed, args.methods.split(","))
    print(f"{args.patterns} cases ({args.methods}), {failures} failures, {time.time() - t0:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
