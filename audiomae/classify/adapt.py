"""Speaker (or channel) adaptation from unlabelled clips.

Where the speaker is a nuisance (words, commands, digits), a classifier trained on a few voices
meets a new voice's features shifted and scaled as a whole. Standardising each speaker's
features by that speaker's own statistics, as speech recognisers have long done with per-speaker
cepstral mean and variance normalisation, removes that shift; it needs a handful of the new
speaker's clips and no labels. Not for tasks whose label *is* the speaker.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def group_standardize(
    features: np.ndarray,
    groups: Sequence,
    reference: np.ndarray | None = None,
    eps: float = 1e-6,
) -> np.ndarray:
    """Rows of ``features`` ``(N, D)`` z-scored within their group (``groups[i]``: the speaker of
    row ``i``): mean and standard deviation per column from the group's rows, or only from those
    where the bool mask ``reference`` is set (an enrolment set: each group needs at least two
    such rows). Labels are never read."""
    x = np.asarray(features, dtype=np.float64)
    g = np.asarray(groups)
    if x.ndim != 2 or g.shape != (x.shape[0],):
        raise ValueError(f"features must be (N, D) with one group per row, got {x.shape} and {g.shape}")
    ref = np.ones(len(g), dtype=bool) if reference is None else np.asarray(reference, dtype=bool)
    out = np.empty_like(x)
    for name in np.unique(g):
        rows = g == name
        stats = x[rows & ref]
        if len(stats) < 2:
            raise ValueError(
                f"group {str(name)!r} has {len(stats)} reference rows; standardising needs 2 or more"
            )
        out[rows] = (x[rows] - stats.mean(0)) / (stats.std(0) + eps)
    return out


def enrolment_mask(groups: Sequence, per_group: int, seed: int = 0) -> np.ndarray:
    """A bool mask picking ``per_group`` random rows of each group (all of a smaller group)."""
    g = np.asarray(groups)
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(g), dtype=bool)
    for name in np.unique(g):
        rows = np.flatnonzero(g == name)
        mask[rng.choice(rows, min(per_group, len(rows)), replace=False)] = True
    return mask


def cluster_refine(features: np.ndarray, logits: np.ndarray, rounds: int = 2) -> np.ndarray:
    """Class labels for one speaker's clips refined by the clusters they form, as SHOT's
    pseudo-labels (Liang et al., 2020): class centroids of ``features`` ``(N, D)`` (the head's
    normalised features) weighted by the classifier's probabilities from ``logits`` ``(N, C)``;
    each clip takes the class of its nearest centroid (cosine); ``rounds`` times, the centroids
    then being the means of the clips so labelled (a class left empty keeps its centroid).
    Labels are never read."""
    z = np.asarray(features, dtype=np.float64)
    z = z / (np.linalg.norm(z, axis=1, keepdims=True) + 1e-12)
    logits = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or logits.shape[0] != z.shape[0] or rounds < 1:
        raise ValueError(
            f"need (N, D) features, (N, C) logits and rounds >= 1, got {z.shape}, {logits.shape}, {rounds}"
        )
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    centroids = p.T @ z / (p.sum(0)[:, None] + 1e-12)
    for _ in range(rounds):
        labels = np.argmax(z @ (centroids / (np.linalg.norm(centroids, axis=1, keepdims=True) + 1e-12)).T, 1)
        onehot = np.eye(logits.shape[1])[labels]
        count = onehot.sum(0)
        centroids = np.where(count[:, None] > 0, onehot.T @ z / np.maximum(count, 1)[:, None], centroids)
    return labels


__all__ = ["cluster_refine", "enrolment_mask", "group_standardize"]
