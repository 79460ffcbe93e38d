"""Classification metrics: accuracy, (mean) average precision and the confusion matrix."""

from __future__ import annotations

import math

import numpy as np
import torch


def accuracy(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Top-1 accuracy; ``target`` is (B,) indices or (B, C) probabilities (argmax taken)."""
    if target.dim() == 2:
        target = target.argmax(dim=-1)
    return float((logits.argmax(dim=-1) == target).float().mean())


def average_precision(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """AP of one class: mean over positives of the precision at that positive's rank.

    Tied scores are broken pessimistically (negatives first) so AP does not depend on the
    input order. Returns NaN when there is no positive."""
    positive = positive.bool().flatten()
    scores = scores.flatten().double()
    n_pos = int(positive.sum())
    if n_pos == 0:
        return math.nan
    # Sort by score descending; among equal scores put negatives first.
    order = torch.from_numpy(np.lexsort((positive.numpy(), -scores.numpy())))
    hits = positive[order].double()
    precision_at_k = hits.cumsum(0) / torch.arange(1, hits.numel() + 1, dtype=torch.float64)
    return float((precision_at_k * hits).sum() / n_pos)


def mean_average_precision(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """mAP over classes with at least one positive. ``scores``/``targets``: (N, C)."""
    if scores.shape != targets.shape or scores.dim() != 2:
        raise ValueError(
            f"scores {tuple(scores.shape)} and targets {tuple(targets.shape)} must be equal (N, C)"
        )
    aps = [average_precision(scores[:, c].cpu(), targets[:, c].cpu() > 0.5) for c in range(scores.shape[1])]
    aps = [a for a in aps if not math.isnan(a)]
    if not aps:
        raise ValueError("no class has a positive example: mAP is undefined")
    return float(sum(aps) / len(aps))


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, C) counts, rows = true class, columns = predicted class."""
    idx = target.long() * num_classes + pred.long()
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)
