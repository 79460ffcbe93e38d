"""Audio classification on top of a (pretrained) Audio-MAE encoder.

:class:`AudioClassifier` pools the encoder's patch embeddings and applies a linear head.
Two modes, as in MAE:

- ``"finetune"``: every encoder weight trains, with layer-wise learning-rate decay
  (:meth:`AudioClassifier.param_groups`) so the early, most general layers move least;
- ``"linear_probe"``: the encoder is frozen and the head sees batch-normalised features
  (BatchNorm without affine parameters; MAE found un-normalised MAE features probe badly).

Single-label tasks use cross-entropy and accuracy; multi-label tasks use per-class BCE and
mean average precision (:func:`mean_average_precision`).

:class:`ClassificationTask` adapts the classifier to :func:`audiomae.train.fit`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from audiomae.augment import AugmentConfig, augment_batch, center_crop, patch_mask
from audiomae.checkpoint import register_kind
from audiomae.features import LogMel
from audiomae.masking import MaskResult
from audiomae.model import AudioMAE, Block

POOLINGS = ("mean", "cls")
MODES = ("finetune", "linear_probe")
# AudioMAE submodules only the reconstruction decoder uses; a classifier does not carry them.
_DECODER_PARTS = ("dec_embed", "mask_token", "decoder", "dec_norm", "dec_pred")


@dataclass(frozen=True)
class ClassifierConfig:
    """The head and task. ``labels``: class names in output order. ``clip_seconds``: the
    length clips were padded / cropped to in training, which inference repeats."""

    num_classes: int
    pooling: str = "mean"
    mode: str = "finetune"
    multilabel: bool = False
    labels: tuple[str, ...] = ()
    clip_seconds: float | None = None
    head_dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got '{self.pooling}'")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got '{self.mode}'")
        object.__setattr__(self, "labels", tuple(str(x) for x in self.labels))
        if self.labels and len(self.labels) != self.num_classes:
            raise ValueError(f"{len(self.labels)} label names for {self.num_classes} classes")
        if not self.labels:
            object.__setattr__(self, "labels", tuple(str(i) for i in range(self.num_classes)))


@dataclass(frozen=True)
class ClassifierOutput:
    """``logits``: (B, C). ``features``: (B, D) pooled encoder features before the head."""

    logits: torch.Tensor
    features: torch.Tensor


class AudioClassifier(nn.Module):
    """Pooled Audio-MAE encoder features -> linear head.

    The classifier takes a copy of ``encoder`` without its decoder, so the pretrained model
    passed in stays untouched and can seed several classifiers.

    ``pooling="mean"`` averages the visible patch embeddings. The encoder has no CLS token
    (MAE pretraining here never trains one), so ``pooling="cls"`` adds a learned query token
    that attends over the patch embeddings through one extra transformer block.
    """

    def __init__(
        self,
        encoder: AudioMAE,
        num_classes: int,
        pooling: str = "mean",
        mode: str = "finetune",
        multilabel: bool = False,
        labels: tuple[str, ...] | list[str] = (),
        clip_seconds: float | None = None,
        head_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        cfg = ClassifierConfig(
            num_classes=num_classes,
            pooling=pooling,
            mode=mode,
            multilabel=multilabel,
            labels=tuple(labels),
            clip_seconds=clip_seconds,
            head_dropout=head_dropout,
        )
        self.cfg = cfg
        self.encoder = strip_decoder(copy.deepcopy(encoder))
        dim = encoder.cfg.enc_dim
        if cfg.pooling == "cls":
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
            nn.init.normal_(self.cls_token, std=0.02)
            self.cls_block = Block(dim, encoder.cfg.enc_heads, encoder.cfg.mlp_ratio)
            self.cls_norm = nn.LayerNorm(dim)
        if cfg.mode == "linear_probe":
            self.head_norm: nn.Module = nn.BatchNorm1d(dim, affine=False, eps=1e-6)
            for p in self.encoder.parameters():
                p.requires_grad_(False)
        else:
            self.head_norm = nn.Identity()
        self.dropout = nn.Dropout(cfg.head_dropout)
        self.head = nn.Linear(dim, cfg.num_classes)
        # Small head init (MAE) so early training does not wreck the pretrained features.
        nn.init.trunc_normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    @classmethod
    def from_config(cls, encoder: AudioMAE, cfg: ClassifierConfig) -> AudioClassifier:
        return cls(encoder, **asdict(cfg))

    @property
    def labels(self) -> tuple[str, ...]:
        return self.cfg.labels

    def train(self, mode: bool = True) -> AudioClassifier:
        super().train(mode)
        if self.cfg.mode == "linear_probe":
            self.encoder.eval()  # a frozen encoder must behave identically in train and eval
        return self

    # ---- forward ------------------------------------------------------------------------
    def pool(self, spec: torch.Tensor, mask: MaskResult | None = None) -> torch.Tensor:
        """Normalised log-mel ``(B, F, T)`` -> pooled features ``(B, enc_dim)``."""
        if self.cfg.mode == "linear_probe":
            with torch.no_grad():
                tokens = self.encoder.encode(spec, mask)
        else:
            tokens = self.encoder.encode(spec, mask)
        valid = None
        if mask is not None and mask.ragged:
            valid = mask.keep_valid
        if self.cfg.pooling == "cls":
            x = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
            attn_mask = None
            if valid is not None:
                keep = torch.cat([torch.ones_like(valid[:, :1]), valid], dim=1)
                attn_mask = keep[:, None, None, :]
            return self.cls_norm(self.cls_block(x, attn_mask)[:, 0])
        if valid is None:
            return tokens.mean(dim=1)
        w = valid.unsqueeze(-1).to(tokens.dtype)
        return (tokens * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)

    def forward(self, spec: torch.Tensor, mask: MaskResult | None = None) -> ClassifierOutput:
        """``spec``: normalised log-mel (B, F, T); ``mask``: optional patches to hide (fine-tune
        augmentation). Returns logits (B, num_classes)."""
        feats = self.pool(spec, mask)
        logits = self.head(self.dropout(self.head_norm(feats)))
        return ClassifierOutput(logits=logits, features=feats)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy (targets (B,) indices or (B, C) probabilities) or, multi-label, BCE
        on (B, C) 0/1 or soft targets."""
        if self.cfg.multilabel:
            return F.binary_cross_entropy_with_logits(logits, target.float())
        if target.dim() == 2:
            return F.cross_entropy(logits, target.float())
        return F.cross_entropy(logits, target)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits) if self.cfg.multilabel else logits.softmax(dim=-1)

    # ---- inference on waveforms ---------------------------------------------------------
    def featurize(self, wave: torch.Tensor) -> torch.Tensor:
        """Waveform ``(B, S)`` at the encoder's rate -> normalised log-mel, fixed to the
        training clip length (centre pad / crop) when one is recorded."""
        if wave.dim() == 1:
            wave = wave.unsqueeze(0)
        if self.cfg.clip_seconds is not None:
            n = int(round(self.cfg.clip_seconds * self.encoder.feature_cfg.sample_rate))
            s = wave.shape[-1]
            if s > n:
                start = (s - n) // 2
                wave = wave[..., start : start + n]
            elif s < n:
                left = (n - s) // 2
                wave = F.pad(wave, (left, n - s - left))
        spec = self._log_mel(wave)
        max_frames = self.encoder.cfg.max_frames
        if spec.shape[-1] > max_frames:
            spec = center_crop(spec, max_frames)
        return spec

    def _log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        # Not AudioMAE.featurize: that registers the front end as a submodule, whose STFT
        # buffers would then enter state_dict and no longer match a freshly built model.
        frontend = self.__dict__.get("_frontend_cache")
        if frontend is None or frontend.mel_fb.device != wave.device:
            frontend = LogMel(self.encoder.feature_cfg).to(wave.device)
            self.__dict__["_frontend_cache"] = frontend
        spec = self.encoder.norm.normalize(frontend(wave))
        return spec[..., : spec.shape[-1] - spec.shape[-1] % self.encoder.cfg.patch_t]

    @torch.no_grad()
    def predict(self, wave: torch.Tensor, top_k: int = 3) -> list[list[tuple[str, float]]]:
        """Top-k ``(label, score)`` per waveform of ``(B, S)``; scores are softmax
        probabilities (sigmoid per class for multi-label models)."""
        was_training = self.training
        self.eval()
        try:
            probs = self.probabilities(self(self.featurize(wave)).logits)
        finally:
            self.train(was_training)
        k = max(1, min(top_k, self.cfg.num_classes))
        scores, idx = probs.topk(k, dim=-1)
        return [
            [(self.cfg.labels[int(i)], float(s)) for s, i in zip(srow, irow)]
            for srow, irow in zip(scores, idx)
        ]

    # ---- optimisation -------------------------------------------------------------------
    def param_groups(
        self, base_lr: float, weight_decay: float, layer_decay: float = 0.75
    ) -> list[dict[str, Any]]:
        """AdamW groups with layer-wise lr decay: the head gets ``base_lr``, encoder block
        ``i`` of ``L`` gets ``base_lr * layer_decay ** (L - i)``, the patch embedding
        ``layer_decay ** (L + 1)``. Biases, norms and tokens get no weight decay. Each group
        carries ``lr_scale`` (for schedules that rescale lr) and its starting ``lr``."""
        depth = len(self.encoder.encoder)
        groups: dict[tuple[int, bool], dict[str, Any]] = {}
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            layer = self._layer_id(name, depth)
            no_decay = p.ndim < 2 or name.endswith(".bias") or "token" in name
            key = (layer, no_decay)
            if key not in groups:
                scale = layer_decay ** (depth + 1 - layer)
                groups[key] = {
                    "params": [],
                    "weight_decay": 0.0 if no_decay else weight_decay,
                    "lr_scale": scale,
                    "lr": base_lr * scale,
                    "layer": layer,
                }
            groups[key]["params"].append(p)
        return [groups[k] for k in sorted(groups)]

    @staticmethod
    def _layer_id(name: str, depth: int) -> int:
        # 0: patch embedding; 1..depth: encoder blocks; depth + 1: final norm, pooling, head.
        if name.startswith("encoder.patch_embed"):
            return 0
        if name.startswith("encoder.encoder."):
            return int(name.split(".")[2]) + 1
        return depth + 1

    def num_params(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    # ---- checkpoints --------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path, extra: dict | None = None) -> None:
        from audiomae.checkpoint import save_model

        save_model(directory, self, extra=extra)

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, map_location: str | torch.device = "cpu"
    ) -> AudioClassifier:
        from audiomae.checkpoint import load_model

        model = load_model(directory, map_location=map_location)
        if not isinstance(model, cls):
            raise ValueError(f"{directory}: holds a {type(model).__name__}, not an {cls.__name__}")
        return model


