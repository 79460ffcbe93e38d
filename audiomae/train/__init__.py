"""Training: one loop for every model family, plus schedules, checkpoints and distributed helpers."""

from audiomae.train.config import TrainConfig
from audiomae.train.loop import EMA, TrainResult, fit, to_device
from audiomae.train.schedule import WarmupCosine, warmup_cosine
from audiomae.train.state import CheckpointManager
from audiomae.train.task import Task, default_param_groups

__all__ = [
    "TrainConfig",
    "Task",
    "fit",
    "TrainResult",
    "EMA",
    "to_device",
    "WarmupCosine",
    "warmup_cosine",
    "CheckpointManager",
    "default_param_groups",
]
