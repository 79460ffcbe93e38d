import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from train_toy import ToyData, ToyTask, toy_config

from audiomae.train import CheckpointManager, TrainConfig, fit, warmup_cosine


def _weights(task):
    return {k: v.detach().clone() for k, v in task.model.state_dict().items()}


def test_loss_falls_and_outputs_written(tmp_path):
    data = ToyData()
    val = [data[i] for i in range(8)]
    val = [(torch.stack([v[0] for v in val]), torch.stack([v[1] for v in val]))]
    task = ToyTask()
    res = fit(task, data, val, toy_config(steps=40, tensorboard=True), tmp_path)
    losses = [h["train/loss"] for h in res.history if "train/loss" in h]
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    assert res.best_step is not None and res.best_metric == min(
        h["val/loss"] for h in res.history if "val/loss" in h
    )
    assert (tmp_path / "metrics.jsonl").exists() and any((tmp_path / "tb").iterdir())
    assert task.saved == tmp_path / "model"
    ckpts = sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*"))
    assert ckpts == ["step_000036", "step_000039", "step_000040"]  # keep_last=3
    assert (tmp_path / "checkpoints" / "best" / "state.pt").exists()
    # 64 items / batch 8 = 8 batches per epoch: 40 steps visit epochs 0..4.
    assert data.epochs == [0, 1, 2, 3, 4]


def test_schedule_shape():
    lrs = [warmup_cosine(s, 100, 10, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] == pytest.approx(0.1, abs=1e-3)


@pytest.mark.parametrize("accum", [1, 2])
def test_resume_after_crash_equals_uninterrupted(tmp_path, accum):
    cfg = toy_config(grad_accum=accum, ema_decay=0.9)
    ref = ToyTask()
    fit(ref, ToyData(), None, cfg, tmp_path / "ref")

    crashed = ToyTask(crash_at=7 * accum)  # dies in step 7; last checkpoint is step 6
    with pytest.raises(KeyboardInterrupt):
        fit(crashed, ToyData(), None, cfg, tmp_path / "run")
    assert CheckpointManager(tmp_path / "run").latest().name == "step_000006"

    resumed = ToyTask(seed=99)  # different init: everything must come from the checkpoint
    fit(resumed, ToyData(), None, cfg, tmp_path / "run", resume=True)
    for k, v in _weights(ref).items():
        torch.testing.assert_close(_weights(resumed)[k], v, rtol=0, atol=1e-6)


def test_resume_without_checkpoint_starts_fresh(tmp_path, capsys):
    fit(ToyTask(), ToyData(), None, toy_config(steps=2), tmp_path, resume=True)
    assert "starting from scratch" in capsys.readouterr().out


def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.getcwd()])}
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "train_toy.py"), str(tmp_path / "run")], env=env
    )
    mgr = CheckpointManager(tmp_path / "run")
    # Readiness, not a clock: the child hangs after its step-4 checkpoint until it is killed.
    while proc.poll() is None:
        latest = mgr.latest()
        if latest is not None and latest.name >= "step_000004":
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"

    cfg = toy_config(ckpt_every=2, steps=40)
    resumed = ToyTask(seed=5)
    fit(resumed, ToyData(), None, cfg, tmp_path / "run", resume=True)
    torch.manual_seed(0)
    ref = ToyTask()
    fit(ref, ToyData(), None, cfg, tmp_path / "ref")
    for k, v in _weights(ref).items():
        torch.testing.assert_close(_weights(resumed)[k], v, rtol=0, atol=1e-6)


def test_factory_data_and_config_errors(tmp_path):
    data = ToyData()
    batches = [(data.x[i : i + 8], data.y[i : i + 8]) for i in range(0, 64, 8)]
    res = fit(ToyTask(), lambda epoch: iter(batches), None, toy_config(steps=10, ckpt_every=0), tmp_path)
    assert res.steps == 10
    with pytest.raises(ValueError, match="warmup_steps"):
        TrainConfig(steps=5, warmup_steps=10)
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp8")
    with pytest.raises(ValueError, match="too few"):
        fit(ToyTask(), ToyData(n=4), None, toy_config(), tmp_path / "x")


