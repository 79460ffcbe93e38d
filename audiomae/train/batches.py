"""The training data as an endless, resumable stream of batches."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, default_collate

from audiomae.train import distributed as dist_utils
from audiomae.train.config import TrainConfig


class BatchStream:
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
