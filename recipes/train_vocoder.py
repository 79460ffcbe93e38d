"""Train the Vocos-style vocoder on crops of a folder of speech.

    python recipes/train_vocoder.py --config recipes/configs/vocoder/speech.yaml

The config has three sections: ``model`` (a VocoderConfig preset name plus overrides),
``data`` (audio folder, crop length, crops per epoch, validation files) and ``train``
(audiomae.train.TrainConfig fields); top-level keys are in
:class:`audiomae.train.vocoder.VocoderSettings`. Overrides: ``train.steps=100
data.train_dir=/my/audio``; ``export=DIR`` also saves the final model to DIR (the bundled asset
is made this way, see recipes/README.md); ``init_from=DIR`` starts from a trained vocoder.
``--resume`` continues a killed run. Multi-GPU: ``torchrun --nproc_per_node N
recipes/train_vocoder.py --config ...``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiomae.train import distributed as dist_utils  # noqa: E402
from audiomae.train.runner import run_recipe  # noqa: E402
from audiomae.train.vocoder import VocoderSettings, run_vocoder_training  # noqa: E402


def main(cfg: dict, args: argparse.Namespace) -> None:
    s = VocoderSettings.from_dict(cfg)
    result = run_vocoder_training(s, resume=args.resume)
    if dist_utils.is_main():
        val = ", ".join(f"{k}={v:.4f}" for k, v in result.val.items())
        print(f"done: {result.steps} steps, {result.elapsed_s:.0f} s, loss {result.train_loss:.4f}; {val}")
        if s.export:
            print(f"exported to {s.export}")


if __name__ == "__main__":
    raise SystemExit(run_recipe(__doc__, main))
