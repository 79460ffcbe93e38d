"""Training data for the vocoder: random gain-varied crops of waveforms."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class RandomCrops(torch.utils.data.Dataset):
    """Random fixed-length crops ``(crop,)`` from a list of waveforms, with a random gain.

    Item ``i`` of epoch ``e`` is a pure function of ``(seed, e, i)``, so a resumed run sees
    the same crops. Clips shorter than ``crop`` are zero-padded."""

    def __init__(
        self,
        waves: list[torch.Tensor],
        crop: int,
        items_per_epoch: int,
        seed: int = 0,
        gain_db: tuple[float, float] = (-6.0, 3.0),
    ) -> None:
        if not waves:
            raise ValueError("RandomCrops: no waveforms given")
        self.waves = [torch.as_tensor(w, dtype=torch.float32).reshape(-1) for w in waves]
        self.crop, self.items, self.seed, self.gain_db = crop, items_per_epoch, seed, gain_db
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.items

    def __getitem__(self, i: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(hash((self.seed, self.epoch, i)) & 0x7FFFFFFF)
        wave = self.waves[int(torch.randint(len(self.waves), (1,), generator=g))]
        span = wave.numel() - self.crop
        off = int(torch.randint(span + 1, (1,), generator=g)) if span > 0 else 0
        x = F.pad(wave[off : off + self.crop], (0, max(0, -span)))
        lo, hi = self.gain_db
        gain = 10 ** ((lo + (hi - lo) * float(torch.rand((), generator=g))) / 20)
        peak = float(x.abs().max())
        # Never push a crop into clipping: the vocoder must not learn clipped waveforms.
        if peak * gain > 0.99:
            gain = 0.99 / max(peak, 1e-9)
        return x * gain
