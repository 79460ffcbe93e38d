"""Every example runs as a newcomer would run it (short settings, bundled or synthetic audio)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(script: str, *args: str, cwd: Path = ROOT) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_conceal_file(tmp_path):
    out = run("conceal_file.py", "--out", str(tmp_path / "c.wav"))
    assert (tmp_path / "c.wav").stat().st_size > 0
    pesq = {
        " ".join(ln.split()[1:-1]): float(ln.split()[-1]) for ln in out.splitlines() if ln.startswith("PESQ")
    }
    # Concealing must improve on the zero-filled signal it was given.
    assert pesq["mae (causal)"] > pesq["lossy"] and pesq["mae (lookahead)"] > pesq["lossy"]
    assert pesq["lpc (no MAE)"] > pesq["lossy"]


def test_stream_packets():
    out = run("stream_packets.py")
    assert "lost" in out and "compute per push" in out


def test_pretrain_folder(tmp_path):
    out = run("pretrain_folder.py", "--steps", "12", "--out", str(tmp_path / "run"))
    assert (tmp_path / "run" / "model" / "model.safetensors").exists()
    assert any((tmp_path / "run" / "plots").glob("*.png"))
    assert "training loss" in out


@pytest.mark.parametrize("encoder", ["audiomae/assets/mae_tiny_speech"])
def test_finetune_classifier(tmp_path, encoder):
    out = run("finetune_classifier.py", "--steps", "12", "--encoder", encoder, "--out", str(tmp_path / "run"))
    assert "accuracy on the unseen speaker" in out and "after" in out and "refined by clustering" in out
    assert (tmp_path / "run" / "model" / "config.json").exists()


def test_opus_stream():
    out = run("opus_stream.py")
    assert "Opus packets" in out and "MAE" in out and "opus PLC" in out
