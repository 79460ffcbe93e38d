"""The experiment scripts in benchmarks/ run end to end on synthetic data (tiny budgets)."""

import importlib.util
import json
from pathlib import Path

import pytest

from audiomae.labels import write_synthetic_dataset

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
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
    assert set(payload["results"]) == {
        f"{s}@{f}" for s in ("scratch", "probe", "finetune") for f in ("1", "0.5")
    }
    for r in payload["results"].values():
        assert 0.0 <= r["folds"]["s1"] <= 1.0
    assert json.loads((out / "fsdd.json").read_text())["speakers"] == ["s1"]
    md = (out / "fsdd.md").read_text()
    assert "(c) fine-tune, pretrained" in md and "--random-encoder" in md
    assert (out / "fsdd_confusion.png").stat().st_size > 1000


def test_fsdd_feature_cache_round_trip_and_screen(tmp_path):
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
