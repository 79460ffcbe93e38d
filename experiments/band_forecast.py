"""A band-energy forecast from 320 ms of what was heard, for a whole burst.

    python experiments/band_forecast.py data [--examples 200000] [--out runs/band_forecast]
    python experiments/band_forecast.py train [--out runs/band_forecast] [--minutes 10] [--resume]
    python experiments/mae_bands.py --only-learned --forecast runs/band_forecast --alpha 0.5 1 \\
        --out runs/forecast_bands

``band_predictor.py`` predicted the continuation's band error from 40 ms of past band energies
and gained almost nothing (6.06 -> 5.08 dB). This forecaster sees longer context, as Opus' deep
PLC does with its recurrent state: the 18 band energies (dB, relative to the context's mean
level) of the last 320 ms heard, and predicts the absolute band energies of the next 16 frames
(160 ms, a burst of up to eight packets) as Laplace distributions. It needs no continuation,
so examples are cheap: any packet boundary of training speech (the tuning set's files left
out), the context computed exactly as the concealer computes it (the STFT of the context
alone). In the concealer the forecast is made at a burst's first lost packet, from what the
listener heard (the concealer's ``hist_played``: received and concealed audio), and every lost
packet of the burst is shaped toward its frames, each frame's gains to the power
``alpha * b0 / (b0 + scale)``.

``data`` writes ``examples.npz`` (files split 90/10 into train / dev); ``train`` writes
``model.safetensors`` + ``config.json`` and prints the dev error against holding the last
context frame and against the ``lpc`` continuation (its first six frames, on dev examples).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from band_predictor import (  # noqa: E402
    _db,
    continuation,
    fit_laplace,
    load_model,
    resume_or_build,
    save_model,
    split,
    training_files,
)

from audiomae.audio import SAMPLES_PER_PACKET, load_audio  # noqa: E402
from audiomae.plc.mae import ConcealerHooks  # noqa: E402
from audiomae.plc.params import FrameParams, band_energies  # noqa: E402

HOP = 160
CONTEXT_FRAMES = 32
CONTEXT = CONTEXT_FRAMES * HOP  # samples of heard audio the forecast sees (320 ms)
AHEAD = 16  # frames forecast, centred at the burst's start, +10 ms, ... (160 ms)
FLOOR_DB = -60.0


def context_features(heard: np.ndarray) -> tuple[np.ndarray, float]:
    """(model input, the context's mean level in dB) for the last ``CONTEXT`` samples heard."""
    ctx = _db(band_energies(np.asarray(heard, dtype=np.float64)[-CONTEXT:]))  # (CONTEXT_FRAMES + 1, 18)
    level = float(_db(10 ** (ctx / 10).sum(1)).mean())
    return (np.maximum(ctx - level, FLOOR_DB) / 20.0).reshape(-1).astype(np.float32), level


def make_examples(args) -> None:
    from tqdm.auto import tqdm

    rng = np.random.default_rng(args.seed)
    files = training_files(Path(args.data))
    rng.shuffle(files)
    n_dev_files = len(files) // 10
    per_file = max(1, args.examples // len(files) + 1)
    xs, ys, dev = [], [], []
    bar = tqdm(total=args.examples, unit="example")
    for i, f in enumerate(files):
        x = load_audio(f).astype(np.float64)
        clean_db = _db(band_energies(x))
        first = CONTEXT // SAMPLES_PER_PACKET + 1
        slots = (x.size - AHEAD * HOP) // SAMPLES_PER_PACKET
        if slots <= first:
            continue
        for k in rng.choice(np.arange(first, slots), size=min(per_file, slots - first), replace=False):
            t = int(k) * SAMPLES_PER_PACKET
            heard = x[t - CONTEXT : t]
            if np.abs(heard[-SAMPLES_PER_PACKET:]).max() < 1e-3:
                continue  # silence before the gap: nothing to learn
            inp, level = context_features(heard)
            target = clean_db[t // HOP : t // HOP + AHEAD] - level
            if target.shape[0] < AHEAD:
                continue
            xs.append(inp)
            ys.append(np.maximum(target, FLOOR_DB - 20).astype(np.float32))
            dev.append(i < n_dev_files)
            bar.update()
        if len(xs) >= args.examples:
            break
    bar.close()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "examples.npz", x=np.stack(xs), y=np.stack(ys), dev=np.array(dev))
    print(f"{len(xs)} examples ({sum(dev)} dev) from {len(files)} files -> {out / 'examples.npz'}")


def train(args) -> None:
    import torch

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    out = Path(args.out)
    with np.load(out / "examples.npz") as z:
        x, y, dev = torch.from_numpy(z["x"]), torch.from_numpy(z["y"]), torch.from_numpy(z["dev"])
    xd, yd, xt, yt = x[dev], y[dev], x[~dev], y[~dev]
    net, done = resume_or_build(out, x.shape[1], args.hidden, AHEAD, args.resume)
    step = done["steps"] + fit_laplace(net, (xt, yt), (xd, yd), args, AHEAD, every=1000)
    with torch.no_grad():
        mu, scale = split(net(xd), AHEAD)
    hold = (xd.view(len(xd), CONTEXT_FRAMES + 1, 18)[:, -2:-1] * 20.0).expand_as(yd)
    per_frame = (mu - yd).abs().mean((0, 2))
    print(
        f"dev mean |error| over bands and frames: hold the last full context frame "
        f"{(hold - yd).abs().mean():.2f} dB, forecast {(mu - yd).abs().mean():.2f} dB ({step} steps); "
        f"per frame {' '.join(f'{e:.1f}' for e in per_frame.tolist())}; median predicted scale "
        f"{scale.median():.2f} dB"
    )
    minutes = done["minutes"] + args.minutes
    cfg = {"n_in": x.shape[1], "hidden": net[0].out_features, "steps": step, "minutes": minutes}
    save_model(net, out, cfg)


def continuation_error(args) -> None:
    """The ``lpc`` continuation's and the forecast's band error over the first six frames, on
    dev examples cut afresh (the continuation needs the waveform)."""
    import torch

    net = load_model(args.out, AHEAD)
    rng = np.random.default_rng(args.seed)
    files = training_files(Path(args.data))
    rng.shuffle(files)
    errs = []
    for f in files[: len(files) // 10][:200]:
        x = load_audio(f).astype(np.float64)
        clean_db = _db(band_energies(x))
        for k in rng.choice(np.arange(CONTEXT // SAMPLES_PER_PACKET + 1, (x.size - AHEAD * HOP) // 320), 5):
            t = int(k) * SAMPLES_PER_PACKET
            heard = x[t - CONTEXT : t]
            if np.abs(heard[-SAMPLES_PER_PACKET:]).max() < 1e-3:
                continue
            cont = continuation(heard[-800:].astype(np.float32), 1, np.random.default_rng([args.seed, t]))
            cont_db = _db(band_energies(np.concatenate([heard[-480:], cont])))[3:9]
            inp, level = context_features(heard)
            with torch.no_grad():
                mu, _ = split(net(torch.from_numpy(inp)[None]), AHEAD)
            target = clean_db[t // HOP : t // HOP + 6]
            lo = level + FLOOR_DB - 20
            target, cont_db = np.maximum(target, lo), np.maximum(cont_db, lo)
            errs.append([np.abs(cont_db - target).mean(), np.abs(mu[0, :6].numpy() + level - target).mean()])
    e = np.array(errs).mean(0)
    print(f"{len(errs)} dev examples, frames 0-5: continuation {e[0]:.2f} dB, forecast {e[1]:.2f} dB")


class ForecastBands(ConcealerHooks):
    """The forecast made at a burst's first lost packet, for every lost packet of the burst;
    gains to the power ``alpha * b0 / (b0 + scale)`` per frame (``scale``: the frame's mean
    predicted Laplace scale, dB)."""

    def __init__(self, directory: str | Path, alpha: float = 1.0, b0: float = 3.0):
        import torch

        self.net = load_model(directory, AHEAD)
        self.torch = torch
        self.alpha, self.b0 = alpha, b0
        self.concealer = None
        self.forecast: FrameParams | None = None

    def params(self, start, n):
        s = self.concealer.state
        if s.burst <= 1 or self.forecast is None:
            inp, level = context_features(s.hist_played)
            with self.torch.no_grad():
                mu, scale = split(self.net(self.torch.from_numpy(inp)[None]), AHEAD)
            mu, scale = mu[0].numpy(), scale[0].numpy()
            trust = self.alpha * self.b0 / (self.b0 + scale.mean(1))
            self.forecast = FrameParams(band_db=mu + level, first=start // HOP, hop=HOP, trust=trust)
        return self.forecast


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["data", "train", "compare"])
    ap.add_argument("--data", default="../shared/data", help="the shared data folder")
    ap.add_argument("--out", default="runs/band_forecast")
    ap.add_argument("--examples", type=int, default=200000)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resume", action="store_true", help="train: start from the weights in --out")
    args = ap.parse_args()
    {"data": make_examples, "train": train, "compare": continuation_error}[args.what](args)


if __name__ == "__main__":
    main()
