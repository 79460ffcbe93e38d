import importlib.util
from pathlib import Path

import pytest
import torch
from conftest import voiced

from audiomae.classify import AudioClassifier, ClassificationTask
from audiomae.config import FeatureConfig, ModelConfig
from audiomae.features import NormStats, patchify
from audiomae.model import AudioMAE, ResidualPLCMAE
from audiomae.train import TrainConfig, fit
from audiomae.train import precision as prec
from audiomae.train.data import SyntheticSpeech
from audiomae.train.plc import PLCFinetuneTask
from audiomae.train.plc_residual import ResidualPLCTask
from audiomae.train.pretrain import MAEPretrainTask
from audiomae.vocoder import Vocoder, VocoderTask, vocoder_preset

TINY = dict(enc_dim=32, enc_depth=1, enc_heads=2, dec_dim=32, dec_depth=1, dec_heads=2)
CPU = torch.device("cpu")
BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _waves() -> torch.Tensor:
    return torch.stack([torch.from_numpy(voiced(0.32, f0=f, seed=i)) for i, f in enumerate((120.0, 190.0))])


def _task(name: str):
    """A tiny model of each trained family, its task and one batch."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    if name == "pretrain":
        return MAEPretrainTask(AudioMAE.from_preset("tiny", **TINY)), _waves()
    if name == "pretrain_local":
        return MAEPretrainTask(AudioMAE.from_preset("tiny", dec_window=2, **TINY)), _waves()
    if name == "plc":
        task = PLCFinetuneTask(AudioMAE.from_preset("tiny", **TINY), target_weight=2.0, energy_gamma=0.5)
        return task, _waves()
    if name == "residual":
        model = ResidualPLCMAE.from_mae(AudioMAE.from_preset("tiny", **TINY))
        torch.nn.init.normal_(model.dec_pred.weight, std=0.02)  # a zero head passes no gradient back
        lost = torch.zeros(2, 16, dtype=torch.bool)
        lost[:, 10:13] = True
        batch = {
            "clean": torch.randn(2, 80, 32, generator=g) - 5,
            "played": torch.randn(2, 80, 32, generator=g) - 5,
            "lost": lost,
            "target": torch.tensor([12, 12]),
        }
        return ResidualPLCTask(model, target_weight=2.0), batch
    if name == "vocoder":
        return VocoderTask(Vocoder(vocoder_preset("tiny"))), _waves()
    cfg = ModelConfig(n_mels=32, max_frames=64, patch_f=8, patch_t=4, **{**TINY, "enc_depth": 2})
    clf = AudioClassifier(AudioMAE(cfg, features=FeatureConfig(n_mels=32)), num_classes=3)
    return ClassificationTask(clf), (torch.randn(4, 32, 32, generator=g), torch.tensor([0, 1, 2, 0]))


def _grads(task, batch, bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
    task.model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss, _ = task.training_step(batch, 1)
    loss.backward()
    grads = [p.grad for p in task.model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    return loss.detach(), torch.cat([g.flatten() for g in grads])


@pytest.mark.parametrize("name", ["pretrain", "pretrain_local", "plc", "residual", "vocoder", "classify"])
def test_one_bf16_step_on_cpu_is_close_to_fp32(name):
    task, batch = _task(name)
    loss32, g32 = _grads(task, batch, bf16=False)
    loss16, g16 = _grads(task, batch, bf16=True)
    assert loss16.dtype == torch.float32 and torch.isfinite(loss16)
    assert torch.isfinite(g16).all()
    assert float(loss16) == pytest.approx(float(loss32), rel=5e-3)
    rel = float((g16 - g32).norm() / g32.norm())
    assert rel < 0.02, rel  # bf16-rounded weights move the fp32 gradient 0.2-8%
    # Master weights stay float32: autocast casts copies.
    assert all(p.dtype == torch.float32 for p in task.model.parameters())


def test_bf16_reconstruct_keeps_visible_patches():
    task, batch = _task("pretrain")
    model = task.model.eval()
    spec = task.spectrogram(batch)
    m = task.masks(spec, 3)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        rec = model.reconstruct(spec, m)
    ref = model.reconstruct(spec, m)
    assert rec.dtype == torch.float32
    cfg = model.cfg
    got, want = patchify(rec, cfg.patch_f, cfg.patch_t), patchify(spec, cfg.patch_f, cfg.patch_t)
    assert torch.equal(got[~m.mask], want[~m.mask])
    assert (rec - ref).abs().max() < 0.05 * ref.abs().max()


def test_precision_choice(monkeypatch):
    monkeypatch.setattr(prec, "cpu_amx", lambda: None)
    assert prec.resolve_precision("auto", CPU)[0] == "fp32"
    assert prec.resolve_precision("bf16", CPU)[0] == "bf16"
    assert prec.resolve_precision("fp32", CPU) == ("fp32", "asked for")
    monkeypatch.setattr(prec, "cpu_amx", lambda: "amx_bf16 in /proc/cpuinfo")
    choice, why = prec.resolve_precision("auto", CPU)
    assert choice == "bf16" and "AMX" in why
    with pytest.warns(UserWarning, match="fp16 needs CUDA"):
        assert prec.resolve_precision("fp16", CPU)[0] == "fp32"
    with pytest.raises(ValueError, match="precision"):
        prec.resolve_precision("fp8", CPU)
    assert TrainConfig().precision == "auto"
    assert isinstance(prec.autocast("bf16", CPU), torch.autocast)


def test_cpu_amx_reads_the_cpu_flags(monkeypatch, tmp_path):
    prec.cpu_amx.cache_clear()
    try:
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
        flags = tmp_path / "cpuinfo"
        flags.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f amx_bf16 amx_tile\n")
        monkeypatch.setattr(prec, "Path", lambda _: flags)
        assert prec.cpu_amx() == "amx_bf16 in /proc/cpuinfo"
        prec.cpu_amx.cache_clear()
        flags.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16\n")
        assert prec.cpu_amx() is None
    finally:
        prec.cpu_amx.cache_clear()


def test_short_bf16_run_follows_the_fp32_loss_curve(tmp_path, capsys):
    data = SyntheticSpeech(16, 0.32)
    curves = {}
    for p in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = AudioMAE(AudioMAE.from_preset("tiny", **TINY).cfg, norm=NormStats(-9.0, 4.0))
        task = MAEPretrainTask(model, seed=1)
        cfg = TrainConfig(
            steps=12,
            batch_size=4,
            lr=2e-3,
            log_every=1,
            precision=p,
            device="cpu",
            tensorboard=False,
            progress=False,
        )
        result = fit(task, data, None, cfg, tmp_path / p)
        curves[p] = torch.tensor([r["train/loss"] for r in result.history])
        assert f"precision {p} on cpu: asked for" in capsys.readouterr().out
        assert all(v.dtype == torch.float32 for v in task.model.state_dict().values())
    assert curves["fp32"][-3:].mean() < 0.8 * curves["fp32"][:3].mean()  # it learns: a curve to compare
    torch.testing.assert_close(curves["bf16"], curves["fp32"], rtol=0.02, atol=0.0)


def _bench(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_pretrain_counts_attention_flops_and_measures_a_peak(monkeypatch):
    bench = _bench("bench_pretrain")
    monkeypatch.setitem(bench.GEOMETRY, "tiny", dict(n_mels=80, seconds=0.32, overrides={}))
    monkeypatch.setattr(bench, "matmul_peak", lambda p, n=256, seconds=0.05: 1e9)
    r = bench.measure("tiny", "bf16", False, steps=1, batch=1, threads=1)
    assert "error" not in r, r
    assert r["flop_step"] > 0 and r["flops"] > 0 and r["peak"] == 1e9
    # The CPU flash-attention kernels are counted: two batched matmuls forward (QK^T, AV), five
    # backward (QK^T again, dV, dP, dQ, dK), 2 * b * h * s * s * d FLOPs each.
    q = torch.randn(1, 2, 50, 16, requires_grad=True)
    counter = bench._flop_counter()
    with counter:
        torch.nn.functional.scaled_dot_product_attention(q, q, q).sum().backward()
    assert counter.get_total_flops() == 7 * 2 * 2 * 50 * 50 * 16


def test_bench_mae_precision_prints_the_three_passes(capsys, monkeypatch, tmp_path):
    bench = _bench("bench_mae_precision")
    argv = ["x", "--data", str(tmp_path / "none"), "--files", "1", "--windows", "2", "--repeats", "1"]
    monkeypatch.setattr("sys.argv", argv)
    bench.main()
    out = capsys.readouterr().out
    for row in ("| fp32 |", "| int8 |", "| bf16 |"):
        assert row in out