def test_validation_does_not_depend_on_batching(tmp_path):
    data = ToyData()
    x, y = data.x[:12], data.y[:12]
    results = []
    for sizes in ([12], [8, 4], [3, 3, 3, 3], [11, 1]):
        edges = torch.tensor(sizes).cumsum(0).tolist()
        val = [(x[a:b], y[a:b]) for a, b in zip([0, *edges[:-1]], edges)]
        task = ToyTask()
        res = fit(task, data, val, toy_config(steps=2, eval_every=2), tmp_path / str(len(sizes) + sizes[0]))
        results.append(res.val["loss"])
    assert max(results) - min(results) < 1e-6 * max(results)


def test_time_limit_stops_with_model_checkpoint_and_decayed_lr(tmp_path):
    task = ToyTask(delay_s=0.02)
    cfg = toy_config(steps=100_000, warmup_steps=2, time_limit_s=0.5, ckpt_every=0, log_every=1)
    res = fit(task, ToyData(), None, cfg, tmp_path)
    assert 3 <= res.steps < 100, res.steps  # ~0.5 s of 20 ms steps
    assert task.saved == tmp_path / "model"
    assert CheckpointManager(tmp_path).latest().name == f"step_{res.steps:06d}"
    lrs = [h["train/lr"] for h in res.history if "train/lr" in h]
    # Past the warm-up the cosine follows the clock: near its floor at the end, not at step ~25
    # of 100000.
    assert lrs[-1] < 0.2 * max(lrs)
    with pytest.raises(ValueError, match="time_limit_s"):
        TrainConfig(time_limit_s=0)


# Toy-task trajectory recorded with torch 2 on CPU (fp32): gradient accumulation, clipping, EMA
# and validation together. A change to the loop's order of operations or RNG use moves these.
PINNED_TRAIN_LOSS = [
    0.53795306, 0.63727233, 0.33074778, 0.14399243, 0.3939966, 0.25564055, 0.374254, 0.18922572,
    0.20201764, 0.18062659, 0.41735983, 0.41602029, 0.22322948, 0.088705041, 0.34900095, 0.24676213,
    0.22025751, 0.21997818, 0.24832179, 0.14906011,
]  # fmt: skip
PINNED_VAL_LOSS = [0.34598207, 0.20527689, 0.14204991, 0.12802054, 0.12572911]


def test_loss_trajectory_is_pinned(tmp_path):
    data = ToyData()
    val = [(torch.stack([data[i][0] for i in range(8)]), torch.stack([data[i][1] for i in range(8)]))]
    cfg = toy_config(steps=20, grad_accum=2, ema_decay=0.9, grad_clip=0.5)
    res = fit(ToyTask(), ToyData(), val, cfg, tmp_path)
    train = [h["train/loss"] for h in res.history if "train/loss" in h]
    val_loss = [h["val/loss"] for h in res.history if "val/loss" in h]
    assert train == pytest.approx(PINNED_TRAIN_LOSS, rel=1e-4)
    assert val_loss == pytest.approx(PINNED_VAL_LOSS, rel=1e-4)
    assert res.best_step == 20 and res.best_metric == pytest.approx(PINNED_VAL_LOSS[-1], rel=1e-4)


def _bf16_kernels() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())  # private: guarded
    except (AttributeError, RuntimeError):
        return False


@pytest.mark.skipif(not _bf16_kernels(), reason="this CPU has no bf16 kernels (AVX512-BF16 or AMX)")
def test_bf16_trajectory_tracks_the_pinned_fp32_one(tmp_path):
    # The same run in bf16 autocast: its own kernels (which differ between CPUs), so it is held
    # to the fp32 trajectory by a bound, not pinned.
    data = ToyData()
    val = [(torch.stack([data[i][0] for i in range(8)]), torch.stack([data[i][1] for i in range(8)]))]
    cfg = toy_config(steps=20, grad_accum=2, ema_decay=0.9, grad_clip=0.5, precision="bf16")
    res = fit(ToyTask(), ToyData(), val, cfg, tmp_path)
    train = [h["train/loss"] for h in res.history if "train/loss" in h]
    val_loss = [h["val/loss"] for h in res.history if "val/loss" in h]
    assert train == pytest.approx(PINNED_TRAIN_LOSS, rel=0.1)
    assert val_loss == pytest.approx(PINNED_VAL_LOSS, rel=0.1)
    assert train != pytest.approx(PINNED_TRAIN_LOSS, rel=1e-6)  # bf16 did run
