"""Sweep the MAE concealer's settings on a tuning set kept apart from the dev benchmark.

    python experiments/tune_concealer.py [--data ../shared/data/librispeech/train] [--files 12]
        [--conditions ge10b2,ge20b3] [--variants NAME ...] [--out runs/tune_concealer]

Each variant changes the shipped concealer (``shipped``, and ``la1`` with one packet of
lookahead) in one respect, see ``VARIANTS``: burst handling (``fLpP``: L packets at full level,
then a fade over P packets into comfort noise), the renderer's band-gain limit (``gG`` dB,
shipped 12; ``g0`` ignores the MAE's prediction), gains shared by N groups of mel bands (``bN``,
shipped 4; ``b80`` one gain per band), no bridge to the packet after the gap (``la1-nb``), an
N-packet MAE window (``cN``, shipped 24), the MAE in fp32 instead of int8 (``fp32``,
``la1-fp32``), silence instead of comfort noise after long bursts (``cn0``), the MAE from the
N-th lost packet of a burst (``mN``), the recovery ramp (``rampN``), the MAE switched off
(``mae-off``, ``la1-mae-off``; ``lpc``, ``la1-lpc`` are the ``lpc`` methods, which also hold two
packets at full level), and settings for a residual model (``res...``). The concealer's tuned
constants (``audiomae.plc.mae``: cross-fade, LPC order, mixed excitation, bridge warp, comfort
level) and the branches measured worse are not variants any more; their tables are in
``results/tune_concealer.md``.
G.711, Opus PLC and Opus FEC are scored alongside (``--baselines``). Every 20th file of
``--data`` (sorted, ``--every``), first 10 s of each; prints mean PESQ-WB and PLCMOS per
condition and variant. ``--model DIR`` swaps in another PLC model; ``--on-opus MODE`` runs the
variants on Opus-decoded audio (``OpusDecodedConcealer``). ``--oracle`` gives each variant the
clean signal's log-mel in place of the MAE's prediction: what a perfect PLC model would score
with that variant's renderer settings (the headroom a better model can reach). ``--truth PART
...`` plays the clean signal itself in some of the lost packets (bridged ones, or the first /
deeper ones of a burst): what each kind of packet costs the score. The diagnostics use the
concealer's hooks (:class:`audiomae.plc.mae.ConcealerHooks`).
"""

from __future__ import annotations

import argparse
import collections
import functools
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from tuning_set import add_tuning_set_args, tuning_files  # noqa: E402

from audiomae.audio import SAMPLES_PER_PACKET  # noqa: E402
from audiomae.eval.plc_benchmark import run_plc_benchmark  # noqa: E402
from audiomae.model import AudioMAE  # noqa: E402
from audiomae.plc.base import method_info, register_concealer  # noqa: E402
from audiomae.plc.mae import (  # noqa: E402
    LPC_DEFAULTS,
    ConcealerConfig,
    ConcealerHooks,
    MAEConcealer,
    PitchGuidedRenderer,
    load_default_plc_model,
)
from audiomae.plc.opus import OpusDecodedConcealer  # noqa: E402

