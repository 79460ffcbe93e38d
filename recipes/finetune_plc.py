"""PLC fine-tuning: ``python recipes/finetune_plc.py --config recipes/configs/plc/debug.yaml``.

Starts from a pretrained Audio-MAE (``init=DIR``) and fine-tunes it on packet-loss masks in
causal and lookahead windows. Overrides: ``train.steps=500 init=audiomae/assets/mae_tiny_speech``.
``--resume`` continues a killed run; ``torchrun --nproc_per_node N`` runs it data-parallel.
``--evaluate MODEL_DIR`` trains nothing: it prints MODEL_DIR's figures on the config's validation
windows (e.g. the bundled ``audiomae/assets/plc_tiny_speech`` with ``configs/plc/speech.yaml``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiomae.train import distributed as dist_utils  # noqa: E402
from audiomae.train.plc import PLCSettings, evaluate_plc, run_plc_finetune  # noqa: E402
from audiomae.train.runner import run_recipe  # noqa: E402


def main(cfg: dict, args: argparse.Namespace) -> None:
    settings = PLCSettings.from_dict(cfg)
    if args.evaluate:
        figures = evaluate_plc(args.evaluate, settings)
        print(f"{args.evaluate}: " + ", ".join(f"{k} {v:.4f}" for k, v in figures.items()))
        return
    result = run_plc_finetune(settings, resume=args.resume)
    if dist_utils.is_main():
        val = ", ".join(f"{k} {v:.4f}" for k, v in result.val.items())
        print(f"done: {result.steps} steps in {result.elapsed_s:.0f} s; validation {val or 'n/a'}")


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--evaluate", metavar="MODEL_DIR", help="only report MODEL_DIR's validation figures")


if __name__ == "__main__":
    raise SystemExit(run_recipe(__doc__, main, options=options))
