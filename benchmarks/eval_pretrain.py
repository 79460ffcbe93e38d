"""Validation reconstruction loss of a pretrained Audio-MAE against trivial predictors.

    python benchmarks/eval_pretrain.py [--model audiomae/assets/mae_tiny_speech]
        [--data ../shared/data/librispeech/dev] [--clip 2.0] [--ratio 0.8] [--seed 0]

Every file is cut into non-overlapping ``--clip`` second windows; each window gets a random
mask (fixed seed). The figure is the MSE over masked patches in the model's normalised
log-mel domain, the pretraining loss. Baselines: the nearest visible patch before and after
in the same frequency row, averaged (``neighbour``), and the item's mean visible patch.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiomae.data import AudioDataset  # noqa: E402
from audiomae.features import patchify  # noqa: E402
from audiomae.model import AudioMAE  # noqa: E402
from audiomae.train.pretrain import MAEPretrainTask, derive_seed, neighbour_baseline  # noqa: E402


def windows(dataset: AudioDataset, clip: int) -> list[torch.Tensor]:
    out = []
    for i in range(len(dataset)):
        wave = torch.from_numpy(dataset.waveform(i))
        out += [wave[s : s + clip] for s in range(0, len(wave) - clip + 1, clip)]
    return out


@torch.no_grad()
def evaluate(model: AudioMAE, clips: list[torch.Tensor], ratio: float, seed: int, batch: int = 16) -> dict:
    task = MAEPretrainTask(model.eval(), mask_ratio=ratio)
    sums = {"model": 0.0, "neighbour": 0.0, "item mean": 0.0}
    count = 0
    for b, start in enumerate(range(0, len(clips), batch)):
        spec = task.spectrogram(torch.stack(clips[start : start + batch]))
        m = task.masks(spec, derive_seed(seed, b))
        patches = patchify(spec, model.cfg.patch_f, model.cfg.patch_t)
        w = m.mask.unsqueeze(-1).float()
        n = float(w.sum()) * patches.shape[-1]
        pred = model(spec, m).pred
        base = neighbour_baseline(patches, m.mask, model.cfg.grid_f)
        vis = 1 - w
        item_mean = (patches * vis).sum(1, keepdim=True) / vis.sum(1, keepdim=True)
        for name, p in (("model", pred), ("neighbour", base), ("item mean", item_mean.expand_as(patches))):
            sums[name] += float(((p - patches).square() * w).sum())
        count += n
    return {k: v / count for k, v in sums.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="audiomae/assets/mae_tiny_speech")
    ap.add_argument("--data", default="../shared/data/librispeech/dev")
    ap.add_argument("--clip", type=float, default=2.0)
    ap.add_argument("--ratio", type=float, default=0.8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = AudioMAE.from_pretrained(args.model)
    data = AudioDataset(args.data, clip_seconds=None, sample_rate=model.feature_cfg.sample_rate)
    clips = windows(data, int(args.clip * model.feature_cfg.sample_rate))
    t0 = time.perf_counter()
    res = evaluate(model, clips, args.ratio, args.seed)
    print(
        f"{args.model} on {args.data}: {len(clips)} clips of {args.clip:g} s, "
        f"{args.ratio:.0%} random masking, seed {args.seed} ({time.perf_counter() - t0:.0f} s)\n"
    )
    print("| predictor | masked-patch MSE (normalised log-mel) | vs neighbour |")
    print("|---|---|---|")
    for name, v in res.items():
        print(f"| {name} | {v:.4f} | {v / res['neighbour']:.2f}x |")


if __name__ == "__main__":
    main()
