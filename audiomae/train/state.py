"""Training-state checkpoints: everything a killed run needs to continue bit-for-bit.

Layout under ``<out_dir>/checkpoints``::

    step_000100/model.safetensors   weights (safetensors)
    step_000100/state.pt            optimiser, scaler, EMA, RNG states, data position
    latest.json                     {"step": 100, "dir": "step_000100"}, written last
    best/                           copy of the best step by validation metric

``state.pt`` is written with ``torch.save`` and read with ``torch.load(weights_only=True)``:
these are the run's own files, and ``weights_only`` still refuses anything that could run
code. A checkpoint directory is assembled under a temporary name, every file fsynced, then
renamed into place, and ``latest.json`` only points at complete directories, so a SIGKILL at
any moment leaves the previous checkpoint usable.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiomae.audio import atomic_write

WEIGHTS = "model.safetensors"
STATE = "state.pt"
LATEST = "latest.json"
BEST = "best"


def capture_rng() -> dict[str, Any]:
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": _py_state_to_list(random.getstate()),
        "numpy": {
            "key": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(_py_state_from_list(state["python"]))
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _py_state_to_list(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _py_state_from_list(state: list) -> tuple:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_dir_atomically(final: Path, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / WEIGHTS))
    torch.save(state, tmp / STATE)
    for name in (WEIGHTS, STATE):
        with open(tmp / name, "rb") as fh:
            os.fsync(fh.fileno())
    _fsync_dir(tmp)
    if final.exists():
        # Rename the old copy away first: os.replace cannot overwrite a non-empty directory.
        old = final.parent / f".old-{final.name}-{os.getpid()}"
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)
    _fsync_dir(final.parent)


class CheckpointManager:
    """Saves and finds training states in ``<out_dir>/checkpoints`` (call on rank 0 only)."""

    def __init__(self, out_dir: str | os.PathLike, keep_last: int = 3) -> None:
        self.root = Path(out_dir) / "checkpoints"
        self.keep_last = keep_last

    def step_dir(self, step: int) -> Path:
        return self.root / f"step_{step:06d}"

    def save(
        self, step: int, tensors: dict[str, torch.Tensor], state: dict[str, Any], best: bool = False
    ) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.step_dir(step)
        _write_dir_atomically(final, tensors, state)
        text = json.dumps({"step": step, "dir": final.name})
        atomic_write(self.root / LATEST, lambda tmp: Path(tmp).write_text(text))
        if best:
            _write_dir_atomically(self.root / BEST, tensors, state)
        self._prune()
        return final

    def _prune(self) -> None:
        steps = sorted(self.root.glob("step_*"))
        for old in steps[: max(0, len(steps) - self.keep_last)]:
            shutil.rmtree(old, ignore_errors=True)
        for tmp in self.root.glob(".tmp-*"):
            # Leftovers of a killed save by an earlier process.
            if not tmp.name.endswith(f"-{os.getpid()}"):
                shutil.rmtree(tmp, ignore_errors=True)

    def latest(self) -> Path | None:
        """The newest complete checkpoint directory, or None when there is none."""
        pointer = self.root / LATEST
        if pointer.exists():
            try:
                path = self.root / json.loads(pointer.read_text())["dir"]
            except (json.JSONDecodeError, KeyError) as exc:
                raise ValueError(f"{pointer}: corrupt checkpoint pointer ({exc})") from exc
            if (path / WEIGHTS).exists() and (path / STATE).exists():
                return path
        complete = [
            p for p in sorted(self.root.glob("step_*")) if (p / STATE).exists() and (p / WEIGHTS).exists()
        ]
        return complete[-1] if complete else None

    @staticmethod
    def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[dict, dict]:
        """(tensors, state) of one checkpoint directory."""
        from safetensors.torch import load_file

        path = Path(path)
        for name in (WEIGHTS, STATE):
            if not (path / name).exists():
                raise FileNotFoundError(f"{path}: incomplete training checkpoint (missing {name})")
        tensors = load_file(str(path / WEIGHTS), device=str(map_location))
        state = torch.load(path / STATE, map_location=map_location, weights_only=True)
        return tensors, state
