"""The torch-free runtime: numpy front end and renderer, the bundled ONNX model, and the
concealer with backend="onnx" (equal to the torch backend; importable with torch blocked)."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import librosa
import numpy as np
import pytest
import torch
from conftest import voiced
from test_features import librosa_logmel

from audiomae.audio import SAMPLES_PER_PACKET, load_audio
from audiomae.config import FeatureConfig
from audiomae.features import LogMel as TorchLogMel
from audiomae.features import _padded_window
from audiomae.loss_models import apply_loss, as_loss_spec, draw_loss, n_packets
from audiomae.masking import packet_loss_mask
from audiomae.plc import conceal
from audiomae.plc.demo import demo_clip_path
from audiomae.plc.mae import ConcealerConfig, MAEConcealer, PitchGuidedRenderer, load_default_plc_model
from audiomae.runtime import LogMel, load_default_onnx_model, mel_filterbank
from audiomae.runtime.features import istft, stft
from audiomae.runtime.model import check_bundled_export
from audiomae.runtime.render import PitchGuidedRenderer as NumpyRenderer

FP32 = ConcealerConfig(int8=False)  # the ONNX graph runs in fp32


@pytest.fixture(scope="module")
def demo():
    return load_audio(demo_clip_path())


@pytest.mark.parametrize("cfg", [FeatureConfig(), FeatureConfig.audioset()])
def test_front_end_matches_librosa_float64(cfg):
    x = voiced()
    np.testing.assert_allclose(LogMel(cfg)(x), librosa_logmel(x, cfg), atol=1e-5)
    fb = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.f_min)
    np.testing.assert_allclose(mel_filterbank(cfg), fb, atol=1e-8)


def test_front_end_equals_the_torch_one(demo):
    cfg = FeatureConfig()
    ours = LogMel(cfg)(demo[None])
    ref = TorchLogMel(cfg, backend="torch")(torch.from_numpy(demo)[None]).numpy()
    assert ours.shape == ref.shape
    # Within 1e-4 wherever float32 can tell: 70 dB below a frame's loudest band torch's float32
    # FFT rounding itself reaches 1e-4 (the float64 numpy front end is within 1e-5 of librosa).
    audible = ref - ref.max(axis=1, keepdims=True) > np.log(1e-6)
    assert audible.mean() > 0.9
    assert np.abs(ours - ref)[audible].max() < 1e-4
    assert np.abs(ours - ref).max() < 5e-4


def test_stft_istft_match_torch():
    cfg = FeatureConfig()
    x = voiced(0.3)
    window = _padded_window(cfg)
    ref = torch.stft(
        torch.from_numpy(x),
        cfg.n_fft,
        cfg.hop_length,
        window=window,
        center=True,
        pad_mode="constant",
        return_complex=True,
    ).numpy()
    spec = stft(x, cfg)
    np.testing.assert_allclose(spec, ref, atol=1e-5)
    length = (spec.shape[-1] - 1) * cfg.hop_length
    np.testing.assert_allclose(istft(spec, cfg, length)[0], x[:length], atol=1e-6)


def test_numpy_renderer_equals_the_torch_one():
    rng = np.random.default_rng(0)
    cfg = FeatureConfig()
    frames, start, stop = 12, 6, 9
    audio = voiced(frames * cfg.hop_length / 16000)
    guide = audio.copy()
    audio[7 * cfg.hop_length :] = 0.0  # lost from frame 7 on; the guide continues there
    known = np.arange(frames) < 5
    mel = TorchLogMel(cfg, backend="torch")(torch.from_numpy(guide)[None])[..., :frames]
    mel = mel + torch.from_numpy(rng.normal(0, 1, mel.shape).astype(np.float32))
    for n_iter in (0, 2):
        ref = PitchGuidedRenderer(cfg, n_iter=n_iter).render(mel, start, stop, audio, known, guide=guide)
        out = NumpyRenderer(cfg, n_iter=n_iter).render(mel.numpy(), start, stop, audio, known, guide=guide)
        assert out.shape == ref.shape == ((stop - start) * cfg.hop_length,)
        assert np.abs(out - ref).max() < 1e-5


def test_bundled_export_is_of_the_bundled_checkpoint(demo):
    check_bundled_export()  # raises, naming the command that refreshes it, when stale
    onnx_model = load_default_onnx_model()
    model = load_default_plc_model()
    assert onnx_model.residual == (type(model).__name__ == "ResidualPLCMAE")
    assert onnx_model.cfg == model.cfg and onnx_model.feature_cfg == model.feature_cfg
    rng = np.random.default_rng(0)
    cols = ConcealerConfig().context_packets
    frontend = TorchLogMel(model.feature_cfg, backend="torch")
    windows = [rng.normal(0, 0.1, cols * SAMPLES_PER_PACKET).astype(np.float32)]
    windows += [demo[s : s + cols * SAMPLES_PER_PACKET] for s in (0, 2 * 16000, 4 * 16000)]
    for i, wave in enumerate(windows):
        logmel = frontend(torch.from_numpy(wave)[None])[..., : cols * model.cfg.patch_t]
        lost = torch.from_numpy(rng.random((1, cols)) < 0.3)
        lost[0, -2:] = True  # the concealer's target and the unknown packet after it
        lost[0, 0] = False
        with torch.no_grad():
            mask = packet_loss_mask(lost, model.cfg.grid_f)
            ref = model.norm.denormalize(model.reconstruct(model.norm.normalize(logmel), mask))
        out = onnx_model.fill(logmel.numpy(), lost.numpy())
        assert np.abs(out - ref.numpy()).max() < 1e-4, f"window {i}"
    # The whole path from samples (numpy front end + graph) against the torch concealer's: the
    # predicted columns agree as closely (the received ones differ only where the front ends do).
    concealer = MAEConcealer(model, config=FP32)
    wave, lost = windows[2], np.zeros(cols, dtype=bool)
    lost[-2:] = True
    ref = concealer.predict_logmel(wave, lost).numpy()
    out = onnx_model.predict_logmel(wave, lost)
    assert np.abs(out - ref)[..., -4:].max() < 1e-4


@pytest.mark.parametrize("method", ["mae", "mae-la1", "lpc"])
def test_onnx_backend_conceals_as_the_torch_backend(demo, method):
    lost = draw_loss(as_loss_spec("ge20b3"), n_packets(demo.size), 1)
    lossy = apply_loss(demo, lost)
    ref = conceal(lossy, lost, method, config=FP32, backend="torch")
    out = conceal(lossy, lost, method, config=FP32, backend="onnx")
    assert np.abs(out - ref).max() < 1e-4


def test_backend_errors():
    with pytest.raises(ValueError, match="unknown backend"):
        MAEConcealer(backend="tensorflow")
    with pytest.raises(ValueError, match="exported model"):
        MAEConcealer(load_default_plc_model(), backend="onnx")
    with pytest.raises(ValueError, match="backend='onnx'"):
        MAEConcealer(load_default_onnx_model(), backend="torch")


BLOCKED = ("torch", "torchaudio", "nnAudio", "librosa", "safetensors", "onnx", "aiortc")


def test_runtime_runs_with_torch_blocked(demo, tmp_path):
    """A process that cannot import torch (nor nnAudio, librosa, safetensors) conceals the demo
    clip, through the library and through ``audiomae conceal``, as the torch backend does."""
    lost = draw_loss(as_loss_spec("ge10b2"), n_packets(demo.size), 2)
    lossy = apply_loss(demo, lost)
    np.save(tmp_path / "lossy.npy", lossy)
    np.save(tmp_path / "lost.npy", lost)
    (tmp_path / "trace.txt").write_text("".join(f"{int(v)}\n" for v in lost))
    from audiomae.audio import save_audio

    save_audio(tmp_path / "lossy.wav", lossy)
    script = textwrap.dedent(
        f"""
        import sys


        class Block:  # "import torch" (and the rest of BLOCKED) raises ModuleNotFoundError
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {BLOCKED!r}:
                    raise ModuleNotFoundError(f"{{name}} is blocked", name=name)


        sys.meta_path.insert(0, Block())
        import numpy as np
        import audiomae.runtime
        from audiomae.plc import conceal
        from audiomae.plc.mae import ConcealerConfig
        from audiomae.cli import main

        d = {str(tmp_path)!r}
        out = conceal(np.load(d + "/lossy.npy"), np.load(d + "/lost.npy"), "mae",
                      config=ConcealerConfig(int8=False))
        np.save(d + "/out.npy", out)
        rc = main(["conceal", d + "/lossy.wav", "--trace", d + "/trace.txt", "-o", d + "/out.wav"])
        for argv in (["export", d, "-o", d + "/x"], ["rtp-send", d + "/lossy.wav", "--to", "127.0.0.1:9"]):
            try:
                main(argv)
            except SystemExit as exc:  # what needs an extra says which, in one line
                print("EXIT", exc)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {BLOCKED!r})
        print("LOADED", loaded, "RC", rc)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "LOADED [] RC 0" in proc.stdout
    assert (
        "EXIT audiomae export: error: needs torch, which this install lacks: pip install 'audiomae[export]'"
        in proc.stdout
    )
    assert "EXIT audiomae rtp-send: error: RTP needs aiortc" in proc.stdout
    ref = conceal(lossy, lost, "mae", config=FP32, backend="torch")
    assert np.abs(np.load(tmp_path / "out.npy") - ref).max() < 1e-4
    cli_ref = conceal(lossy, lost, "lpc", backend="torch")  # audiomae conceal's default method
    assert np.abs(load_audio(tmp_path / "out.wav") - cli_ref).max() < 1e-4


def test_bundled_export_config_names_its_axes():
    config = json.loads((Path(load_default_onnx_model().directory) / "config.json").read_text())
    assert config["onnx"]["inputs"] == {"logmel": ["batch", "n_mels", "frames"], "lost": ["batch", "columns"]}
    assert config["features"]["sample_rate"] == 16000
