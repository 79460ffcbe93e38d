from audiomae.cli import main
from audiomae.plc.demo import DEFAULT_METHODS, available


def test_bundled_methods_are_available():
    ok, skipped = available(list(DEFAULT_METHODS))
    assert skipped == {} and ok == list(DEFAULT_METHODS)


def test_demo_writes_wavs_plot_and_table(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--methods", "zero,g711,mae", "--condition", "ge20b3"]) == 0
    for name in ("clean", "lossy", "zero", "g711", "mae"):
        assert (out / f"{name}.wav").stat().st_size > 1000
    assert (out / "demo.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "lossy.txt").exists() and (out / "index.html").is_file()
    text = capsys.readouterr().out
    assert "| mae |" in text and "PLCMOS" in text


def test_demo_bad_condition_writes_nothing(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--condition", "nonsense"]) == 2
    assert "nonsense" in capsys.readouterr().err
    assert not out.exists()
