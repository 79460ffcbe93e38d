import pytest
import torch

from audiomae.config import ModelConfig, model_preset
from audiomae.masking import no_mask, packet_loss_mask, random_mask
from audiomae.model import AudioMAE, MAEOutput


def small_cfg(**kw):
    base = dict(enc_dim=32, enc_depth=2, enc_heads=2, dec_dim=32, dec_depth=1, dec_heads=2, max_frames=64)
    return ModelConfig(**{**base, **kw})


@pytest.mark.parametrize("preset", ["tiny", "small", "base"])
def test_preset_shapes(preset):
    cfg = model_preset(preset)
    model = AudioMAE(cfg)
    frames = 4 * cfg.patch_t * (4 if cfg.patch_t < 16 else 1)
    spec = torch.randn(2, cfg.n_mels, frames)
    gt, gf = model.grid(spec)
    with torch.no_grad():
        out = model(spec, random_mask(2, gt, gf, 0.75, torch.Generator().manual_seed(0)))
    assert isinstance(out, MAEOutput)
    assert out.pred.shape == (2, gt * gf, cfg.patch_dim)
    assert out.mask.shape == (2, gt * gf) and out.loss.dim() == 0


@pytest.mark.parametrize("geom", [(16, 2), (8, 4), (40, 1)])
def test_geometries_and_encode(geom):
    model = AudioMAE(small_cfg(patch_f=geom[0], patch_t=geom[1]))
    spec = torch.randn(1, 80, 16)
    emb = model.encode(spec)
    assert emb.shape == (1, (80 // geom[0]) * (16 // geom[1]), 32)


def test_every_parameter_gets_gradient():
    model = AudioMAE(small_cfg(dec_window=2, norm_pix_loss=True))
    spec = torch.randn(2, 80, 16)
    out = model(spec, random_mask(2, 8, 5, 0.8, torch.Generator().manual_seed(1)))
    out.loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []


@pytest.mark.parametrize("dec_window", [None, 1])
def test_masked_values_cannot_leak(dec_window):
    torch.manual_seed(0)
    model = AudioMAE(small_cfg(dec_window=dec_window)).eval()
    spec = torch.randn(2, 80, 16)
    m = random_mask(2, 8, 5, 0.7, torch.Generator().manual_seed(2))
    noisy = spec.clone()
    # Overwrite every masked patch with garbage: predictions must not move.
    from audiomae.features import patchify, unpatchify

    p = patchify(noisy, 16, 2)
    p[m.mask] = torch.randn_like(p[m.mask]) * 100
    noisy = unpatchify(p, 80, 16, 2)
    with torch.no_grad():
        a, b = model(spec, m).pred, model(noisy, m).pred
    assert torch.allclose(a, b, atol=1e-5)


def test_ragged_batch_equals_per_item():
    torch.manual_seed(0)
    model = AudioMAE(small_cfg()).eval()
    spec = torch.randn(2, 80, 16)
    lost = torch.zeros(2, 8, dtype=torch.bool)
    lost[0, 3] = True
    lost[1, 4:7] = True
    with torch.no_grad():
        batched = model(spec, packet_loss_mask(lost, 5)).pred
        for i in range(2):
            single = model(spec[i : i + 1], packet_loss_mask(lost[i : i + 1], 5)).pred
            assert torch.allclose(batched[i], single[0], atol=1e-5)


def test_loss_only_on_masked_patches():
    model = AudioMAE(small_cfg())
    spec = torch.randn(1, 80, 16)
    m = random_mask(1, 8, 5, 0.5, torch.Generator().manual_seed(0))
    out = model(spec, m)
    from audiomae.features import patchify

    target = patchify(spec, 16, 2)
    manual = (out.pred - target).square().mean(-1)[m.mask].mean()
    assert torch.allclose(out.loss, manual, atol=1e-6)


def test_reconstruct_keeps_visible_and_checks_geometry():
    model = AudioMAE(small_cfg()).eval()
    spec = torch.randn(1, 80, 16)
    lost = torch.zeros(1, 8, dtype=torch.bool)
    lost[0, 5] = True
    with torch.no_grad():
        rec = model.reconstruct(spec, packet_loss_mask(lost, 5))
    assert torch.equal(rec[..., :10], spec[..., :10]) and torch.equal(rec[..., 12:], spec[..., 12:])
    with pytest.raises(ValueError, match="frames"):
        model.encode(torch.randn(1, 80, 15))
    with pytest.raises(ValueError, match="mel bins"):
        model.encode(torch.randn(1, 64, 16))
    with pytest.raises(ValueError, match="mask shape"):
        model(spec, no_mask(1, 4, 5))


def test_featurize_trims_to_whole_columns(voiced_signal):
    model = AudioMAE(small_cfg(max_frames=128))
    spec = model.featurize(torch.from_numpy(voiced_signal[:8000]).unsqueeze(0))
    assert spec.shape[1] == 80 and spec.shape[2] % 2 == 0


@pytest.mark.parametrize("dec_window", [None, 2])
def test_reconstruct_selected_columns_matches_full(dec_window):
    torch.manual_seed(0)
    model = AudioMAE(
        ModelConfig(enc_dim=32, enc_depth=1, enc_heads=2, dec_dim=32, dec_depth=2, dec_heads=2,
                    dec_window=dec_window)
    ).eval()  # fmt: skip
    spec = torch.randn(2, 80, 40)  # 20 patch columns
    lost = torch.zeros(2, 20, dtype=torch.bool)
    lost[0, [3, 11, 12, 18]] = True
    lost[1, 9:14] = True
    mask = packet_loss_mask(lost, model.cfg.grid_f)
    with torch.no_grad():
        full = model.reconstruct(spec, mask)
        part = model.reconstruct(spec, mask, columns=(10, 13))
    torch.testing.assert_close(part[..., 20:26], full[..., 20:26], atol=1e-5, rtol=1e-5)
    assert torch.equal(part[0, :, 6:8], spec[0, :, 6:8])  # a lost column outside the span is not filled
    if dec_window is not None:
        assert model.decoder_span((10, 13), 20) == (6, 17)  # 2 layers x +-2 columns
    with pytest.raises(ValueError, match="columns"):
        model.reconstruct(spec, mask, columns=(15, 25))
