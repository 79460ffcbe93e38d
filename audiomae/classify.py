"""Audio classification on top of a (pretrained) Audio-MAE encoder.

:class:`AudioClassifier` pools the encoder's patch embeddings and applies a linear head.
Two modes, as in MAE:

- ``"finetune"``: every encoder weight trains, with layer-wise learning-rate decay
  (:meth:`AudioClassifier.param_groups`) so the early, most general layers move least;
- ``"linear_probe"``: the encoder is frozen and the head sees batch-normalised features
  (BatchNorm without affine parameters; MAE found un-normalised MAE features probe badly).

Both modes batch-normalise the pooled features before the linear head (with affine
parameters when fine-tuning); see the comment in :class:`AudioClassifier`.

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
    length clips were padded / cropped to in training, which inference repeats.
    ``level_norm``: shift each clip so its loudest quarter of frames sits at 0 (normalised
    log-mel units) before the encoder, which removes recording-level differences between
    speakers or devices (:func:`active_level`)."""

    num_classes: int
    pooling: str = "mean"
    mode: str = "finetune"
    multilabel: bool = False
    labels: tuple[str, ...] = ()
    clip_seconds: float | None = None
    head_dropout: float = 0.0
    level_norm: bool = False

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
        level_norm: bool = False,
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
            level_norm=level_norm,
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
            # Mean-pooled tokens are dominated by the (input-independent) mean positional
            # embedding; their sample-to-sample spread is ~1/30 of their scale, so a head on raw
            # features barely trains. MAE's LayerNorm does not remove that shared offset;
            # BatchNorm does (measured: from-scratch loss flat with LayerNorm, falls with BatchNorm).
            self.head_norm = nn.BatchNorm1d(dim, eps=1e-6)
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
        if self.cfg.level_norm:
            spec = spec - active_level(spec)[:, None, None]
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
        return ClassifierOutput(logits=self.head_logits(feats), features=feats)

    def head_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from pooled features ``(B, enc_dim)`` (e.g. cached ones for a linear probe)."""
        return self.head(self.dropout(self.head_norm(features)))

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
        cls, directory: str | Path, map_location: str | torch.device = "cpu", require_checksum: bool = True
    ) -> AudioClassifier:
        from audiomae.checkpoint import load_model

        model = load_model(directory, map_location=map_location, require_checksum=require_checksum)
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


def active_level(spec: torch.Tensor, fraction: float = 0.25) -> torch.Tensor:
    """Per-clip speech level of log-mel ``(B, F, T)``: the mean over mel bins of the loudest
    ``fraction`` of frames, ``(B,)``. Unlike the clip mean it does not depend on how much
    silence pads the clip."""
    frames = spec.mean(dim=1)
    k = max(1, int(round(frames.shape[-1] * fraction)))
    return frames.topk(k, dim=-1).values.mean(dim=-1)


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
    the same draws.

    ``pooled_inputs``: batches hold pooled encoder features ``(B, enc_dim)`` instead of
    spectrograms, so a linear probe can train on features computed once (the frozen encoder
    gives the same features every epoch). ``eval_frames``: centre-crop validation inputs."""

    model: AudioClassifier
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    layer_decay: float = 0.75
    seed: int = 0
    eval_frames: int | None = None
    pooled_inputs: bool = False

    def __post_init__(self) -> None:
        if self.pooled_inputs and self.model.cfg.mode != "linear_probe":
            raise ValueError(
                "pooled_inputs needs a linear_probe classifier (a fine-tune must run the encoder)"
            )

    def _generator(self, step: int) -> torch.Generator:
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        seed = np.random.SeedSequence([self.seed, step, rank]).generate_state(1, np.uint64)[0] >> np.uint64(1)
        return torch.Generator().manual_seed(int(seed))

    def training_step(self, batch: Any, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        spec, target = batch
        model = self.model
        if self.pooled_inputs:
            logits = model.head_logits(spec)
            loss = model.loss(logits, target)
            logs = {"loss": float(loss.detach())}
            if not model.cfg.multilabel:
                logs["acc"] = accuracy(logits.detach(), target)
            return loss, logs
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
        if self.pooled_inputs:
            logits = self.model.head_logits(spec)
        else:
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


# ---- the fine-tuning pipeline (used by the recipe, the CLI and the FSDD benchmark) -------------
@dataclass(frozen=True)
class FinetuneData:
    """Where labelled clips come from and how they are split.

    ``layout``: "folders" (``root/<class>/*``), "csv" (``csv`` file, paths relative to
    ``root`` or the CSV), "pattern" (file names under ``root`` matched by ``pattern``, class in
    field ``label``) or "synthetic" (a small generated set written under the run folder).
    ``split_column``/``test_values``: clips whose column value is listed form the test set
    (e.g. a held-out speaker); without a split column a stratified random ``test_fraction``
    is held out. ``train_fraction`` keeps a stratified fraction of the training labels."""

    root: str = "synthetic"
    layout: str = "synthetic"
    csv: str | None = None
    pattern: str | None = None
    label: str = "label"
    split_column: str | None = None
    test_values: tuple[str, ...] = ()
    test_fraction: float = 0.2
    train_fraction: float = 1.0
    clip_seconds: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        layouts = ("folders", "csv", "pattern", "synthetic")
        if self.layout not in layouts:
            raise ValueError(f"data.layout must be one of {layouts}, got '{self.layout}'")
        object.__setattr__(self, "test_values", tuple(str(v) for v in self.test_values))


@dataclass(frozen=True)
class FinetuneSettings:
    """One fine-tune. ``encoder``: a pretrained AudioMAE checkpoint directory, or None to train
    from a randomly initialised ``preset`` (with ``model`` overrides) as the from-scratch baseline."""

    data: FinetuneData = field(default_factory=FinetuneData)
    encoder: str | None = None
    preset: str = "tiny"
    model: dict[str, Any] = field(default_factory=dict)
    mode: str = "finetune"
    pooling: str = "mean"
    head_dropout: float = 0.0
    level_norm: bool = False
    layer_decay: float = 0.75
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: Any = None  # audiomae.train.TrainConfig (imported lazily: the model must not need the loop)
    out_dir: str = "runs/classify"
    threads: int | None = None
    eval_batch_size: int = 128

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FinetuneSettings:
        from audiomae.config import from_dict
        from audiomae.train import TrainConfig

        d = dict(d)
        d["model"] = dict(d.get("model") or {})
        d["preset"] = d["model"].pop("preset", d.get("preset", "tiny"))
        sections = {"data": FinetuneData, "augment": AugmentConfig, "train": TrainConfig}
        return from_dict(cls, d, sections, what="fine-tune settings")


def load_labelled(data: FinetuneData, workdir: str | Path = ".") -> tuple[Any, Any]:
    """(train, test) LabelSets described by ``data`` (synthetic data is written under ``workdir``)."""
    from audiomae import labels as L

    if data.layout == "synthetic":
        root = Path(workdir) / "synthetic_data"
        pattern = L.write_synthetic_dataset(root, seed=data.seed)
        full = L.from_pattern(root, pattern, label="label")
    elif data.layout == "folders":
        full = L.from_folders(data.root)
    elif data.layout == "csv":
        if not data.csv:
            raise ValueError("data.layout=csv needs data.csv (a path,label[,label...] file)")
        full = L.from_csv(data.csv, root=data.root if data.root != "synthetic" else None)
    else:
        if not data.pattern:
            raise ValueError("data.layout=pattern needs data.pattern, e.g. '{digit}_{speaker}_{take}.wav'")
        full = L.from_pattern(data.root, data.pattern, label=data.label)
    if data.split_column:
        if not data.test_values:
            raise ValueError(f"data.split_column={data.split_column} needs data.test_values")
        train, test = full.split_by(data.split_column, data.test_values)
    else:
        train, test = full.split_random(data.test_fraction, seed=data.seed)
    train = train.subsample(data.train_fraction, seed=data.seed)
    train.check_nonempty("training set")
    if len(test) == 0:
        raise ValueError("the test split is empty")
    return train, test


@torch.no_grad()
def log_mels(
    waves: torch.Tensor, features: Any, batch_size: int = 256, progress: bool = False
) -> torch.Tensor:
    """Un-normalised log-mel ``(N, F, T)`` of waveforms ``(N, S)``, computed in batches."""
    from tqdm import tqdm

    frontend = LogMel(features)
    chunks = range(0, waves.shape[0], batch_size)
    out = [frontend(waves[i : i + batch_size]) for i in tqdm(chunks, desc="log-mel", disable=not progress)]
    return torch.cat(out)


def fit_spectrogram(spec: torch.Tensor, encoder: AudioMAE) -> torch.Tensor:
    """Normalise raw log-mels with the encoder's statistics and trim to whole patch columns."""
    spec = encoder.norm.normalize(spec)
    t = min(spec.shape[-1], encoder.cfg.max_frames)
    return spec[..., : t - t % encoder.cfg.patch_t]


def build_encoder(s: FinetuneSettings, clip_seconds: float) -> AudioMAE:
    """The pretrained encoder of ``s.encoder``, or a fresh ``s.preset`` one (norm stats unset)."""
    if s.encoder:
        return AudioMAE.from_pretrained(s.encoder)
    from audiomae.config import FeatureConfig, model_preset

    features = FeatureConfig()
    cfg = model_preset(s.preset, **{"n_mels": features.n_mels, **s.model})
    frames = features.num_frames(int(round(clip_seconds * features.sample_rate)))
    if frames - frames % cfg.patch_t > cfg.max_frames:
        import dataclasses

        cfg = dataclasses.replace(cfg, max_frames=frames - frames % cfg.patch_t)
    return AudioMAE(cfg, features=features)


@torch.no_grad()
def evaluate(model: AudioClassifier, spec: torch.Tensor, target: torch.Tensor, batch_size: int = 128) -> dict:
    """Test-set metrics: ``acc`` and ``confusion`` (C x C list) or, multi-label, ``map``;
    ``logits`` (N, C) for further analysis."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    logits = torch.cat(
        [model(spec[i : i + batch_size].to(device)).logits.cpu() for i in range(0, spec.shape[0], batch_size)]
    )
    model.train(was_training)
    if model.cfg.multilabel:
        return {"map": mean_average_precision(torch.sigmoid(logits), target), "logits": logits}
    return {
        "acc": accuracy(logits, target),
        "confusion": confusion_matrix(logits.argmax(-1), target, model.cfg.num_classes).tolist(),
        "logits": logits,
    }


def run_finetune(s: FinetuneSettings, resume: bool = False) -> dict[str, Any]:
    """Load and split the data, build the classifier, train it with :func:`audiomae.train.fit`
    (validating on the test split), and evaluate. Returns the test metrics plus ``result``
    (the TrainResult); the model is saved in ``out_dir/model``, metrics in ``out_dir/test.json``."""
    import json

    from audiomae.audio import atomic_write
    from audiomae.features import compute_norm_stats
    from audiomae.labels import load_clips
    from audiomae.train import distributed as dist_utils
    from audiomae.train import fit

    if s.train is None:
        raise ValueError("FinetuneSettings.train is required (a TrainConfig)")
    if s.threads:
        torch.set_num_threads(s.threads)
    info = dist_utils.init_distributed()
    out = Path(s.out_dir)
    train_set, test_set = load_labelled(s.data, out)
    encoder = build_encoder(s, s.data.clip_seconds)
    sr = encoder.feature_cfg.sample_rate
    progress = s.train.progress and info.rank == 0
    train_w, train_set = load_clips(train_set, s.data.clip_seconds, sr, progress=progress)
    test_w, test_set = load_clips(
        test_set.with_classes(train_set.classes), s.data.clip_seconds, sr, progress=progress
    )
    if not s.encoder:
        # A from-scratch encoder takes its normalisation from the training clips.
        encoder.norm = compute_norm_stats(train_w, LogMel(encoder.feature_cfg))
    x_train = fit_spectrogram(log_mels(train_w, encoder.feature_cfg), encoder)
    x_test = fit_spectrogram(log_mels(test_w, encoder.feature_cfg), encoder)
    y_train, y_test = train_set.targets(), test_set.targets()
    torch.manual_seed(s.train.seed)
    model = AudioClassifier(
        encoder,
        num_classes=train_set.num_classes,
        pooling=s.pooling,
        mode=s.mode,
        multilabel=train_set.multilabel,
        labels=train_set.classes,
        clip_seconds=s.data.clip_seconds,
        head_dropout=s.head_dropout,
        level_norm=s.level_norm,
    )
    if info.rank == 0:
        origin = s.encoder or f"scratch ({s.preset})"
        print(
            f"{s.mode} {origin}: {len(train_set)} training clips, {len(test_set)} test clips, "
            f"{train_set.num_classes} classes; "
            f"{model.num_params(trainable_only=True) / 1e6:.2f} M trainable parameters"
        )
    task = ClassificationTask(model, augment=s.augment, layer_decay=s.layer_decay, seed=s.train.seed)
    b = s.eval_batch_size
    val = [(x_test[i : i + b], y_test[i : i + b]) for i in range(0, len(x_test), b)]
    result = fit(task, torch.utils.data.TensorDataset(x_train, y_train), val, s.train, out, resume=resume)
    metrics = evaluate(model, x_test, y_test, b)
    metrics.pop("logits")
    if info.rank == 0:
        text = json.dumps({**metrics, "labels": list(train_set.classes), "steps": result.steps}, indent=1)
        atomic_write(out / "test.json", lambda tmp: Path(tmp).write_text(text))
    return {**metrics, "result": result}


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


def _sections() -> dict[str, type]:
    from audiomae.config import FeatureConfig, ModelConfig
    from audiomae.features import NormStats

    return {
        "model": ModelConfig,
        "features": FeatureConfig,
        "norm": NormStats,
        "classifier": ClassifierConfig,
    }


register_kind("classifier", AudioClassifier, _build, _describe, _sections())


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
    "FinetuneData",
    "FinetuneSettings",
    "load_labelled",
    "log_mels",
    "fit_spectrogram",
    "build_encoder",
    "evaluate",
    "run_finetune",
]
