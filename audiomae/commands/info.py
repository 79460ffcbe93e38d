"""``audiomae info CHECKPOINT``: what a checkpoint holds, without running it."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="describe a checkpoint (config, size, parameters)")
    p.add_argument("checkpoint", help="checkpoint directory (model.safetensors + config.json)")
    p.add_argument("--json", action="store_true", help="print the raw config as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from audiomae.checkpoint import inspect_checkpoint

    # The checks loading would make (files, checksum, config fields, shapes), without loading.
    info = inspect_checkpoint(args.checkpoint)
    config = info.config
    if args.json:
        print(json.dumps(config, indent=2, sort_keys=True))
        return 0
    print(f"checkpoint:     {args.checkpoint}")
    print(f"kind:           {config.get('kind')}")
    print(f"format version: {config.get('format_version')}")
    print(f"parameters:     {info.n_params:,} in {len(info.tensors)} tensors")
    for key in ("model", "features", "norm"):
        if key in config:
            body = ", ".join(f"{k}={v}" for k, v in config[key].items())
            print(f"{key + ':':15} {body}")
    if "extra" in config:
        print(f"{'extra:':15} {json.dumps(config['extra'], sort_keys=True)}")
    return 0
