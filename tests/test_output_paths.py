"""Output paths: a command never overwrites an input, checks every output before the work
starts, writes all of its outputs or none, and fails with one line naming the option and path."""

import os

import numpy as np
import pytest

from audiomae import audio as audio_mod
from audiomae.audio import SAMPLE_RATE, check_outputs, save_audio, write_all
from audiomae.cli import main
from audiomae.loss_models import write_trace


@pytest.fixture
def files(tmp_path):
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    clean = save_audio(tmp_path / "clean.wav", (0.2 * np.sin(2 * np.pi * 200 * t)).astype(np.float32))
    trace = write_trace(tmp_path / "trace.txt", np.arange(50) % 7 == 3)
    return {"clean": clean, "trace": trace, "dir": tmp_path}


def _one_error_line(capsys, *words):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, err
    return err


def _commands(f, output, trace_out=None):
    clean, trace, d = str(f["clean"]), str(f["trace"]), f["dir"]
    return {
        "simulate": [
            "simulate",
            clean,
            "--loss",
            "ge10b2",
            "-o",
            str(output),
            "--trace",
            str(trace_out or d / "t.txt"),
        ],
        "conceal": ["conceal", clean, "--trace", trace, "-o", str(output), "--method", "zero"],
        "resynth": ["resynth", clean, "-o", str(output), "--vocoder", "griffinlim", "--iters", "2"],
    }


def _same_as_input(f, how):
    if how == "same":
        return f["clean"]
    link = f["dir"] / "alias.wav"
    (os.symlink if how == "symlink" else os.link)(f["clean"], link)
    return link


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
@pytest.mark.parametrize("command", ["simulate", "conceal", "resynth"])
def test_output_equal_to_an_input_is_refused(files, capsys, command, how):
    before = files["clean"].read_bytes()
    target = _same_as_input(files, how)
    assert main(_commands(files, target)[command]) == 2
    _one_error_line(capsys, "is the input")
    assert files["clean"].read_bytes() == before


def test_simulate_trace_equal_to_the_input_is_refused(files, capsys):
    before = files["clean"].read_bytes()
    assert main(_commands(files, files["dir"] / "lossy.wav", trace_out=files["clean"])["simulate"]) == 2
    _one_error_line(capsys, "--trace", "is the input")
    assert files["clean"].read_bytes() == before and not (files["dir"] / "lossy.wav").exists()


def test_simulate_outputs_must_differ(files, capsys):
    out = files["dir"] / "same.wav"
    assert main(_commands(files, out, trace_out=out)["simulate"]) == 2
    _one_error_line(capsys, "is also -o")


@pytest.mark.parametrize(
    "make,words",
    [
        (lambda d: d / "clean.wav" / "out.wav", ["is a file, not a directory"]),  # under an existing file
        (lambda d: d, ["is a directory"]),
        (lambda d: d / "out.xyz", ["cannot write audio as .xyz", ".wav", ".flac"]),
        (lambda d: d / "out", ["without extension"]),
    ],
    ids=["under-a-file", "a-directory", "unknown-extension", "no-extension"],
)
@pytest.mark.parametrize("command", ["simulate", "conceal", "resynth"])
def test_bad_output_paths_fail_in_one_line_before_work(files, capsys, command, make, words):
    assert main(_commands(files, make(files["dir"]))[command]) == 2
    _one_error_line(capsys, *words)
    assert not (files["dir"] / "t.txt").exists()  # simulate wrote no trace either


def test_demo_and_eval_plc_refuse_an_out_that_is_a_file(files, capsys):
    assert main(["demo", "--out", str(files["clean"]), "--methods", "zero", "--no-metrics"]) == 2
    _one_error_line(capsys, "--out", "not a directory")
    assert main(["eval-plc", str(files["clean"]), "--out", str(files["trace"]), "--methods", "zero"]) == 2
    _one_error_line(capsys, "--out", "not a directory")


