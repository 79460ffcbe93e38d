import pytest
import torch

from audiomae.model import AudioMAE
from audiomae.train.config import apply_overrides, load_config
from audiomae.train.data import SyntheticSpeech
from audiomae.train.pretrain import (
    MAEPretrainTask,
    PretrainSettings,
    build_model,
    neighbour_baseline,
    run_pretraining,
)

TINY = dict(enc_dim=32, enc_depth=1, enc_heads=2, dec_dim=32, dec_depth=1, dec_heads=2)


def test_neighbour_baseline_interpolates_along_time():
    # grid_t=5, grid_f=2, P=1; row 0 ramps in time, row 1 is fully masked.
    ramp = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0])
    patches = torch.stack([ramp, torch.full((5,), 9.0)], dim=1).reshape(1, 10, 1)
    mask = torch.tensor([[False, True], [True, True], [True, True], [False, True], [True, True]]).reshape(
        1, 10
    )
    out = neighbour_baseline(patches, mask, grid_f=2).reshape(5, 2)
    assert out[:, 0].tolist() == [0.0, 1.5, 1.5, 3.0, 3.0]  # mean of left/right visible; edge: one side
    assert torch.allclose(out[:, 1], torch.full((5,), 1.5))  # no visible patch in row: item mean (0+3)/2


def test_overrides_and_settings(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: {preset: tiny}\ntrain: {steps: 5, batch_size: 2}\ndata: {train: synthetic}\n")
    cfg = load_config(
        path, ["train.steps=7", "train.betas=[0.8, 0.9]", "data=/some/folder", "model.enc_depth=2"]
    )
    s = PretrainSettings.from_dict(cfg)
    assert s.train.steps == 7 and s.train.betas == (0.8, 0.9) and s.data.train == "/some/folder"
    assert s.preset == "tiny" and s.model == {"enc_depth": 2}
    with pytest.raises(ValueError, match="key=value"):
        apply_overrides({}, ["train.steps"])
    # YAML 1.1 reads 5e-4 as a string; an override typed that way is the number.
    assert apply_overrides({}, ["train.lr=5e-4", "run=abc"]) == {"train": {"lr": 5e-4}, "run": "abc"}
    with pytest.raises(ValueError, match="unknown"):
        PretrainSettings.from_dict({"trian": {}})
    # 3 s clips need more frames than the preset's positional table: it grows, weights unchanged.
    s3 = PretrainSettings.from_dict({"data": {"clip_seconds": 8.0}})
    assert build_model(s3).cfg.max_frames == 800


def test_task_masks_follow_step_and_plot(tmp_path):
    model = AudioMAE.from_preset("tiny", **TINY)
    task = MAEPretrainTask(model, mask_ratio=0.8, seed=1)
    wave = torch.stack([SyntheticSpeech(2, 0.5)[i] for i in range(2)])
    l1, _ = task.training_step(wave, 3)
    l2, _ = task.training_step(wave, 3)
    l3, _ = task.training_step(wave, 4)
    assert l1.item() == l2.item() != l3.item()
    spec = task.spectrogram(wave)
    assert spec.shape == (2, 80, 50) and model.grid(spec) == (25, 5)
    task.plot(wave, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_pretraining_on_synthetic_audio_learns_and_exports(tmp_path):
    s = PretrainSettings.from_dict(
        {
            "data": {"train": "synthetic", "clip_seconds": 0.5, "synthetic_items": 32, "val_clips": 8},
            "model": {"preset": "tiny", **TINY},
            "out_dir": str(tmp_path / "run"),
            "export": str(tmp_path / "export"),
            "train": dict(
                steps=40, batch_size=8, lr=3e-3, warmup_steps=4, log_every=5, eval_every=20, plot_every=40,
                tensorboard=False, progress=False,
            ),
        }
    )  # fmt: skip
    res = run_pretraining(s)
    losses = [h["train/loss"] for h in res.history if "train/loss" in h]
    assert losses[-1] < 0.7 * losses[0]
    model = AudioMAE.from_pretrained(tmp_path / "export")
    assert model.norm.std != 1.0  # statistics from the training data travel with the weights
    assert (tmp_path / "run" / "plots" / "step_000040.png").exists()


def test_featurize_keeps_checkpoints_clean(tmp_path):
    # The front end's STFT buffers must not enter the state dict (the loop checkpoints it).
    model = AudioMAE.from_preset("tiny", **TINY)
    keys = set(model.state_dict())
    model.featurize(torch.zeros(1, 8000))
    assert set(model.state_dict()) == keys
    model.save_pretrained(tmp_path / "m")
    assert AudioMAE.from_pretrained(tmp_path / "m").cfg == model.cfg
