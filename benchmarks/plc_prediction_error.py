"""How well a PLC model predicts what the concealer renders: the lost packet's log-mel, by
position in the burst, against the LPC continuation the renderer would otherwise keep.

    python benchmarks/plc_prediction_error.py [--model DIR] [--lookahead 1] [--files 12]
        [--data ../shared/data/librispeech/train] [--conditions ge10b2,ge20b3] [--plot errors.png]

Runs the MAE concealer (MAE from the first lost packet on, so every lost packet gets a
prediction) over every ``--every``-th file (first 10 s) with the benchmark's loss traces and
records, for each lost packet's two mel frames, the clean log-mel, the MAE's prediction and the
log-mel of the continuation. Per burst position it prints

- *shape* errors, the frame's log-mel minus its total level: the mean absolute error in dB
  weighted by each band's share of the clean frame's power (``ew``: the loud bands, which the
  renderer reproduces), and the RMS over bands within 30 dB of the frame's total (``rms``);
- the *level* error (frame total power, dB): mean (bias) and RMS.

A validation MSE over normalised log-mel counts every band alike, near-silent ones included;
these figures count what is heard.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.special import logsumexp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tuning_set import add_tuning_set_args, tuning_files  # noqa: E402

from audiomae.audio import SAMPLE_RATE, SAMPLES_PER_PACKET, load_audio  # noqa: E402
from audiomae.eval.plc_benchmark import trace_seed  # noqa: E402
from audiomae.loss_models import apply_loss, draw_loss, parse_condition  # noqa: E402
from audiomae.model import AudioMAE, ResidualPLCMAE  # noqa: E402
from audiomae.plc import conceal  # noqa: E402
from audiomae.plc.mae import (  # noqa: E402
    LPC_DEFAULTS,
    ConcealerConfig,
    ConcealerHooks,
    MAEConcealer,
    PitchGuidedRenderer,
    load_default_plc_model,
)

DB = 10 / np.log(10)  # natural-log power -> dB


class Recorder(ConcealerHooks):
    """Concealer hooks noting, for every lost packet the MAE shapes, (packet, position in burst,
    clean log-mel, predicted log-mel, log-mel of the continuation the renderer shapes), each
    ``(F, frames per packet)``. ``source``: other hooks whose log-mel stands in for the MAE's
    (an oracle); ``clean_mel``: the clean signal's log-mel ``(F, T)``, set per file."""

    def __init__(self, renderer, frames_per_packet: int, source: ConcealerHooks | None = None) -> None:
        self.renderer, self.fpp, self.source = renderer, frames_per_packet, source
        self.records: list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]] = []
        self.clean_mel: torch.Tensor | None = None

    def logmel(self, window, predicted):
        if self.source is not None:
            predicted = self.source.logmel(window, predicted)
        t, fpp = window.index, self.fpp
        clean = self.clean_mel[:, t * fpp : (t + 1) * fpp].numpy()
        pred = np.asarray(predicted)[0, :, window.target : window.target + fpp]
        frames = window.guide.size // self.renderer.feature_cfg.hop_length
        left = window.target - window.guide_start
        guide = self.renderer.logmel(window.guide, frames)[0, :, left : left + fpp]
        self.records.append((t, window.burst, clean, pred, np.asarray(guide)))
        return predicted


