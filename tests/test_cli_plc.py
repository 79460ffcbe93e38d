import csv
from pathlib import Path

import numpy as np
import pytest

from audiomae.audio import SAMPLE_RATE, SAMPLES_PER_PACKET, load_audio, save_audio
from audiomae.cli import main
from audiomae.loss_models import read_trace


@pytest.fixture
def clean_wav(tmp_path):
    t = np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
    x = (
        0.2
        * sum(np.sin(2 * np.pi * 160 * k * t) / k for k in range(1, 8))
        * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))
    )
    return save_audio(tmp_path / "clean.wav", x.astype(np.float32))


def test_simulate_then_conceal(tmp_path, clean_wav, capsys):
    lossy, trace, out = tmp_path / "lossy.wav", tmp_path / "lossy.txt", tmp_path / "out.wav"
    args = [
        "simulate",
        str(clean_wav),
        "--loss",
        "ge:0.2:3",
        "--seed",
        "4",
        "-o",
        str(lossy),
        "--trace",
        str(trace),
    ]
    assert main(args) == 0
    lost = read_trace(trace)
    clean = load_audio(clean_wav)
    assert lost.size == -(-clean.size // SAMPLES_PER_PACKET) and lost.any()
    assert "packets lost" in capsys.readouterr().out
    # Same seed, same pattern.
    assert main(args[:-4] + ["-o", str(tmp_path / "again.wav"), "--trace", str(tmp_path / "again.txt")]) == 0
    assert np.array_equal(read_trace(tmp_path / "again.txt"), lost)

    assert main(["conceal", str(lossy), "--trace", str(trace), "-o", str(out)]) == 0
    y = load_audio(out)
    assert y.shape == clean.shape
    lost_samples = np.repeat(lost, SAMPLES_PER_PACKET)[: clean.size]
    assert np.abs(y[lost_samples]).max() > 0.01  # g711 filled the gaps

    opus_out = tmp_path / "opus.wav"
    cmd = ["conceal", str(lossy), "--trace", str(trace), "-o", str(opus_out), "--method", "opus-fec"]
    assert main(cmd) == 2  # opus needs the sender's signal
    assert "--clean" in capsys.readouterr().err and not opus_out.exists()
    assert main(cmd + ["--clean", str(clean_wav), "--lookahead", "1"]) == 0
    assert load_audio(opus_out).shape == clean.shape


def test_bad_trace_leaves_no_output(tmp_path, clean_wav, capsys):
    trace, out = tmp_path / "bad.txt", tmp_path / "out.wav"
    trace.write_text("0\n1\nx\n")
    assert main(["conceal", str(clean_wav), "--trace", str(trace), "-o", str(out)]) == 2
    assert "bad.txt:3" in capsys.readouterr().err
    trace.write_text("0\n1\n")  # too short for 2 s of audio
    assert main(["conceal", str(clean_wav), "--trace", str(trace), "-o", str(out)]) == 2
    assert "needs 100" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt", "clean.wav"]


def test_simulate_rejects_bad_loss_spec(tmp_path, clean_wav, capsys):
    out = tmp_path / "l.wav"
    assert (
        main(["simulate", str(clean_wav), "--loss", "ge:2:3", "-o", str(out), "--trace", str(tmp_path / "t")])
        == 2
    )
    assert "loss spec" in capsys.readouterr().err and not out.exists()


def test_eval_plc(tmp_path, clean_wav, capsys):
    out = tmp_path / "results"
    args = ["eval-plc", str(tmp_path), "--methods", "zero,g711", "--conditions", "ge10b2", "--out", str(out)]
    assert main(args + ["--max-seconds", "1.5", "--no-progress"]) == 0
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["method"] for r in rows] == ["zero", "g711"]
    assert all(float(r["plcmos"]) > 0 for r in rows)
    assert (out / "results.png").stat().st_size > 0
    assert "| ge10b2 | g711 |" in (out / "results.md").read_text()
    assert "| ge10b2 | g711 |" in capsys.readouterr().out

    assert main(args[:2] + ["--methods", "g711,nope", "--out", str(tmp_path / "x")]) == 2
    assert "'nope' is not available" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_paired_differences_file_by_file(tmp_path):
    from audiomae.eval.plc_benchmark import paired_difference, write_results

    def row(file, condition, method, plcmos, pesq, loss=0.1):
        scores = {"pesq": pesq, "stoi": 0.9, "plcmos": plcmos, "lsd_lost": 10.0, "ms_per_packet": 0.1}
        return {
            "file": file,
            "condition": condition,
            "method": method,
            "seconds": 1.0,
            "loss_rate": loss,
            **scores,
        }

    rows = [
        row("a", "ge10b2", "opus", 3.0, 2.0), row("a", "ge10b2", "mae", 3.5, 2.1),
        row("b", "ge10b2", "opus", 3.0, 2.0), row("b", "ge10b2", "mae", 2.9, float("nan")),
        row("c", "ge10b2", "opus", 3.2, 2.0),  # mae did not score file c: left out of the pairs
        row("a", "ber0", "opus", 4.0, 4.3, 0.0), row("a", "ber0", "mae", 4.0, 4.6, 0.0),
        row("a", "ge10b2", "lpc", 3.6, 2.0), row("b", "ge10b2", "lpc", 3.0, 2.0),
    ]  # fmt: skip
    p = paired_difference(rows, "mae", "opus", "ge10b2", "plcmos")
    assert p["n"] == 2 and p["ahead"] == 1
    assert p["mean"] == pytest.approx(0.2) and p["se"] == pytest.approx(
        np.std([0.5, -0.1], ddof=1) / np.sqrt(2)
    )
    assert paired_difference(rows, "mae", "opus", "ge10b2", "pesq")["n"] == 1  # nan skipped
    write_results(rows, tmp_path, ["opus", "mae"], ["ber0", "ge10b2"])
    md = (tmp_path / "results.md").read_text()
    assert "| ge10b2 | mae | opus | +0.200 +- 0.300 (1 / 2) |" in md
    assert "| mae | lpc |" not in md  # its ablation did not run
    write_results(rows, tmp_path, ["opus", "lpc", "mae"], ["ber0", "ge10b2"])
    md = (tmp_path / "results.md").read_text()
    assert "| ge10b2 | mae | lpc | -0.100 +- 0.000 (0 / 2) |" in md  # what the MAE adds
    assert "| ge10b2 | lpc | opus | +0.300 +- 0.300 (1 / 2) |" in md
    assert "| ber0 | mae | opus |" not in md  # no loss, nothing to compare


