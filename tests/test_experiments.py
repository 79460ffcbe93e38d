"""The scripts in experiments/ run end to end on synthetic data (tiny budgets): ``-m slow``."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import voiced

from audiomae.labels import write_synthetic_dataset
from audiomae.plc import conceal

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str, folder: str = "experiments"):
    spec = importlib.util.spec_from_file_location(name, ROOT / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fsdd_screen_runs_its_variants_then_the_best_on_fresh_seeds(tmp_path):
    data = tmp_path / "fsdd"
    write_synthetic_dataset(data, classes=3, speakers=3, takes=6, seconds=0.3)
    cache = tmp_path / "cache.npz"
    _script("fsdd_experiment", "benchmarks").main(
        ["--data", str(data), "--cache", str(cache), "--out", str(tmp_path / "a"), "--random-encoder",
         "--steps", "3", "--warmup", "1", "--batch-size", "8", "--clip-seconds", "0.4", "--folds", "s1",
         "--fractions", "1.0", "--jobs", "1", "--settings", "finetune"]
    )  # fmt: skip
    # The screen runs its variants and then the best one on fresh seeds, from the same cache.
    screen = _script("fsdd_screen")
    groups = screen.main(
        ["--data", str(data), "--cache", str(cache), "--random-encoder", "--clip-seconds", "0.4",
         "--batch-size", "2", "--folds", "s1", "--variants", "base", "level", "--final-seeds", "1",
         "--max-steps", "2", "--jobs", "1",
         "--out", str(tmp_path / "screen")]
    )  # fmt: skip
    assert {"base", "level"} <= set(groups)
    stage2 = [k for k, g in groups.items() if g["stage"] == 2]
    assert len(stage2) == 4 and all(k.endswith("/seed1") for k in stage2)
    assert "| base |" in (tmp_path / "screen" / "screen.md").read_text()


def test_tune_concealer_oracle_sees_the_clean_log_mel_of_its_window():
    tune = _script("tune_concealer")
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 2) / 16000
    clean = (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    clean += 0.01 * rng.standard_normal(clean.size).astype(np.float32)
    lost = np.zeros(100, dtype=bool)
    lost[[30, 31, 32, 70]] = True
    seen = []

    class Probe(tune.OracleHooks):
        def logmel(self, window, predicted):
            mel = super().logmel(window, predicted)
            seen.append((window.index, window.wave.size, mel))
            return mel

    hooks = Probe(tune._features(None))
    oracle = tune.Diagnostic(config=tune.ConcealerConfig(mae_from_packet=1), hooks=hooks)
    lossy = clean.copy()
    lossy[np.repeat(lost, 320)[: clean.size]] = 0
    out = conceal(lossy, lost, oracle, clean=clean)
    assert out.shape == clean.shape and np.isfinite(out).all()
    assert [p for p, _, _ in seen][:3] == [30, 31, 32]
    packet, size, mel = seen[0]
    start = (packet + 2) * 320 - size  # the window ends one (unknown) packet after the target
    expect = oracle.frontend(torch.from_numpy(clean[start : start + size]).unsqueeze(0))
    torch.testing.assert_close(mel, expect)


def test_tune_concealer_truth_plays_the_clean_signal_in_the_chosen_packets():
    tune = _script("tune_concealer")
    x = voiced(2.0)
    lost = np.zeros(x.size // 320, bool)
    lost[[30, 31, 32, 70]] = True  # a burst of three (bridged at 32) and a single loss (bridged)
    lossy = np.where(np.repeat(lost, 320), 0, x).astype(np.float32)

    def snr(parts: tuple[str, ...]) -> list[float]:
        c = tune.Diagnostic(lookahead=1, hooks=tune.TruthHooks(parts))
        y = conceal(lossy, lost, c, clean=x)
        # Skip each packet's first cross-fade (40 samples) from what was played before it.
        return [
            10 * np.log10(np.sum(x[s + 40 : s + 320] ** 2) / (np.sum((y - x)[s + 40 : s + 320] ** 2) + 1e-12))
            for s in (30 * 320, 31 * 320, 32 * 320, 70 * 320)
        ]

    first, deep, bridged, single = snr(("bridged",))
    assert min(bridged, single) > 30 and max(first, deep) < min(bridged, single) - 15
    first, deep, bridged, single = snr(("first", "deep"))
    assert min(first, deep) > 30 and max(bridged, single) < min(first, deep) - 10


def test_tune_concealer_mixes_keep_what_they_say_they_keep():
    tune = _script("tune_concealer")
    clean = np.random.default_rng(0).normal(-5, 3, (2, 80, 2))
    true, pred = torch.from_numpy(clean[:1]), torch.from_numpy(clean[1:2])
    level = tune._frame_level
    mixed = tune.MIXES["shape"](true, pred)  # the truth's shape at the model's level
    torch.testing.assert_close(level(mixed), level(pred))
    torch.testing.assert_close(mixed - level(mixed), true - level(true))
    mixed = tune.MIXES["level"](true, pred)  # the model's shape at the truth's level
    torch.testing.assert_close(level(mixed), level(true))
    torch.testing.assert_close(mixed - level(mixed), pred - level(pred))


def test_tune_concealer_variants_build_concealers():
    tune = _script("tune_concealer")
    for name in ("shipped", "la1", "lpc", "b80", "res", "la1-nb"):
        assert isinstance(tune._factory(*tune.VARIANTS[name])(), tune.MAEConcealer)


def test_plcmos_filters_scores_each_version_of_every_file(tmp_path, capsys):
    import soundfile as sf

    for i in range(2):
        sf.write(tmp_path / f"clip{i}.wav", voiced(2.0, f0=120.0 + 40 * i, seed=i), 16000)
    scores = _script("plcmos_filters").main(["--data", str(tmp_path), "--seconds", "1.5"])
    assert list(scores)[:2] == ["clean", "Opus 64 kb/s, no loss"] and len(scores) == 5
    for vals in scores.values():
        assert len(vals) == 2 and all(1.0 <= v <= 5.0 for v in vals)
    assert len({round(v[0], 6) for v in scores.values()}) > 1  # the versions are scored apart
    assert "| low-pass 7 kHz |" in capsys.readouterr().out


def test_copy_synthesis_screen_scores_its_variants(tmp_path):
    from audiomae.audio import save_audio

    for i in range(2):
        save_audio(tmp_path / f"s{i}.wav", voiced(1.2, f0=120.0 + 40 * i, seed=i))
    res = _script("copy_synthesis_screen").main(
        ["--data-dir", str(tmp_path), "--files", "2", "--iters", "2", "--inversion",
         "--variants", "nnls30", "flat30_heap_dc1", "library"]
    )  # fmt: skip
    assert set(res) == {"nnls30", "flat30_heap_dc1", "library"}
    assert all(len(r["pesq"]) == 2 and np.isfinite(r["pesq"]).all() for r in res.values())


def test_bridge_bands_records_bridges_and_its_oracle_shapes_them_to_the_clean_bands():
    import sys

    sys.path.insert(0, str(ROOT / "experiments"))
    bridge = _script("bridge_bands")
    from audiomae.plc.mae import LPC_DEFAULTS, ConcealerConfig, MAEConcealer
    from audiomae.plc.params import FrameParams, band_energies

    P, x = 320, voiced(1.0)
    lost = np.zeros(len(x) // P, bool)
    lost[[20, 30, 31]] = True
    lossy = (x * ~np.repeat(lost, P)[: x.size]).astype(np.float32)
    hooks = bridge.BridgeBands()
    hooks.concealer = MAEConcealer(lookahead=1, config=ConcealerConfig(**LPC_DEFAULTS), hooks=hooks)
    plain = conceal(lossy, lost, hooks.concealer)
    assert len(hooks.seen) == 2  # the two gaps' last packets are bridged
    played, audio, after = hooks.seen[0]
    np.testing.assert_array_equal(after, x[21 * P : 22 * P])
    inp, now = bridge.features(played, audio, after)
    assert inp.shape == ((bridge.HIST_FRAMES + bridge.FRAMES + bridge.AFTER_FRAMES) * 18,)
    assert now.shape == (bridge.FRAMES, 18) and np.isfinite(inp).all()

    # The oracle moves the bridged packet's bands toward the clean signal's.
    clean_db = 10 * np.log10(band_energies(x.astype(np.float64)) + 1e-10)
    oracle = bridge.BridgeBands(clean=FrameParams(band_db=clean_db, hop=160))
    oracle.concealer = MAEConcealer(lookahead=1, config=ConcealerConfig(**LPC_DEFAULTS), hooks=oracle)
    shaped = conceal(lossy, lost, oracle.concealer)

    def error(y):
        got = 10 * np.log10(band_energies(y[: 22 * P].astype(np.float64)) + 1e-10)
        return np.abs(got - clean_db[: got.shape[0]])[20 * P // 160 + 1 : 21 * P // 160].mean()

    assert error(shaped) < error(plain)


def test_fsdd_probe_select_chooses_on_validation_speakers_only(tmp_path):
    data = tmp_path / "fsdd"
    write_synthetic_dataset(data, classes=3, speakers=3, takes=6, seconds=0.3)
    common = ["--data", str(data), "--random-encoder", "--clip-seconds", "0.4", "--folds", "s1"]
    norms = ("plain", "clip_norm", "both")
    payload = _script("fsdd_probe_select").main(
        [*common, "--norms", *norms, "--cs", "0.1", "1", "--out", str(tmp_path / "sel")]
    )
    fold = payload["folds"]["s1"]
    variants = {f"{n} C{c}" for n in norms for c in ("0.1", "1")}
    assert set(fold["validation"]) == set(fold["test"]) == variants
    assert fold["validation"][fold["chosen"]] == max(fold["validation"].values())
    assert "chosen on validation" in (tmp_path / "sel" / "select.md").read_text()


def test_fsdd_adversary_trains_and_scores_each_fold(tmp_path):
    data = tmp_path / "fsdd"
    write_synthetic_dataset(data, classes=3, speakers=3, takes=6, seconds=0.3)
    payload = _script("fsdd_adversary").main(
        ["--weight", "1.0", "--out", str(tmp_path / "adv"), "--data", str(data), "--random-encoder",
         "--clip-seconds", "0.4", "--folds", "s1", "--steps", "3", "--warmup", "1", "--batch-size", "8"]
    )  # fmt: skip
    assert set(payload["folds"]["s1"]) == {"acc", "adapted", "refined", "seconds"}
    assert all(0.0 <= payload["mean"][k] <= 1.0 for k in ("acc", "adapted", "refined"))
    assert (tmp_path / "adv" / "weight1.json").exists()
