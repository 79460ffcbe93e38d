"""A learned predictor of the continuation's band-energy error, with its uncertainty.

    python experiments/band_predictor.py data [--examples 24000] [--out runs/band_predictor]
    python experiments/band_predictor.py train [--out runs/band_predictor] [--minutes 8]

``oracle_params.py`` found the 18 band energies (Opus' layout) to be the parameter with
headroom: the clean ones given to the ``lpc`` continuation add +0.10 to +0.17 PLCMOS causally.
This predicts them the way Opus' deep PLC does, from features rather than the waveform: from
the band energies of the last 40 ms played and of the ``lpc`` continuation over the next six
10 ms frames, a small MLP predicts, per frame and band, the correction (clean minus
continuation, dB) as a Laplace distribution (location and scale; negative log-likelihood, so
the location is a median and the scale says how sure it is). Training examples are cut from
speech the tuning set does not use, at packet boundaries, each with the concealer's own
continuation of the 50 ms before it (as at a burst's first lost packet).

``data`` writes ``examples.npz``; ``train`` writes ``model.safetensors`` + ``config.json`` and
prints the dev error (the held-out part of the examples) of the continuation alone and with the
correction. :class:`LearnedBands` gives the predictions to the concealer as
:class:`~audiomae.plc.params.FrameParams` (``experiments/mae_bands.py --learned DIR``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from audiomae.audio import SAMPLE_RATE, SAMPLES_PER_PACKET, find_audio, load_audio  # noqa: E402
from audiomae.plc.dsp import find_pitch, lpc_continuation  # noqa: E402
from audiomae.plc.mae import LPC_ORDER, NOISE_ABOVE_HZ, NOISE_ABOVE_LATER_HZ, ConcealerHooks  # noqa: E402
from audiomae.plc.params import FrameParams, band_energies  # noqa: E402

HOP = 160
PLAYED = 800  # samples of played audio the concealer keeps (PITCH_HISTORY_S)
CONTEXT = 3 * HOP  # history frames the continuation's STFT frames see (as shape_frames)
AHEAD = 6  # frames predicted, centred at t, t + 10 ms, ... (three packets)
HIST_FRAMES = 4  # frames of the played audio, centred 40 .. 10 ms before t
CONT = 3 * SAMPLES_PER_PACKET
FLOOR_DB = -60.0  # relative to the history's level


def _db(power: np.ndarray) -> np.ndarray:
    return 10 * np.log10(power + 1e-10)


def continuation(played: np.ndarray, burst: int, rng: np.random.Generator) -> np.ndarray:
    """The ``lpc`` concealer's continuation of ``played`` (its arguments, as MAEConcealer has them)."""
    period = int(find_pitch(played, SAMPLE_RATE))
    noise = NOISE_ABOVE_HZ if burst < 2 else NOISE_ABOVE_LATER_HZ
    return lpc_continuation(played, period, CONT, order=LPC_ORDER, rng=rng, decay=True, noise_above=noise)