_TRUST = {"gain_groups": None, "max_gain_db": 24.0}
_HOLD3 = {"mae_from_packet": 1, "full_level_packets": 3, "fade_packets": 3}
_RES = {"mae_from_packet": 1, "full_level_packets": LPC_DEFAULTS["full_level_packets"]}
# name: (lookahead, ConcealerConfig changes, PitchGuidedRenderer changes), relative to today's
# defaults; a table in tune_concealer.md ran with the defaults of its day.
VARIANTS: dict[str, tuple[int, dict, dict]] = {
    "shipped": (0, {}, {}),
    "f1p4": (0, {"fade_packets": 4}, {}),
    "f2p3": (0, {"full_level_packets": 2, "fade_packets": 3}, {}),
    "f0p2": (0, {"full_level_packets": 0}, {}),
    "f1p1": (0, {"fade_packets": 1}, {}),
    "f1p3": (0, {"fade_packets": 3}, {}),
    "f2p2": (0, {"full_level_packets": 2}, {}),
    "mae-off": (0, {"mae_from_packet": None}, {}),  # the MAE switched off, nothing else changed
    "la1-mae-off": (1, {"mae_from_packet": None}, {}),
    "lpc": (0, LPC_DEFAULTS, {}),  # the lpc method: the MAE off, two packets at full level
    "la1-lpc": (1, LPC_DEFAULTS, {}),
    "g0": (0, {}, {"max_gain_db": 0.0}),
    "g3": (0, {}, {"max_gain_db": 3.0}),
    "g6": (0, {}, {"max_gain_db": 6.0}),
    "g12": (0, {}, {"max_gain_db": 12.0}),
    "la1-g6": (1, {}, {"max_gain_db": 6.0}),
    "la1-g3": (1, {}, {"max_gain_db": 3.0}),
    "g24": (0, {}, {"max_gain_db": 24.0}),
    "b1": (0, {}, {"gain_groups": 1}),
    "la1-b1": (1, {}, {"gain_groups": 1}),
    "b80": (0, {}, {"gain_groups": None}),
    "b8": (0, {}, {"gain_groups": 8}),
    "b16": (0, {}, {"gain_groups": 16}),
    "c16": (0, {"context_packets": 16}, {}),
    "c40": (0, {"context_packets": 40}, {}),
    "la1-c40": (1, {"context_packets": 40}, {}),
    "la1": (1, {}, {}),
    "la1-g0": (1, {}, {"max_gain_db": 0.0}),
    "la1-nb": (1, {"bridge": False}, {}),
    "fp32": (0, {"int8": False}, {}),
    "cn0": (0, {"comfort_noise": False}, {}),
    "m1": (0, {"mae_from_packet": 1}, {}),
    "la1-m1": (1, {"mae_from_packet": 1}, {}),
    "m3": (0, {"mae_from_packet": 3}, {}),
    "m9": (0, {"mae_from_packet": 9}, {}),
    "la1-fp32": (1, {"int8": False}, {}),
    "i4": (0, {}, {"n_iter": 4}),
    "i16": (0, {}, {"n_iter": 16}),
    "la1-i4": (1, {}, {"n_iter": 4}),
    "ramp0": (0, {"recovery_ramp": 0}, {}),
    "la1-ramp0": (1, {"recovery_ramp": 0}, {}),
    "ramp80": (0, {"recovery_ramp": 80}, {}),
    "ramp160": (0, {"recovery_ramp": 160}, {}),
    "la1-ramp160": (1, {"recovery_ramp": 160}, {}),
    "la1-f1p3": (1, {"fade_packets": 3}, {}),
    "la1-f1p2": (1, {"fade_packets": 2}, {}),  # the lookahead default before stop 15
    "la1-f1p4": (1, {"fade_packets": 4}, {}),
    "f1p5": (0, {"fade_packets": 5}, {}),
    "la2": (2, {}, {}),  # two packets of lookahead (40 ms more delay)
    "la1-f2p2": (1, {"full_level_packets": 2}, {}),
    "la1-f1p1": (1, {"fade_packets": 1}, {}),
    # Trusting the prediction fully: from the first lost packet, one gain per mel band up to
    # 24 dB, three packets at full level (with --oracle: the headroom of a perfect model).
    "trust": (0, {**_HOLD3}, _TRUST),
    "la1-trust": (1, _HOLD3, _TRUST),
    # Trusting it from the second lost packet on (the first keeps the continuation).
    "la1-trust2": (1, {"full_level_packets": 3, "fade_packets": 3}, _TRUST),
    # For a residual model (one that corrects the MAE-free concealer's continuation): the
    # bursts as ``lpc`` holds them, the prediction used from the first lost packet with the
    # shipped band-gain limits (``res``), one gain per band up to 24 dB (``res-trust``), or only
    # from the second packet (``res2``).
    "res": (0, _RES, {}),
    "res-trust": (0, _RES, _TRUST),
    "res2": (0, {**_RES, "mae_from_packet": 2}, {}),
    "res2-trust": (0, {**_RES, "mae_from_packet": 2}, _TRUST),
    "la1-res": (1, _RES, {}),
    "la1-res-trust": (1, _RES, _TRUST),
    "la1-res2-trust": (1, {**_RES, "mae_from_packet": 2}, _TRUST),
    # Only the correction's level: one gain per frame over all bands (``g1``), or band groups
    # limited to +-3 dB (``3db``).
    "res-g1": (0, _RES, {"gain_groups": 1}),
    "res2-g1": (0, {**_RES, "mae_from_packet": 2}, {"gain_groups": 1}),
    "la1-res-g1": (1, _RES, {"gain_groups": 1}),
    "res-3db": (0, _RES, {"max_gain_db": 3.0}),
}


