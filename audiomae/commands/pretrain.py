"""``audiomae pretrain --config YAML [key=value ...]``: self-supervised Audio-MAE pretraining.

Overrides use dotted keys into the YAML (``train.steps=100 model.preset=small data=PATH``);
values are parsed as YAML, so numbers, booleans, ``null`` and ``[a, b]`` lists work.
Multi-process: ``torchrun --nproc_per_node N -m audiomae.cli pretrain --config ...``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def apply_overrides(cfg: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set dotted ``key=value`` pairs in a nested dict (a copy); values parsed as YAML."""
    import copy

    import yaml

    cfg = copy.deepcopy(cfg)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override '{item}' is not of the form key=value")
        node = cfg
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                # "data=PATH" style shorthands become their section's main key.
                child = node[part] = {"train": child} if part == "data" else {}
            node = child
        node[parts[-1]] = yaml.safe_load(raw)
    return cfg


def load_config(path: str | Path | None, overrides: list[str] = ()) -> dict[str, Any]:
    import yaml

    cfg: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        loaded = yaml.safe_load(path.read_text())
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping at the top level, got {type(loaded).__name__}")
        cfg = loaded or {}
    return apply_overrides(cfg, list(overrides))


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
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config (see recipes/configs/pretrain/)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in out_dir")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. train.steps=100 model.preset=tiny")


def run(args: argparse.Namespace) -> int:
    main(load_config(args.config, args.overrides), resume=args.resume)
    return 0
