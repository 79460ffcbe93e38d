"""Train the Vocos-style vocoder on LibriSpeech crops: ``python recipes/train_vocoder.py CONFIG``.

The config (YAML) has three sections: ``model`` (a VocoderConfig preset name plus overrides),
``data`` (audio folder, crop length, crops per epoch, validation files) and ``train``
(audiomae.train.TrainConfig fields). ``--export DIR`` copies the final weights to DIR (the
bundled asset is produced this way, see recipes/README.md). Multi-GPU: ``torchrun
--nproc_per_node N recipes/train_vocoder.py CONFIG``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiomae.audio import SAMPLE_RATE, find_audio, load_audio  # noqa: E402
from audiomae.train import TrainConfig, fit  # noqa: E402
from audiomae.vocoder import RandomCrops, Vocoder, VocoderTask, vocoder_preset  # noqa: E402


def main(cfg: dict) -> None:
    data = cfg["data"]
    threads = cfg.get("threads")
    if threads:
        torch.set_num_threads(int(threads))
    files = find_audio(data["train_dir"], required=True)[: data.get("max_files")]
    n_val = int(data.get("val_files", 4))
    if len(files) <= n_val:
        raise ValueError(f"{data['train_dir']}: {len(files)} files, need more than val_files={n_val}")
    from tqdm.auto import tqdm

    waves = [torch.from_numpy(load_audio(f)) for f in tqdm(files, desc="loading audio", leave=False)]
    crop = int(float(data.get("crop_seconds", 1.0)) * SAMPLE_RATE)
    train_cfg = TrainConfig(**cfg["train"])
    train = RandomCrops(waves[n_val:], crop, int(data.get("items_per_epoch", 2000)), seed=train_cfg.seed)
    # Fixed validation crops: held-out speakers, one epoch-0 draw, gain fixed at 0 dB.
    val_set = RandomCrops(waves[:n_val], crop, n_val * 4, seed=12345, gain_db=(0.0, 0.0))
    val = [torch.stack([val_set[j] for j in range(i, i + n_val)]) for i in range(0, len(val_set), n_val)]

    model_cfg = dict(cfg.get("model", {}))
    if cfg.get("init_from"):
        # Warm start: continue from a trained vocoder (its config wins over the model section).
        vocoder = Vocoder.from_pretrained(cfg["init_from"]).train()
    else:
        vocoder = Vocoder(vocoder_preset(model_cfg.pop("preset", "speech"), **model_cfg))
    print(f"vocoder: {vocoder.num_params() / 1e6:.2f} M parameters, {len(waves) - n_val} training files")
    task = VocoderTask(
        vocoder,
        mel_weight=float(cfg.get("mel_weight", 1.0)),
        phase_weight=float(cfg.get("phase_weight", 0.0)),
    )
    result = fit(task, train, val, train_cfg, cfg["out_dir"], resume=bool(cfg.get("resume", False)))
    val_txt = ", ".join(f"{k}={v:.4f}" for k, v in result.val.items())
    print(f"done: {result.steps} steps, {result.elapsed_s:.0f} s, loss {result.train_loss:.4f}; {val_txt}")
    if cfg.get("export"):
        export = Path(cfg["export"])
        export.mkdir(parents=True, exist_ok=True)
        for name in ("model.safetensors", "config.json"):
            shutil.copyfile(Path(cfg["out_dir"]) / "model" / name, export / name)
        Vocoder.from_pretrained(export)  # verify the copy loads
        print(f"exported to {export}")


def parse_args(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", help="YAML config (recipes/configs/vocoder/*.yaml)")
    p.add_argument("--out-dir", help="override out_dir")
    p.add_argument("--steps", type=int, help="override train.steps")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in out_dir")
    p.add_argument("--export", help="copy the final model to this directory")
    p.add_argument("--init-from", help="start from this vocoder checkpoint instead of random weights")
    args = p.parse_args(argv)
    path = Path(args.config)
    if not path.exists():
        raise FileNotFoundError(f"config not found: {path}")
    cfg = yaml.safe_load(path.read_text())
    if args.out_dir:
        cfg["out_dir"] = args.out_dir
    if args.steps:
        cfg["train"]["steps"] = args.steps
    if args.resume:
        cfg["resume"] = True
    if args.export:
        cfg["export"] = args.export
    if args.init_from:
        cfg["init_from"] = args.init_from
    return cfg


if __name__ == "__main__":
    main(parse_args())
