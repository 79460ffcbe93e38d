"""Band energies of bridged packets: the oracle, and a learned inpainting of them.

    python experiments/bridge_bands.py oracle [--files 13] [--modes la1,la2] [--out runs/oracle_params]
    python experiments/bridge_bands.py data [--examples 30000] [--model-dir runs/bridge_bands]
    python experiments/bridge_bands.py train [--model-dir runs/bridge_bands] [--minutes 6] [--resume]
    python experiments/bridge_bands.py eval [--alpha 0.5 1] [--model-dir runs/bridge_bands]

With lookahead, a lost packet whose end is followed by a received one is *bridged*: the
continuation of what was played is cross-faded into the backward continuation of the packet
after the gap (``MAEConcealer._bridge``). That is the masked autoencoder's home ground, filling
a gap whose both sides are known. ``oracle_params.py``'s ``bands`` oracle steers the forward
continuation of every lost packet; here only the bridged packets' *rendered* audio is shaped
(:meth:`~audiomae.plc.mae.ConcealerHooks.reshape`, :func:`~audiomae.plc.params.shape_frames`):
``bridge-oracle`` to the clean signal's 18 band energies, ``bridge-learned@A`` to a model's.

The model (``data`` / ``train``) sees what an inpainting model of the gap would: the band
energies of the last 40 ms played, of the bridge's own three frames (centred 0, 10 and 20 ms
into the packet) and of the first 20 ms received after it, all relative to the history's level;
it predicts the clean minus bridge energy per frame and band as a Laplace distribution
(``band_predictor.py``'s MLP and loss). Examples are the ``lpc-la1`` concealer's own bridges
over one-packet gaps (a third of them the end of a 2- or 3-packet burst) in speech the tuning
set does not hold. In the concealer each frame's gains are applied to the power
``alpha * 3 / (3 + scale)``. ``eval`` scores it in the oracle's table (``la1`` only: the
examples are one-packet bridges).

Rows go to ``oracle_params.py``'s results (default ``runs/oracle_params``), whose ``lpc`` rows
they reuse; ``--report`` after any command prints the table without running.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import oracle_params  # noqa: E402
from band_predictor import (  # noqa: E402
    fit_laplace,
    load_model,
    resume_or_build,
    save_model,
    split,
    training_files,
)
from tuning_set import add_tuning_set_args, tuning_files  # noqa: E402

from audiomae.audio import SAMPLES_PER_PACKET, load_audio  # noqa: E402
from audiomae.plc import conceal  # noqa: E402
from audiomae.plc.mae import LPC_DEFAULTS, ConcealerConfig, ConcealerHooks, MAEConcealer  # noqa: E402
from audiomae.plc.params import FrameParams, band_energies, shape_frames  # noqa: E402

HOP = 160
CONTEXT = 3 * HOP  # history samples before the packet in the STFT that measures (and shapes) it
FRAMES = 3  # frames of a bridged packet's rendering that shape_frames scales (centred 0, 10, 20 ms)
HIST_FRAMES = 4
AFTER_FRAMES = 2
FLOOR_DB = -60.0
LEAD_S = 0.4  # audio before an example's gap fed through the concealer
BURSTS = (1, 1, 1, 1, 2, 3)  # burst lengths of the examples (a bridge ends each)


def _db(power: np.ndarray) -> np.ndarray:
    return 10 * np.log10(power + 1e-10)


def measured_db(played: np.ndarray, audio: np.ndarray) -> np.ndarray:
    """``(FRAMES, 18)`` band dB of the rendering ``audio`` as :func:`shape_frames` measures it."""
    x = np.concatenate([np.asarray(played, dtype=np.float64)[-CONTEXT:], np.asarray(audio, dtype=np.float64)])
    return _db(band_energies(x))[CONTEXT // HOP : CONTEXT // HOP + FRAMES]


def features(played: np.ndarray, audio: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(model input, the rendering's band dB ``(FRAMES, 18)``) for a bridged packet."""
    hist = _db(band_energies(np.asarray(played, dtype=np.float64)))[-1 - HIST_FRAMES : -1]
    level = float(_db(10 ** (hist / 10).sum(1)).mean())
    now = measured_db(played, audio)
    nxt = _db(band_energies(np.asarray(after, dtype=np.float64)))[1 : 1 + AFTER_FRAMES]
    rel = np.maximum(np.concatenate([hist, now, nxt]) - level, FLOOR_DB) / 20.0
    return rel.reshape(-1).astype(np.float32), now


