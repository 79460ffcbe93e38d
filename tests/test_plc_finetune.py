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
    from audiomae.train.task import derive_seed

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


def test_energy_weights_favour_the_loud_bands_of_each_frame():
    import pytest

    torch.manual_seed(0)
    model = AudioMAE.from_preset("tiny", **TINY)
    task = PLCFinetuneTask(model, energy_gamma=1.0)
    # One frame: band 3 is 20 dB (log power +4.6) above the rest; another frame: all bands equal.
    log_power = torch.zeros(1, model.cfg.n_mels, 2)
    log_power[0, 3, 0] = 4.6
    w = task.band_weights(model.norm.normalize(log_power))
    assert torch.allclose(w.mean(-2), torch.ones(1, 2), atol=1e-5)  # mean 1 in every frame
    assert torch.allclose(w[0, :, 1], torch.ones(model.cfg.n_mels), atol=1e-5)  # flat frame: uniform
    assert w[0, 3, 0] > 40 and torch.allclose(w[0, 4:, 0], w[0, 4, 0].expand(model.cfg.n_mels - 4))
    assert w[0, 4, 0] >= 0.1  # the floor keeps quiet bands in the loss
    assert torch.equal(PLCFinetuneTask(model).band_weights(log_power), torch.ones_like(log_power))
    # The training loss weighs the same draw's squared errors by these weights.
    waves = torch.randn(2, 16 * 320, generator=torch.Generator().manual_seed(1)) * 0.1
    torch.manual_seed(0)
    plain, _ = PLCFinetuneTask(model, seed=3).training_step(waves, 2)
    torch.manual_seed(0)
    weighted, _ = PLCFinetuneTask(model, seed=3, energy_gamma=1.0).training_step(waves, 2)
    from audiomae.features import patchify
    from audiomae.train import distributed as dist_utils
    from audiomae.train.task import derive_seed

    lossy, clean, mask = task.prepare(waves, derive_seed(3, 2, dist_utils.rank()))
    torch.manual_seed(0)
    out = model(lossy, mask, target=clean)
    p = dict(patch_f=model.cfg.patch_f, patch_t=model.cfg.patch_t)
    sq = (out.pred - patchify(clean, **p)).square() * patchify(task.band_weights(clean), **p)
    m = mask.mask.float()
    assert torch.isclose(weighted, (sq.mean(-1) * m).sum() / m.sum())
    assert not torch.isclose(weighted, plain)
    assert "energy_mse" in task.validation_step(waves)
    with pytest.raises(ValueError, match="energy_gamma"):
        PLCFinetuneTask(model, energy_gamma=-1.0)
