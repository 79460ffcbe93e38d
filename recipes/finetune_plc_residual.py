"""Train the residual PLC model on precomputed windows.

    python recipes/finetune_plc_residual.py --config recipes/configs/plc_residual/speech.yaml

Needs the window pools (``recipes/build_plc_pool.py``). Each invocation adds a stage to
``out_dir`` that starts from the previous stage's model (else from ``init``); ``--resume``
continues a killed stage. ``--evaluate MODEL_DIR`` trains nothing and prints MODEL_DIR's
validation figures beside the continuation's. Overrides: ``train.time_limit_s=600``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiomae.commands.pretrain import add_arguments  # noqa: E402
from audiomae.train.config import load_config  # noqa: E402
from audiomae.train.plc_residual import ResidualPLCSettings, evaluate_residual, run_residual_plc  # noqa: E402


def main(cfg: dict, resume: bool = False):
    result = run_residual_plc(ResidualPLCSettings.from_dict(cfg), resume=resume)
    val = ", ".join(f"{k} {v:.4f}" for k, v in result.val.items())
    print(f"done: {result.steps} steps in {result.elapsed_s:.0f} s; validation {val or 'n/a'}")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--evaluate", metavar="MODEL_DIR", help="only report MODEL_DIR's validation figures")
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides)
    if args.evaluate:
        figures = evaluate_residual(args.evaluate, ResidualPLCSettings.from_dict(cfg))
        print(f"{args.evaluate}: " + ", ".join(f"{k} {v:.4f}" for k, v in figures.items()))
    else:
        main(cfg, resume=args.resume)
