"""``audiomae finetune`` and ``audiomae classify``: train a classifier, then label files with it.

``audiomae finetune --config recipes/configs/classify/fsdd.yaml [key=value ...]`` fine-tunes
(or linear-probes) an Audio-MAE encoder on labelled audio; overrides are dotted YAML keys
(``train.steps=200 mode=linear_probe data.test_values=[george]``).
``audiomae classify CHECKPOINT file.wav ... [--top-k 3] [--adapt] [--refine]`` prints the top labels
of each file; ``--adapt`` first adapts the classifier to the files, taken as one speaker or
channel; ``--refine`` also labels them by the clusters they form (first column).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from audiomae.commands import add_config_arguments, positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="fine-tune or linear-probe an encoder for audio classification")
    add_config_arguments(p)  # as recipes/finetune_classify.py
    p.set_defaults(func=run_finetune_command)

    c = sub.add_parser("classify", help="top-k labels of audio files from a classifier checkpoint")
    c.add_argument("checkpoint", help="classifier checkpoint directory (from `audiomae finetune`)")
    c.add_argument("files", nargs="+", help="audio files (any rate; resampled to the model's)")
    c.add_argument("--top-k", type=positive_int, default=3, help="labels to print per file (default 3)")
    c.add_argument(
        "--adapt",
        action="store_true",
        help="the files are one speaker or channel: standardise the head's input by their own "
        "statistics first (unlabelled adaptation; needs 2 or more files; not for speaker labels)",
    )
    c.add_argument(
        "--refine",
        action="store_true",
        help="as --adapt, then label the files by the clusters they form (printed first, before the "
        "classifier's top-k; for many clips of one speaker, e.g. 10 or more per class)",
    )
    c.set_defaults(func=run_classify_command)


def main(cfg: dict[str, Any], resume: bool = False) -> dict[str, Any]:
    from audiomae.audio import check_outputs
    from audiomae.classify import FinetuneSettings, run_finetune
    from audiomae.train import distributed as dist_utils

    settings = FinetuneSettings.from_dict(cfg)
    check_outputs({"out_dir": settings.out_dir}, directories=["out_dir"])  # before any data is read
    out = run_finetune(settings, resume=resume)
    if dist_utils.is_main():
        result = out["result"]
        score = f"accuracy {out['acc']:.4f}" if "acc" in out else f"mAP {out['map']:.4f}"
        if "acc_adapted" in out:
            score += (
                f" ({out['acc_adapted']:.4f} adapted to each test {settings.data.split_column}, "
                f"{out['acc_refined']:.4f} with labels refined by clustering)"
            )
        print(
            f"done: {result.steps} steps in {result.elapsed_s:.0f} s; test {score}; "
            f"model in {Path(settings.out_dir) / 'model'}"
        )
    return out


def run_finetune_command(args: argparse.Namespace) -> int:
    from audiomae.train.config import load_config

    main(load_config(args.config, args.overrides), resume=args.resume)
    return 0


def run_classify_command(args: argparse.Namespace) -> int:
    import torch

    from audiomae.audio import load_audio
    from audiomae.classify import AudioClassifier

    if args.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {args.top_k}")
    adapt = args.adapt or args.refine
    if adapt and len(args.files) < 2:
        raise ValueError("--adapt and --refine need 2 or more files of the speaker or channel to adapt to")
    model = AudioClassifier.from_pretrained(args.checkpoint)
    sr = model.encoder.feature_cfg.sample_rate
    waves = (torch.from_numpy(load_audio(path, sr=sr)).unsqueeze(0) for path in args.files)
    refined = [None] * len(args.files)
    if adapt:  # every file is needed before the first label; otherwise one at a time
        waves = list(waves)
        feats = torch.cat([model.pooled(w) for w in waves])
        model.adapt(feats)
        if args.refine:
            refined = [model.cfg.labels[int(i)] + "\t" for i in model.refine(feats)]
    for path, wave, first in zip(args.files, waves, refined):
        top = model.predict(wave, top_k=args.top_k)[0]
        print(f"{path}\t{first or ''}" + "\t".join(f"{label} {score:.3f}" for label, score in top))
    return 0
