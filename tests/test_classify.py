import numpy as np
import pytest
import torch

from audiomae.augment import AugmentConfig, augment_batch, mixup, random_crop, random_shift, spec_augment
from audiomae.checkpoint import load_model, read_config
from audiomae.classify import (
    AudioClassifier,
    ClassificationTask,
    accuracy,
    active_level,
    average_precision,
    confusion_matrix,
    mean_average_precision,
)
from audiomae.classify.model import POOL_PARTS, clip_normalize
from audiomae.config import FeatureConfig, ModelConfig
from audiomae.masking import time_freq_mask
from audiomae.model import AudioMAE
from audiomae.train import CheckpointManager, TrainConfig, fit

N_MELS, FRAMES = 32, 32


def tiny_encoder(seed: int = 0) -> AudioMAE:
    torch.manual_seed(seed)
    cfg = ModelConfig(
        n_mels=N_MELS,
        max_frames=64,
        patch_f=8,
        patch_t=4,
        enc_dim=32,
        enc_depth=2,
        enc_heads=2,
        dec_dim=32,
        dec_depth=1,
        dec_heads=2,
    )
    return AudioMAE(cfg, features=FeatureConfig(n_mels=N_MELS))


def separable_data(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0 has its energy in the low mel bins, class 1 in the high ones, plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    spec = 0.5 * torch.randn(n, N_MELS, FRAMES, generator=g)
    low = torch.zeros(N_MELS)
    low[: N_MELS // 2] = 1.0
    profile = torch.where(y[:, None].bool(), low.flip(0), low)
    return spec + profile[:, :, None], y


def quiet(**kw) -> TrainConfig:
    base = dict(batch_size=16, log_every=0, tensorboard=False, progress=False, device="cpu", warmup_steps=0)
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("pooling", ["mean", "cls", "parts"])
@pytest.mark.parametrize("mode", ["finetune", "linear_probe"])
@pytest.mark.parametrize("multilabel", [False, True])
def test_head_shapes(pooling, mode, multilabel):
    clf = AudioClassifier(tiny_encoder(), num_classes=5, pooling=pooling, mode=mode, multilabel=multilabel)
    spec = torch.randn(3, N_MELS, FRAMES)
    out = clf(spec)
    width = 32 * (POOL_PARTS * clf.encoder.cfg.grid_f if pooling == "parts" else 1)
    assert out.logits.shape == (3, 5) and out.features.shape == (3, width)
    # Structured patch masking with a ragged batch still gives one row per item.
    grid_t, grid_f = clf.encoder.grid(spec)
    masked = clf(spec, time_freq_mask(3, grid_t, grid_f, 0.25, 0.25))
    assert masked.logits.shape == (3, 5)
    target = (torch.rand(3, 5) > 0.5).float() if multilabel else torch.tensor([0, 4, 2])
    loss = clf.loss(out.logits, target)
    assert loss.dim() == 0 and torch.isfinite(loss)
    probs = clf.probabilities(out.logits)
    if multilabel:
        assert ((probs > 0) & (probs < 1)).all()
    else:
        torch.testing.assert_close(probs.sum(-1), torch.ones(3))


def test_decoder_is_dropped_and_source_encoder_untouched():
    enc = tiny_encoder()
    clf = AudioClassifier(enc, 3)
    assert not any(k.startswith("encoder.dec") for k in clf.state_dict())
    assert enc.decoder is not None  # the caller's pretrained model can seed more classifiers
    torch.testing.assert_close(clf.encoder.patch_embed.weight, enc.patch_embed.weight)


def test_parts_pooling_is_the_mean_per_band_and_part_of_the_visible_patches():
    clf = AudioClassifier(tiny_encoder(), 3, pooling="parts")
    spec = torch.randn(2, N_MELS, FRAMES)
    grid_t, grid_f = clf.encoder.grid(spec)
    tokens = clf.encoder.encode(spec).view(2, grid_t, grid_f, -1)
    part = torch.arange(grid_t) * POOL_PARTS // grid_t  # column t's part: as equal as whole columns allow
    parts = [torch.nonzero(part == k).flatten() for k in range(POOL_PARTS)]
    expected = torch.stack([tokens[:, p].mean(1) for p in parts], 1).reshape(2, -1)
    torch.testing.assert_close(clf.pool(spec), expected)
    # Hidden patches do not count: with a mask, each slot averages only what the encoder saw.
    mask = time_freq_mask(2, grid_t, grid_f, 0.25, 0.25)
    seen = clf.encoder.encode(spec, mask)
    slot = (mask.keep_idx // grid_f) * POOL_PARTS // grid_t * grid_f + mask.keep_idx % grid_f
    pooled = clf.pool(spec, mask).view(2, POOL_PARTS * grid_f, -1)
    for b in range(2):
        s = int(slot[b, 0])
        chosen = (slot[b] == s) & mask.keep_valid[b]
        torch.testing.assert_close(pooled[b, s], seen[b, chosen].mean(0))


def test_finetune_every_parameter_gets_a_gradient():
    for pooling in ("mean", "cls", "parts"):
        clf = AudioClassifier(tiny_encoder(), 4, pooling=pooling)
        clf.loss(clf(torch.randn(4, N_MELS, FRAMES)).logits, torch.tensor([0, 1, 2, 3])).backward()
        missing = [n for n, p in clf.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert missing == []


def test_linear_probe_learns_separable_task_with_frozen_encoder(tmp_path):
    clf = AudioClassifier(tiny_encoder(), 2, mode="linear_probe")
    before = {k: v.clone() for k, v in clf.encoder.state_dict().items()}
    assert {n for n, p in clf.named_parameters() if p.requires_grad} == {"head.weight", "head.bias"}
    x, y = separable_data(64)
    xv, yv = separable_data(64, seed=1)
    ds = torch.utils.data.TensorDataset(x, y)
    task = ClassificationTask(clf)
    res = fit(task, ds, [(xv, yv)], quiet(steps=40, lr=1e-2), tmp_path)
    assert res.val["acc"] >= 0.95, res.val
    for k, v in clf.encoder.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    # BatchNorm statistics were learnt, and the saved model predicts the same.
    assert clf.head_norm.running_var.mean() != 1.0
    loaded = load_model(tmp_path / "model")
    clf.eval()
    torch.testing.assert_close(loaded(xv).logits, clf(xv).logits)


def test_layer_wise_lr_decay_groups():
    clf = AudioClassifier(tiny_encoder(), 3)
    groups = clf.param_groups(1e-3, 0.05, layer_decay=0.5)
    by_name = {}
    names = {id(p): n for n, p in clf.named_parameters()}
    for g in groups:
        for p in g["params"]:
            by_name[names[id(p)]] = g
    assert by_name["head.weight"]["lr_scale"] == 1.0 and by_name["head.weight"]["weight_decay"] == 0.05
    assert by_name["head.bias"]["weight_decay"] == 0.0
    assert by_name["encoder.encoder.1.mlp.0.weight"]["lr_scale"] == 0.5
    assert by_name["encoder.encoder.0.mlp.0.weight"]["lr_scale"] == 0.25
    assert by_name["encoder.patch_embed.weight"]["lr_scale"] == 0.125
    assert sum(len(g["params"]) for g in groups) == len(list(clf.parameters()))
    probe = AudioClassifier(tiny_encoder(), 3, mode="linear_probe")
    assert sum(len(g["params"]) for g in probe.param_groups(1e-3, 0.05)) == 2


def test_save_load_round_trip_and_predict(tmp_path):
    clf = AudioClassifier(tiny_encoder(), 3, pooling="cls", labels=["yes", "no", "maybe"], clip_seconds=0.25)
    clf.eval()
    spec = torch.randn(2, N_MELS, FRAMES)
    clf.save_pretrained(tmp_path / "ckpt")
    cfg = read_config(tmp_path / "ckpt")
    assert cfg["kind"] == "classifier" and cfg["classifier"]["labels"] == ["yes", "no", "maybe"]
    assert cfg["model"]["enc_dim"] == 32 and cfg["features"]["n_mels"] == N_MELS and "norm" in cfg
    loaded = AudioClassifier.from_pretrained(tmp_path / "ckpt")
    torch.testing.assert_close(loaded(spec).logits, clf(spec).logits)
    assert loaded.cfg == clf.cfg
    top = loaded.predict(torch.randn(2, 3000), top_k=2)
    assert len(top) == 2 and len(top[0]) == 2 and top[0][0][0] in {"yes", "no", "maybe"}
    assert top[0][0][1] >= top[0][1][1]
    # Predicting must not add front-end buffers to what is saved.
    loaded.save_pretrained(tmp_path / "again")
    load_model(tmp_path / "again")


class CrashingTask(ClassificationTask):
    crash_at: int = -1

    def training_step(self, batch, step):
        if step == self.crash_at:
            raise KeyboardInterrupt
        return super().training_step(batch, step)


def test_finetune_resume_equals_uninterrupted(tmp_path):
    x, y = separable_data(48)
    ds = torch.utils.data.TensorDataset(x, y)
    aug = AugmentConfig(
        time_width=4, freq_width=4, max_shift=2, mixup_alpha=0.4, mask_time=0.25, mask_freq=0.25
    )
    cfg = quiet(steps=6, ckpt_every=2, lr=1e-3)
    ref = ClassificationTask(AudioClassifier(tiny_encoder(), 2), augment=aug)
    fit(ref, ds, None, cfg, tmp_path / "ref")

    crashed = CrashingTask(AudioClassifier(tiny_encoder(), 2), augment=aug)
    crashed.crash_at = 5
    with pytest.raises(KeyboardInterrupt):
        fit(crashed, ds, None, cfg, tmp_path / "run")
    assert CheckpointManager(tmp_path / "run").latest().name == "step_000004"

    resumed = ClassificationTask(AudioClassifier(tiny_encoder(seed=7), 2), augment=aug)
    fit(resumed, ds, None, cfg, tmp_path / "run", resume=True)
    for k, v in ref.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[k], v, rtol=0, atol=1e-6)


def test_average_precision_by_hand_and_map():
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5])
    positive = torch.tensor([1, 0, 1, 0, 1])
    assert average_precision(scores, positive) == pytest.approx((1 / 1 + 2 / 3 + 3 / 5) / 3)
    # Ties are broken against the classifier, so input order does not matter.
    tied = torch.tensor([0.5, 0.5])
    assert average_precision(tied, torch.tensor([1, 0])) == 0.5
    assert average_precision(tied, torch.tensor([0, 1])) == 0.5
    targets = torch.tensor([[1, 0], [0, 1], [1, 0], [0, 0]])
    perfect = targets.float() + 0.01 * torch.arange(4)[:, None]
    assert mean_average_precision(perfect, targets) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no class"):
        mean_average_precision(torch.rand(3, 2), torch.zeros(3, 2))


def test_average_precision_matches_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(50, generator=g)
    positive = torch.rand(50, generator=g) > 0.6
    assert average_precision(scores, positive) == pytest.approx(
        sk.average_precision_score(positive.numpy(), scores.numpy())
    )


def test_accuracy_and_confusion():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    target = torch.tensor([0, 0, 0])
    assert accuracy(logits, target) == pytest.approx(2 / 3)
    assert confusion_matrix(logits.argmax(-1), target, 2).tolist() == [[2, 1], [0, 0]]


def test_augmentations_shapes_and_semantics():
    g = torch.Generator().manual_seed(0)
    spec = torch.randn(4, N_MELS, 40)
    masked = spec_augment(spec, time_masks=1, time_width=5, freq_masks=1, freq_width=5, generator=g)
    assert masked.shape == spec.shape and (masked == 0).any()
    shifted = random_shift(torch.arange(10.0).expand(2, 3, 10), max_shift=3, fill=-1.0, generator=g)
    for row in shifted[:, 0]:
        kept = row[row >= 0]
        assert torch.equal(kept, torch.arange(kept[0], kept[0] + len(kept)))  # contiguous, no wrap
    assert random_crop(spec, 32, generator=g).shape == (4, N_MELS, 32)
    onehot = torch.eye(4)
    mixed, soft = mixup(spec, onehot, alpha=0.4, generator=g)
    torch.testing.assert_close(soft.sum(-1), torch.ones(4))
    s2, t2 = augment_batch(spec, torch.tensor([0, 1, 2, 3]), AugmentConfig(mixup_alpha=0.4), 4, generator=g)
    assert s2.shape == spec.shape and t2.shape == (4, 4)
    with pytest.raises(ValueError, match="mask_time"):
        AugmentConfig(mask_time=1.0)


def test_finetune_pipeline_and_cli_on_synthetic_data(tmp_path, capsys):
    from audiomae.classify import FinetuneSettings, run_finetune
    from audiomae.cli import main

    cfg = {
        "data": {
            "layout": "synthetic",
            "split_column": "speaker",
            "test_values": ["s2"],
            "clip_seconds": 0.32,
        },
        "model": dict(enc_dim=32, enc_depth=1, enc_heads=2, dec_dim=32, dec_depth=1, dec_heads=2),
        "augment": {"time_width": 4, "max_shift": 2},
        "out_dir": str(tmp_path / "run"),
        "train": dict(steps=4, batch_size=8, log_every=0, tensorboard=False, progress=False, device="cpu"),
    }
    out = run_finetune(FinetuneSettings.from_dict({**cfg, "adapt": True}))
    assert 0.0 <= out["acc"] <= 1.0 and len(out["confusion"]) == 3
    assert 0.0 <= out["acc_adapted"] <= 1.0 and 0.0 <= out["acc_refined"] <= 1.0
    assert (tmp_path / "run" / "test.json").exists()
    wav = sorted((tmp_path / "run" / "synthetic_data").glob("1_s2_*.wav"))[0]
    assert main(["classify", str(tmp_path / "run" / "model"), str(wav), "--top-k", "2"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(str(wav)) and len(line.split("\t")) == 3
    wavs = sorted((tmp_path / "run" / "synthetic_data").glob("*_s2_*.wav"))[:4]
    assert main(["classify", str(tmp_path / "run" / "model"), *map(str, wavs), "--adapt"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 4
    assert (
        main(["classify", str(tmp_path / "run" / "model"), *map(str, wavs), "--refine", "--top-k", "2"]) == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    # the clustered label first, then the classifier's top 2
    assert len(lines) == 4 and all(len(x.split("\t")) == 4 for x in lines)
    labels = AudioClassifier.from_pretrained(tmp_path / "run" / "model").cfg.labels
    assert all(x.split("\t")[1] in labels for x in lines)
    assert main(["classify", str(tmp_path / "run" / "model"), str(wav), "--adapt"]) == 2
    assert "--adapt and --refine need 2 or more files" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown fine-tune settings"):
        FinetuneSettings.from_dict({**cfg, "lr": 1.0})
    # clip_norm: the reference spectrum is fitted on the training clips and saved with the model.
    run_finetune(FinetuneSettings.from_dict({**cfg, "clip_norm": True, "out_dir": str(tmp_path / "cn")}))
    model = AudioClassifier.from_pretrained(tmp_path / "cn" / "model")
    assert model.cfg.clip_norm and model.clip_ref.abs().sum() > 0
    assert main(["classify", str(tmp_path / "cn" / "model"), str(wav)]) == 0


def test_freq_warp_and_gain():
    from audiomae.augment import freq_warp, random_gain

    g = torch.Generator().manual_seed(0)
    ramp = torch.arange(16.0).view(1, 16, 1).expand(4, 16, 3).contiguous()
    warped = freq_warp(ramp, 0.2, generator=g)
    assert warped.shape == ramp.shape
    steps = warped[:, 1:, 0] - warped[:, :-1, 0]
    assert (steps >= 0).all() and not torch.allclose(warped, ramp)  # a monotonic stretch of the mel axis
    assert torch.equal(freq_warp(ramp, 0.0), ramp)
    spec = torch.randn(3, 8, 5)
    offset = random_gain(spec, 0.5, generator=g) - spec
    assert offset.abs().max() <= 0.5
    torch.testing.assert_close(offset, offset[:, :1, :1].expand_as(offset))  # one level per item


def test_time_stretch_keeps_centre_and_order():
    from audiomae.augment import time_stretch

    g = torch.Generator().manual_seed(0)
    ramp = torch.arange(21.0).view(1, 1, 21).expand(6, 4, 21).contiguous()
    out = time_stretch(ramp, 0.3, fill=-1.0, generator=g)
    assert out.shape == ramp.shape and not torch.allclose(out, ramp)
    torch.testing.assert_close(out[:, :, 10], ramp[:, :, 10])  # the centre frame stays put
    inside = out[:, 0] >= 0
    steps = (out[:, 0, 1:] - out[:, 0, :-1])[inside[:, 1:] & inside[:, :-1]]
    assert (steps > 0).all()  # time still runs forward, at a changed rate
    assert torch.equal(time_stretch(ramp, 0.0), ramp)


def test_level_norm_removes_recording_level_and_survives_save(tmp_path):
    spec = torch.randn(3, N_MELS, FRAMES)
    spec[:, :, :8] -= 4.0  # leading silence: the level is that of the loud frames
    level = active_level(spec)
    assert level.shape == (3,)
    torch.testing.assert_close(active_level(spec + 2.5), level + 2.5)
    # More silence padding changes the clip mean but not the speech level.
    padded = torch.cat([spec, torch.full((3, N_MELS, FRAMES), -6.0)], dim=-1)
    torch.testing.assert_close(active_level(padded, fraction=0.125), level)
    clf = AudioClassifier(tiny_encoder(), 4, level_norm=True).eval()
    torch.testing.assert_close(clf(spec + 1.7).logits, clf(spec).logits, atol=1e-5, rtol=1e-5)
    plain = AudioClassifier(tiny_encoder(), 4).eval()
    assert not torch.allclose(plain(spec + 1.7).logits, plain(spec).logits, atol=1e-3)
    clf.save_pretrained(tmp_path / "ckpt")
    loaded = AudioClassifier.from_pretrained(tmp_path / "ckpt")
    assert loaded.cfg.level_norm
    torch.testing.assert_close(loaded(spec + 3.0).logits, clf(spec).logits, atol=1e-5, rtol=1e-5)


def test_clip_norm_removes_a_fixed_filter_and_keeps_its_reference_through_save(tmp_path):
    spec = torch.randn(3, N_MELS, FRAMES)
    colour = torch.linspace(-2.0, 1.0, N_MELS).view(1, N_MELS, 1)  # a microphone's tilt
    ref = torch.randn(N_MELS)
    out = clip_normalize(spec, ref)
    torch.testing.assert_close(out.mean(dim=-1), ref.expand(3, -1))
    torch.testing.assert_close(clip_normalize(spec + colour, ref), out)
    clf = AudioClassifier(tiny_encoder(), 4, clip_norm=True).eval()
    train = torch.randn(5, N_MELS, FRAMES) + 0.5
    clf.fit_clip_reference(train)
    torch.testing.assert_close(clf.clip_ref, train.mean(dim=(0, 2)))
    torch.testing.assert_close(clf(spec + colour).logits, clf(spec).logits, atol=1e-5, rtol=1e-5)
    clf.save_pretrained(tmp_path / "ckpt")
    loaded = AudioClassifier.from_pretrained(tmp_path / "ckpt")
    assert loaded.cfg.clip_norm
    torch.testing.assert_close(loaded.clip_ref, clf.clip_ref)
    torch.testing.assert_close(loaded(spec).logits, clf(spec).logits, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="clip_norm=True"):
        AudioClassifier(tiny_encoder(), 4).fit_clip_reference(train)


def test_adapt_standardises_the_head_input_by_the_new_clips_and_resets():
    model = AudioClassifier(tiny_encoder(), 2, mode="finetune").eval()
    spec, _ = separable_data(16)
    trained = model.head_norm.running_mean.clone(), model.head_norm.running_var.clone()
    before = model(spec).logits
    shifted = spec + 3.0  # a new channel: every clip louder
    feats = model.pool(shifted).detach()
    model.adapt(feats, prior_clips=0)
    np.testing.assert_allclose(model.head_norm.running_mean.numpy(), feats.mean(0).numpy(), rtol=1e-6)
    normed = model.head_norm(feats)  # eval mode: the adapted statistics
    bias = model.head_norm.bias.detach().numpy()
    np.testing.assert_allclose(normed.mean(0).detach().numpy(), bias, atol=1e-4)
    model.adapt(model.pool(spec))
    model.reset_adaptation()
    assert torch.equal(model.head_norm.running_mean, trained[0])
    assert torch.equal(model.head_norm.running_var, trained[1])
    assert torch.allclose(model(spec).logits, before)
    model.adapt(feats[:1].expand(3, -1))  # identical clips: the training variance remains
    assert torch.allclose(model.head_norm.running_var, trained[1] * 4 / 7)
    model.reset_adaptation()
    with pytest.raises(ValueError, match="N >= 2"):
        model.adapt(feats[:1])
    with pytest.raises(ValueError, match="head_norm='batch'"):
        AudioClassifier(tiny_encoder(), 2, head_norm="layer").adapt(feats)


def test_adapted_accuracy_adapts_per_group_and_restores_the_model():
    from audiomae.classify.finetune import adapted_accuracy

    model = AudioClassifier(tiny_encoder(), 2, mode="finetune").eval()
    spec, y = separable_data(24)
    groups = ["a"] * 12 + ["b"] * 11 + ["c"]  # "c": one clip, scored unadapted
    spec[12:23] += 2.0  # group b: another channel
    trained = model.head_norm.running_mean.clone()
    acc = adapted_accuracy(model, spec, y, groups, batch_size=5)
    manual = 0
    for rows in (slice(0, 12), slice(12, 23)):
        model.adapt(model.pool(spec[rows]).detach())
        manual += int((model(spec[rows]).logits.argmax(-1) == y[rows]).sum())
        model.reset_adaptation()
    manual += int(model(spec[23:]).logits.argmax(-1)[0] == y[23])
    assert acc == pytest.approx(manual / 24)
    assert torch.equal(model.head_norm.running_mean, trained)


def test_adapted_evaluate_adapts_from_the_enrolment_clips_only():
    from audiomae.classify import adapted_evaluate

    model = AudioClassifier(tiny_encoder(), 2, mode="finetune").eval()
    spec, y = separable_data(12)
    spec = spec + 1.5
    reference = torch.zeros(12, dtype=torch.bool)
    reference[:4] = True
    out = adapted_evaluate(model, spec, y, ["s"] * 12, reference)
    model.adapt(model.pool(spec[:4]).detach())
    pred = model(spec).logits.argmax(-1)
    model.reset_adaptation()
    assert out["acc"] == pytest.approx(float((pred == y).float().mean()))
    assert sum(map(sum, out["confusion"])) == 12


def test_adapted_evaluate_refine_scores_the_clustered_labels():
    from audiomae.classify import adapted_evaluate
    from audiomae.classify.adapt import cluster_refine

    model = AudioClassifier(tiny_encoder(), 2, mode="finetune").eval()
    spec, y = separable_data(12)
    out = adapted_evaluate(model, spec, y, ["s"] * 12, refine=True)
    with torch.no_grad():
        model.adapt(model.pool(spec))
        z = model.head_norm(model.pool(spec))
        pred = torch.from_numpy(cluster_refine(z.numpy(), model.head(z).numpy()))
    model.reset_adaptation()
    assert out["acc"] == pytest.approx(float((pred == y).float().mean()))
    assert sum(map(sum, out["confusion"])) == 12
