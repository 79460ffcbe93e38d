"""Audio classification fine-tune (or linear probe) of an Audio-MAE encoder.

``python recipes/finetune_classify.py --config recipes/configs/classify/fsdd.yaml``

Any config value can be overridden: ``train.steps=300 mode=linear_probe encoder=null``
(``encoder=null`` trains from scratch). ``--resume`` continues a killed run from its newest
checkpoint. Several processes/GPUs: ``torchrun --nproc_per_node N recipes/finetune_classify.py ...``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiomae.commands.classify import main  # noqa: E402
from audiomae.train.runner import run_recipe  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(run_recipe(__doc__, lambda cfg, args: main(cfg, resume=args.resume)))
