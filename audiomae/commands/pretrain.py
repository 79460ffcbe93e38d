"""``audiomae pretrain --config YAML [key=value ...]``: self-supervised Audio-MAE pretraining.

Overrides use dotted keys into the YAML (``train.steps=100 model.preset=small data=PATH``);
values are parsed as YAML, so numbers, booleans, ``null`` and ``[a, b]`` lists work.
Multi-process: ``torchrun --nproc_per_node N -m audiomae.cli pretrain --config ...``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from audiomae.commands import add_config_arguments


def main(cfg: dict[str, Any], resume: bool = False):
    from audiomae.audio import check_outputs
    from audiomae.train.pretrain import PretrainSettings, run_pretraining

    settings = PretrainSettings.from_dict(cfg)
    check_outputs({"out_dir": settings.out_dir}, directories=["out_dir"])  # before any data is read
    result = run_pretraining(settings, resume=resume)
    from audiomae.train import distributed as dist_utils

    if dist_utils.is_main():
        val = ", ".join(f"{k} {v:.4f}" for k, v in result.val.items())
        print(
            f"done: {result.steps} steps in {result.elapsed_s:.0f} s; train loss {result.train_loss:.4f}; "
            f"validation {val or 'n/a'}; best {result.best_metric} at step {result.best_step}; "
            f"model in {Path(settings.out_dir) / 'model'}"
        )
    return result


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="self-supervised MAE pretraining on a folder of audio")
    add_config_arguments(p)  # as recipes/pretrain.py
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from audiomae.train.config import load_config

    main(load_config(args.config, args.overrides), resume=args.resume)
    return 0
