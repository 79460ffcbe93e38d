"""ONNX export: the graph's prediction equals the torch model's (AudioMAE and ResidualPLCMAE)."""

import json

import numpy as np
import pytest
import torch

from audiomae.cli import main
from audiomae.config import ModelConfig
from audiomae.export import PLCGraph, export_onnx
from audiomae.features import NormStats
from audiomae.masking import packet_loss_mask
from audiomae.model import AudioMAE, ResidualPLCMAE
from audiomae.runtime import OnnxPLCModel

TINY = ModelConfig(
    enc_dim=32, enc_depth=1, enc_heads=2, dec_dim=32, dec_depth=2, dec_heads=2, max_frames=64, dec_window=3
)


def _reference(model: AudioMAE, logmel: torch.Tensor, lost: torch.Tensor) -> np.ndarray:
    """What the concealer computes with torch: denormalize(reconstruct(normalize(x), mask))."""
    with torch.no_grad():
        mask = packet_loss_mask(lost, model.cfg.grid_f)
        return model.norm.denormalize(model.reconstruct(model.norm.normalize(logmel), mask)).numpy()


def _windows(model: AudioMAE, columns: int, batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, model.cfg.n_mels, columns * model.cfg.patch_t, generator=g) * 4 - 10
    lost = torch.rand(batch, columns, generator=g) < 0.3
    lost[:, 0] = False  # the concealer always leaves the MAE a received column
    return x, lost


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny AudioMAE exported through the CLI, and a tiny ResidualPLCMAE through export_onnx."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("export")
    mae = AudioMAE(TINY, norm=NormStats(mean=-10.0, std=4.0)).eval()
    mae.save_pretrained(root / "mae")
    assert main(["export", str(root / "mae"), "-o", str(root / "mae_onnx")]) == 0
    residual = ResidualPLCMAE.from_mae(mae).eval()
    torch.nn.init.normal_(residual.dec_pred.weight, std=0.05)  # a head that corrects something
    residual.level_offset.copy_(torch.linspace(-0.5, 0.7, residual.BURST_POSITIONS))  # and a calibration
    residual.level_scale.copy_(torch.linspace(1.2, 0.3, residual.BURST_POSITIONS))
    export_onnx(residual, root / "residual_onnx")
    return {"audiomae": (mae, root / "mae_onnx"), "residual_plc": (residual, root / "residual_onnx")}


@pytest.mark.parametrize("kind", ["audiomae", "residual_plc"])
def test_onnx_prediction_equals_torch(exported, kind):
    model, directory = exported[kind]
    onnx_model = OnnxPLCModel(directory)
    assert onnx_model.residual == (kind == "residual_plc")
    for columns in (4, 12, TINY.max_grid_t):  # the time axis is dynamic
        x, lost = _windows(model, columns)
        ref = _reference(model, x, lost)
        out = onnx_model.fill(x.numpy(), lost.numpy())
        assert out.shape == ref.shape
        assert np.abs(out - ref).max() < 1e-4
        # received columns pass through untouched
        keep = ~lost.numpy().repeat(TINY.patch_t, axis=1)[:, None, :]
        np.testing.assert_allclose(np.where(keep, out, 0), np.where(keep, x.numpy(), 0), atol=1e-5)


def test_graph_equals_reconstruct_for_every_loss_count():
    # The graph masks lost patches as attention keys instead of gathering the visible ones.
    torch.manual_seed(1)
    model = AudioMAE(TINY).eval()
    graph = PLCGraph(model)
    for n_lost in (0, 1, 5, 9):
        x, _ = _windows(model, 10, batch=1)
        lost = torch.zeros(1, 10, dtype=torch.bool)
        lost[0, 10 - n_lost :] = True
        with torch.no_grad():
            out = graph(x, lost).numpy()
        assert np.abs(out - _reference(model, x, lost)).max() < 1e-5


def test_export_config_describes_the_model(exported):
    model, directory = exported["audiomae"]
    config = json.loads((directory / "config.json").read_text())
    assert config["kind"] == "onnx_plc" and config["model_kind"] == "audiomae"
    assert config["model"]["dec_window"] == TINY.dec_window
    assert config["norm"] == {"mean": -10.0, "std": 4.0}
    assert config["onnx"]["opset"] == 18
    source = json.loads((directory.parent / "mae" / "config.json").read_text())
    assert config["source_weights_sha256"] == source["weights_sha256"]


def test_export_errors_are_one_line(exported, tmp_path, capsys):
    assert main(["export", str(tmp_path / "missing"), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("audiomae export: error:") and "\n" not in err
    _, directory = exported["audiomae"]
    with pytest.raises(ValueError, match="not an ONNX PLC export .*audiomae export"):
        OnnxPLCModel(directory.parent / "mae")  # the torch checkpoint, not its export


def test_concealer_with_an_exported_residual_model_equals_torch(exported):
    # The concealer feeds a residual model the played history; both backends see the same.
    from conftest import voiced

    from audiomae.loss_models import apply_loss, draw_loss
    from audiomae.plc import conceal
    from audiomae.plc.mae import ConcealerConfig, MAEConcealer

    model, directory = exported["residual_plc"]
    cfg = ConcealerConfig(context_packets=12, int8=False, mae_from_packet=1)
    signal = voiced(1.0)
    lost = draw_loss("ge20b3", 50, 3)
    lossy = apply_loss(signal, lost)
    ref = conceal(lossy, lost, MAEConcealer(model, config=cfg))
    out = conceal(lossy, lost, MAEConcealer(OnnxPLCModel(directory), config=cfg))
    assert lost.sum() >= 5 and np.abs(out - ref).max() < 1e-4
