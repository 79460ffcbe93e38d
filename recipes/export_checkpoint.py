"""Export one saved step of a pretraining run as a model checkpoint (safetensors + JSON).

    python recipes/export_checkpoint.py --config recipes/configs/pretrain/speech_tiny.yaml \\
        --step 700 --out runs/mae_tiny_speech_step700

Training-state checkpoints hold weights only; the model config and the normalisation
statistics are rebuilt from the run's config exactly as the run built them (statistics are a
deterministic function of the data and seed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiomae.features import LogMel  # noqa: E402
from audiomae.train.config import load_config  # noqa: E402
from audiomae.train.data import audio_datasets, norm_stats_from  # noqa: E402
from audiomae.train.pretrain import PretrainSettings, build_model  # noqa: E402
from audiomae.train.state import CheckpointManager  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="the pretraining run's YAML config")
    parser.add_argument("--step", type=int, required=True, help="saved step to export")
    parser.add_argument("--out", required=True, help="output checkpoint directory")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="the run's overrides, if any")
    args = parser.parse_args()
    s = PretrainSettings.from_dict(load_config(args.config, args.overrides))
    step_dir = CheckpointManager(s.out_dir).step_dir(args.step)
    if not step_dir.exists():
        raise SystemExit(f"no saved step {args.step} in {s.out_dir} (looked for {step_dir})")
    features = build_model(s).feature_cfg
    train, _ = audio_datasets(s.data, features.sample_rate, s.train.seed)
    norm = norm_stats_from(train, LogMel(features), s.data.norm_files, seed=s.train.seed)
    model = build_model(s, norm)
    tensors, _ = CheckpointManager.load(step_dir)
    model.load_state_dict(tensors)
    model.save_pretrained(args.out, extra={"pretrain": {"config": str(args.config), "step": args.step}})
    stats = f"norm mean {norm.mean:.3f}, std {norm.std:.3f}"
    print(f"exported step {args.step} of {s.out_dir} to {args.out} ({stats})")


if __name__ == "__main__":
    main()
