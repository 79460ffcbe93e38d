"""opus-deep: the Opus codec decoded by a libopus >= 1.5 with deep PLC, loaded from a path.

The tests of the error and skip paths always run; those of the concealer itself need the library
in $AUDIOMAE_LIBOPUS_DEEP (README, "Opus deep PLC") and are skipped without it.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("opuslib_next")

from audiomae.cli import main  # noqa: E402
from audiomae.plc import conceal, make_concealer, opus_deep  # noqa: E402
from audiomae.plc.opus_deep import ENV_VAR, LibopusDeepUnavailable  # noqa: E402

LIBRARY = os.environ.get(ENV_VAR)
needs_library = pytest.mark.skipif(
    not LIBRARY or opus_deep.unavailable_reason(LIBRARY) is not None,
    reason=f"opus-deep needs a libopus with deep PLC in ${ENV_VAR}",
)


def _speech_like(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """Voiced-like test signal: a gliding harmonic tone with syllable-rate level changes."""
    sr = 16000
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 15)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2)
    x += 0.003 * np.random.default_rng(seed).standard_normal(t.size)
    return (0.2 * x).astype(np.float32)


def _loss(n: int) -> np.ndarray:
    lost = np.zeros(n, dtype=bool)
    lost[[20, 21, 40, 41, 42, 70]] = True
    return lost


@pytest.fixture
def no_library(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


# -- without the library: clear errors, default lists skip it --------------------------------


def test_asking_for_opus_deep_without_library_says_how_to_get_it(no_library):
    with pytest.raises(LibopusDeepUnavailable) as info:
        make_concealer("opus-deep")
    message = str(info.value)
    assert ENV_VAR in message and "--libopus-deep" in message and "dpkg-deb -x" in message
    assert isinstance(info.value, ImportError) and isinstance(info.value, ValueError)


def test_a_library_without_deep_plc_is_refused(tmp_path):
    import opuslib_next

    bundled = os.path.join(os.path.dirname(opuslib_next.__file__), "_native", "libopus.so")
    if os.path.isfile(bundled):  # the bundled libopus loads but has no deep PLC
        with pytest.raises(LibopusDeepUnavailable, match="without deep PLC"):
            make_concealer("opus-deep", library=bundled)
    (tmp_path / "libopus.so.0").write_text("not a library")
    with pytest.raises(LibopusDeepUnavailable, match="not a loadable libopus"):
        opus_deep.load_library(tmp_path / "libopus.so.0")
    with pytest.raises(LibopusDeepUnavailable, match="no such file"):
        opus_deep.set_library(tmp_path / "missing.so")
    assert ENV_VAR not in os.environ or os.environ[ENV_VAR] != str(tmp_path / "missing.so")


def test_default_lists_skip_opus_deep_with_one_note(no_library, capsys):
    assert opus_deep.skip_if_unavailable(["zero", "opus-deep", "g711"]) == ["zero", "g711"]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "skipping opus-deep" in err and ENV_VAR in err
    assert opus_deep.skip_if_unavailable(["zero"]) == ["zero"]
    assert capsys.readouterr().err == ""


def test_eval_plc_skips_a_default_opus_deep_and_fails_on_an_explicit_one(
    no_library, tmp_path, capsys, monkeypatch
):
    import soundfile as sf

    from audiomae.commands import plc as plc_command

    data = tmp_path / "data"
    data.mkdir()
    sf.write(data / "a.wav", _speech_like(1.0), 16000)
    out = tmp_path / "out"
    args = ["eval-plc", str(data), "--conditions", "ge10b2", "--out", str(out), "--no-progress"]
    monkeypatch.setattr(plc_command, "DEFAULT_METHODS", "zero,opus-deep")
    assert main(args) == 0
    captured = capsys.readouterr()
    assert captured.err.count("skipping opus-deep") == 1
    assert "| ge10b2 | zero |" in captured.out and "opus-deep" not in captured.out

    assert main([*args, "--methods", "zero,opus-deep"]) == 2
    err = capsys.readouterr().err
    assert "opus-deep" in err and ENV_VAR in err and err.count("\n") == 1
    assert main([*args, "--methods", "zero", "--libopus-deep", str(tmp_path / "missing.so")]) == 2
    assert "no such file" in capsys.readouterr().err


# -- with the library -------------------------------------------------------------------------


@needs_library
def test_opus_deep_conceals_unlike_plain_opus():
    clean = _speech_like()
    lost = _loss(clean.size // 320)
    lossy = clean.copy()
    lossy[: lost.size * 320][np.repeat(lost, 320)] = 0
    deep = conceal(lossy, lost, "opus-deep", clean=clean)
    plain = conceal(lossy, lost, "opus", clean=clean)
    assert deep.shape == clean.shape and deep.dtype == np.float32 and np.isfinite(deep).all()
    # Same payloads, same decoding (complexity 5 does not enhance received packets): the same up to
    # the first loss (two libopus builds: not bit for bit), then the deep PLC's own concealment.
    first = 20 * 320
    np.testing.assert_allclose(deep[:first], plain[:first], atol=1e-3)
    assert np.abs(deep[first : first + 640] - plain[first : first + 640]).max() > 3e-2
    assert np.abs(deep[first : first + 640]).max() > 1e-3  # it conceals, not silence
    np.testing.assert_array_equal(conceal(lossy, lost, "opus-deep", clean=clean), deep)  # deterministic


@needs_library
def test_opus_deep_library_is_1_5_and_its_decoder_copies():
    concealer = make_concealer("opus-deep", library=LIBRARY)
    assert concealer.requires_source and concealer.lookahead == 0
    assert concealer.library_version.startswith("libopus 1.")
    clean = _speech_like(1.0)
    concealer.set_source(clean)
    for t in range(10):
        concealer.push(clean[t * 320 : (t + 1) * 320])
    twin = concealer.clone_decoder()
    a = [concealer.decoder.decode(None), concealer.decoder.decode(concealer.payloads[11])]
    b = [twin.decode(None), twin.decode(concealer.payloads[11])]
    np.testing.assert_array_equal(np.concatenate(a), np.concatenate(b))
    with pytest.raises(ValueError, match="decoder_complexity"):
        make_concealer("opus-deep", library=LIBRARY, decoder_complexity=4)
