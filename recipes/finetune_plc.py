"""PLC fine-tuning: ``python recipes/finetune_plc.py --config recipes/configs/plc/debug.yaml``.

Starts from a pretrained Audio-MAE (``init=DIR``) and fine-tunes it on packet-loss masks in
causal and lookahead windows. Overrides: ``train.steps=500 init=audiomae/assets/mae_tiny_speech``.
``--resume`` continues a killed run; ``torchrun --nproc_per_node N`` runs it data-parallel.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiomae.commands.pretrain import add_arguments, load_config  # noqa: E402
from audiomae.train.plc import PLCSettings, run_plc_finetune  # noqa: E402


def main(cfg: dict, resume: bool = False):
    settings = PLCSettings.from_dict(cfg)
    result = run_plc_finetune(settings, resume=resume)
    val = ", ".join(f"{k} {v:.4f}" for k, v in result.val.items())
    print(f"done: {result.steps} steps in {result.elapsed_s:.0f} s; validation {val or 'n/a'}")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args()
    main(load_config(args.config, args.overrides), resume=args.resume)
