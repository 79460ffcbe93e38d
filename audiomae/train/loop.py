"""The training loop every model family shares: ``fit(task, data, val_batches, cfg, out_dir)``."""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from audiomae.train import distributed as dist_utils
from audiomae.train.batches import BatchStream
from audiomae.train.config import TrainConfig
from audiomae.train.precision import autocast, resolve_precision
from audiomae.train.schedule import WarmupCosine
from audiomae.train.state import CheckpointManager, capture_rng, restore_rng
from audiomae.train.task import Task, default_param_groups


@dataclass(frozen=True)
class TrainResult:
    """``steps``: optimiser steps done (fewer than asked when ``time_limit_s`` stopped the run).
    ``train_loss``: mean loss over the last logging window. ``val``: last validation metrics.
    ``history``: one dict per logged step (train) and per validation (keys prefixed ``val/``)."""

    steps: int
    train_loss: float
    val: dict[str, float]
    best_metric: float | None
    best_step: int | None
    out_dir: Path
    elapsed_s: float
    history: list[dict[str, float]] = field(default_factory=list)


class EMA:
    """Exponential moving average of a model's floating-point state (kept in float32)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {
            k: v.detach().clone().float() for k, v in model.state_dict().items() if v.dtype.is_floating_point
        }

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for k, v in model.state_dict().items():
            if k in self.shadow:
                self.shadow[k].lerp_(v.detach().float(), 1.0 - self.decay)

    @contextlib.contextmanager
    def applied(self, model: nn.Module):
        """Temporarily load the averaged weights into ``model`` (restored exactly afterwards)."""
        state = model.state_dict()
        backup = {k: state[k].detach().clone() for k in self.shadow}
        with torch.no_grad():
            for k, v in self.shadow.items():
                state[k].copy_(v)
        try:
            yield model
        finally:
            with torch.no_grad():
                for k, v in backup.items():
                    state[k].copy_(v)


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor inside nested tuples/lists/dicts to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [to_device(v, device) for v in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    return batch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _schedule_step(step: int, cfg: TrainConfig, elapsed_s: float) -> int:
    """The step the lr schedule is read at: ``step``, or under a time limit (past the warm-up)
    the point of the cosine that the elapsed share of the time budget has reached, if later."""
    if cfg.time_limit_s is None or step < cfg.warmup_steps:
        return step
    share = min(1.0, elapsed_s / cfg.time_limit_s)
    by_time = cfg.warmup_steps + int(share * (cfg.steps - cfg.warmup_steps))
    return min(max(step, by_time), cfg.steps - 1)


def _resolve_device(cfg: TrainConfig, info: dist_utils.DistInfo) -> torch.device:
    if cfg.device == "auto":
        return dist_utils.default_device(info)
    return torch.device(cfg.device)


def _batch_len(batch: Any) -> int:
    """Items in a batch: the leading size of its first tensor (1 when it holds none)."""
    if torch.is_tensor(batch):
        return int(batch.shape[0]) if batch.dim() else 1
    if isinstance(batch, dict):
        batch = list(batch.values())
    if isinstance(batch, (tuple, list)):
        for item in batch:
            if torch.is_tensor(item) or isinstance(item, (tuple, list, dict)):
                return _batch_len(item)
    return 1


@torch.no_grad()
def validation_metrics(task: Any, batches: Any, device: torch.device | str = "cpu") -> dict[str, float]:
    """``task.validation_step`` over ``batches``, each metric averaged over items (batch means
    weighted by batch size, so the figure does not depend on how the items are batched)."""
    sums: dict[str, float] = {}
    weights: dict[str, float] = {}
    for b in batches:
        n = _batch_len(b)
        for k, v in task.validation_step(to_device(b, torch.device(device))).items():
            sums[k] = sums.get(k, 0.0) + n * float(v)
            weights[k] = weights.get(k, 0.0) + n
    return {k: v / weights[k] for k, v in sums.items()}


@dataclass
class _Progress:
    """Where a run stands: optimiser steps done, the next batch's place in the data
    (``epoch``, ``index``) and the best validation figure so far."""

    step: int = 0
    epoch: int = 0
    index: int = 0
    best: float | None = None
    best_step: int | None = None


@dataclass
class _Window:
    """Sums over the optimiser steps since the last training log record."""

    start: float = field(default_factory=time.perf_counter)
    steps: int = 0
    loss: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class _StepResult:
    loss: float
    lr: float
    grad_norm: float


def _due(every: int, done: int) -> bool:
    return bool(every) and done % every == 0


class _Run:
    """One call of :func:`fit`: what it trains with, and the named steps the loop runs."""

    def __init__(
        self,
        task: Task,
        train_data: Any,
        val_batches: Iterable[Any] | None,
        cfg: TrainConfig,
        out_dir: str | os.PathLike,
    ) -> None:
        self.task, self.train_data, self.cfg, self.out_dir = task, train_data, cfg, Path(out_dir)
        self.info = dist_utils.info()
        self.main = self.info.rank == 0
        self.device = _resolve_device(cfg, self.info)
        self.precision, why = resolve_precision(cfg.precision, self.device)
        if self.main:
            print(f"precision {self.precision} on {self.device.type}: {why}", flush=True)
        self.val_batches = list(val_batches) if val_batches is not None else []
        self.model = task.model.to(self.device)
        if cfg.compile:
            self.model.compile()  # in place, so state_dict keys and task.model stay unchanged
        make_groups = getattr(task, "param_groups", None)
        groups = (
            make_groups(cfg.lr, cfg.weight_decay)
            if make_groups
            else default_param_groups(self.model, cfg.weight_decay)
        )
        self.params = [p for g in groups for p in g["params"]]
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
        self.schedule = WarmupCosine(self.optimizer, cfg.lr, cfg.steps, cfg.warmup_steps, cfg.min_lr_ratio)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        self.ema = EMA(self.model, cfg.ema_decay) if cfg.ema_decay else None
        self.ckpt = CheckpointManager(self.out_dir, keep_last=cfg.keep_last)
        self.history: list[dict[str, float]] = []
        self.last_loss, self.last_val = float("nan"), {}

    # ---- resume ---------------------------------------------------------------------------
    def resume(self, resume: bool) -> _Progress:
        """Restore the newest checkpoint when ``resume`` and one exists, else seed a fresh run."""
        if resume:
            self.ckpt.clean_leftovers()  # what a killed save of the run being resumed left behind
        latest = self.ckpt.latest() if resume else None
        if latest is None:
            seed_everything(self.cfg.seed + 1000 * self.info.rank)
            dist_utils.broadcast_module(self.model)
            if resume and self.main:
                print(f"no checkpoint in {self.ckpt.root}; starting from scratch")
            return _Progress()
        tensors, state = CheckpointManager.load(latest, map_location=self.device)
        missing, unexpected = self.model.load_state_dict(tensors, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{latest}: weights do not match the model "
                f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
            )
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.shadow = {k: v.to(self.device) for k, v in state["ema"].items()}
        pos = _Progress(
            step=int(state["step"]),
            epoch=int(state["data"]["epoch"]),
            index=int(state["data"]["index"]),
            best=state.get("best"),
            best_step=state.get("best_step"),
        )
        if self.info.rank == 0:
            restore_rng(state["rng"])
        else:
            # Only rank 0's RNG is saved; other ranks get a fresh deterministic stream.
            seed_everything(self.cfg.seed + 1000 * self.info.rank + pos.step)
        return pos

    def open(self, pos: _Progress) -> Iterator[tuple[int, int, Any]]:
        """The batch stream from ``pos``, plus the run's outputs (tensorboard, progress bar)."""
        batches = BatchStream(self.train_data, self.cfg, getattr(self.task, "collate", None), self.info)
        stream = batches.stream(pos.epoch, pos.index)
        self.per_epoch: int | None = len(batches.epoch_batches(0)) if batches.is_dataset else None
        self.writer = None
        if self.main and self.cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.out_dir / "tb"))
        if self.main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self.plot_fn = getattr(self.task, "plot", None)
        self.plot_batch = self.val_batches[0] if self.val_batches else None
        self.items_per_step = self.cfg.batch_size * self.cfg.grad_accum * self.info.world_size
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=self.cfg.steps,
            initial=pos.step,
            disable=not (self.main and self.cfg.progress),
            dynamic_ncols=True,
        )
        return stream

    # ---- step -----------------------------------------------------------------------------
    def step(
        self, step: int, stream: Iterator, pos: _Progress, window: _Window, elapsed_s: float
    ) -> _StepResult:
        """One optimiser step over ``grad_accum`` micro-batches; advances ``pos`` and ``window``."""
        cfg = self.cfg
        lr = self.schedule.apply(_schedule_step(step, cfg, elapsed_s))
        self.optimizer.zero_grad(set_to_none=True)
        step_loss = 0.0
        for micro in range(cfg.grad_accum):
            pos.epoch, i, batch = next(stream)
            pos.index = i + 1
            if self.per_epoch is not None and pos.index >= self.per_epoch:
                pos.epoch, pos.index = pos.epoch + 1, 0
            if self.plot_batch is None:
                self.plot_batch = batch
            step_loss += self._backward(batch, step, step * cfg.grad_accum + micro, window)
        grad_norm = self._apply_gradients()
        pos.step = step + 1
        window.steps += 1
        window.loss += step_loss
        self.bar.update(1)
        return _StepResult(loss=step_loss, lr=lr, grad_norm=grad_norm)

    def _backward(self, batch: Any, step: int, micro_step: int, window: _Window) -> float:
        """Loss and gradients of one micro-batch; returns its share of the step's loss."""
        batch = to_device(batch, self.device)
        with autocast(self.precision, self.device):
            loss, metrics = self.task.training_step(batch, micro_step)
        if not torch.isfinite(loss.detach()):
            raise FloatingPointError(f"non-finite loss {float(loss.detach())} at step {step}")
        self.scaler.scale(loss / self.cfg.grad_accum).backward()
        for k, v in metrics.items():
            window.metrics[k] = window.metrics.get(k, 0.0) + float(v) / self.cfg.grad_accum
        return float(loss.detach()) / self.cfg.grad_accum

    def _apply_gradients(self) -> float:
        """All-reduce, unscale, clip and apply the gradients; returns the gradient norm."""
        dist_utils.average_gradients(self.params)
        self.scaler.unscale_(self.optimizer)
        max_norm = self.cfg.grad_clip if self.cfg.grad_clip else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, max_norm))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.model)
        return grad_norm

    # ---- log ------------------------------------------------------------------------------
    def record(self, record: dict[str, float]) -> None:
        """Append to the history; rank 0 also writes metrics.jsonl and tensorboard."""
        self.history.append(record)
        if not self.main:
            return
        with open(self.out_dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for k, v in record.items():
                if k != "step":
                    self.writer.add_scalar(k, v, int(record["step"]))

    def log(self, done: int, result: _StepResult, window: _Window) -> _Window:
        """Record the window's mean training figures; returns the next, empty window."""
        now = time.perf_counter()
        self.last_loss = window.loss / window.steps
        record = {
            "step": done,
            "train/loss": self.last_loss,
            "train/lr": result.lr,
            "train/grad_norm": result.grad_norm,
            "train/items_per_s": self.items_per_step * window.steps / max(now - window.start, 1e-9),
            **{f"train/{k}": v / window.steps for k, v in window.metrics.items()},
        }
        self.record(record)
        self.bar.set_postfix(
            loss=f"{self.last_loss:.4f}", lr=f"{result.lr:.2e}", items_s=f"{record['train/items_per_s']:.1f}"
        )
        return _Window(start=now)

    # ---- validate -------------------------------------------------------------------------
    def averaged(self) -> contextlib.AbstractContextManager:
        """The EMA weights loaded into the model for the ``with`` block (no-op without EMA)."""
        return self.ema.applied(self.model) if self.ema is not None else contextlib.nullcontext()

    def validate(self, pos: _Progress) -> bool:
        """Validation metrics (EMA weights, eval mode), recorded; True when a new best."""
        self.model.eval()
        with autocast(self.precision, self.device), self.averaged():
            self.last_val = validation_metrics(self.task, self.val_batches, self.device)
        self.model.train()
        self.record({"step": pos.step, **{f"val/{k}": v for k, v in self.last_val.items()}})
        metric = self.last_val.get(self.cfg.best_metric)
        if metric is not None and (pos.best is None or metric < pos.best):
            pos.best, pos.best_step = metric, pos.step
            return True
        return False

    def plot(self, done: int) -> None:
        """The task's picture of one batch, when it draws one."""
        if self.plot_fn is None or self.plot_batch is None:
            return
        self.model.eval()
        with torch.no_grad(), self.averaged():
            path = self.out_dir / "plots" / f"step_{done:06d}.png"
            self.plot_fn(to_device(self.plot_batch, self.device), path)
        self.model.train()

    # ---- checkpoint -----------------------------------------------------------------------
    def checkpoint(self, pos: _Progress, is_best: bool) -> None:
        ema = self.ema.shadow if self.ema is not None else None
        state = {
            "step": pos.step,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": ema,
            "rng": capture_rng(),
            "data": {"epoch": pos.epoch, "index": pos.index},
            "best": pos.best,
            "best_step": pos.best_step,
            "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.cfg).items()},
        }
        self.ckpt.save(pos.step, self.model.state_dict(), state, best=is_best)

    def finish(self, pos: _Progress, t0: float) -> TrainResult:
        """Export the (averaged) model from rank 0 and close the outputs."""
        self.bar.close()
        if self.main:
            with self.averaged():
                self.task.save_pretrained(self.out_dir / "model")
        if self.writer is not None:
            self.writer.close()
        dist_utils.barrier()
        return TrainResult(
            steps=pos.step,
            train_loss=self.last_loss,
            val=self.last_val,
            best_metric=pos.best,
            best_step=pos.best_step,
            out_dir=self.out_dir,
            elapsed_s=time.perf_counter() - t0,
            history=self.history,
        )


def fit(
    task: Task,
    train_data: Dataset | Callable[[int], Iterable[Any]] | Iterable[Any],
    val_batches: Iterable[Any] | None,
    cfg: TrainConfig,
    out_dir: str | os.PathLike,
    resume: bool = False,
) -> TrainResult:
    """Train ``task.model`` for ``cfg.steps`` optimiser steps.

    ``train_data``: a map-style Dataset (exact resume; batched with ``task.collate`` or
    ``default_collate``), or ``factory(epoch) -> iterable of batches`` (resume replays the
    epoch up to the saved position, exact when the factory is deterministic in ``epoch``).
    ``val_batches``: a fixed, re-iterable collection of batches (e.g. a list).
    Writes ``out_dir/{checkpoints,tb,plots,model,metrics.jsonl}`` from rank 0 only.
    ``resume=True`` continues from the newest checkpoint in ``out_dir`` if there is one.
    """
    run = _Run(task, train_data, val_batches, cfg, out_dir)
    pos = run.resume(resume)
    stream = run.open(pos)
    t0 = time.perf_counter()
    window = _Window()
    run.model.train()
    for step in range(pos.step, cfg.steps):
        result = run.step(step, stream, pos, window, time.perf_counter() - t0)
        out_of_time = cfg.time_limit_s is not None and time.perf_counter() - t0 >= cfg.time_limit_s
        last = pos.step == cfg.steps or out_of_time
        if _due(cfg.log_every, pos.step) or last:
            window = run.log(pos.step, result, window)
        is_best = False
        if run.main and run.val_batches and (_due(cfg.eval_every, pos.step) or last):
            is_best = run.validate(pos)
        if run.main and _due(cfg.plot_every, pos.step):
            run.plot(pos.step)
        if run.main and (_due(cfg.ckpt_every, pos.step) or last):
            run.checkpoint(pos, is_best)
        if out_of_time:
            if run.main:
                print(f"time limit of {cfg.time_limit_s:g} s reached after {pos.step} steps")
            break
    return run.finish(pos, t0)
