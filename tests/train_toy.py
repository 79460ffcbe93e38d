"""A tiny regression Task for the training-loop tests (imported by tests and subprocesses)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from audiomae.train import TrainConfig, fit


class ToyData(Dataset):
    """y = sin(x . w); items are (x, y). ``set_epoch`` is recorded to check the loop calls it."""

    def __init__(self, n: int = 64, dim: int = 4) -> None:
        g = torch.Generator().manual_seed(123)
        self.x = torch.randn(n, dim, generator=g)
        self.y = torch.sin(self.x @ torch.linspace(-1, 1, dim)).unsqueeze(-1)
        self.epochs: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]


class ToyTask:
    """Uses both kinds of randomness a real task has: a per-step generator (input noise) and the
    global RNG (dropout), so exact resume checks that both are restored."""

    def __init__(
        self, seed: int = 0, crash_at: int | None = None, delay_s: float = 0.0, stall_at: int | None = None
    ) -> None:
        torch.manual_seed(seed)
        self.model = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Dropout(0.1), nn.Linear(32, 1))
        self.crash_at = crash_at
        self.delay_s = delay_s
        self.stall_at = stall_at  # from this step on, hang until killed (a run to kill mid-way)
        self.saved: Path | None = None

    def training_step(self, batch, step):
        if self.crash_at is not None and step == self.crash_at:
            raise KeyboardInterrupt("simulated crash")
        if self.delay_s:
            time.sleep(self.delay_s)
        while self.stall_at is not None and step >= self.stall_at:
            time.sleep(1.0)
        x, y = batch
        g = torch.Generator().manual_seed(1000 + step)
        x = x + 0.01 * torch.randn(x.shape, generator=g)
        loss = (self.model(x) - y).square().mean()
        return loss, {"mse": float(loss.detach())}

    def validation_step(self, batch):
        x, y = batch
        return {"loss": float((self.model(x) - y).square().mean())}

    def save_pretrained(self, directory) -> None:
        self.saved = Path(directory)
        Path(directory).mkdir(parents=True, exist_ok=True)


def toy_config(**overrides) -> TrainConfig:
    base = dict(
        steps=12, batch_size=8, lr=3e-2, warmup_steps=2, log_every=1, eval_every=4, ckpt_every=3,
        tensorboard=False, progress=False, precision="fp32",
    )  # fmt: skip
    return TrainConfig(**{**base, **overrides})


if __name__ == "__main__":
    # Subprocess entry for the SIGKILL test: the run hangs in step 6, after its step-4
    # checkpoint, so the parent kills it mid-run however slow the machine is.
    torch.set_num_threads(1)
    out = sys.argv[1]
    fit(ToyTask(stall_at=6), ToyData(), None, toy_config(ckpt_every=2, steps=40), out)