def record(files, conditions, model: AudioMAE, lookahead: int) -> dict[str, np.ndarray]:
    """Per lost packet: ``pos`` (position in burst), ``isolated`` (a single loss between two
    received packets), and the log-mel (N, F, 2) ``clean``, ``pred`` (the MAE's),
    ``guide`` (the continuation's) and ``interp`` (the nearest clean frames either side whose analysis
    windows miss the packet, interpolated linearly: what one packet of lookahead could give a
    single loss)."""
    out = {k: [] for k in ("pos", "isolated", "clean", "pred", "guide", "interp", "repeat")}
    renderer = PitchGuidedRenderer(model.feature_cfg, n_iter=0)
    # A residual model corrects what the MAE-free concealer plays, which holds bursts at full
    # level for two packets (LPC_DEFAULTS).
    full = LPC_DEFAULTS["full_level_packets"] if isinstance(model, ResidualPLCMAE) else 1
    config = ConcealerConfig(mae_from_packet=1, full_level_packets=full)
    hooks = Recorder(renderer, model.cfg.patch_t)
    c = MAEConcealer(model, vocoder=renderer, lookahead=lookahead, config=config, hooks=hooks)
    fpp, hop = c.frames_per_packet, model.feature_cfg.hop_length
    half = model.feature_cfg.win_length // 2
    for file in files:
        audio = load_audio(file)[: 10 * SAMPLE_RATE]
        n = -(-audio.size // SAMPLES_PER_PACKET)
        padded = np.pad(audio, (0, n * SAMPLES_PER_PACKET - audio.size))
        hooks.clean_mel = c.frontend(torch.from_numpy(padded).unsqueeze(0))[0]
        mel = hooks.clean_mel.numpy()
        for cond in conditions:
            lost = draw_loss(parse_condition(cond), n, trace_seed(file, cond, 0))
            hooks.records.clear()
            conceal(apply_loss(audio, lost), lost, c)  # resets the concealer first
            for t, p, x, m, g in hooks.records:
                if not x.shape == m.shape == g.shape or t + 1 >= n:  # the file's last packet: skipped
                    continue
                # The nearest frames whose analysis window misses the lost packet's samples.
                k0 = (t * SAMPLES_PER_PACKET - half) // hop
                k1 = -(-((t + 1) * SAMPLES_PER_PACKET + half) // hop)
                if k0 < 0 or k1 >= mel.shape[-1]:
                    continue
                w = (np.arange(t * fpp, (t + 1) * fpp) - k0) / (k1 - k0)
                interp = mel[:, k0, None] * (1 - w) + mel[:, k1, None] * w
                isolated = t > 0 and lost[t] and not lost[t - 1] and not lost[t + 1]
                # The last clean frame before the burst whose window misses its samples, held.
                k_last = ((t - p + 1) * SAMPLES_PER_PACKET - half) // hop
                if k_last < 0:
                    continue
                repeat = np.repeat(mel[:, k_last, None], fpp, axis=1)
                for k, v in zip(out, (p, isolated, x, m, g, interp, repeat)):
                    out[k].append(v)
    return {k: np.array(v) for k, v in out.items()}


def errors(clean: np.ndarray, est: np.ndarray) -> dict[str, float]:
    """Shape and level errors (dB) of ``est`` against ``clean``, both (N, F, frames) log power."""

    def level(x):
        return logsumexp(x, axis=1, keepdims=True)

    shape_err = (est - level(est)) - (clean - level(clean))
    share = np.exp(clean - level(clean))
    audible = (clean - level(clean)) * DB > -30
    lvl = (level(est) - level(clean)) * DB
    return {
        "ew": float((np.abs(shape_err) * share).sum() / share.sum() * DB),
        "rms": float(np.sqrt((shape_err**2 * audible).sum() / audible.sum()) * DB),
        "bias": float(lvl.mean()),
        "lvl_rms": float(np.sqrt((lvl**2).mean())),
    }


def table(r: dict[str, np.ndarray]) -> list[tuple[str, int, dict, dict, dict]]:
    """(row name, packets, MAE errors, continuation errors, repeat errors) by burst position,
    all, single losses."""
    pos, clean = r["pos"], r["clean"]
    rows = [("1", pos == 1), ("2", pos == 2), ("3", pos == 3), ("4+", pos >= 4), ("all", pos > 0)]
    return [
        (
            name,
            int(sel.sum()),
            errors(clean[sel], r["pred"][sel]),
            errors(clean[sel], r["guide"][sel]),
            errors(clean[sel], r["repeat"][sel]),
        )
        for name, sel in rows + [("single losses", r["isolated"])]
        if sel.any()
    ]


def never_worse(rows) -> bool:
    """Whether the MAE's shape (ew) and level (rms) errors are below both the continuation's
    and the repeated last frame's at every burst position."""
    return all(
        m[key] < min(g[key], rep[key])
        for name, _, m, g, rep in rows
        if name in ("1", "2", "3", "4+")
        for key in ("ew", "lvl_rms")
    )


def plot(rows: list[tuple[str, int, dict, dict]], title: str, path: str | Path) -> None:
    """Bars of the envelope (shape) error and the level error by burst position, written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from audiomae.audio import atomic_write

    fig = Figure(figsize=(8, 6.5))
    FigureCanvasAgg(fig)
    x = np.arange(len(rows))
    for i, (key, label) in enumerate(
        (("ew", "shape error, power-weighted (dB)"), ("lvl_rms", "level error, rms (dB)"))
    ):
        ax = fig.add_subplot(2, 1, i + 1)
        for j, (who, k) in enumerate((("MAE", 2), ("LPC continuation", 3), ("last frame held", 4))):
            ax.bar(x + (j - 1) * 0.27, [row[k][key] for row in rows], 0.27, label=who)
        ax.set_xticks(x, [f"{row[0]}\n({row[1]})" for row in rows])
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
        if i == 0:
            ax.set_title(title, fontsize="medium")
            ax.legend(fontsize="small")
    ax.set_xlabel("position of the lost packet in its burst (packets)")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_tuning_set_args(ap)
    ap.add_argument("--model", help="a PLC model directory instead of the bundled one")
    ap.add_argument("--lookahead", type=int, default=0)
    ap.add_argument("--plot", help="also draw the errors by burst position into this PNG")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = AudioMAE.from_pretrained(args.model) if args.model else load_default_plc_model()
    files = tuning_files(args)
    r = record(files, args.conditions.split(","), model, args.lookahead)
    title = f"{args.model or 'bundled model'}, lookahead {args.lookahead}: {len(r['pos'])} lost packets"
    print(f"\n{title} ({len(files)} files of {args.data}, {args.conditions})\n")
    print(
        "| position in burst | packets | shape ew dB: MAE / continuation / held | shape rms dB "
        "| level bias dB | level rms dB |"
    )
    print("|---|---|---|---|---|---|")
    rows = table(r)
    for name, count, m, g, rep in rows:
        print(
            f"| {name} | {count} | {m['ew']:.2f} / {g['ew']:.2f} / {rep['ew']:.2f} "
            f"| {m['rms']:.2f} / {g['rms']:.2f} / {rep['rms']:.2f} "
            f"| {m['bias']:+.2f} / {g['bias']:+.2f} / {rep['bias']:+.2f} "
            f"| {m['lvl_rms']:.2f} / {g['lvl_rms']:.2f} / {rep['lvl_rms']:.2f} |"
        )
    verdict = "below" if never_worse(rows) else "NOT below"
    print(f"\nMAE shape (ew) and level (rms) errors {verdict} both baselines at every burst position.")
    if args.plot:
        plot(rows, f"{title}, {args.conditions}", args.plot)
    if r["isolated"].any():
        sel = r["isolated"]
        i = errors(r["clean"][sel], r["interp"][sel])
        print(
            f"\nSingle losses, the nearest clean frames either side that miss the lost samples, "
            f"interpolated (a reference for lookahead): "
            f"shape ew {i['ew']:.2f} dB, rms {i['rms']:.2f} dB, level bias {i['bias']:+.2f} dB, "
            f"rms {i['lvl_rms']:.2f} dB"
        )


if __name__ == "__main__":
    main()
