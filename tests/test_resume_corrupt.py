"""Resume from damaged training checkpoints: a corrupt state is named and passed over for the
checkpoint before it, and what an interrupted save leaves behind is cleaned on the next start."""

import os

import pytest
import torch
from train_toy import ToyData, ToyTask, toy_config

from audiomae.train import CheckpointManager, fit


def _weights(task):
    return {k: v.detach().clone() for k, v in task.model.state_dict().items()}


def _save(manager, step, best=False):
    state = {"step": step, "optimizer": {}, "data": {"epoch": 0, "index": step}}
    return manager.save(step, {"w": torch.full((2,), float(step))}, state, best=best)


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
        lambda p: p.write_bytes(b"\x80\x04not a zip"),
        lambda p: p.write_bytes(b""),
        lambda p: torch.save([1, 2, 3], p),  # loads, but is no training state
    ],
    ids=["truncated", "garbage", "empty", "not-a-state"],
)
def test_corrupt_newest_state_falls_back_to_the_previous(tmp_path, capsys, damage):
    m = CheckpointManager(tmp_path)
    _save(m, 1), _save(m, 2)
    damage(m.step_dir(2) / "state.pt")
    assert m.latest() == m.step_dir(1)
    err = capsys.readouterr().err
    assert str(m.step_dir(2) / "state.pt") in err and "trying an earlier checkpoint" in err


def test_no_intact_checkpoint_names_the_file(tmp_path):
    m = CheckpointManager(tmp_path)
    _save(m, 1)
    (m.step_dir(1) / "state.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="state.pt: corrupt training state"):
        m.latest()
    (m.step_dir(1) / "model.safetensors").write_bytes(b"junk")
    with pytest.raises(ValueError, match="model.safetensors: corrupt weights"):
        CheckpointManager.load(m.step_dir(1))


def test_corrupt_pointer_falls_back_to_scanning(tmp_path, capsys):
    m = CheckpointManager(tmp_path)
    _save(m, 1), _save(m, 2)
    (m.root / "latest.json").write_text("{oops")
    assert m.latest() == m.step_dir(2)
    assert "corrupt checkpoint pointer" in capsys.readouterr().err


def test_leftovers_of_interrupted_saves_are_cleaned(tmp_path):
    m = CheckpointManager(tmp_path)
    _save(m, 1, best=True)
    root = m.root
    # Killed between the two renames that replace best/: the old copy is all there is.
    os.replace(root / "best", root / ".old-best-99999")
    (root / ".tmp-best-99999").mkdir()
    (root / ".tmp-step_000002-99999").mkdir()
    (root / ".latest.json.abc123.json").write_text("{")
    # Killed after the renames but before the old copy was removed.
    _save(m, 2)
    (root / ".old-step_000002-99998").mkdir()
    assert m.latest() == m.step_dir(2)  # reading leaves everything in place
    assert (root / ".old-step_000002-99998").is_dir()
    m.clean_leftovers()
    names = sorted(p.name for p in root.iterdir())
    assert names == ["best", "latest.json", "step_000001", "step_000002"]
    assert CheckpointManager.load(root / "best")[1]["step"] == 1


def test_fit_resumes_from_the_checkpoint_before_a_corrupt_one(tmp_path, capsys):
    cfg = toy_config(ema_decay=0.9)
    ref = ToyTask()
    fit(ref, ToyData(), None, cfg, tmp_path / "ref")

    crashed = ToyTask(crash_at=7)  # dies in step 7; checkpoints at steps 3 and 6
    with pytest.raises(KeyboardInterrupt):
        fit(crashed, ToyData(), None, cfg, tmp_path / "run")
    m = CheckpointManager(tmp_path / "run")
    newest = m.latest()
    (newest / "state.pt").write_bytes(b"corrupt")
    resumed = ToyTask(seed=99)
    fit(resumed, ToyData(), None, cfg, tmp_path / "run", resume=True)
    assert str(newest / "state.pt") in capsys.readouterr().err
    for k, v in _weights(ref).items():
        torch.testing.assert_close(_weights(resumed)[k], v, rtol=0, atol=1e-6)
