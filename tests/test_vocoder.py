import json

import numpy as np
import pytest
import torch
from conftest import voiced

from audiomae.audio import HOP_LENGTH, load_audio, save_audio
from audiomae.checkpoint import load_model
from audiomae.cli import build_parser, main
from audiomae.commands.vocoder import DEFAULT_ITERS, vocoder_choice
from audiomae.config import FeatureConfig
from audiomae.features import LogMel, _padded_window, mel_filterbank
from audiomae.train import TrainConfig, fit
from audiomae.vocoder import (
    COPY_SYNTHESIS_ITERS,
    GriffinLim,
    RandomCrops,
    Vocoder,
    VocoderConfig,
    VocoderTask,
    default_vocoder_path,
    griffin_lim,
    load_default_vocoder,
    mel_to_linear_power,
    phase_loss,
    spectral_convergence,
    vocoder_preset,
)


def tiny(seed: int = 0, **overrides) -> Vocoder:
    torch.manual_seed(seed)
    return Vocoder(vocoder_preset("tiny", **overrides)).eval()


def mel_of(wave: np.ndarray) -> torch.Tensor:
    return LogMel(backend="torch")(torch.from_numpy(wave)).unsqueeze(0)


@pytest.fixture(scope="module")
def mel():
    return mel_of(voiced(0.6))


