"""Every recipe runs to the end and exits 0, invoked as README.md and recipes/README.md show it.

Each runs as a subprocess from an empty working directory with the repository's script and
config given by absolute path: the configs' relative data folders (outside the repository)
are then absent, so the debug configs train on their synthetic fallback, and ``runs/`` lands in the
test's folder. Dotted overrides shrink the longer ones; the pretraining smoke run is the
README's command exactly.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import voiced

from audiomae.audio import save_audio
from audiomae.cli import run_guarded

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
CONFIGS = RECIPES / "configs"


def _data_folders(config: Path) -> list[str]:
    """The relative paths the config's ``data`` section names."""
    import yaml

    found, todo = [], [yaml.safe_load(config.read_text()).get("data") or {}]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            todo += list(item.values())
        elif isinstance(item, list):
            todo += item
        elif isinstance(item, str) and "/" in item and not item.startswith("/"):
            found.append(item)
    return found


def _run(cwd: Path, script: str, *args: str, timeout: float = 600) -> str:
    # The configs name the project's data relative to the working directory; from a test's own
    # folder it is never there, so no test depends on a checkout's neighbours.
    config = Path(args[args.index("--config") + 1])
    present = [d for d in _data_folders(config) if (cwd / d).exists()]
    assert not present, f"{present} exist beside {cwd}: run from an empty folder"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(RECIPES / script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, (
        f"{script} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    )
    return proc.stdout


def _audio_folder(root: Path, n: int = 4, seconds: float = 1.5) -> Path:
    for i in range(n):
        save_audio(root / f"v{i}.wav", voiced(seconds, f0=110 + 25 * i, seed=i))
    return root


def test_run_guarded_takes_exit_codes_only():
    assert run_guarded("x", lambda: None) == 0
    assert run_guarded("x", lambda: 3) == 3
    with pytest.raises(TypeError, match="exit code"):
        run_guarded("x", lambda: object())  # a result object is no exit code


def test_pretrain_debug_as_the_readme_shows(tmp_path):
    out = _run(tmp_path, "pretrain.py", "--config", str(CONFIGS / "pretrain/debug.yaml"))
    assert "done: 120 steps" in out
    assert (tmp_path / "runs/pretrain_debug/model/model.safetensors").is_file()
    # One saved step exported as a model (recipes/export_checkpoint.py).
    out = _run(
        tmp_path,
        "export_checkpoint.py",
        "--config",
        str(CONFIGS / "pretrain/debug.yaml"),
        "--step",
        "60",
        "--out",
        "exported",
    )
    assert "exported step 60" in out and (tmp_path / "exported/config.json").is_file()


def test_finetune_plc_debug(tmp_path):
    args = ["threads=1", "train.steps=8", "train.eval_every=4", "train.ckpt_every=4", "train.progress=false"]
    out = _run(tmp_path, "finetune_plc.py", "--config", str(CONFIGS / "plc/debug.yaml"), *args)
    assert "done: 8 steps" in out
    assert (tmp_path / "runs/plc_debug/model/model.safetensors").is_file()


def test_finetune_classify_debug(tmp_path):
    out = _run(
        tmp_path, "finetune_classify.py", "--config", str(CONFIGS / "classify/debug.yaml"), "threads=1"
    )
    assert "test accuracy" in out
    assert (tmp_path / "runs/classify_debug/model/model.safetensors").is_file()
    assert (tmp_path / "runs/classify_debug/test.json").is_file()


def test_plc_pool_then_residual_training(tmp_path):
    """recipes/README.md's residual PLC commands: build the window pools, then train on them."""
    audio = _audio_folder(tmp_path / "audio")
    group = f"groups=[{{name: voiced, path: {audio}}}]"
    small = ["n_windows=8", "shard_size=4", "windows_per_visit=2", "augment=0.0"]
    for config, out in (("speech", "pool"), ("dev", "pool_dev")):
        config = str(CONFIGS / f"plc_pool/{config}.yaml")
        _run(tmp_path, "build_plc_pool.py", "--config", config, group, *small, f"out_dir={out}")
    assert sorted(p.name for p in (tmp_path / "pool").glob("*.npz")) == ["shard_0000.npz", "shard_0001.npz"]
    init = REPO / "audiomae/assets/plc_tiny_speech"
    args = [
        "pool=pool",
        "val_pool=pool_dev",
        f"init={init}",
        "export=residual",
        "train.steps=3",
        "train.batch_size=4",
        "train.time_limit_s=null",
        "train.warmup_steps=0",
        "train.eval_every=0",
        "train.ckpt_every=0",
    ]
    out = _run(
        tmp_path, "finetune_plc_residual.py", "--config", str(CONFIGS / "plc_residual/speech.yaml"), *args
    )
    assert "done: 3 steps" in out
    assert (tmp_path / "runs/plc_residual/stage_000/model/model.safetensors").is_file()
    assert (tmp_path / "residual/config.json").is_file()


def test_train_vocoder_debug(tmp_path):
    audio = _audio_folder(tmp_path / "audio")
    args = [f"data.train_dir={audio}", "threads=1", "train.steps=4", "export=vocoder", "train.progress=false"]
    out = _run(tmp_path, "train_vocoder.py", "--config", str(CONFIGS / "vocoder/debug.yaml"), *args)
    assert "done: 4 steps" in out
    assert (tmp_path / "runs/vocoder_debug/model/model.safetensors").is_file()
    from audiomae.checkpoint import read_config

    assert read_config(tmp_path / "vocoder")["extra"] == {"steps": 4}


def test_a_recipe_reports_a_bad_override_in_one_line(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(RECIPES / "train_vocoder.py"),
            "--config",
            str(CONFIGS / "vocoder/debug.yaml"),
            "nope=1",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("train_vocoder.py: error: unknown vocoder settings: ['nope']")
    assert "Traceback" not in proc.stderr
