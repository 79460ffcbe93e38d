"""The experiment scripts in benchmarks/ run end to end on synthetic data (tiny budgets)."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from audiomae.labels import write_synthetic_dataset

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def _script(name: str, folder: Path = BENCH):
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fsdd_experiment_runs_and_writes_its_report(tmp_path):
    data = tmp_path / "fsdd"
    write_synthetic_dataset(data, classes=3, speakers=3, takes=6, seconds=0.3)
    out = tmp_path / "out"
    payload = _script("fsdd_experiment").main(
        ["--data", str(data), "--random-encoder", "--out", str(out), "--steps", "3", "--warmup", "1",
         "--batch-size", "8", "--clip-seconds", "0.4", "--folds", "s1", "--fractions", "1.0", "0.5",
         "--jobs", "1"]
    )  # fmt: skip
    settings = ("scratch", "probe", "finetune", "mfcc", "layers", "layers-spk", "mfcc-spk")
    settings += ("scratch-adapt", "finetune-adapt")  # the same runs' classifiers adapted to the test speaker
    # ... and their labels (and the per-speaker probes') refined by clustering the speaker's clips
    settings += ("scratch-refine", "finetune-refine", "layers-spk-refine", "mfcc-spk-refine")
    assert set(payload["results"]) == {f"{s}@{f}" for s in settings for f in ("1", "0.5")}
    for r in payload["results"].values():
        assert 0.0 <= r["folds"]["s1"] <= 1.0
    assert json.loads((out / "fsdd.json").read_text())["speakers"] == ["s1"]
    md = (out / "fsdd.md").read_text()
    assert "(c) fine-tune, pretrained" in md and "--random-encoder" in md
    assert "(c2) as (c), adapted to the test speaker" in md
    assert "(b4) as (b3), labels refined by clustering the speaker's clips" in md
    assert (out / "fsdd_confusion.png").stat().st_size > 1000


def _fsdd_quick(data, tmp_path) -> list[str]:
    """fsdd_experiment arguments for a few-step run on fold s1, ending in ``--settings``."""
    return ["--data", str(data), "--random-encoder", "--out", str(tmp_path / "out"), "--steps", "3",
            "--warmup", "1", "--batch-size", "8", "--clip-seconds", "0.4", "--folds", "s1",
            "--fractions", "1.0", "--jobs", "1", "--settings"]  # fmt: skip


def test_fsdd_speaker_batches_hold_one_speaker_each(tmp_path):
    data = tmp_path / "fsdd"
    write_synthetic_dataset(data, classes=3, speakers=3, takes=6, seconds=0.3)
    fx = _script("fsdd_experiment")
    payload = fx.main([*_fsdd_quick(data, tmp_path), "finetune", "--speaker-batches", "--enrol", "5"])
    assert set(payload["results"]) == {"finetune@1", "finetune-adapt@1", "finetune-refine@1"}
    y = torch.arange(len(fx._STATE["full"]))
    tr = torch.tensor([i for i, c in enumerate(fx._STATE["full"].clips) if c.get("speaker") != "s1"])
    speakers = fx._STATE["full"].column("speaker")
    batches = list(fx.speaker_batches(y[:, None], y, tr, 8, seed=0)(0))
    assert len(batches) == 4  # two speakers of 18 clips: two full batches each
    for _, idx in batches:
        assert len({speakers[int(i)] for i in idx}) == 1
    again = [idx for _, idx in fx.speaker_batches(y[:, None], y, tr, 8, seed=0)(0)]
    assert all(torch.equal(a, b) for a, (_, b) in zip(again, batches))


def test_fsdd_clip_norm_gives_every_clip_the_training_spectrum(tmp_path):
    data = tmp_path / "fsdd"
    write_synthetic_dataset(data, classes=3, speakers=3, takes=6, seconds=0.3)
    fx = _script("fsdd_experiment")
    payload = fx.main([*_fsdd_quick(data, tmp_path), "finetune", "probe", "layers", "--clip-norm"])
    assert {"finetune@1", "probe@1", "layers@1"} <= set(payload["results"])
    assert "mean spectrum of the training clips" in (tmp_path / "out" / "fsdd.md").read_text()
    raw = fx._STATE["raw"]
    tr = torch.tensor([i for i, c in enumerate(fx._STATE["full"].clips) if c.get("speaker") != "s1"])
    out = fx.fold_clip_normalized(raw, tr)
    torch.testing.assert_close(out.mean(dim=-1), raw[tr].mean(dim=(0, 2)).expand(len(raw), -1))


def test_fsdd_feature_cache_round_trip(tmp_path):
    data = tmp_path / "fsdd"
    write_synthetic_dataset(data, classes=3, speakers=3, takes=6, seconds=0.3)
    fx = _script("fsdd_experiment")
    cache = tmp_path / "cache.npz"
    common = ["--random-encoder", "--steps", "3", "--warmup", "1", "--batch-size", "8",
              "--clip-seconds", "0.4", "--folds", "s1", "--fractions", "1.0", "--jobs", "1",
              "--settings", "finetune"]  # fmt: skip
    first = fx.main(["--data", str(data), "--cache", str(cache), "--out", str(tmp_path / "a"), *common])
    assert cache.exists()
    # Read back without the audio: same clips, same result.
    again = fx.main(
        ["--data", str(tmp_path / "gone"), "--cache", str(cache), "--out", str(tmp_path / "b"), *common]
    )
    assert again["results"] == first["results"]
    other = [a if a != "0.4" else "0.5" for a in common]
    with pytest.raises(ValueError, match="clip length"):
        fx.main(["--data", str(data), "--cache", str(cache), "--out", str(tmp_path / "c"), *other])


def test_opus_recovery_measures_packets_after_each_burst():
    from conftest import voiced

    from audiomae.plc.baselines import G711Concealer

    x = voiced(1.2)
    lost = np.zeros(x.size // 320, bool)
    lost[[10, 11, 30]] = True
    found = _script("opus_recovery").recovery_errors(
        x, lost, ["reencode", "plc"], after=2, make_inner=G711Concealer
    )
    assert set(found) == {(m, k) for m in ("reencode", "plc") for k in (1, 2)}
    for vals in found.values():
        assert len(vals) == 2 and all(np.isfinite(v).all() for v in vals)  # two bursts, two numbers each
    # The decoder that ran its own PLC through the gap decodes the first packet after it unlike
    # the loss-free stream, and converges over the next packets.
    first, second = (np.median([v[0] for v in found[("plc", k)]]) for k in (1, 2))
    assert first < second


def test_prediction_error_records_the_lost_packets_own_frames():
    import torch
    from conftest import voiced

    from audiomae.plc import conceal
    from audiomae.plc.mae import ConcealerConfig, MAEConcealer, PitchGuidedRenderer, load_default_plc_model

    pe = _script("plc_prediction_error")
    tune = _script("tune_concealer", EXPERIMENTS)
    x = voiced(1.2)
    lost = np.zeros(x.size // 320, bool)
    lost[[10, 11, 30]] = True
    features = load_default_plc_model().feature_cfg
    renderer = PitchGuidedRenderer(features, n_iter=0)
    # Records like the benchmark, with the clean window's log-mel as the 'prediction'.
    oracle = tune.OracleHooks(features)
    oracle.clean = x
    hooks = pe.Recorder(renderer, 2, source=oracle)
    c = MAEConcealer(vocoder=renderer, config=ConcealerConfig(mae_from_packet=1), hooks=hooks)
    hooks.clean_mel = c.frontend(torch.from_numpy(x).unsqueeze(0))[0]
    conceal(np.where(np.repeat(lost, 320), 0, x).astype(np.float32), lost, c)
    assert [(t, p) for t, p, _, _, _ in hooks.records] == [(10, 1), (11, 2), (30, 1)]
    for _, _, clean, pred, guide in hooks.records:
        # The file's frames of the lost packet are the frames the concealer's window predicts.
        np.testing.assert_allclose(pred, clean, atol=1e-4)
        assert guide.shape == clean.shape and np.isfinite(guide).all()


def test_prediction_error_separates_shape_from_level(tmp_path):
    pe = _script("plc_prediction_error")
    rng = np.random.default_rng(0)
    clean = rng.normal(-5, 3, (20, 80, 2))
    assert pe.errors(clean, clean) == {"ew": 0.0, "rms": 0.0, "bias": 0.0, "lvl_rms": 0.0}
    louder = pe.errors(clean, clean + np.log(2.0))  # +3 dB in every band: level only
    assert abs(louder["bias"] - 3.0103) < 1e-3 and abs(louder["lvl_rms"] - 3.0103) < 1e-3
    assert louder["ew"] < 1e-9 and louder["rms"] < 1e-9
    tilted = pe.errors(clean, clean + np.linspace(-1, 1, 80)[None, :, None])  # shape changes
    assert tilted["ew"] > 0.5 and tilted["rms"] > 0.5
    # The table by burst position, and its plot.
    r = {"pos": np.array([1, 2, 1, 5] * 5), "isolated": np.arange(20) % 4 == 2, "clean": clean}
    r.update(pred=clean + np.log(2.0), guide=clean + np.linspace(-1, 1, 80)[None, :, None])
    r.update(repeat=clean + np.linspace(1, -1, 80)[None, :, None] + np.log(4.0))
    rows = pe.table(r)
    assert [(name, n) for name, n, _, _, _ in rows] == [
        ("1", 10),
        ("2", 5),
        ("4+", 5),
        ("all", 20),
        ("single losses", 5),
    ]
    assert all(abs(m["bias"] - 3.0103) < 1e-3 and abs(g["ew"] - tilted["ew"]) < 1.0 for _, _, m, g, _ in rows)
    assert all(rep["ew"] > 0.5 and rep["bias"] > 3 for *_, rep in rows)
    # +3 dB everywhere: no shape error, but a level error the tilted continuation does not have.
    assert not pe.never_worse(rows)
    r.update(pred=clean + 0.01)
    assert pe.never_worse(pe.table(r))
    pe.plot(rows, "test", tmp_path / "errors.png")
    assert (tmp_path / "errors.png").stat().st_size > 1000


def test_fuzz_reports_failures(capsys):
    fz = _script("fuzz_concealers")
    assert fz.main(["--patterns", "6", "--methods", "zero,lpc"]) == 0
    assert "6 cases (zero,lpc), 0 failures" in capsys.readouterr().out
    import io

    from audiomae.plc.base import StreamingConcealer

    class Broken(StreamingConcealer):
        def _conceal(self, window):
            if window[0] is None:
                raise RuntimeError("cannot conceal")
            return window[0]

    out = io.StringIO()
    # Every pattern loses at least one packet of the 2 s signals but "burst" ones may not: count.
    failures = fz.fuzz(6, 0, [Broken()], out=out)
    assert failures >= 4 and out.getvalue().count("RuntimeError: cannot conceal") == failures


def test_speaker_id_experiment_runs_on_a_manifest(tmp_path):
    data = tmp_path / "speech"
    write_synthetic_dataset(data / "corpus" / "test", classes=2, speakers=3, takes=2, seconds=0.3)
    rows = ["path\tspeaker\tduration_s\tsplit"]
    for wav in sorted((data / "corpus" / "test").glob("*.wav")):
        rows.append(f"corpus/test/{wav.name}\t{wav.name.split('_')[1]}\t0.3\ttest")
    rows.append("corpus/train/x.wav\tother\t1.0\ttrain")  # another split: not read
    (data / "MANIFEST.tsv").write_text("\r\n".join(rows) + "\r\n")
    out = tmp_path / "out"
    cache = tmp_path / "cache.npz"
    common = ["--manifest", str(data / "MANIFEST.tsv"), "--corpus", "corpus", "--random-encoder",
              "--steps", "2", "--warmup", "1", "--batch-size", "2", "--clip-seconds", "0.4",
              "--cache", str(cache), "--fractions", "1.0", "0.5"]  # fmt: skip
    with pytest.raises(SystemExit):  # standardising per speaker would remove the label
        _script("speaker_id_experiment").main([*common, "--out", str(out), "--settings", "layers-spk"])
    payload = _script("speaker_id_experiment").main([*common, "--out", str(out)])
    assert set(payload["results"]) == {
        f"{s}@{f}" for s in ("scratch", "probe", "finetune", "mfcc", "layers") for f in ("1", "0.5")
    }
    assert payload["speakers"] == 3 and payload["clips"]["train"] == payload["clips"]["test"] == 6
    assert payload["clips"]["train@0.5"] == 3  # one per speaker
    md = (out / "speaker_id.md").read_text()
    assert "(c) fine-tune, pretrained" in md and "--random-encoder" in md
    again = _script("speaker_id_experiment").main(
        [*common, "--out", str(tmp_path / "b"), "--settings", "mfcc"]
    )
    assert again["results"]["mfcc@1"] == payload["results"]["mfcc@1"]  # from the cache
