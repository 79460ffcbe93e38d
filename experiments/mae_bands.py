"""Does the MAE's prediction of the fine band energies help the continuation?

    python experiments/mae_bands.py [--files 13] [--trust 0.25 0.5 1.0] [--out runs/mae_bands]
        [--learned runs/band_predictor --alpha 0.5 1 1f] [--forecast runs/band_forecast] [--report]

``oracle_params.py`` found that the clean signal's 18 band energies (Opus' band layout) given
to the ``lpc`` continuation are worth +0.10 to +0.17 PLCMOS causally. Here the bands come from
the bundled PLC MAE instead: at each lost packet the MAE fills the window's lost columns (as
the ``mae`` method's pass does), its predicted log-mel is mapped to band energies (the mel
filterbank's pseudo-inverse, then the band weights: within 0.1 dB of the bands measured on
the STFT for real speech), and the continuation is shaped toward them with gains applied to
the power ``trust`` (0: ``lpc``; 1: the prediction fully). Variants: ``lpc``, the ``mae``
method itself, and ``bands@T`` for each trust ``T``; causal only (the MAE window the hook
builds has no lookahead). Same files, loss traces, scoring and resumable cache as
``oracle_params.py``.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import oracle_params  # noqa: E402
from tuning_set import add_tuning_set_args, tuning_files  # noqa: E402

from audiomae.audio import SAMPLES_PER_PACKET  # noqa: E402
from audiomae.plc.mae import LPC_DEFAULTS, ConcealerConfig, ConcealerHooks, MAEConcealer  # noqa: E402
from audiomae.plc.params import FrameParams, band_weights  # noqa: E402


@functools.lru_cache(maxsize=1)
def mel_to_bands(feature_cfg) -> np.ndarray:
    """``(bands, n_mels)``: band energies from mel energies (both linear power)."""
    from audiomae.features import mel_filterbank

    mel = mel_filterbank(feature_cfg).numpy().astype(np.float64)
    return band_weights(feature_cfg.n_fft, feature_cfg.sample_rate) @ np.linalg.pinv(mel)


class PredictedBands(ConcealerHooks):
    """The MAE's band energies for the frames of each lost packet's continuation."""

    def __init__(self, trust: float) -> None:
        self.trust = trust
        self.concealer: MAEConcealer | None = None

    def params(self, start, n):
        c = self.concealer
        s = c.state
        zeros = np.zeros(SAMPLES_PER_PACKET, dtype=np.float32)
        wave = np.concatenate([s.hist, zeros, zeros])
        lost = np.concatenate([s.hist_lost, [True, True]])
        mel = np.asarray(c.predict_logmel(wave, lost), dtype=np.float64)[0]  # (F, T)
        hop = c.spec.feature_cfg.hop_length
        bands = np.maximum(mel_to_bands(c.spec.feature_cfg) @ np.exp(mel), 1e-10)
        first = (start - s.hist.size) // hop  # stream frame of the window's frame 0
        trust = np.zeros(mel.shape[1])
        trust[s.hist.size // hop :] = self.trust  # only frames of the lost packet and after
        return FrameParams(band_db=10 * np.log10(bands.T), first=first, hop=hop, trust=trust)


LEARNED: dict = {}  # --learned DIR / --forecast DIR: the band models' directories


class InterpolatedBands(ConcealerHooks):
    """With lookahead: band energies over the gap interpolated (in dB, linearly) from the last
    frame played to the first frame of the packet after the gap, where that packet is in view."""

    def __init__(self) -> None:
        self.concealer: MAEConcealer | None = None

    def params(self, start, n):
        from audiomae.plc.params import band_energies

        c = self.concealer
        after = list(c._window)[1:]  # the lookahead packets (None: lost; past the end: a marker)
        k = next((i for i, p in enumerate(after) if isinstance(p, np.ndarray)), None)
        if k is None:
            return None
        hop = c.spec.feature_cfg.hop_length
        db = lambda x: 10 * np.log10(band_energies(np.asarray(x, dtype=np.float64)) + 1e-10)  # noqa: E731
        before = db(c.state.played)[-3]  # centred 20 ms before the gap: its window lies in what was played
        behind = db(after[k])[1]  # centred 10 ms into the packet after the gap
        t0, t1 = start - 2 * hop, start + (k + 1) * SAMPLES_PER_PACKET + hop
        frames = np.arange(start // hop, (start + (k + 1) * SAMPLES_PER_PACKET) // hop)
        w = ((frames * hop - t0) / (t1 - t0))[:, None]
        return FrameParams(band_db=(1 - w) * before + w * behind, first=int(frames[0]), hop=hop)


def make_concealer(variant, lookahead, params, clean) -> MAEConcealer:
    if variant == "interp":
        hooks = InterpolatedBands()
        config = ConcealerConfig(**LPC_DEFAULTS)
        hooks.concealer = MAEConcealer(lookahead=lookahead, config=config, hooks=hooks)
        return hooks.concealer
    if variant.startswith("forecast"):
        from band_forecast import ForecastBands

        hooks = ForecastBands(LEARNED["forecast"], alpha=float(variant.split("@")[1]))
        hooks.concealer = MAEConcealer(
            lookahead=lookahead, config=ConcealerConfig(**LPC_DEFAULTS), hooks=hooks
        )
        return hooks.concealer
    if variant.startswith("nearest"):  # nearestK@A: the K nearest training examples' correction
        from band_predictor import NearestBands

        k, alpha = variant.removeprefix("nearest").split("@")
        hooks = NearestBands(LEARNED["nearest"], k=int(k), alpha=float(alpha))
        hooks.concealer = MAEConcealer(
            lookahead=lookahead, config=ConcealerConfig(**LPC_DEFAULTS), hooks=hooks
        )
        return hooks.concealer
    if variant.startswith("learned"):
        from band_predictor import LearnedBands

        _, alpha = variant.split("@")
        hooks = LearnedBands(LEARNED["dir"], alpha=float(alpha.rstrip("f")), first_only=alpha.endswith("f"))
        hooks.concealer = MAEConcealer(
            lookahead=lookahead, config=ConcealerConfig(**LPC_DEFAULTS), hooks=hooks
        )
        return hooks.concealer
    if variant == "lpc":
        return MAEConcealer(lookahead=lookahead, config=ConcealerConfig(**LPC_DEFAULTS))
    if variant == "mae":
        return MAEConcealer(lookahead=lookahead)
    hooks = PredictedBands(float(variant.split("@")[1]))
    hooks.concealer = MAEConcealer(lookahead=lookahead, config=ConcealerConfig(**LPC_DEFAULTS), hooks=hooks)
    # The lpc settings switch the MAE off in the concealer; the hook runs it, so load it.
    return hooks.concealer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_tuning_set_args(ap)
    ap.set_defaults(files=13, conditions="ge05b1.5,ge10b2,ge20b3")
    ap.add_argument("--trust", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    ap.add_argument("--out", default="runs/mae_bands", help="results (resumable)")
    ap.add_argument("--learned", help="also run experiments/band_predictor.py's model in DIR")
    ap.add_argument("--forecast", help="also run experiments/band_forecast.py's model in DIR")
    ap.add_argument(
        "--alpha", nargs="+", default=["0.5", "1"], help="its trusts (a trailing f: first lost packet only)"
    )
    ap.add_argument(
        "--nearest",
        help="also shape by the nearest examples' corrections in DIR/examples.npz (band_predictor data)",
    )
    ap.add_argument("--k", type=int, nargs="+", default=[1, 16], help="--nearest: neighbours averaged")
    ap.add_argument("--only-learned", action="store_true", help="skip the MAE variants")
    ap.add_argument(
        "--interpolate", action="store_true", help="la1 / la2 only: bands interpolated across the gap"
    )
    ap.add_argument("--report", action="store_true", help="only print the table of what has run")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    variants = ["lpc"] + ([] if args.only_learned else ["mae"] + [f"bands@{t:g}" for t in args.trust])
    if args.learned:
        LEARNED["dir"] = args.learned
        variants += [f"learned@{a}" for a in args.alpha]
    if args.forecast:
        LEARNED["forecast"] = args.forecast
        variants += [f"forecast@{a}" for a in args.alpha]
    if args.nearest:
        LEARNED["nearest"] = args.nearest
        variants += [f"nearest{k}@{a}" for k in args.k for a in args.alpha]
    conditions, modes = args.conditions.split(","), ["lpc"]
    if args.interpolate:
        variants, modes = ["lpc", "interp"], ["la1", "la2"]
    # The oracle's loop and table, with these concealers and no clean parameters.
    oracle_params.make_concealer = make_concealer
    oracle_params.file_params = lambda file, clean, out: None
    out = Path(args.out)
    files = tuning_files(args)
    if not args.report:
        oracle_params.run(files, conditions, modes, variants, out)
    where = "with lookahead" if args.interpolate else "causal"
    print(f"\n{len(files)} files of {args.data} (every {args.every}th), first 10 s each, {where}\n")
    print(oracle_params.report(out, conditions, modes, variants))


if __name__ == "__main__":
    main()