def features(played: np.ndarray, cont: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(model input ``(HIST_FRAMES + AHEAD) * 18``, the continuation's band dB ``(AHEAD, 18)``,
    the history's level in dB) for a continuation ``cont`` of ``played``."""
    hist = _db(band_energies(np.asarray(played, dtype=np.float64)))[1 : 1 + HIST_FRAMES]
    level = float(_db(10 ** (hist / 10).sum(1)).mean())
    ctx = np.concatenate([np.asarray(played, dtype=np.float64)[-CONTEXT:], cont[:CONT]])
    cont_db = _db(band_energies(ctx))[3 : 3 + AHEAD]
    rel = np.maximum(np.concatenate([hist, cont_db]) - level, FLOOR_DB) / 20.0
    return rel.reshape(-1).astype(np.float32), cont_db, level


def training_files(root: Path) -> list[Path]:
    """Speech the tuning set (every 20th LibriSpeech train file) does not hold."""
    libri = find_audio(root / "librispeech" / "train", required=True)
    libri = [f for i, f in enumerate(libri) if i % 20]
    speech = find_audio(root / "speech", required=True)
    return libri + speech


def make_examples(args) -> None:
    from tqdm.auto import tqdm

    rng = np.random.default_rng(args.seed)
    files = training_files(Path(args.data))
    rng.shuffle(files)
    per_file = max(1, args.examples // len(files) + 1)
    xs, ys, conts = [], [], []
    bar = tqdm(total=args.examples, unit="example")
    for f in files:
        x = load_audio(f).astype(np.float64)
        slots = (x.size - CONT - 2 * CONTEXT) // SAMPLES_PER_PACKET
        first = PLAYED // SAMPLES_PER_PACKET + 1
        if slots <= first:
            continue
        clean_db = _db(band_energies(x))
        for k in rng.choice(np.arange(first, slots), size=min(per_file, slots - first), replace=False):
            t = int(k) * SAMPLES_PER_PACKET
            played = x[t - PLAYED : t].astype(np.float32)
            if np.abs(played).max() < 1e-3:
                continue  # silence: nothing to learn
            cont = continuation(played, 1, np.random.default_rng([args.seed, t]))
            inp, cont_db, _ = features(played, cont)
            target = clean_db[t // HOP : t // HOP + AHEAD]
            if target.shape[0] < AHEAD:
                continue
            xs.append(inp)
            ys.append((target - cont_db).astype(np.float32))
            conts.append(cont_db.astype(np.float32))
            bar.update()
        if len(xs) >= args.examples:
            break
    bar.close()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "examples.npz", x=np.stack(xs), y=np.stack(ys), cont=np.stack(conts))
    print(f"{len(xs)} examples from {len(files)} files -> {out / 'examples.npz'}")


def build(n_in: int, hidden: int, ahead: int = AHEAD):
    """The MLP: ``n_in`` features -> a Laplace (location, scale) per frame of ``ahead`` and band."""
    import torch

    return torch.nn.Sequential(
        torch.nn.Linear(n_in, hidden),
        torch.nn.GELU(),
        torch.nn.Linear(hidden, hidden),
        torch.nn.GELU(),
        torch.nn.Linear(hidden, 2 * ahead * 18),
    )


def fit_laplace(net, train: tuple, dev: tuple, args, ahead: int = AHEAD, every: int = 500) -> int:
    """Train ``net`` on ``train`` = (x, y) by the Laplace negative log-likelihood for
    ``args.minutes`` (AdamW ``args.lr``, batches of ``args.batch``), checking the mean absolute
    error on ``dev`` every ``every`` steps; leaves ``net`` with the weights of the best check
    and returns its step."""
    import time

    import torch

    (xt, yt), (xd, yd) = train, dev
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    start, step, best = time.monotonic(), 0, (float("inf"), None, 0)
    while time.monotonic() - start < args.minutes * 60:
        idx = torch.randint(len(xt), (args.batch,))
        loss = laplace_nll(net(xt[idx]), yt[idx], ahead)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % every == 0:
            with torch.no_grad():
                mu, _ = split(net(xd), ahead)
            err = float((mu - yd).abs().mean())
            print(f"step {step}: train nll {loss.item():.3f}; dev L1 {err:.2f} dB", flush=True)
            if err < best[0]:  # the weights kept are those with the best dev error
                best = (err, {k: v.clone() for k, v in net.state_dict().items()}, step)
    if best[1] is None:
        return step
    net.load_state_dict(best[1])
    return best[2]


def save_model(net, out: Path, config: dict) -> None:
    """``model.safetensors`` and ``config.json`` (``n_in``, ``hidden`` and what else ``config`` says)."""
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(config))


def load_model(directory: str | Path, ahead: int = AHEAD):
    """The network :func:`save_model` wrote, in eval mode."""
    from safetensors.torch import load_file

    cfg = json.loads((Path(directory) / "config.json").read_text())
    net = build(cfg["n_in"], cfg["hidden"], ahead)
    net.load_state_dict(load_file(str(Path(directory) / "model.safetensors")))
    return net.eval()


def resume_or_build(out: Path, n_in: int, hidden: int, ahead: int, resume: bool):
    """(network, {"steps", "minutes"} done so far): the run's last weights in ``out`` with the
    steps and minutes its ``config.json`` records when ``resume`` and they exist, else a new
    network."""
    done = {"steps": 0, "minutes": 0.0}
    if resume and (out / "model.safetensors").exists():
        cfg = json.loads((out / "config.json").read_text())
        done.update({k: v for k, v in cfg.items() if k in done})
        return load_model(out, ahead).train(), done
    return build(n_in, hidden, ahead), done


def train(args) -> None:
    import torch

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    out = Path(args.out)
    with np.load(out / "examples.npz") as z:
        x, y = torch.from_numpy(z["x"]), torch.from_numpy(z["y"])
    # Clean minus continuation can be -80 dB (a continuation into silence): bound what is learnt.
    # --cut: only where the clean signal is quieter (a model that may only lower the continuation).
    y = y.clamp(-30.0, 0.0 if args.cut else 30.0)
    n_dev = len(x) // 10
    xd, yd, xt, yt = x[:n_dev], y[:n_dev], x[n_dev:], y[n_dev:]
    net = build(x.shape[1], args.hidden)
    step = fit_laplace(net, (xt, yt), (xd, yd), args)
    with torch.no_grad():
        mu, scale = split(net(xd))
    print(
        f"dev mean |error| over bands and frames: continuation {yd.abs().mean():.2f} dB, "
        f"corrected {(mu - yd).abs().mean():.2f} dB ({step} steps); median predicted scale "
        f"{scale.median():.2f} dB"
    )
    save_model(net, out, {"n_in": x.shape[1], "hidden": args.hidden, "steps": step, "cut": args.cut})


def split(out, ahead: int = AHEAD):
    """(location, scale) of the Laplace distributions in a network output ``(N, ahead * 18 * 2)``."""
    import torch

    mu, log_b = out.view(-1, ahead, 18, 2).unbind(-1)
    return mu, torch.nn.functional.softplus(log_b) + 0.1


def laplace_nll(out, y, ahead: int = AHEAD):
    import torch

    mu, b = split(out, ahead)
    return ((y - mu).abs() / b + torch.log(b)).mean()


class LearnedBands(ConcealerHooks):
    """The predicted band energies for each lost packet's continuation, applied to the power
    ``alpha * confidence`` per frame, confidence ``b0 / (b0 + scale)`` (scale: the frame's mean
    predicted Laplace scale, dB)."""

    def __init__(self, directory: str | Path, alpha: float = 1.0, b0: float = 3.0, first_only: bool = False):
        import torch

        self.net = load_model(directory)
        # A model trained with --cut only lowers the continuation's bands.
        self.max_boost_db = (
            0.0 if json.loads((Path(directory) / "config.json").read_text()).get("cut") else None
        )
        self.torch = torch
        self.alpha, self.b0, self.first_only = alpha, b0, first_only
        self.concealer = None

    def params(self, start, n):
        c = self.concealer
        s = c.state
        if self.first_only and s.burst > 1:
            return None
        rng = np.random.default_rng([c.cfg.noise_seed, c.emit_index])
        cont = continuation(s.played, s.burst, rng)
        inp, cont_db, _ = features(s.played, cont)
        with self.torch.no_grad():
            mu, scale = split(self.net(self.torch.from_numpy(inp)[None]))
        mu, scale = mu[0].numpy(), scale[0].numpy()
        trust = self.alpha * self.b0 / (self.b0 + scale.mean(1))
        return FrameParams(
            band_db=cont_db + mu, first=start // HOP, hop=HOP, trust=trust, max_boost_db=self.max_boost_db
        )


class NearestBands(ConcealerHooks):
    """A sample instead of a median: each lost packet's continuation shaped by the correction of
    the training example (``examples.npz`` in ``directory``) whose features are nearest (L2),
    or by the mean correction of the ``k`` nearest; gains applied to the power ``alpha``."""

    def __init__(self, directory: str | Path, k: int = 1, alpha: float = 1.0, limit: int = 50000):
        with np.load(Path(directory) / "examples.npz") as z:
            self.x, self.y = z["x"][:limit].astype(np.float32), np.clip(z["y"][:limit], -30.0, 30.0)
        self.sq = (self.x**2).sum(1)
        self.k, self.alpha = k, alpha
        self.concealer = None

    def params(self, start, n):
        c = self.concealer
        s = c.state
        cont = continuation(s.played, s.burst, np.random.default_rng([c.cfg.noise_seed, c.emit_index]))
        inp, cont_db, _ = features(s.played, cont)
        dist = self.sq - 2 * self.x @ inp  # + |inp|^2, the same for every example
        nearest = np.argpartition(dist, self.k - 1)[: self.k]
        trust = np.full(AHEAD, self.alpha)
        return FrameParams(
            band_db=cont_db + self.y[nearest].mean(0), first=start // HOP, hop=HOP, trust=trust
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["data", "train"])
    ap.add_argument("--data", default="../shared/data", help="the shared data folder")
    ap.add_argument("--out", default="runs/band_predictor")
    ap.add_argument("--examples", type=int, default=24000)
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cut", action="store_true", help="learn only how far the clean bands fall below")
    args = ap.parse_args()
    (make_examples if args.what == "data" else train)(args)


if __name__ == "__main__":
    main()