def strip_decoder(mae: AudioMAE) -> AudioMAE:
    """Drop the reconstruction decoder from ``mae`` in place (it cannot ``decode`` afterwards)."""
    for name in _DECODER_PARTS:
        if hasattr(mae, name):
            setattr(mae, name, None)
    if isinstance(getattr(mae, "_frontend", None), nn.Module):
        mae._frontend = None  # its STFT buffers would otherwise be saved with the weights
    return mae


# ---- metrics ---------------------------------------------------------------------------
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


# ---- training task ----------------------------------------------------------------------
@dataclass
class ClassificationTask:
    """Adapter for :func:`audiomae.train.fit`. Batches are ``(spec (B, F, T), target)`` with
    target (B,) class indices or (B, C) multi-hot; augmentation and the encoder's structured
    patch mask are drawn from a generator seeded by ``(seed, step)`` so a resumed run repeats
    the same draws."""

    model: AudioClassifier
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    layer_decay: float = 0.75
    seed: int = 0
    eval_frames: int | None = None

    def _generator(self, step: int) -> torch.Generator:
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        return torch.Generator().manual_seed(self.seed * 1_000_003 + step * 7919 + rank)

    def training_step(self, batch: Any, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        spec, target = batch
        model = self.model
        g = self._generator(step)
        aug = self.augment
        if model.cfg.mode == "linear_probe":
            # MAE's linear probe trains on clean features; masking a frozen encoder only adds noise.
            mask = None
        else:
            spec, target = augment_batch(spec, target, aug, model.cfg.num_classes, generator=g)
            grid_t, grid_f = model.encoder.grid(spec)
            mask = patch_mask(aug, spec.shape[0], grid_t, grid_f, generator=g)
            mask = mask.to(spec.device) if mask is not None else None
        out = model(spec, mask)
        loss = model.loss(out.logits, target)
        logs = {"loss": float(loss.detach())}
        if not model.cfg.multilabel:
            logs["acc"] = accuracy(out.logits.detach(), target)
        return loss, logs

    @torch.no_grad()
    def validation_step(self, batch: Any) -> dict[str, float]:
        spec, target = batch
        if self.eval_frames is not None:
            spec = center_crop(spec, self.eval_frames)
        logits = self.model(spec).logits
        out = {"loss": float(self.model.loss(logits, target))}
        if self.model.cfg.multilabel:
            try:
                out["map"] = mean_average_precision(torch.sigmoid(logits), target)
            except ValueError:
                pass  # a validation batch without any positive label has no mAP
        else:
            out["acc"] = accuracy(logits, target)
            out["err"] = 1.0 - out["acc"]
        return out

    def param_groups(self, base_lr: float, weight_decay: float) -> list[dict[str, Any]]:
        return self.model.param_groups(base_lr, weight_decay, self.layer_decay)

    def save_pretrained(self, directory: str | Path) -> None:
        self.model.save_pretrained(directory)


# ---- checkpoint registration ------------------------------------------------------------
def _describe(model: nn.Module) -> dict[str, Any]:
    enc = model.encoder
    return {
        "model": asdict(enc.cfg),
        "features": asdict(enc.feature_cfg),
        "norm": {"mean": enc.norm.mean, "std": enc.norm.std},
        "classifier": asdict(model.cfg),
    }


def _build(config: dict[str, Any]) -> nn.Module:
    from audiomae.config import FeatureConfig, ModelConfig, from_dict
    from audiomae.features import NormStats

    encoder = AudioMAE(
        from_dict(ModelConfig, config["model"]),
        features=from_dict(FeatureConfig, config["features"]),
        norm=NormStats(**config["norm"]),
    )
    return AudioClassifier.from_config(encoder, from_dict(ClassifierConfig, config["classifier"]))


register_kind("classifier", AudioClassifier, _build, _describe)


__all__ = [
    "AudioClassifier",
    "ClassifierConfig",
    "ClassifierOutput",
    "ClassificationTask",
    "strip_decoder",
    "accuracy",
    "average_precision",
    "mean_average_precision",
    "confusion_matrix",
]
