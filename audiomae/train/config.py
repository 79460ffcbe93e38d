"""Training hyper-parameters shared by every model family (MAE pretraining, vocoder, fine-tunes),
and the YAML run configs (a file plus ``key=value`` overrides) that recipes and the CLI read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audiomae.train.precision import PRECISIONS


@dataclass(frozen=True)
class TrainConfig:
    """One optimisation run.

    ``batch_size`` is per process and per micro-batch: the effective batch of one optimiser
    step is ``batch_size * grad_accum * world_size``. Every ``*_every`` cadence counts
    optimiser steps; 0 disables it. ``precision``: ``"auto"`` trains in bf16 autocast on CUDA
    and on CPUs with AMX and in fp32 elsewhere (:mod:`audiomae.train.precision`; fit() prints
    the choice and why); ``"fp32"`` / ``"bf16"`` force one; ``"fp16"`` (CUDA only) adds loss
    scaling. Weights and optimiser state are float32 in every mode.
    """

    steps: int = 1000
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    grad_clip: float | None = 1.0
    grad_accum: int = 1
    precision: str = "auto"
    ema_decay: float | None = None
    seed: int = 0
    log_every: int = 10
    eval_every: int = 0
    ckpt_every: int = 0
    plot_every: int = 0
    keep_last: int = 3
    num_workers: int = 0
    compile: bool = False
    device: str = "auto"  # "auto": cuda (this rank's GPU) when available, else cpu
    tensorboard: bool = True
    progress: bool = True
    best_metric: str = "loss"  # key of validation_step's dict; lower is better
    # Wall-clock budget in seconds for this invocation (None: none). Training stops after the
    # step that crosses it, with the usual final validation, checkpoint and model; past the
    # warm-up the cosine follows elapsed time where that runs ahead of the step count, so the
    # lr has decayed when time runs out (set ``steps`` high to let time decide).
    time_limit_s: float | None = None

    def __post_init__(self) -> None:
        if self.steps <= 0 or self.batch_size <= 0 or self.grad_accum <= 0:
            raise ValueError("steps, batch_size and grad_accum must be positive")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.warmup_steps < 0 or self.warmup_steps > self.steps:
            raise ValueError(f"warmup_steps {self.warmup_steps} must be in [0, steps={self.steps}]")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got '{self.precision}'")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {self.ema_decay}")
        if self.time_limit_s is not None and self.time_limit_s <= 0:
            raise ValueError(f"time_limit_s must be positive, got {self.time_limit_s}")
        if self.keep_last < 1:
            raise ValueError("keep_last must be at least 1")
        if len(self.betas) != 2:
            raise ValueError(f"betas must be two numbers, got {self.betas}")
        for name in ("log_every", "eval_every", "ckpt_every", "plot_every", "num_workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        # YAML gives lists; keep the frozen config hashable and comparable.
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))


def apply_overrides(cfg: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set dotted ``key=value`` pairs in a nested dict (a copy); values parsed as YAML."""
    import copy

    import yaml

    cfg = copy.deepcopy(cfg)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override '{item}' is not of the form key=value")
        node = cfg
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                # "data=PATH" style shorthands become their section's main key.
                child = node[part] = {"train": child} if part == "data" else {}
            node = child
        node[parts[-1]] = _number_or_value(yaml.safe_load(raw))
    return cfg


def _number_or_value(value: Any) -> Any:
    """YAML 1.1 reads ``5e-4`` (no dot in the mantissa) as a string; a learning rate typed
    that way on the command line means the number."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def load_config(path: str | Path | None, overrides: list[str] = ()) -> dict[str, Any]:
    """The mapping in YAML file ``path`` (empty for None) with ``overrides`` applied."""
    import yaml

    cfg: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        loaded = yaml.safe_load(path.read_text())
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping at the top level, got {type(loaded).__name__}")
        cfg = loaded or {}
    return apply_overrides(cfg, list(overrides))
