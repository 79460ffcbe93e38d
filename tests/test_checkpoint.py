import json

import pytest
import torch

from audiomae.checkpoint import load_checkpoint, save_checkpoint
from audiomae.cli import main
from audiomae.config import ModelConfig
from audiomae.features import NormStats
from audiomae.model import AudioMAE


def tiny():
    cfg = ModelConfig(
        enc_dim=32, enc_depth=1, enc_heads=2, dec_dim=32, dec_depth=1, dec_heads=2, max_frames=32
    )
    return AudioMAE(cfg, norm=NormStats(mean=-11.5, std=4.5))


def test_save_load_round_trip(tmp_path):
    model = tiny()
    model.save_pretrained(tmp_path / "ck")
    back = AudioMAE.from_pretrained(tmp_path / "ck")
    assert back.cfg == model.cfg and back.norm == model.norm and back.feature_cfg == model.feature_cfg
    for (k, a), (_, b) in zip(model.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), k
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["config.json", "model.safetensors"]


def test_truncated_weights_detected(tmp_path):
    tiny().save_pretrained(tmp_path / "ck")
    weights = tmp_path / "ck" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(ValueError, match="checksum"):
        AudioMAE.from_pretrained(tmp_path / "ck")


def test_tampered_config_detected(tmp_path):
    tiny().save_pretrained(tmp_path / "ck")
    cfg_path = tmp_path / "ck" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["model"]["enc_dim"] = 64
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises((ValueError, RuntimeError)):
        AudioMAE.from_pretrained(tmp_path / "ck")
    cfg_path.write_text("{not json")
    with pytest.raises(ValueError, match="corrupt"):
        AudioMAE.from_pretrained(tmp_path / "ck")


def test_missing_and_future_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError):
        AudioMAE.from_pretrained(tmp_path / "nothing")
    save_checkpoint(tmp_path / "future", {"w": torch.zeros(1)}, {"kind": "audiomae"})
    cfg_path = tmp_path / "future" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["format_version"] = 99
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="newer"):
        load_checkpoint(tmp_path / "future")


def test_no_pickle_in_checkpoint(tmp_path):
    tiny().save_pretrained(tmp_path / "ck")
    raw = (tmp_path / "ck" / "model.safetensors").read_bytes()
    assert b"\x80\x04" not in raw[:8] and raw[8:9] == b"{"  # safetensors: u64 header length, JSON header


def test_cli_info(tmp_path, capsys):
    tiny().save_pretrained(tmp_path / "ck")
    assert main(["info", str(tmp_path / "ck")]) == 0
    out = capsys.readouterr().out
    assert "audiomae" in out and "enc_dim=32" in out
    assert main(["info", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err


def test_cli_help_for_every_command(capsys):
    import argparse

    from audiomae.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert "info" in sub.choices
    for name in sub.choices:
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
        assert "usage" in capsys.readouterr().out