class BridgeBands(ConcealerHooks):
    """Bridged packets' renderings shaped to band energies: the clean signal's (``clean``, a
    :class:`FrameParams` with ``band_db``) or the model's in ``directory``."""

    def __init__(self, clean: FrameParams | None = None, directory=None, alpha: float = 1.0, b0: float = 3.0):
        self.clean, self.alpha, self.b0 = clean, alpha, b0
        self.net = None if directory is None else load_model(directory, ahead=FRAMES)
        self.concealer: MAEConcealer | None = None
        self.seen: list = []  # (played, audio, after) of each bridged packet, when recording

    def _after(self) -> np.ndarray | None:
        nxt = list(self.concealer._window)[1:2]
        return nxt[0] if nxt and isinstance(nxt[0], np.ndarray) else None

    def reshape(self, packet, audio):
        if not packet.bridged:
            return audio
        played, start = self.concealer.state.played, packet.index * SAMPLES_PER_PACKET
        if self.clean is not None:
            return shape_frames(played, audio, self.clean, start)
        after = self._after()
        if self.net is None:
            if after is not None:
                self.seen.append((played.copy(), np.array(audio), after.copy()))
            return audio
        if after is None:  # a longer gap bridged with two packets of lookahead: not what it learned
            return audio
        import torch

        inp, now = features(played, audio, after)
        with torch.no_grad():
            mu, scale = split(self.net(torch.from_numpy(inp)[None]), FRAMES)
        mu, scale = mu[0].numpy(), scale[0].numpy()
        trust = self.alpha * self.b0 / (self.b0 + scale.mean(1))
        params = FrameParams(band_db=now + mu, first=start // HOP, hop=HOP, trust=trust)
        return shape_frames(played, audio, params, start)


def make_concealer(variant, lookahead, params, clean) -> MAEConcealer:
    config = ConcealerConfig(**LPC_DEFAULTS)
    if variant == "lpc":
        return MAEConcealer(lookahead=lookahead, config=config)
    if variant == "bridge-oracle":
        hooks = BridgeBands(clean=params.only("band_db"))
    else:
        hooks = BridgeBands(directory=MODEL_DIR[0], alpha=float(variant.split("@")[1]))
    hooks.concealer = MAEConcealer(lookahead=lookahead, config=config, hooks=hooks)
    return hooks.concealer


MODEL_DIR: list = []


def make_examples(args) -> None:
    """Bridged one-packet gaps of the ``lpc-la1`` concealer, with the clean band energies."""
    from tqdm.auto import tqdm

    rng = np.random.default_rng(args.seed)
    files = training_files(Path(args.data))
    rng.shuffle(files)
    per_file = max(1, args.examples // len(files) + 1)
    lead = int(LEAD_S * 16000) // SAMPLES_PER_PACKET
    xs, ys = [], []
    bar = tqdm(total=args.examples, unit="example")
    for f in files:
        x = load_audio(f)
        slots = x.size // SAMPLES_PER_PACKET - 3
        if slots <= lead + 3:
            continue
        clean_db = _db(band_energies(x.astype(np.float64)))
        for k in rng.choice(np.arange(lead + 3, slots), size=min(per_file, slots - lead - 3), replace=False):
            burst = int(rng.choice(BURSTS))
            first = int(k) - lead - burst + 1  # packet where the fed segment starts
            seg = x[first * SAMPLES_PER_PACKET : (int(k) + 3) * SAMPLES_PER_PACKET]
            if np.abs(seg[(lead - 1) * SAMPLES_PER_PACKET :]).max() < 1e-3:
                continue  # silence around the gap: nothing to learn
            lost = np.zeros(seg.size // SAMPLES_PER_PACKET, dtype=bool)
            lost[lead : lead + burst] = True
            hooks = BridgeBands()
            hooks.concealer = MAEConcealer(lookahead=1, config=ConcealerConfig(**LPC_DEFAULTS), hooks=hooks)
            conceal(
                np.where(np.repeat(lost, SAMPLES_PER_PACKET), 0, seg).astype(np.float32),
                lost,
                hooks.concealer,
            )
            if not hooks.seen:
                continue
            played, audio, after = hooks.seen[-1]
            inp, now = features(played, audio, after)
            t = int(k) * SAMPLES_PER_PACKET // HOP
            xs.append(inp)
            ys.append((clean_db[t : t + FRAMES] - now).astype(np.float32))
            bar.update()
        if len(xs) >= args.examples:
            break
    bar.close()
    out = Path(args.model_dir)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "examples.npz", x=np.stack(xs), y=np.stack(ys))
    print(f"{len(xs)} examples -> {out / 'examples.npz'}")


def train(args) -> None:
    import torch

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    out = Path(args.model_dir)
    with np.load(out / "examples.npz") as z:
        x, y = torch.from_numpy(z["x"]), torch.from_numpy(z["y"]).clamp(-30.0, 30.0)
    n_dev = len(x) // 10
    net, done = resume_or_build(out, x.shape[1], args.hidden, FRAMES, args.resume)
    step = done["steps"] + fit_laplace(
        net, (x[n_dev:], y[n_dev:]), (x[:n_dev], y[:n_dev]), args, ahead=FRAMES
    )
    with torch.no_grad():
        mu, scale = split(net(x[:n_dev]), FRAMES)
    err = (mu - y[:n_dev]).abs()
    per_frame = ", ".join(f"{e:.2f}" for e in err.mean(dim=(0, 2)))
    print(
        f"dev mean |error|: bridge {y[:n_dev].abs().mean():.2f} dB, corrected {err.mean():.2f} dB"
        f" (per frame {per_frame}; {step} steps); median scale {scale.median():.2f} dB"
    )
    minutes = done["minutes"] + args.minutes
    save_model(net, out, {"n_in": x.shape[1], "hidden": args.hidden, "steps": step, "minutes": minutes})


def score(args, variants: list[str], modes: list[str]) -> None:
    oracle_params.make_concealer = make_concealer
    out, files = Path(args.out), tuning_files(args)
    conditions = args.conditions.split(",")
    if not args.report:
        oracle_params.run(files, conditions, modes, ["lpc", *variants], out)
    print(f"\n{len(files)} files of {args.data} (every {args.every}th), first 10 s each\n")
    print(oracle_params.report(out, conditions, modes, ["lpc", *variants]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["oracle", "data", "train", "eval"])
    add_tuning_set_args(ap)
    ap.set_defaults(files=13, conditions="ge05b1.5,ge10b2,ge20b3")
    ap.add_argument("--modes", default="la1,la2")
    ap.add_argument("--out", default="runs/oracle_params", help="the oracle table's results (resumable)")
    ap.add_argument("--model-dir", default="runs/bridge_bands")
    ap.add_argument("--shared", default="../shared/data", help="the shared data folder (training speech)")
    ap.add_argument("--alpha", nargs="+", default=["0.5", "1"])
    ap.add_argument("--examples", type=int, default=30000)
    ap.add_argument("--minutes", type=float, default=6.0)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--resume", action="store_true", help="train: start from the weights in --model-dir")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    if args.what == "oracle":
        score(args, ["bridge-oracle"], args.modes.split(","))
    elif args.what == "eval":
        MODEL_DIR.append(args.model_dir)
        score(args, [f"bridge-learned@{a}" for a in args.alpha], ["la1"])
    else:
        (make_examples if args.what == "data" else train)(
            argparse.Namespace(**{**vars(args), "data": args.shared})
        )


if __name__ == "__main__":
    main()
