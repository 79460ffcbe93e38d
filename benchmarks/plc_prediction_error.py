"""How well a PLC model predicts what the concealer renders: the lost packet's log-mel, by
position in the burst, against the LPC continuation the renderer would otherwise keep.

    python benchmarks/plc_prediction_error.py [--model DIR] [--lookahead 1] [--files 12]
        [--data ../shared/data/librispeech/train] [--conditions ge10b2,ge20b3]

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
from pathlib import Path

import numpy as np
import torch

from audiomae.audio import SAMPLE_RATE, SAMPLES_PER_PACKET, load_audio
from audiomae.data import find_audio
from audiomae.eval.plc_benchmark import trace_seed
from audiomae.loss_models import apply_loss, draw_loss, parse_condition
from audiomae.model import AudioMAE
from audiomae.plc import conceal
from audiomae.plc.mae import ConcealerConfig, MAEConcealer, PitchGuidedRenderer, load_default_plc_model

DB = 10 / np.log(10)  # natural-log power -> dB


class _Recorder(MAEConcealer):
    """The MAE concealer, noting (position in burst, clean, predicted log-mel) of every target."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.records: list[tuple[int, np.ndarray, np.ndarray]] = []
        self.clean_mel: torch.Tensor | None = None
        self._packet = -1

    def _reset(self) -> None:
        super()._reset()
        self._packet = -1

    def _conceal(self, window):
        self._packet += 1
        return super()._conceal(window)

    def predict_logmel(self, wave, lost, columns=None):
        pred = super().predict_logmel(wave, lost, columns)
        fpp = self._frames_per_packet
        first = len(self._hist_lost) * fpp
        t0 = self._packet * fpp  # the target's first frame in the file
        self.records.append(
            (self._burst, self.clean_mel[:, t0 : t0 + fpp].numpy(), pred[0, :, first : first + fpp].numpy())
        )
        return pred


class _GuideRecorder(PitchGuidedRenderer):
    """The shipped renderer, noting the log-mel of the continuation it shapes."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.records: list[np.ndarray] = []

    def render(self, mel, start, stop, audio, known, guide=None):
        power = self._fb @ self._stft(guide, mel.shape[-1]).abs().square()
        log_mel = power.clamp_min(self.feature_cfg.log_floor).log().reshape(-1, mel.shape[-1])
        self.records.append(log_mel[:, start : stop - 1].numpy())
        return super().render(mel, start, stop, audio, known, guide)


def record(files, conditions, model: AudioMAE, lookahead: int):
    """(positions (N,), clean (N, F, 2), predicted (N, F, 2), continuation (N, F, 2)) log-mel."""
    pos, clean, pred, guide = [], [], [], []
    for file in files:
        audio = load_audio(file)[: 10 * SAMPLE_RATE]
        n = -(-audio.size // SAMPLES_PER_PACKET)
        padded = np.pad(audio, (0, n * SAMPLES_PER_PACKET - audio.size))
        for cond in conditions:
            lost = draw_loss(parse_condition(cond), n, trace_seed(file, cond, 0))
            renderer = _GuideRecorder(model.feature_cfg, n_iter=0)
            c = _Recorder(
                model, vocoder=renderer, lookahead=lookahead, config=ConcealerConfig(mae_from_packet=1)
            )
            c.clean_mel = c.frontend(torch.from_numpy(padded).unsqueeze(0))[0]
            conceal(apply_loss(audio, lost), lost, c)
            if len(c.records) != len(renderer.records):
                raise RuntimeError("predictions and renderings out of step")
            for (p, t, m), g in zip(c.records, renderer.records):
                if t.shape == m.shape == g.shape:  # a target frame past the file's end is skipped
                    pos.append(p), clean.append(t), pred.append(m), guide.append(g)
    return np.array(pos), np.stack(clean), np.stack(pred), np.stack(guide)


def errors(clean: np.ndarray, est: np.ndarray) -> dict[str, float]:
    """Shape and level errors (dB) of ``est`` against ``clean``, both (N, F, frames) log power."""

    def level(x):
        return np.log(np.exp(x).sum(1, keepdims=True))

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/librispeech/train")
    )
    ap.add_argument("--files", type=int, default=12)
    ap.add_argument("--every", type=int, default=20, help="take every Nth file of --data (sorted)")
    ap.add_argument("--conditions", default="ge10b2,ge20b3")
    ap.add_argument("--model", help="a PLC model directory instead of the bundled one")
    ap.add_argument("--lookahead", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = AudioMAE.from_pretrained(args.model) if args.model else load_default_plc_model()
    files = find_audio(args.data)[:: args.every][: args.files]
    pos, clean, pred, guide = record(files, args.conditions.split(","), model, args.lookahead)
    print(
        f"\n{args.model or 'bundled model'}, lookahead {args.lookahead}: {len(pos)} lost packets "
        f"({len(files)} files of {args.data}, {args.conditions})\n"
    )
    print(
        "| position in burst | packets | shape ew dB: MAE / continuation | shape rms dB "
        "| level bias dB | level rms dB |"
    )
    print("|---|---|---|---|---|---|")
    for name, sel in [("1", pos == 1), ("2", pos == 2), ("3", pos == 3), ("4+", pos >= 4), ("all", pos > 0)]:
        if not sel.any():
            continue
        m, g = errors(clean[sel], pred[sel]), errors(clean[sel], guide[sel])
        print(
            f"| {name} | {sel.sum()} | {m['ew']:.2f} / {g['ew']:.2f} | {m['rms']:.2f} / {g['rms']:.2f} "
            f"| {m['bias']:+.2f} / {g['bias']:+.2f} | {m['lvl_rms']:.2f} / {g['lvl_rms']:.2f} |"
        )


if __name__ == "__main__":
    main()
