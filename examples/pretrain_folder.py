"""Pretrain a (very small) Audio-MAE on a folder of audio, then look at what it reconstructs.

    python examples/pretrain_folder.py [FOLDER] [--steps 60]

Without a folder it writes a few seconds of synthetic speech-like audio to a temporary
folder first. The run folder gets TensorBoard logs (``tb/``), spectrogram plots of
original / masked / reconstructed patches (``plots/``), resumable checkpoints and the final
model (``model/``, safetensors + JSON). For a real run use recipes/pretrain.py with
recipes/configs/pretrain/speech_small.yaml.
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np

from audiomae.audio import save_audio
from audiomae.commands.pretrain import main as pretrain
from audiomae.model import AudioMAE
from audiomae.train.data import SyntheticSpeech

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("folder", nargs="?", default=None)
parser.add_argument("--steps", type=int, default=60)
parser.add_argument("--out", default=None, help="run folder (default: a temporary folder)")
args = parser.parse_args()

work = Path(tempfile.mkdtemp(prefix="audiomae_pretrain_"))
folder = args.folder
if folder is None:
    folder = work / "audio"
    clips = SyntheticSpeech(24, clip_seconds=2.0, seed=1)
    for i in range(len(clips)):
        save_audio(folder / f"clip{i:02d}.wav", np.asarray(clips[i]))

config = {
    "data": {"train": str(folder), "val_fraction": 0.2, "clip_seconds": 1.0, "val_clips": 4, "norm_files": 8},
    # A cut-down "tiny" so the example runs in about a minute on a laptop CPU.
    "model": {"preset": "tiny", "enc_dim": 64, "enc_depth": 2, "dec_dim": 64, "dec_depth": 1},
    "mask_ratio": 0.8,
    "threads": 2,
    "out_dir": args.out or str(work / "run"),
    "train": {
        "steps": args.steps,
        "batch_size": 8,
        "lr": 2e-3,
        "warmup_steps": 5,
        "eval_every": args.steps,
        "plot_every": args.steps,
        "ckpt_every": args.steps,
        "progress": False,
    },
}
result = pretrain(config)
model = AudioMAE.from_pretrained(Path(config["out_dir"]) / "model")
losses = [h["train/loss"] for h in result.history if "train/loss" in h]
print(f"training loss {losses[0]:.3f} (first log) -> {losses[-1]:.3f} (last log)")
run = config["out_dir"]
print(f"model: {model.num_params():,} parameters in {run}/model; plots in {run}/plots")
