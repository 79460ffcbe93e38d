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
from torch.utils.data import DataLoader, Dataset, DistributedSampler, default_collate

from audiomae.train import distributed as dist_utils
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


class _BatchStream:
    """Endless (epoch, index, batch) stream whose order is a pure function of (seed, epoch).

    A map-style dataset is sharded per rank by a DistributedSampler (seeded, drop_last), so
    resuming at (epoch, index) rebuilds that epoch's order and skips what was consumed. A
    callable ``factory(epoch) -> iterable`` is re-created per epoch and fast-forwarded."""

    def __init__(self, data, cfg: TrainConfig, collate: Callable | None, info: dist_utils.DistInfo) -> None:
        self.data = data
        self.cfg = cfg
        self.collate = collate or default_collate
        self.info = info
        self.is_dataset = isinstance(data, Dataset) and hasattr(data, "__len__")
        if self.is_dataset:
            n = len(data)
            per_rank = n // info.world_size
            if per_rank < cfg.batch_size:
                raise ValueError(
                    f"training set has {n} items: too few for batch_size {cfg.batch_size} "
                    f"on {info.world_size} process(es)"
                )
        elif not callable(data) and not isinstance(data, Iterable):
            raise TypeError("training data must be a Dataset, a callable factory(epoch) or an iterable")

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        sampler = DistributedSampler(
            self.data,
            num_replicas=self.info.world_size,
            rank=self.info.rank,
            shuffle=True,
            seed=self.cfg.seed,
            drop_last=True,
        )
        sampler.set_epoch(epoch)
        order = list(sampler)
        b = self.cfg.batch_size
        return [order[i : i + b] for i in range(0, len(order) - b + 1, b)]

    def _epoch_iter(self, epoch: int, skip: int) -> Iterator[Any]:
        if self.is_dataset:
            if hasattr(self.data, "set_epoch"):
                self.data.set_epoch(epoch)
            loader = DataLoader(
                self.data,
                batch_sampler=self.epoch_batches(epoch)[skip:],
                num_workers=self.cfg.num_workers,
                collate_fn=self.collate,
                # A private generator: DataLoader otherwise draws its worker seed from the global
                # RNG, which would make the training randomness depend on where an epoch began.
                generator=torch.Generator().manual_seed(self.cfg.seed * 7919 + epoch),
                pin_memory=torch.cuda.is_available(),
            )
            yield from loader
            return
        source = self.data(epoch) if callable(self.data) else self.data
        for i, batch in enumerate(source):
            if i >= skip:
                yield batch

    def stream(self, epoch: int, index: int) -> Iterator[tuple[int, int, Any]]:
        while True:
            produced = False
            for i, batch in enumerate(self._epoch_iter(epoch, index), start=index):
                produced = True
                yield epoch, i, batch
            if not produced and index == 0:
                raise ValueError(f"training data produced no batches in epoch {epoch}")
            epoch, index = epoch + 1, 0


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
    out_dir = Path(out_dir)
    info = dist_utils.info()
    main = info.rank == 0
    device = _resolve_device(cfg, info)
    precision, why = resolve_precision(cfg.precision, device)
    if main:
        print(f"precision {precision} on {device.type}: {why}", flush=True)
    val_batches = list(val_batches) if val_batches is not None else []

    model = task.model.to(device)
    if cfg.compile:
        model.compile()  # in place, so state_dict keys and task.model stay unchanged
    make_groups = getattr(task, "param_groups", None)
    groups = (
        make_groups(cfg.lr, cfg.weight_decay)
        if make_groups
        else default_param_groups(model, cfg.weight_decay)
    )
    params = [p for g in groups for p in g["params"]]
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    schedule = WarmupCosine(optimizer, cfg.lr, cfg.steps, cfg.warmup_steps, cfg.min_lr_ratio)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    ema = EMA(model, cfg.ema_decay) if cfg.ema_decay else None
    ckpt = CheckpointManager(out_dir, keep_last=cfg.keep_last)

    start_step, epoch, index = 0, 0, 0
    best, best_step = None, None
    if resume:
        ckpt.clean_leftovers()  # what a killed save of the run being resumed left behind
    latest = ckpt.latest() if resume else None
    if latest is not None:
        tensors, state = CheckpointManager.load(latest, map_location=device)
        missing, unexpected = model.load_state_dict(tensors, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{latest}: weights do not match the model "
                f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
            )
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        if ema is not None and state.get("ema") is not None:
            ema.shadow = {k: v.to(device) for k, v in state["ema"].items()}
        start_step = int(state["step"])
        epoch, index = int(state["data"]["epoch"]), int(state["data"]["index"])
        best, best_step = state.get("best"), state.get("best_step")
        if info.rank == 0:
            restore_rng(state["rng"])
        else:
            # Only rank 0's RNG is saved; other ranks get a fresh deterministic stream.
            seed_everything(cfg.seed + 1000 * info.rank + start_step)
    else:
        seed_everything(cfg.seed + 1000 * info.rank)
        dist_utils.broadcast_module(model)
    if resume and latest is None and main:
        print(f"no checkpoint in {ckpt.root}; starting from scratch")

    batches = _BatchStream(train_data, cfg, getattr(task, "collate", None), info)
    stream = batches.stream(epoch, index)
    per_batches: int | None = len(batches.epoch_batches(0)) if batches.is_dataset else None

    writer = None
    if main and cfg.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out_dir / "tb"))
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
    history: list[dict[str, float]] = []
    plot_fn = getattr(task, "plot", None)
    plot_batch = val_batches[0] if val_batches else None
    items_per_step = cfg.batch_size * cfg.grad_accum * info.world_size

    def log(record: dict[str, float]) -> None:
        history.append(record)
        if not main:
            return
        with open(out_dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if writer is not None:
            for k, v in record.items():
                if k != "step":
                    writer.add_scalar(k, v, int(record["step"]))

    def averaged():
        return ema.applied(model) if ema is not None else contextlib.nullcontext()

    def validate() -> dict[str, float]:
        model.eval()
        with autocast(precision, device), averaged():
            out = validation_metrics(task, val_batches, device)
        model.train()
        return out

    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.steps, initial=start_step, disable=not (main and cfg.progress), dynamic_ncols=True)
    t0 = time.perf_counter()
    window_t, window_steps, window_loss, window_metrics = time.perf_counter(), 0, 0.0, {}
    last_loss, last_val = float("nan"), {}
    model.train()
    done = start_step
    for step in range(start_step, cfg.steps):
        elapsed = time.perf_counter() - t0
        lr = schedule.apply(_schedule_step(step, cfg, elapsed))
        optimizer.zero_grad(set_to_none=True)
        step_loss = 0.0
        for micro in range(cfg.grad_accum):
            epoch, i, batch = next(stream)
            index = i + 1
            if per_batches is not None and index >= per_batches:
                epoch, index = epoch + 1, 0
            if plot_batch is None:
                plot_batch = batch
            batch = to_device(batch, device)
            with autocast(precision, device):
                loss, metrics = task.training_step(batch, step * cfg.grad_accum + micro)
            if not torch.isfinite(loss.detach()):
                raise FloatingPointError(f"non-finite loss {float(loss.detach())} at step {step}")
            scaler.scale(loss / cfg.grad_accum).backward()
            step_loss += float(loss.detach()) / cfg.grad_accum
            for k, v in metrics.items():
                window_metrics[k] = window_metrics.get(k, 0.0) + float(v) / cfg.grad_accum
        dist_utils.average_gradients(params)
        scaler.unscale_(optimizer)
        max_norm = cfg.grad_clip if cfg.grad_clip else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        scaler.step(optimizer)
        scaler.update()
        if ema is not None:
            ema.update(model)
        done = step + 1
        out_of_time = cfg.time_limit_s is not None and time.perf_counter() - t0 >= cfg.time_limit_s
        last = done == cfg.steps or out_of_time
        window_steps += 1
        window_loss += step_loss
        bar.update(1)

        if (cfg.log_every and done % cfg.log_every == 0) or last:
            now = time.perf_counter()
            last_loss = window_loss / window_steps
            record = {
                "step": done,
                "train/loss": last_loss,
                "train/lr": lr,
                "train/grad_norm": grad_norm,
                "train/items_per_s": items_per_step * window_steps / max(now - window_t, 1e-9),
                **{f"train/{k}": v / window_steps for k, v in window_metrics.items()},
            }
            log(record)
            bar.set_postfix(
                loss=f"{last_loss:.4f}", lr=f"{lr:.2e}", items_s=f"{record['train/items_per_s']:.1f}"
            )
            window_t, window_steps, window_loss, window_metrics = now, 0, 0.0, {}

        is_best = False
        if main and val_batches and ((cfg.eval_every and done % cfg.eval_every == 0) or last):
            last_val = validate()
            log({"step": done, **{f"val/{k}": v for k, v in last_val.items()}})
            metric = last_val.get(cfg.best_metric)
            if metric is not None and (best is None or metric < best):
                best, best_step, is_best = metric, done, True

        if (
            main
            and plot_fn is not None
            and cfg.plot_every
            and done % cfg.plot_every == 0
            and plot_batch is not None
        ):
            model.eval()
            with torch.no_grad(), averaged():
                plot_fn(to_device(plot_batch, device), out_dir / "plots" / f"step_{done:06d}.png")
            model.train()

        if main and ((cfg.ckpt_every and done % cfg.ckpt_every == 0) or last):
            state = {
                "step": done,
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(),
                "ema": ema.shadow if ema is not None else None,
                "rng": capture_rng(),
                "data": {"epoch": epoch, "index": index},
                "best": best,
                "best_step": best_step,
                "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()},
            }
            ckpt.save(done, model.state_dict(), state, best=is_best)
        if out_of_time:
            if main:
                print(f"time limit of {cfg.time_limit_s:g} s reached after {done} steps")
            break
    bar.close()

    if main:
        with averaged():
            task.save_pretrained(out_dir / "model")
    if writer is not None:
        writer.close()
    dist_utils.barrier()
    return TrainResult(
        steps=done,
        train_loss=last_loss,
        val=last_val,
        best_metric=best,
        best_step=best_step,
        out_dir=out_dir,
        elapsed_s=time.perf_counter() - t0,
        history=history,
    )
