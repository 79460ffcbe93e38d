"""Build precomputed PLC training windows (see ``audiomae/train/plc_pool.py``).

    python recipes/build_plc_pool.py --config recipes/configs/plc_pool/speech.yaml

Each window holds the clean log-mel and the log-mel of what the MAE-free concealer (``lpc``)
plays over it under a drawn loss pattern (see ``audiomae/train/plc_pool.py``). A config with a
``model`` key instead records the windows from the streaming concealer running that residual
model (``audiomae/train/plc_record.py``):

    python recipes/build_plc_pool.py --config recipes/configs/plc_pool/recorded.yaml

Shards already written are kept, so a killed build resumes; ``--worker I --workers N`` splits
the shards between N processes. Overrides: ``n_windows=2000 out_dir=runs/pool_small``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiomae.config import from_dict  # noqa: E402
from audiomae.train.plc import PLCMaskSettings  # noqa: E402
from audiomae.train.plc_pool import PoolSettings, SourceGroup, build_pool  # noqa: E402
from audiomae.train.plc_record import RecordSettings, record_pool  # noqa: E402
from audiomae.train.runner import run_recipe  # noqa: E402


def settings_from(cfg: dict) -> tuple[PoolSettings, str]:
    cfg = dict(cfg)
    out_dir = cfg.pop("out_dir")
    groups = tuple(SourceGroup(**g) for g in cfg.pop("groups"))
    masks = from_dict(PLCMaskSettings, cfg.pop("masks", {}))
    return PoolSettings(groups=groups, masks=masks, **cfg), out_dir


def record_settings_from(cfg: dict) -> tuple[RecordSettings, str]:
    cfg = dict(cfg)
    out_dir = cfg.pop("out_dir")
    groups = tuple(SourceGroup(**g) for g in cfg.pop("groups"))
    exclude = tuple(SourceGroup(**g) for g in cfg.pop("exclude", []))
    tuples = {
        k: tuple(cfg.pop(k))
        for k in ("rate", "burst", "lookahead_probs", "conditions", "lookaheads")
        if k in cfg
    }
    return RecordSettings(groups=groups, exclude=exclude, **tuples, **cfg), out_dir


def main(cfg: dict, args: argparse.Namespace) -> Path:
    import torch

    torch.set_num_threads(cfg.pop("threads", 1))
    if "model" in cfg:
        settings, out_dir = record_settings_from(cfg)
        return record_pool(settings, out_dir, worker=args.worker, workers=args.workers)
    settings, out_dir = settings_from(cfg)
    return build_pool(settings, out_dir, worker=args.worker, workers=args.workers)


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--worker", type=int, default=0, help="this process's share of the shards (0-based)")
    parser.add_argument("--workers", type=int, default=1, help="processes the shards are split between")


if __name__ == "__main__":
    # No --resume: shards already written are always kept.
    raise SystemExit(run_recipe(__doc__, main, options=options, resume=False))
