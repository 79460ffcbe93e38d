"""Audio-MAE pretraining: ``python recipes/pretrain.py --config recipes/configs/pretrain/debug.yaml``.

Any config value can be overridden: ``train.steps=100 model.preset=small data=/path/to/audio``.
``--resume`` continues a killed run from its newest checkpoint. Several processes/GPUs:
``torchrun --nproc_per_node N recipes/pretrain.py --config ...``. See recipes/README.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiomae.cli import OneLineParser, run_guarded  # noqa: E402
from audiomae.commands.pretrain import add_arguments, run  # noqa: E402

if __name__ == "__main__":
    parser = OneLineParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args()
    # Errors as one line and Ctrl-C as exit 130, as the audiomae command does.
    raise SystemExit(run_guarded("pretrain.py", lambda: run(args)))