class SourceHooks(ConcealerHooks):
    """Hooks that know the clean signal (:class:`Diagnostic` hands it over)."""

    clean: np.ndarray | None = None

    def clean_at(self, start: int, n: int) -> np.ndarray:
        """``n`` samples of the clean signal from ``start`` (zeros outside it)."""
        out = np.zeros(n, dtype=np.float32)
        src = self.clean[max(0, start) : start + n]
        out[max(0, -start) : max(0, -start) + src.size] = src
        return out


class OracleHooks(SourceHooks):
    """The MAE's prediction replaced by the log-mel of the clean signal over the same window."""

    def __init__(self, features) -> None:
        from audiomae.features import LogMel

        self.frontend = LogMel(features, backend="torch")

    def logmel(self, window, predicted):
        true = self.clean_at(window.start, window.wave.size)
        return self.frontend(torch.from_numpy(true).unsqueeze(0))


# Lost packets that ``--truth`` fills with the clean signal: those bridged to the audio after
# the gap (lookahead), and the others by position in their burst.
TRUTH_PARTS = ("bridged", "first", "deep")


class TruthHooks(SourceHooks):
    """The lost packets of the kinds in ``truth`` (see ``TRUTH_PARTS``; "first" = the first lost
    packet of a burst that is not bridged, "deep" = later ones) are played as the clean signal at
    full level, the others concealed as usual: what each kind of packet costs the score."""

    def __init__(self, truth: tuple[str, ...]) -> None:
        self.truth = tuple(truth)

    def replace(self, packet):
        kind = "bridged" if packet.bridged else "first" if packet.burst == 1 else "deep"
        if kind not in self.truth:
            return None
        return self.clean_at(packet.index * SAMPLES_PER_PACKET, packet.size)


class Diagnostic(MAEConcealer):
    """A diagnostic, not a concealer: the MAE concealer with :class:`SourceHooks` that need the
    clean signal, so it takes one (``set_source``) as the codec simulations do."""

    requires_source = True

    def set_source(self, clean: np.ndarray) -> None:
        self.hooks.clean = clean


def _frame_level(mel: torch.Tensor) -> torch.Tensor:
    """Log of each frame's total mel energy, (1, 1, T)."""
    return torch.logsumexp(mel, dim=-2, keepdim=True)