ASSETS = Path(__file__).resolve().parents[1] / "audiomae" / "assets"


@pytest.fixture
def lossy_demo(tmp_path):
    """The bundled clip with packets dropped by ``audiomae simulate``: (lossy file, trace file)."""
    lossy, trace = tmp_path / "lossy.wav", tmp_path / "t.txt"
    clip = ASSETS / "demo_speech.flac"
    args = ["simulate", str(clip), "--loss", "ge10b2", "--seed", "1", "-o", str(lossy), "--trace", str(trace)]
    assert main(args) == 0
    return lossy, trace


@pytest.mark.parametrize(
    "model_dir, method",
    [("plc_residual_speech", "mae"), ("plc_tiny_speech_onnx", "mae-la1")],
)
def test_conceal_with_a_model_directory(tmp_path, lossy_demo, model_dir, method):
    """--model takes a torch checkpoint or an ONNX export; the output is the library's conceal()
    with that model."""
    from audiomae.plc import conceal
    from audiomae.plc.models import load_plc_model

    lossy, trace = lossy_demo
    out = tmp_path / "out.wav"
    args = ["conceal", str(lossy), "--trace", str(trace), "-o", str(out), "--method", method]
    assert main(args + ["--model", str(ASSETS / model_dir)]) == 0
    x, lost = load_audio(lossy), read_trace(trace)
    want = conceal(x, lost, method, model=load_plc_model(ASSETS / model_dir))
    assert np.abs(load_audio(out) - want).max() <= 1.5 / 32768  # the 16-bit file
    # Not the bundled model's output: the model was used.
    assert np.abs(want - conceal(x, lost, method)).max() > 1e-3


def test_model_option_errors_are_one_line_and_write_nothing(tmp_path, lossy_demo, capsys):
    lossy, trace = lossy_demo
    out = tmp_path / "out.wav"
    base = ["conceal", str(lossy), "--trace", str(trace), "-o", str(out)]
    residual = str(ASSETS / "plc_residual_speech")
    for method in ("lpc", "zero", "g711", "opus+lpc"):  # methods that run no model
        assert main(base + ["--method", method, "--model", residual]) == 2
        assert f"--model: method {method!r} runs no model (--model is for mae," in capsys.readouterr().err
    for directory, why in (
        (ASSETS, "no config.json"),  # a folder of models, not one
        (ASSETS / "vocoder_speech", "kind is 'vocoder'"),
        (tmp_path / "nope", "no such model directory"),
    ):
        assert main(base + ["--method", "mae", "--model", str(directory)]) == 2
        err = capsys.readouterr().err
        assert why in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_eval_plc_and_demo_with_a_model(tmp_path, lossy_demo, capsys):
    from audiomae.plc import conceal
    from audiomae.plc.models import load_plc_model

    model = str(ASSETS / "plc_residual_speech")
    clip = ASSETS / "demo_speech.flac"
    out = tmp_path / "results"
    args = ["eval-plc", str(clip), "--conditions", "ge10b2", "--max-seconds", "1.5", "--no-progress"]
    assert main(args + ["--methods", "zero,mae", "--model", model, "--out", str(out)]) == 0
    assert [r["method"] for r in csv.DictReader((out / "results.csv").open())] == ["zero", "mae"]
    # None of the methods runs a model: refused before any work.
    assert main(args + ["--methods", "zero,lpc", "--model", model, "--out", str(tmp_path / "x")]) == 2
    assert "methods zero, lpc run no model" in capsys.readouterr().err and not (tmp_path / "x").exists()

    demo = tmp_path / "demo"
    assert main(["demo", "--methods", "zero,mae", "--model", model, "--no-metrics", "--out", str(demo)]) == 0
    from audiomae.loss_models import apply_loss

    lost = read_trace(demo / "lossy.txt")
    want = conceal(apply_loss(load_audio(clip), lost), lost, "mae", model=load_plc_model(model))
    assert np.abs(load_audio(demo / "mae.wav") - want).max() <= 1.5 / 32768
