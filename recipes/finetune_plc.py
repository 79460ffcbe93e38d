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

from audiomae.commands.pretrain import add_arguments  # noqa: E402
from audiomae.train.config import load_config  # noqa: E402
from audiomae.train.plc import PLCSettings, evaluate_plc, run_plc_finetune  # noqa: E402


def main(cfg: dict, resume: bool = False):
    settings = PLCSettings.from_dict(cfg)
    result = run_plc_finetune(settings, resume=resume)
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
        figures = evaluate_plc(args.evaluate, PLCSettings.from_dict(cfg))
        print(f"{args.evaluate}: " + ", ".join(f"{k} {v:.4f}" for k, v in figures.items()))
    else:
        main(cfg, resume=args.resume)
