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
    from audiomae.checkpoint import load_checkpoint

    tensors, config = load_checkpoint(args.checkpoint)
    if args.json:
        print(json.dumps(config, indent=2, sort_keys=True))
        return 0
    n_params = sum(t.numel() for t in tensors.values())
    print(f"checkpoint:     {args.checkpoint}")
    print(f"kind:           {config.get('kind')}")
    print(f"format version: {config.get('format_version')}")
    print(f"parameters:     {n_params:,} in {len(tensors)} tensors")
    for key in ("model", "features", "norm"):
        if key in config:
            body = ", ".join(f"{k}={v}" for k, v in config[key].items())
            print(f"{key + ':':15} {body}")
    if "extra" in config:
        print(f"{'extra:':15} {json.dumps(config['extra'], sort_keys=True)}")
    return 0