def _box(mel: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    """Moving average over ``width`` bins along ``dim`` (edges averaged over what exists)."""
    x = mel.movedim(dim, -1)
    kernel = torch.ones(1, 1, width, dtype=x.dtype)
    flat = x.reshape(-1, 1, x.shape[-1])
    num = torch.nn.functional.conv1d(flat, kernel, padding=width // 2)
    den = torch.nn.functional.conv1d(torch.ones_like(flat), kernel, padding=width // 2)
    return (num / den).reshape(x.shape).movedim(-1, dim)


# What the renderer is given in place of the MAE's log-mel (``--mix``): parts of the truth and of
# the model's prediction, to see which errors of the model cost quality. Log-mel is natural-log
# power, so 0.23 is 1 dB.
MIXES = {
    "level": lambda true, pred: pred - _frame_level(pred) + _frame_level(true),  # model's shape
    "shape": lambda true, pred: true - _frame_level(true) + _frame_level(pred),  # model's level
    "fblur5": lambda true, pred: _box(true, 5, -2),  # truth smoothed over 5 mel bands
    "fblur11": lambda true, pred: _box(true, 11, -2),
    "tblur5": lambda true, pred: _box(true, 5, -1),  # truth smoothed over 50 ms
    "true-3db": lambda true, pred: true - 0.69,
    "true+3db": lambda true, pred: true + 0.69,
    "pred+3db": lambda true, pred: pred + 0.69,
    "pred+6db": lambda true, pred: pred + 1.38,
    "pred-3db": lambda true, pred: pred - 0.69,
    "half": lambda true, pred: 0.5 * (true + pred),  # halfway between the model and the truth
    "quarter": lambda true, pred: 0.75 * true + 0.25 * pred,  # a quarter of the way
    "pred-fblur5": lambda true, pred: _box(pred, 5, -2),  # the prediction smoothed over 5 mel bands
    "pred-fblur9": lambda true, pred: _box(pred, 9, -2),
    "pred-6db": lambda true, pred: pred - 1.38,
}


class MixedHooks(OracleHooks):
    """The renderer gets ``MIXES[mix](true log-mel, MAE log-mel)``."""

    def __init__(self, features, mix: str) -> None:
        super().__init__(features)
        self.mix = mix

    def logmel(self, window, predicted):
        true = super().logmel(window, predicted)
        n = min(true.shape[-1], predicted.shape[-1])
        return MIXES[self.mix](true[..., :n], predicted[..., :n])


def _factory(
    lookahead: int,
    config: dict,
    renderer: dict,
    on_opus: str | None = None,
    model: str | None = None,
    bitrate: int = 64000,
    oracle: bool = False,
    mix: str | None = None,
    truth: tuple[str, ...] = (),
):
    def make() -> MAEConcealer | OpusDecodedConcealer:
        vocoder = None
        if renderer:
            vocoder = PitchGuidedRenderer(_features(model), **{"n_iter": 0, **renderer})
        hooks = (
            MixedHooks(_features(model), mix)
            if mix
            else OracleHooks(_features(model))
            if oracle
            else TruthHooks(truth)
            if truth
            else None
        )
        mae = (Diagnostic if hooks else MAEConcealer)(
            _load_model(model) if model else None,
            vocoder=vocoder,
            lookahead=lookahead,
            config=ConcealerConfig(**config),
            hooks=hooks,
        )
        return OpusDecodedConcealer(mae, decoder=on_opus, bitrate=bitrate) if on_opus else mae

    return make


@functools.lru_cache
def _load_model(path: str) -> AudioMAE:
    return AudioMAE.from_pretrained(path)


@functools.lru_cache
def _features(path: str | None):
    """The log-mel settings of the model at ``path`` (None: the bundled one), loaded once."""
    return (_load_model(path) if path else load_default_plc_model()).feature_cfg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_tuning_set_args(ap)
    ap.add_argument("--out", default="runs/tune_concealer")
    ap.add_argument("--model", help="a PLC model directory instead of the bundled one")
    ap.add_argument(
        "--on-opus",
        choices=OpusDecodedConcealer.DECODER_MODES,
        help="conceal Opus-decoded audio (at --bitrate); what the decoder does at a lost packet",
    )
    ap.add_argument("--bitrate", type=int, default=64000, help="Opus bitrate for the opus* methods")
    ap.add_argument("--baselines", default="g711,opus,opus-fec", help="methods scored alongside")
    ap.add_argument("--variants", nargs="*", choices=sorted(VARIANTS), default=list(VARIANTS))
    ap.add_argument("--oracle", action="store_true", help="the true log-mel in place of the MAE's prediction")
    ap.add_argument(
        "--mix", choices=sorted(MIXES), help="give the renderer a mix of the true and the MAE's log-mel"
    )
    ap.add_argument(
        "--truth",
        nargs="+",
        choices=TRUTH_PARTS,
        default=(),
        help="play the clean signal in these lost packets: bridged, or the first / deeper ones of a burst",
    )
    args = ap.parse_args()
    if (args.oracle or args.mix or args.truth) and args.on_opus:
        ap.error("--oracle, --mix and --truth apply to uncoded audio only")
    if sum(map(bool, (args.oracle, args.mix, args.truth))) > 1:
        ap.error("--oracle, --mix and --truth are separate diagnostics: give one")
    torch.set_num_threads(1)
    if args.bitrate != 64000:  # re-register the Opus methods at this bitrate
        for name in ("opus", "opus-fec", "opus+mae", "opus+mae-la1"):
            info = method_info(name)
            factory = functools.partial(info.factory, bitrate=args.bitrate)
            register_concealer(name, factory, group=info.group, lists=info.lists, note=info.note)
    for name in args.variants:
        register_concealer(
            f"mae-{name}",
            _factory(
                *VARIANTS[name],
                on_opus=args.on_opus,
                model=args.model,
                bitrate=args.bitrate,
                oracle=args.oracle,
                mix=args.mix,
                truth=tuple(args.truth),
            ),
        )
    files = tuning_files(args)
    methods = [m for m in args.baselines.split(",") if m] + [f"mae-{n}" for n in args.variants]
    # One process: the variants are registered here, not in spawned workers.
    rows = run_plc_benchmark(files, methods, args.conditions.split(","), args.out, max_seconds=10, workers=1)
    scores = collections.defaultdict(list)
    for r in rows:
        scores[(r["condition"], r["method"])].append((r["pesq"], r["plcmos"]))
    print(f"\n{len(files)} files of {args.data}, first 10 s each\n")
    print("| condition | method | PESQ-WB | PLCMOS |\n|---|---|---|---|")
    for (cond, method), vals in sorted(scores.items()):
        pesq, plcmos = np.nanmean(np.array(vals, dtype=float), axis=0)
        print(f"| {cond} | {method} | {pesq:.3f} | {plcmos:.3f} |")


if __name__ == "__main__":
    main()