def test_shapes(mel):
    model = tiny()
    b2 = torch.cat([mel, mel - 1.0])
    out = model(b2)
    assert out.shape == (2, (mel.shape[-1] - 1) * HOP_LENGTH)
    assert model.synthesize(mel[0]).shape == ((mel.shape[-1] - 1) * HOP_LENGTH,)
    assert model.spectrum(mel).shape == (1, FeatureConfig().n_fft // 2 + 1, mel.shape[-1])
    # Batch equals per item.
    torch.testing.assert_close(out[1], model(mel - 1.0)[0], atol=1e-5, rtol=1e-4)


def test_bad_input_raises(mel):
    model = tiny()
    with pytest.raises(ValueError, match="80"):
        model(torch.zeros(1, 64, 10))
    with pytest.raises(ValueError, match="NaN"):
        model(torch.full((1, 80, 10), float("nan")))
    with pytest.raises(ValueError, match="start"):
        model.synthesize_window(mel, 5, 3)
    with pytest.raises(ValueError, match="lookahead"):
        VocoderConfig(lookahead=7, kernel_size=7)


def test_deterministic(mel):
    a, b = tiny(seed=3), tiny(seed=3)
    torch.testing.assert_close(a(mel), b(mel), atol=0, rtol=0)
    torch.testing.assert_close(a(mel), a(mel), atol=0, rtol=0)


def test_every_parameter_gets_a_gradient(mel):
    model = tiny().train()
    model(mel).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_streaming_window_equals_full_rendering(mel):
    model = tiny(lookahead=1)
    full = model(mel)[0]
    left, right = model.context_frames
    assert (left, right) == (model.cfg.receptive_field[0] + 1, model.cfg.receptive_field[1] + 2)
    start, stop = 30, 34  # two 20 ms packets
    window = mel[..., start - left : stop + right]
    got = model.synthesize_window(window, left, left + stop - start)[0]
    torch.testing.assert_close(
        got, full[start * HOP_LENGTH : stop * HOP_LENGTH].clamp(-1, 1), atol=1e-5, rtol=0
    )
    # Too little left context is only an approximation: the receptive field is real.
    short = model.synthesize_window(mel[..., start - 2 : stop + right], 2, 2 + stop - start)[0]
    assert (short - got).abs().max() > 1e-5


def test_streaming_without_right_context_is_exact_but_the_last_overlap():
    model = tiny()  # causal
    mel = mel_of(voiced(0.6))
    full = model(mel)[0]
    left, _ = model.context_frames
    start, stop = 30, 32
    got = model.synthesize_window(mel[..., start - left : stop], left)[0]
    assert got.shape == ((stop - start) * HOP_LENGTH,)
    ref = full[start * HOP_LENGTH : stop * HOP_LENGTH]
    # The missing frame `stop`, centred on the last sample, reaches 200 samples (half the
    # 400-sample window) back; the rest is exact.
    exact = (stop - start) * HOP_LENGTH - 200
    torch.testing.assert_close(got[:exact], ref[:exact], atol=1e-5, rtol=0)


def test_causal_output_ignores_future_frames(mel):
    model = tiny()
    changed = mel.clone()
    changed[..., 40:] += 3.0
    a, b = model(mel)[0], model(changed)[0]
    # Frame 40 first reaches sample 40 * hop - 200 through the iSTFT window.
    cut = 40 * HOP_LENGTH - 200
    torch.testing.assert_close(a[:cut], b[:cut], atol=1e-6, rtol=0)
    assert (a[cut + 200 :] - b[cut + 200 :]).abs().max() > 1e-3


def test_nnls_beats_pinv_on_the_mel_residual(mel):
    fb = mel_filterbank(FeatureConfig())
    target = mel.exp()
    err = {}
    for method in ("pinv", "nnls"):
        power = mel_to_linear_power(mel, method=method)
        assert power.shape == (1, 257, mel.shape[-1]) and (power >= 0).all()
        err[method] = float((fb @ power - target).norm() / target.norm())
    assert err["nnls"] < err["pinv"]


def test_flat_start_inversion_matches_the_mel_and_fills_uncovered_bins(mel):
    fb = mel_filterbank(FeatureConfig())
    target = mel.exp()
    power = mel_to_linear_power(mel, method="flat", n_iter=60)
    assert power.shape == (1, 257, mel.shape[-1]) and (power > 0).all()
    assert float((fb @ power - target).norm() / target.norm()) < 0.05
    # No filter weighs DC or Nyquist: they take their neighbours' power, not silence.
    assert fb[:, 0].sum() == 0 and fb[:, -1].sum() == 0
    torch.testing.assert_close(power[:, 0], power[:, 1])
    torch.testing.assert_close(power[:, -1], power[:, -2])


def test_pghi_starts_near_the_true_phase():
    # From the true magnitude, PGHI's phase alone is far more consistent than random phase and
    # ahead of what several random-start iterations reach.
    cfg = FeatureConfig()
    wave = torch.from_numpy(voiced(0.6)).unsqueeze(0)
    spec = torch.stft(
        wave, cfg.n_fft, cfg.hop_length, window=_padded_window(cfg), pad_mode="constant", return_complex=True
    )
    mag = spec.abs()
    mel = mel_of(wave[0].numpy())

    def sc(n_iter, init_phase):
        gen = torch.Generator().manual_seed(0)
        out = griffin_lim(mel, n_iter=n_iter, magnitude=mag, init_phase=init_phase, generator=gen)
        return spectral_convergence(mag, out)

    assert sc(0, "pghi") < 0.5 * sc(0, "random")
    assert sc(0, "pghi") < sc(8, "random")
    assert sc(8, "pghi") < sc(8, "random")
    with pytest.raises(ValueError, match="init_phase"):
        griffin_lim(mel, init_phase="zero")
    with pytest.raises(ValueError, match="init_audio"):
        griffin_lim(mel, init_phase="pghi", init_audio=wave)


def test_griffin_lim_converges(mel):
    mag = mel_to_linear_power(mel).sqrt()
    sc = []
    for n in (1, 8, 32):
        out = griffin_lim(mel, n_iter=n, generator=torch.Generator().manual_seed(0))
        assert out.shape == (1, (mel.shape[-1] - 1) * HOP_LENGTH)
        sc.append(spectral_convergence(mag, out))
    assert sc[0] > sc[1] > sc[2]
    assert GriffinLim(n_iter=4)(mel).shape == out.shape


def test_griffin_lim_keeps_known_phase():
    wave = torch.from_numpy(voiced(0.5)).unsqueeze(0)
    cfg = FeatureConfig()
    spec = torch.stft(
        wave, cfg.n_fft, cfg.hop_length, window=_padded_window(cfg), pad_mode="constant", return_complex=True
    )
    mag = spec.abs()
    t = mag.shape[-1]
    mel = mel_of(wave[0].numpy())
    gap = slice(20, 26)
    holed = wave.clone()
    holed[:, gap.start * cfg.hop_length : gap.stop * cfg.hop_length] = 0
    known = torch.ones(t, dtype=torch.bool)
    known[gap.start - 2 : gap.stop + 2] = False  # frames touching the hole
    gen = torch.Generator().manual_seed(0)
    anchored = griffin_lim(mel, n_iter=16, init_audio=holed, known_frames=known, magnitude=mag, generator=gen)
    free = griffin_lim(mel, n_iter=16, magnitude=mag, generator=torch.Generator().manual_seed(0))
    n = anchored.shape[-1]
    # Known frames keep the received phase, so away from the gap the waveform is the original.
    err_anchored = (anchored - wave[:, :n])[:, : 15 * cfg.hop_length].abs().max()
    err_free = (free - wave[:, :n])[:, : 15 * cfg.hop_length].abs().max()
    assert err_anchored < 1e-3 < err_free
    with pytest.raises(ValueError, match="init_audio"):
        griffin_lim(mel, known_frames=known)


def test_short_training_run_reduces_round_trip_error(tmp_path):
    torch.manual_seed(0)
    waves = [torch.from_numpy(voiced(1.0, f0=f0, seed=i)) for i, f0 in enumerate((110.0, 150.0, 210.0))]
    data = RandomCrops(waves, crop=4000, items_per_epoch=16, seed=0)
    val = [torch.stack([RandomCrops(waves, 4000, 4, seed=9, gain_db=(0, 0))[i] for i in range(4)])]
    task = VocoderTask(Vocoder(vocoder_preset("tiny")))
    before = task.validation_step(val[0])
    cfg = TrainConfig(
        steps=40, batch_size=4, lr=3e-3, warmup_steps=4, log_every=10, tensorboard=False, progress=False
    )
    result = fit(task, data, val, cfg, tmp_path / "run")
    after = result.val
    assert after["loss"] < 0.85 * before["loss"], (before, after)
    assert after["mrstft"] < before["mrstft"]
    back = Vocoder.from_pretrained(tmp_path / "run" / "model")
    assert back.cfg == task.model.cfg


def test_random_crops_are_reproducible():
    waves = [torch.arange(1000, dtype=torch.float32) / 1000, torch.ones(50) * 0.5]
    a, b = RandomCrops(waves, 200, 8, seed=1), RandomCrops(waves, 200, 8, seed=1)
    assert all(torch.equal(a[i], b[i]) for i in range(8))
    assert all(a[i].shape == (200,) and a[i].abs().max() <= 0.99 for i in range(8))
    b.set_epoch(1)
    assert not all(torch.equal(a[i], b[i]) for i in range(8))


def test_save_load_round_trip(tmp_path, mel):
    model = tiny(seed=5)
    model.save_pretrained(tmp_path / "voc")
    config = json.loads((tmp_path / "voc" / "config.json").read_text())
    assert config["kind"] == "vocoder" and config["vocoder"]["dim"] == model.cfg.dim
    back = Vocoder.from_pretrained(tmp_path / "voc")
    generic = load_model(tmp_path / "voc")
    assert isinstance(generic, Vocoder) and back.cfg == model.cfg and back.feature_cfg == model.feature_cfg
    torch.testing.assert_close(back(mel), model(mel), atol=0, rtol=0)


def test_weights_fit_the_budget():
    model = Vocoder(vocoder_preset("speech"))
    assert model.num_params() * 4 <= 20e6


def test_bundled_weights_load():
    if not (default_vocoder_path() / "model.safetensors").exists():
        pytest.skip("bundled vocoder weights not present")
    model = load_default_vocoder()
    wave = voiced(0.5)
    out = model.synthesize(mel_of(wave))[0]
    assert out.shape == (wave.size // HOP_LENGTH * HOP_LENGTH,) and torch.isfinite(out).all()
    # A trained vocoder must at least follow the input's level.
    rms_in, rms_out = float(np.sqrt(np.mean(wave**2))), float(out.square().mean().sqrt())
    assert 0.5 < rms_out / rms_in < 2.0


def test_cli_resynth(tmp_path):
    wave = voiced(0.4)
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    save_audio(src, wave)
    assert main(["resynth", str(src), "-o", str(dst), "--vocoder", "griffinlim", "--iters", "4"]) == 0
    assert load_audio(dst).shape == wave.shape
    tiny().save_pretrained(tmp_path / "voc")
    assert main(["resynth", str(src), "-o", str(dst), "--checkpoint", str(tmp_path / "voc")]) == 0
    assert load_audio(dst).shape == wave.shape
    assert main(["resynth", str(tmp_path / "missing.wav"), "-o", str(dst), "--vocoder", "griffinlim"]) == 2


def test_resynth_defaults_to_fast_griffin_lim(tmp_path, monkeypatch):
    # The default is the best measured copy synthesis (docs/results.md): fast Griffin-Lim from
    # PGHI phase on the flat-start NNLS magnitude, 32 iterations; --checkpoint alone means a
    # neural checkpoint; --vocoder neural stays.
    assert DEFAULT_ITERS == COPY_SYNTHESIS_ITERS == GriffinLim().n_iter == 32
    default = GriffinLim()
    assert (default.method, default.n_inversion_iter, default.init_phase) == ("flat", 60, "pghi")
    parse = build_parser().parse_args
    assert vocoder_choice(parse(["resynth", "in.wav", "-o", "out.wav"])) == "griffinlim"
    assert vocoder_choice(parse(["resynth", "in.wav", "-o", "out.wav", "--checkpoint", "voc"])) == "neural"
    assert vocoder_choice(parse(["resynth", "in.wav", "-o", "out.wav", "--vocoder", "neural"])) == "neural"

    def no_neural(*args, **kwargs):
        raise AssertionError("resynth without options must not load the neural vocoder")

    monkeypatch.setattr("audiomae.vocoder.load_default_vocoder", no_neural)
    src, dst, ref = tmp_path / "in.wav", tmp_path / "out.wav", tmp_path / "ref.wav"
    save_audio(src, voiced(0.3))
    assert main(["resynth", str(src), "-o", str(dst)]) == 0
    wave = load_audio(src)
    mel = LogMel()(torch.from_numpy(wave)).unsqueeze(0)
    expected = GriffinLim(n_iter=32)(mel)[0].clamp(-1, 1).numpy()
    save_audio(ref, np.pad(expected, (0, wave.size - expected.size)))
    np.testing.assert_allclose(load_audio(dst), load_audio(ref), atol=2 / 32768)
    # Another count or random phase gives another waveform, so the comparison above pins both.
    fewer = GriffinLim(n_iter=16)(mel)[0].numpy()
    assert np.abs(fewer - expected).max() > 1e-2
    plain = GriffinLim(n_iter=32, method="nnls", n_inversion_iter=30, init_phase="random")(mel)[0].numpy()
    assert np.abs(plain - expected).max() > 1e-2


def test_phase_loss_is_zero_at_the_target_and_counts_offsets_only_in_ip():
    g = torch.Generator().manual_seed(0)
    target = torch.polar(torch.rand(2, 9, 7, generator=g) + 0.1, (torch.rand(2, 9, 7, generator=g) - 0.5) * 6)
    true = torch.angle(target)
    assert float(phase_loss(true + 2 * torch.pi, target)) < 1e-5
    # A constant offset costs its size in the instantaneous-phase term (weights average 1) and
    # nothing in the group-delay and instantaneous-frequency terms.
    assert float(phase_loss(true + 1.0, target)) == pytest.approx(1.0, rel=1e-4)
    task = VocoderTask(tiny().train(), phase_weight=0.5)
    loss, parts = task.training_step(torch.from_numpy(voiced(0.3)).unsqueeze(0), 0)
    loss.backward()
    assert parts["phase"] > 0 and torch.isfinite(loss)
