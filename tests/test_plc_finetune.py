import numpy as np
import torch

from audiomae.model import AudioMAE
from audiomae.train.plc import (
    PLCFinetuneTask,
    PLCSettings,
    evaluate_plc,
    run_plc_finetune,
    validation_seeds,
)

TINY = dict(enc_dim=32, enc_depth=1, enc_heads=2, dec_dim=32, dec_depth=1, dec_heads=2)


def test_validation_masks_follow_the_clip_not_the_batch():
    task = PLCFinetuneTask(AudioMAE.from_preset("tiny", **TINY))
    waves = torch.randn(4, 16 * 320, generator=torch.Generator().manual_seed(0)) * 0.1
    _, _, whole = task.prepare(waves, validation_seeds(waves))
    _, _, half = task.prepare(waves[2:], validation_seeds(waves[2:]))
    _, _, reordered = task.prepare(waves.flip(0), validation_seeds(waves.flip(0)))
    assert torch.equal(whole.mask[2:], half.mask)
    assert torch.equal(whole.mask, reordered.mask.flip(0))
    assert len(set(validation_seeds(waves))) == 4  # different clips, different patterns
    whole_fig = task.validation_step(waves)
    parts = [task.validation_step(waves[:1]), task.validation_step(waves[1:])]
    for key in ("loss", "repeat_baseline"):
        combined = (parts[0][key] + 3 * parts[1][key]) / 4
        assert abs(combined - whole_fig[key]) < 1e-5 * whole_fig[key]
    # Training draws stay one generator per batch, seeded by step.
    _, _, a = task.prepare(waves, 5)
    _, _, b = task.prepare(waves, 5)
    assert torch.equal(a.mask, b.mask)


def test_plc_finetune_learns_and_exports(tmp_path):
    torch.manual_seed(0)
    AudioMAE.from_preset("tiny", **TINY).save_pretrained(tmp_path / "init")
    s = PLCSettings.from_dict(
        {
            "init": str(tmp_path / "init"),
            "context_packets": 12,
            "data": {"train": "synthetic", "synthetic_items": 32, "val_clips": 8},
            "out_dir": str(tmp_path / "run"),
            "export": str(tmp_path / "export"),
            "train": dict(
                steps=40, batch_size=8, lr=3e-3, warmup_steps=4, log_every=5, eval_every=40,
                tensorboard=False, progress=False,
            ),
        }
    )  # fmt: skip
    res = run_plc_finetune(s)
    losses = [h["train/loss"] for h in res.history if "train/loss" in h]
    assert np.mean(losses[-2:]) < 0.7 * np.mean(losses[:2])
    assert np.isfinite(res.val["loss"]) and res.val["repeat_baseline"] > 0
    model = AudioMAE.from_pretrained(tmp_path / "export")
    assert model.cfg.enc_dim == 32 and model.cfg.norm_pix_loss is False
    # The stand-alone evaluation reproduces the loop's final validation of the exported model.
    again = evaluate_plc(tmp_path / "export", s)
    assert abs(again["loss"] - res.val["loss"]) < 1e-4 * res.val["loss"]


def test_target_weight_counts_the_target_column_more():
    import pytest

    from audiomae.features import patchify

    torch.manual_seed(0)
    model = AudioMAE.from_preset("tiny", **TINY)
    waves = torch.randn(3, 16 * 320, generator=torch.Generator().manual_seed(1)) * 0.1
    plain = PLCFinetuneTask(model, seed=3)
    weighted = PLCFinetuneTask(model, seed=3, target_weight=4.0)
    step = 7
    torch.manual_seed(0)
    base, _ = plain.training_step(waves, step)
    torch.manual_seed(0)
    heavy, _ = weighted.training_step(waves, step)
    # The same draw, recomputed by hand: target columns weigh 4, other lost columns 1.
    from audiomae.train import distributed as dist_utils
    from audiomae.train.pretrain import derive_seed

    lossy, clean, mask, target = weighted.prepare(
        waves, derive_seed(3, step, dist_utils.rank()), targets=True
    )
    torch.manual_seed(0)
    out = model(lossy, mask, target=clean)
    assert torch.isclose(base, out.loss)  # weight 1: the model's own masked MSE
    err = (out.pred - patchify(clean, model.cfg.patch_f, model.cfg.patch_t)).square().mean(-1)
    col = torch.arange(err.shape[1]) // model.cfg.grid_f
    assert mask.mask[torch.arange(3), target * model.cfg.grid_f].all()  # the target is always lost
    w = mask.mask.float() * torch.where(col[None] == target[:, None], 4.0, 1.0)
    assert torch.isclose(heavy, (err * w).sum() / w.sum())
    assert not torch.isclose(heavy, base)
    with pytest.raises(ValueError, match="target_weight"):
        PLCFinetuneTask(model, target_weight=0.5)
