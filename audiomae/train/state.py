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
any moment leaves the previous checkpoint usable. The next run cleans what such a kill leaves
(temporary directories and files, a ``best/`` renamed aside), and a checkpoint whose files do
not load (a corrupt ``state.pt``) is named on stderr and passed over for the one before it.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import sys
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


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


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
        self.clean_leftovers()

    def clean_leftovers(self) -> None:
        """Remove what a killed save by an earlier process left behind: ``.tmp-*`` directories,
        temporary ``latest.json`` files, and ``.old-*`` copies; an ``.old-NAME-*`` whose ``NAME``
        is missing (the kill came between the two renames that replace ``best/``) is the last
        complete copy and is renamed back instead."""
        if not self.root.is_dir():
            return
        mine = f"-{os.getpid()}"
        for entry in sorted(self.root.iterdir()):
            name = entry.name
            try:
                if name.startswith(".old-") and not name.endswith(mine):
                    target = self.root / name[len(".old-") :].rsplit("-", 1)[0]
                    if not target.exists():
                        os.replace(entry, target)
                    else:
                        shutil.rmtree(entry, ignore_errors=True)
                elif name.startswith(".tmp-") and not name.endswith(mine):
                    shutil.rmtree(entry, ignore_errors=True)
                elif name.startswith(f".{LATEST}."):
                    entry.unlink()
            except OSError:  # another process (a DDP rank) got there first
                pass

    def latest(self) -> Path | None:
        """The newest checkpoint directory whose files load, or None when there is none.

        A newer checkpoint that does not load (say a corrupt ``state.pt``) is named on stderr
        and passed over for the one before it; when none loads, ValueError names the newest.
        Only reads: leftovers of interrupted saves are the writer's to clean
        (:meth:`clean_leftovers`), as another process may be saving right now."""
        candidates = [
            p
            for p in sorted(self.root.glob("step_*"), reverse=True)
            if (p / STATE).exists() or (p / WEIGHTS).exists()
        ]
        pointer = self.root / LATEST
        if pointer.exists():
            try:
                named = self.root / json.loads(pointer.read_text())["dir"]
                if named in candidates:  # the pointer's choice first, as it is the newest save
                    candidates.remove(named)
                    candidates.insert(0, named)
            except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError, OSError) as exc:
                print(
                    f"{pointer}: corrupt checkpoint pointer ({exc}); looking for checkpoints", file=sys.stderr
                )
        first_error = None
        for path in candidates:
            try:
                self.load(path)
            except (ValueError, FileNotFoundError) as exc:
                first_error = first_error or exc
                print(f"{exc}; trying an earlier checkpoint", file=sys.stderr)
                continue
            return path
        if first_error is not None:
            raise ValueError(f"no training checkpoint in {self.root} loads (newest: {first_error})")
        return None

    @staticmethod
    def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[dict, dict]:
        """(tensors, state) of one checkpoint directory; ValueError naming the file that does not load."""
        from safetensors.torch import load_file

        path = Path(path)
        for name in (WEIGHTS, STATE):
            if not (path / name).is_file():
                raise FileNotFoundError(f"{path}: incomplete training checkpoint (missing {name})")
        try:
            tensors = load_file(str(path / WEIGHTS), device=str(map_location))
        except Exception as exc:  # safetensors raises its own error types for a damaged file
            raise ValueError(f"{path / WEIGHTS}: corrupt weights ({_first_line(exc)})") from exc
        try:
            state = torch.load(path / STATE, map_location=map_location, weights_only=True)
        except Exception as exc:  # pickle, zip and torch errors alike mean a damaged file
            raise ValueError(f"{path / STATE}: corrupt training state ({_first_line(exc)})") from exc
        if not isinstance(state, dict) or not {"step", "optimizer", "data"} <= set(state):
            raise ValueError(f"{path / STATE}: not a training state (no step, optimizer and data)")
        return tensors, state


# ---- runs that accumulate across invocations ------------------------------------------------
def stages(out_dir: str | os.PathLike) -> list[Path]:
    """A staged run's stage directories (``stage_000``, ``stage_001``, ...), oldest first."""
    root = Path(out_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and re.fullmatch(r"stage_\d{3}", p.name)]
    return sorted(found)


def starting_point(out_dir: str | os.PathLike, init: str | None, resume: bool) -> tuple[Path, str | None]:
    """(stage directory to train in, what to start from) for a run that accumulates.

    With ``resume`` the newest stage continues from its own checkpoint (``"resume"``); otherwise
    a new stage starts from the newest finished stage's ``model/`` and, in a fresh run
    directory, from ``init`` (a saved model, e.g. the bundled one; None: from scratch)."""
    done = stages(out_dir)
    if resume and done:
        return done[-1], "resume"
    finished = [p for p in done if (p / "model" / "config.json").is_file()]
    start = str(finished[-1] / "model") if finished else init
    return Path(out_dir) / f"stage_{len(done):03d}", start
