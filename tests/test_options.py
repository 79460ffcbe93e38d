"""Options are validated when they are given: a bad one fails at once, in one line naming it,
before any work (and never as a traceback from deep inside a library)."""

import numpy as np
import pytest

from audiomae.audio import SAMPLE_RATE, save_audio
from audiomae.cli import main
from audiomae.plc import make_concealer


@pytest.fixture
def clip(tmp_path):
    return save_audio(tmp_path / "in.wav", (0.1 * np.ones(SAMPLE_RATE)).astype(np.float32))


def _one_line(capsys, *words):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, err


@pytest.mark.parametrize(
    "args,words",
    [
        (["demo", "--threads", "0"], ["--threads", "must be an integer >= 1"]),
        (["demo", "--threads", "two"], ["--threads", "'two'"]),
        (["demo", "--methods", "bogus"], ["unknown method 'bogus'"]),
        (["demo", "--methods", " , "], ["--methods", "no method"]),
        (["demo", "--condition", "nonsense"], ["nonsense"]),
        (
            ["resynth", "{clip}", "-o", "{dir}/o.wav", "--iters", "-5"],
            ["--iters", "must be an integer from 1 to 1000"],
        ),
        (["conceal", "{clip}", "--trace", "t", "-o", "o.wav", "--lookahead", "-1"], ["--lookahead"]),
        (["eval-plc", "{clip}", "--out", "{dir}/b", "--max-files", "0"], ["--max-files"]),
        (["eval-plc", "{clip}", "--out", "{dir}/b", "--max-seconds", "nan"], ["--max-seconds"]),
        (["eval-plc", "{clip}", "--out", "{dir}/b", "--methods", "bogus"], ["bogus"]),
        (["classify", "{dir}", "{clip}", "--top-k", "0"], ["--top-k"]),
        (["demo", "--no-such-option"], ["unrecognized arguments"]),
    ],
)
def test_bad_options_fail_in_one_line(tmp_path, clip, capsys, args, words):
    args = [a.format(clip=clip, dir=tmp_path) for a in args]
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(main(args + (["--out", str(tmp_path / "demo")] if args[0] == "demo" else [])))
    assert exit_info.value.code == 2
    _one_line(capsys, *words)
    assert not (tmp_path / "demo").exists() and not (tmp_path / "b").exists()


def test_demo_clip_too_short_is_refused_up_front(tmp_path, capsys):
    short = save_audio(tmp_path / "short.wav", np.zeros(160, np.float32))  # 10 ms
    assert main(["demo", "--clip", str(short), "--methods", "zero", "--out", str(tmp_path / "d")]) == 2
    _one_line(capsys, "short.wav", "0.010 s long", "at least 0.5 s")
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("value", [1.5, "1", True, -2, [1]])
def test_make_concealer_checks_lookahead(value):
    with pytest.raises(ValueError, match="lookahead must be"):
        make_concealer("mae", lookahead=value)


def test_make_concealer_names_an_option_the_method_lacks():
    with pytest.raises(ValueError, match="does not accept options"):
        make_concealer("zero", bitrate=3)
