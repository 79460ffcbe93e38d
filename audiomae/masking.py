"""Patch masks as pure functions of (grid, generator).

Every function returns a :class:`MaskResult`. Patches are indexed time-major over a
``(grid_t, grid_f)`` grid, matching :func:`audiomae.features.patchify`. Items in a batch may
keep different numbers of patches (e.g. packet-loss masks from different loss traces);
``keep_idx`` is then right-padded and ``keep_valid`` marks the real entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class MaskResult:
    """``mask``: (B, N) bool, True = masked (hidden from the encoder, predicted).
    ``keep_idx``: (B, K) long, indices of visible patches in ascending order, right-padded.
    ``keep_valid``: (B, K) bool, False marks padding in ``keep_idx``.
    ``restore_idx``: (B, N) long, argsort of [visible..., masked...] order back to patch order.
    """

    mask: torch.Tensor
    keep_idx: torch.Tensor
    keep_valid: torch.Tensor
    restore_idx: torch.Tensor

    @property
    def ragged(self) -> bool:
        return not bool(self.keep_valid.all())

    def to(self, device: torch.device | str) -> MaskResult:
        return MaskResult(
            *(t.to(device) for t in (self.mask, self.keep_idx, self.keep_valid, self.restore_idx))
        )


def from_bool_mask(mask: torch.Tensor) -> MaskResult:
    """Build a MaskResult from a (B, N) boolean mask (True = masked)."""
    if mask.dim() != 2:
        raise ValueError(f"mask must be (B, N), got shape {tuple(mask.shape)}")
    mask = mask.bool()
    b, n = mask.shape
    # Stable sort puts visible patches (key 0) first, each group in patch order.
    order = torch.sort(mask.long(), dim=1, stable=True).indices
    restore = torch.argsort(order, dim=1)
    n_keep = (~mask).sum(dim=1)
    k = int(n_keep.max()) if b else 0
    if k == 0:
        raise ValueError("every patch is masked: the encoder needs at least one visible patch")
    keep_idx = order[:, :k].clone()
    keep_valid = torch.arange(k, device=mask.device).unsqueeze(0) < n_keep.unsqueeze(1)
    # Padding points at a visible patch of the same item so gathers stay in range.
    keep_idx = torch.where(keep_valid, keep_idx, keep_idx[:, :1])
    return MaskResult(mask=mask, keep_idx=keep_idx, keep_valid=keep_valid, restore_idx=restore)


def _check_ratio(ratio: float) -> None:
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio}")


def random_mask(
    batch: int, grid_t: int, grid_f: int, ratio: float = 0.8, generator: torch.Generator | None = None
) -> MaskResult:
    """Unstructured masking of ``ratio`` of the patches, a different draw per item (MAE)."""
    _check_ratio(ratio)
    n = grid_t * grid_f
    n_mask = int(round(n * ratio))
    noise = torch.rand(batch, n, generator=generator)
    ranks = torch.argsort(torch.argsort(noise, dim=1), dim=1)
    return from_bool_mask(ranks < n_mask)


def time_mask(
    batch: int, grid_t: int, grid_f: int, ratio: float = 0.3, generator: torch.Generator | None = None
) -> MaskResult:
    """Mask whole time columns (all frequency patches of ``ratio`` of the columns)."""
    _check_ratio(ratio)
    cols = _random_subset(batch, grid_t, int(round(grid_t * ratio)), generator)
    return from_bool_mask(cols.unsqueeze(2).expand(batch, grid_t, grid_f).reshape(batch, -1))


def freq_mask(
    batch: int, grid_t: int, grid_f: int, ratio: float = 0.3, generator: torch.Generator | None = None
) -> MaskResult:
    """Mask whole frequency rows."""
    _check_ratio(ratio)
    rows = _random_subset(batch, grid_f, int(round(grid_f * ratio)), generator)
    return from_bool_mask(rows.unsqueeze(1).expand(batch, grid_t, grid_f).reshape(batch, -1))


def time_freq_mask(
    batch: int,
    grid_t: int,
    grid_f: int,
    time_ratio: float = 0.3,
    freq_ratio: float = 0.3,
    generator: torch.Generator | None = None,
) -> MaskResult:
    """Union of a time-column and a frequency-row mask (Audio-MAE's structured fine-tune masking)."""
    _check_ratio(time_ratio)
    _check_ratio(freq_ratio)
    cols = _random_subset(batch, grid_t, int(round(grid_t * time_ratio)), generator)
    rows = _random_subset(batch, grid_f, int(round(grid_f * freq_ratio)), generator)
    mask = cols.unsqueeze(2) | rows.unsqueeze(1)
    return from_bool_mask(mask.reshape(batch, -1))


def packet_loss_mask(lost: torch.Tensor | Sequence[Sequence[bool]], grid_f: int) -> MaskResult:
    """Mask whole patch columns from a (B, grid_t) loss pattern (True = packet lost).

    With the default geometry one column is one 20 ms packet."""
    lost = torch.as_tensor(lost, dtype=torch.bool)
    if lost.dim() == 1:
        lost = lost.unsqueeze(0)
    if lost.dim() != 2:
        raise ValueError(f"loss pattern must be (B, grid_t), got shape {tuple(lost.shape)}")
    b, t = lost.shape
    return from_bool_mask(lost.unsqueeze(2).expand(b, t, grid_f).reshape(b, -1))


def no_mask(batch: int, grid_t: int, grid_f: int) -> MaskResult:
    return from_bool_mask(torch.zeros(batch, grid_t * grid_f, dtype=torch.bool))


def _random_subset(batch: int, size: int, count: int, generator: torch.Generator | None) -> torch.Tensor:
    noise = torch.rand(batch, size, generator=generator)
    ranks = torch.argsort(torch.argsort(noise, dim=1), dim=1)
    return ranks < count


def burst_position(lost: torch.Tensor) -> torch.Tensor:
    """``(B, C)`` bool lost packet columns -> ``(B, C)`` long: each lost column's position in
    its burst (1 = the first lost packet), 0 for received ones.

    Loop-free, so that an exported graph keeps the number of columns dynamic: a column's burst
    is the set of columns with as many received ones up to them (``r``); its position is how
    many of those lie at or before it, less the received column that opened the group."""
    r = torch.cumsum((~lost).long(), dim=1)  # (B, C)
    c = lost.shape[1]
    earlier = torch.ones(c, c, dtype=torch.bool, device=lost.device).tril()  # [t, s]: s <= t
    same = (r[:, :, None] == r[:, None, :]) & earlier
    count = same.long().sum(-1) - (r > 0).long()
    return torch.where(lost, count, torch.zeros_like(count))
