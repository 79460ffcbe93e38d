"""Audio-MAE pretraining: ``python recipes/pretrain.py --config recipes/configs/pretrain/debug.yaml``.

Any config value can be overridden: ``train.steps=100 model.preset=small data=/path/to/audio``.
``--resume`` continues a killed run from its newest checkpoint. Several processes/GPUs:
``torchrun --nproc_per_node N recipes/pretrain.py --config ...``. See recipes/README.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiomae.commands.pretrain import main  # noqa: E402
from audiomae.train.runner import run_recipe  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(run_recipe(__doc__, lambda cfg, args: main(cfg, resume=args.resume)))
