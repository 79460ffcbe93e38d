"""Speaker-adversarial fine-tuning on FSDD's unseen-speaker folds.

The fine-tune of ``benchmarks/fsdd_experiment.py`` (same encoder, budget, augmentation) with a
second head that tries to tell the training speakers apart from the pooled features, its
gradient reversed into the encoder (domain-adversarial training, Ganin & Lempitsky 2015): the
encoder is pushed towards features the four training voices share. The reversal's weight ramps
from 0 to ``--weight`` over the run, as in the paper. Reports plain / adapted / clustered
accuracy per fold like the benchmark::

    python experiments/fsdd_adversary.py --weight 0.3 --out experiments/results/fsdd_adversary

Options this script does not know are passed to ``fsdd_experiment.py``'s parser (``--encoder``,
``--clip-norm``, ``--steps``, ...).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import fsdd_experiment as fx  # noqa: E402

from audiomae.audio import atomic_write  # noqa: E402
from audiomae.augment import augment_batch, patch_mask  # noqa: E402
from audiomae.classify import AudioClassifier, ClassificationTask, evaluate  # noqa: E402
from audiomae.classify.data import fit_spectrogram  # noqa: E402
from audiomae.train import fit  # noqa: E402


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


class AdversaryTask(ClassificationTask):
    """Batches ``(spec, digit, speaker)``; the model carries ``speaker_head``. ``weight``: the
    reversal's weight after the ramp over ``steps``."""

    weight = 0.3
    steps = 1200

    def training_step(self, batch, step: int):
        spec, target, speaker = batch
        model, aug = self.model, self.augment
        g = self._generator(step)
        spec, target = augment_batch(spec, target, aug, model.cfg.num_classes, generator=g)
        mask = patch_mask(aug, spec.shape[0], *model.encoder.grid(spec), generator=g)
        out = model(spec, mask)
        digit_loss = model.loss(out.logits, target)
        ramp = 2.0 / (1.0 + math.exp(-10.0 * step / max(1, self.steps))) - 1.0
        adv = model.speaker_head(_Reverse.apply(out.features, self.weight * ramp))
        speaker_loss = F.cross_entropy(adv, speaker)
        logs = {
            "loss": float(digit_loss.detach()),
            "speaker_loss": float(speaker_loss.detach()),
            "speaker_acc": float((adv.argmax(-1) == speaker).float().mean()),
        }
        return digit_loss + speaker_loss, logs


def run_fold(args, spk: str, weight: float) -> dict:
    st = fx._STATE
    full, raw, y = st["full"], st["raw"], st["y"]
    speakers = np.array(full.column("speaker"))
    tr_idx = torch.from_numpy(np.flatnonzero(speakers != spk))
    te_idx = torch.from_numpy(np.flatnonzero(speakers == spk))
    names = sorted(set(speakers[tr_idx.numpy()]))
    spk_y = torch.tensor([names.index(s) for s in speakers[tr_idx.numpy()]])
    t0 = time.perf_counter()
    spec = fit_spectrogram(raw, st["pretrained"])
    torch.manual_seed(args.seed)
    model = AudioClassifier(st["pretrained"], st["n_classes"], mode="finetune", clip_norm=args.clip_norm)
    if args.clip_norm:
        model.fit_clip_reference(spec[tr_idx])
    dim = model.head.in_features
    model.speaker_head = nn.Sequential(
        nn.BatchNorm1d(dim), nn.Linear(dim, 128), nn.ReLU(), nn.Linear(128, len(names))
    )
    aug = fx.augment_config(args)
    task = AdversaryTask(model, augment=aug, layer_decay=args.layer_decay, seed=args.seed)
    task.weight, task.steps = weight, args.steps
    ds = torch.utils.data.TensorDataset(spec[tr_idx], y[tr_idx], spk_y)
    cfg = fx.train_config(args, args.lr_finetune)
    with tempfile.TemporaryDirectory() as tmp:
        fit(task, ds, None, cfg, tmp)
    del model.speaker_head
    acc = evaluate(model, spec[te_idx], y[te_idx])["acc"]
    adapted = fx.adapted_score(args, model, spec, y, te_idx)[0]
    refined = fx.adapted_score(args, model, spec, y, te_idx, refine=True)[0]
    return {"acc": acc, "adapted": adapted, "refined": refined, "seconds": time.perf_counter() - t0}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weight", type=float, default=0.3, help="gradient reversal weight after the ramp")
    p.add_argument("--out", default="experiments/results/fsdd_adversary")
    own, rest = p.parse_known_args(argv)
    args = fx.parse_args(["--settings", "finetune", "--fractions", "1.0", *rest])
    torch.set_num_threads(args.threads)
    pretrained = fx.load_encoder(args)
    raw, full = fx.load_features(args, pretrained)
    fx.set_state(args, pretrained, raw, full)
    folds = args.folds or sorted(set(full.column("speaker")))
    results = {}
    for spk in folds:
        results[spk] = run_fold(args, spk, own.weight)
        print(spk, {k: round(v, 4) for k, v in results[spk].items()}, flush=True)
    mean = {k: float(np.mean([r[k] for r in results.values()])) for k in ("acc", "adapted", "refined")}
    out = Path(own.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"weight": own.weight, "argv": argv or sys.argv[1:], "folds": results, "mean": mean}
    name = f"weight{own.weight:g}{'-clipnorm' if args.clip_norm else ''}.json"
    atomic_write(out / name, lambda tmp: Path(tmp).write_text(json.dumps(payload, indent=1)))
    print("mean", {k: round(v, 4) for k, v in mean.items()})
    return payload


if __name__ == "__main__":
    main()