def test_unwritable_folders_are_found_before_any_work(files, capsys, monkeypatch):
    # Simulated (the tests may run as root, who can write anywhere): the probe file cannot be made.
    import audiomae.eval.plc_benchmark as bench

    ro = files["dir"] / "ro"
    ro.mkdir()
    real = audio_mod.tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and os.path.realpath(dir).startswith(os.path.realpath(ro)):
            raise PermissionError(13, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(audio_mod.tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(bench, "_run_job", lambda job: pytest.fail("scored before checking --out"))
    for args in (
        _commands(files, ro / "out.wav")["conceal"],
        _commands(files, ro / "out.wav")["simulate"],
        ["demo", "--out", str(ro / "demo"), "--methods", "zero", "--no-metrics"],
        ["eval-plc", str(files["clean"]), "--out", str(ro / "bench"), "--methods", "zero"],
    ):
        assert main(args) == 2, args
        _one_error_line(capsys, "cannot write in", "Permission denied")
    assert list(ro.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder(files, capsys):
    ro = files["dir"] / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert main(_commands(files, ro / "out.wav")["conceal"]) == 2
        _one_error_line(capsys, "cannot write in")
    finally:
        ro.chmod(0o755)


def test_pretrain_checks_its_out_dir_first(files, capsys):
    assert main(["pretrain", f"out_dir={files['clean']}", "data=/nonexistent"]) == 2
    _one_error_line(capsys, "out_dir", "not a directory")


def test_write_all_writes_every_file_or_none(tmp_path):
    old = tmp_path / "a.txt"
    old.write_text("previous results")

    def fail(tmp):
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_all([(old, lambda t: open(t, "w").write("new")), (tmp_path / "b.txt", fail)])
    assert old.read_text() == "previous results" and not (tmp_path / "b.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]  # no temporary files left
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C in the middle of writing: the same
        write_all([(old, lambda t: (_ for _ in ()).throw(KeyboardInterrupt()))])
    assert old.read_text() == "previous results" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_ctrl_c_prints_one_line_and_exits_130(files, capsys, monkeypatch):
    import audiomae.plc as plc

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(plc, "conceal", interrupted)
    out = files["dir"] / "out.wav"
    save_audio(out, np.zeros(100, np.float32))
    before = out.read_bytes()
    assert main(_commands(files, out)["conceal"]) == 130
    _one_error_line(capsys, "audiomae conceal: interrupted")
    assert out.read_bytes() == before


def test_check_outputs_accepts_new_paths_and_returns_them(tmp_path):
    got = check_outputs({"-o": tmp_path / "new" / "x.wav"}, inputs=[tmp_path / "in.wav"], audio=["-o"])
    assert got == {"-o": tmp_path / "new" / "x.wav"} and not (tmp_path / "new").exists()


@pytest.fixture
def full_disk(tmp_path):
    """A 16 kB tmpfs: a disk that fills up mid-write (needs root and mount; skipped elsewhere)."""
    import subprocess

    mnt = tmp_path / "full"
    mnt.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mnt)], capture_output=True
    ).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


def test_a_full_disk_is_one_line_and_leaves_nothing_behind(files, full_disk, capsys):
    out = full_disk / "new" / "lossy.wav"
    trace = full_disk / "new" / "t.txt"
    code = main(
        ["simulate", str(files["clean"]), "--loss", "ge:0.1:2", "-o", str(out), "--trace", str(trace)]
    )
    assert code == 1
    _one_error_line(capsys, str(out), "No space left on device")
    assert list(full_disk.iterdir()) == []  # no partial file and no empty folder


def test_write_all_removes_the_folders_it_made_when_a_write_fails(tmp_path):
    def fail(tmp):
        raise RuntimeError("writer failed")

    with pytest.raises(OSError, match="writer failed"):
        write_all([(tmp_path / "a" / "b" / "x.txt", fail)])
    assert list(tmp_path.iterdir()) == []


def test_a_trace_that_is_not_a_regular_file_is_refused_before_reading(files, capsys):
    code = main(["conceal", str(files["clean"]), "--trace", "/dev/zero", "-o", str(files["dir"] / "o.wav")])
    assert code == 2
    _one_error_line(capsys, "/dev/zero", "not a regular file")


@pytest.mark.parametrize("spec", ["ge:0.1:inf", "ge:0.1:1e308", "ge:nan:2", "bernoulli:inf"])
def test_unbounded_loss_specs_are_refused(files, capsys, spec):
    out = files["dir"] / "l.wav"
    code = main(["simulate", str(files["clean"]), "--loss", spec, "-o", str(out), "--trace", "t.txt"])
    assert code == 2 and not out.exists()
    _one_error_line(capsys, "loss spec")


def test_resynth_iterations_are_bounded(files, capsys):
    with pytest.raises(SystemExit) as info:
        main(["resynth", str(files["clean"]), "-o", str(files["dir"] / "r.wav"), "--iters", "100000000"])
    assert info.value.code == 2 and "--iters" in capsys.readouterr().err


def test_demo_on_a_full_disk_is_one_line_and_leaves_no_folder(full_disk, capsys):
    out = full_disk / "demo"
    assert main(["demo", "--out", str(out), "--methods", "lpc", "--no-metrics"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]  # not the progress bar
    assert len(err) == 1 and "No space left on device" in err[0], err
    assert list(full_disk.iterdir()) == []
