"""The classifier: pooled Audio-MAE encoder features and a linear head, and its checkpoint kind.

Two modes, as in MAE: ``"finetune"`` trains every encoder weight (with layer-wise learning-rate
decay, :meth:`AudioClassifier.param_groups`); ``"linear_probe"`` freezes the encoder and the
head sees batch-normalised features (BatchNorm without affine parameters; MAE found
un-normalised MAE features probe badly).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from audiomae.augment import center_crop
from audiomae.checkpoint import register_kind
from audiomae.features import make_frontend
from audiomae.masking import MaskResult
from audiomae.model import AudioMAE, Block

POOLINGS = ("mean", "cls", "parts")
POOL_PARTS = 5  # pooling="parts": equal parts of the clip's patch columns
MODES = ("finetune", "linear_probe")
HEAD_NORMS = ("batch", "layer")
# AudioMAE submodules only the reconstruction decoder uses; a classifier does not carry them.
_DECODER_PARTS = ("dec_embed", "mask_token", "decoder", "dec_norm", "dec_pred")


@dataclass(frozen=True)
class ClassifierConfig:
    """The head and task. ``labels``: class names in output order. ``clip_seconds``: the
    length clips were padded / cropped to in training, which inference repeats.
    ``level_norm``: shift each clip so its loudest quarter of frames sits at 0 (normalised
    log-mel units) before the encoder, which removes recording-level differences between
    speakers or devices (:func:`active_level`). ``head_norm``: what normalises the pooled
    features before the head, "batch" (BatchNorm, see :class:`AudioClassifier`) or "layer"
    (LayerNorm, the original Audio-MAE code's ``fc_norm``). ``clip_norm``: give each clip the
    same mean spectrum before the encoder (:func:`clip_normalize`: its mean over frames, per mel
    bin, replaced by a reference spectrum: the training clips' mean, which
    :meth:`AudioClassifier.fit_clip_reference` sets, zeros until then), which removes the fixed
    colouring a microphone or room adds to one recording."""

    num_classes: int
    pooling: str = "mean"
    mode: str = "finetune"
    multilabel: bool = False
    labels: tuple[str, ...] = ()
    clip_seconds: float | None = None
    head_dropout: float = 0.0
    level_norm: bool = False
    head_norm: str = "batch"
    clip_norm: bool = False

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got '{self.pooling}'")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got '{self.mode}'")
        if self.head_norm not in HEAD_NORMS:
            raise ValueError(f"head_norm must be one of {HEAD_NORMS}, got '{self.head_norm}'")
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
    ``pooling="parts"`` averages the patch embeddings of each row of patches (mel band) in each
    of :data:`POOL_PARTS` equal parts of the clip's columns (column ``t`` of ``T`` in part
    ``t * POOL_PARTS // T``) and concatenates them
    (``POOL_PARTS * grid_f * enc_dim`` features): the head sees where in frequency and in which
    part of the clip a feature is, which a mean over all patches loses (spoken words).
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
        head_norm: str = "batch",
        clip_norm: bool = False,
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
            head_norm=head_norm,
            clip_norm=clip_norm,
        )
        self.cfg = cfg
        self.encoder = strip_decoder(copy.deepcopy(encoder))
        dim = encoder.cfg.enc_dim
        if cfg.pooling == "parts":
            dim *= POOL_PARTS * encoder.cfg.grid_f
        if cfg.pooling == "cls":
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
            nn.init.normal_(self.cls_token, std=0.02)
            self.cls_block = Block(dim, encoder.cfg.enc_heads, encoder.cfg.mlp_ratio)
            self.cls_norm = nn.LayerNorm(dim)
        if cfg.mode == "linear_probe":
            for p in self.encoder.parameters():
                p.requires_grad_(False)
        if cfg.head_norm == "layer":
            self.head_norm: nn.Module = nn.LayerNorm(dim, eps=encoder.cfg.norm_eps)
        elif cfg.mode == "linear_probe":
            self.head_norm = nn.BatchNorm1d(dim, affine=False, eps=1e-6)
        else:
            # Mean-pooled tokens are dominated by the (input-independent) mean positional
            # embedding; their sample-to-sample spread is ~1/30 of their scale, so a head on raw
            # features barely trains. MAE's LayerNorm does not remove that shared offset;
            # BatchNorm does (measured: from-scratch loss flat with LayerNorm, falls with BatchNorm).
            self.head_norm = nn.BatchNorm1d(dim, eps=1e-6)
        if cfg.clip_norm:
            # The reference spectrum (normalised log-mel per mel bin); saved with the weights.
            self.register_buffer("clip_ref", torch.zeros(encoder.feature_cfg.n_mels))
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
        """Normalised log-mel ``(B, F, T)`` -> pooled features ``(B, enc_dim)`` (``pooling="parts"``:
        ``(B, POOL_PARTS * grid_f * enc_dim)``)."""
        if self.cfg.level_norm:
            spec = spec - active_level(spec)[:, None, None]
        if self.cfg.clip_norm:
            spec = clip_normalize(spec, self.clip_ref)
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
        if self.cfg.pooling == "parts":
            return self._parts(tokens, mask, *self.encoder.grid(spec))
        if valid is None:
            return tokens.mean(dim=1)
        w = valid.unsqueeze(-1).to(tokens.dtype)
        return (tokens * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)

    @staticmethod
    def _parts(tokens: torch.Tensor, mask: MaskResult | None, grid_t: int, grid_f: int) -> torch.Tensor:
        """Mean of the visible tokens ``(B, K, D)`` per (part of the columns, patch row)."""
        b, k, d = tokens.shape
        if mask is None:
            idx = torch.arange(k, device=tokens.device).expand(b, k)
            weight = torch.ones(b, k, dtype=tokens.dtype, device=tokens.device)
        else:
            idx, weight = mask.keep_idx, mask.keep_valid.to(tokens.dtype)
        slot = (idx // grid_f) * POOL_PARTS // grid_t * grid_f + idx % grid_f
        sums = tokens.new_zeros(b, POOL_PARTS * grid_f, d)
        sums.scatter_add_(1, slot.unsqueeze(-1).expand(-1, -1, d), tokens * weight.unsqueeze(-1))
        count = tokens.new_zeros(b, POOL_PARTS * grid_f).scatter_add_(1, slot, weight)
        return (sums / count.clamp_min(1.0).unsqueeze(-1)).reshape(b, -1)

    @torch.no_grad()
    def fit_clip_reference(self, spec: torch.Tensor) -> None:
        """Set the ``clip_norm`` reference spectrum to the mean spectrum of the training clips'
        normalised log-mels ``(N, F, T)`` (after ``level_norm`` when that is on)."""
        if not self.cfg.clip_norm:
            raise ValueError("fit_clip_reference needs a classifier built with clip_norm=True")
        if self.cfg.level_norm:
            spec = spec - active_level(spec)[:, None, None]
        self.clip_ref.copy_(spec.mean(dim=(0, 2)))

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
            frontend = make_frontend(self.encoder.feature_cfg).to(wave.device)
            self.__dict__["_frontend_cache"] = frontend
        spec = self.encoder.norm.normalize(frontend(wave))
        return spec[..., : spec.shape[-1] - spec.shape[-1] % self.encoder.cfg.patch_t]

    @torch.no_grad()
    def predict_proba(self, wave: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(B, num_classes)`` of waveforms ``(B, S)`` (or ``(S,)``): softmax,
        or a sigmoid per class for multi-label models; columns in the order of :attr:`labels`."""
        was_training = self.training
        self.eval()
        try:
            return self.probabilities(self(self.featurize(wave)).logits)
        finally:
            self.train(was_training)

    @torch.no_grad()
    def predict(self, wave: torch.Tensor, top_k: int = 3) -> list[list[tuple[str, float]]]:
        """Top-k ``(label, score)`` per waveform of ``(B, S)``; scores are softmax
        probabilities (sigmoid per class for multi-label models)."""
        probs = self.predict_proba(wave)
        k = max(1, min(top_k, self.cfg.num_classes))
        scores, idx = probs.topk(k, dim=-1)
        return [
            [(self.cfg.labels[int(i)], float(s)) for s, i in zip(srow, irow)]
            for srow, irow in zip(scores, idx)
        ]

    # ---- adaptation ---------------------------------------------------------------------
    @torch.no_grad()
    def adapt(self, features: torch.Tensor, prior_clips: float = 4.0) -> None:
        """Adapt to a new speaker or channel from unlabelled clips: the head's normalisation
        statistics become those of ``features`` ``(N, D)``, the pooled features (:meth:`pool`)
        of N >= 2 clips of it (AdaBN, Li et al. 2016). The variance is pooled with the training
        one as if it came from ``prior_clips`` more clips, so that a few (or identical) clips
        cannot blow a feature up. For tasks where the speaker is a nuisance (words, digits,
        commands); :meth:`reset_adaptation` undoes it."""
        norm = self.head_norm
        if not isinstance(norm, nn.BatchNorm1d) or norm.running_mean is None:
            raise ValueError("adapt needs the batch-normalised head (head_norm='batch')")
        if features.dim() != 2 or features.shape[0] < 2 or features.shape[1] != norm.num_features:
            raise ValueError(
                f"adapt needs pooled features (N >= 2, {norm.num_features}), got {tuple(features.shape)}"
            )
        if prior_clips < 0:
            raise ValueError(f"prior_clips must be >= 0, got {prior_clips}")
        if "_trained_norm" not in self.__dict__:
            self.__dict__["_trained_norm"] = (norm.running_mean.clone(), norm.running_var.clone())
        trained_var = self.__dict__["_trained_norm"][1]
        feats = features.to(norm.running_mean)
        n = feats.shape[0]
        norm.running_mean.copy_(feats.mean(0))
        var = feats.var(0, unbiased=False)
        norm.running_var.copy_((n * var + prior_clips * trained_var) / (n + prior_clips))

    @torch.no_grad()
    def refine(self, features: torch.Tensor) -> torch.Tensor:
        """Class indices ``(N,)`` for N clips of one speaker or channel from their pooled features
        ``(N, D)``, refined by the clusters the clips form
        (:func:`~audiomae.classify.adapt.cluster_refine`; after :meth:`adapt` to the same clips)."""
        from audiomae.classify.adapt import cluster_refine

        if self.cfg.multilabel:
            raise ValueError("refine labels clips of single-label models only")
        z = self.head_norm(features)
        return torch.from_numpy(cluster_refine(z.cpu().numpy(), self.head(z).cpu().numpy()))

    def reset_adaptation(self) -> None:
        """Restore the head's normalisation statistics from training (after :meth:`adapt`)."""
        saved = self.__dict__.pop("_trained_norm", None)
        if saved is not None:
            self.head_norm.running_mean.copy_(saved[0])
            self.head_norm.running_var.copy_(saved[1])

    @torch.no_grad()
    def pooled(self, wave: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(B, D)`` of waveforms ``(B, S)`` (or ``(S,)``), as :meth:`adapt` takes them."""
        was_training = self.training
        self.eval()
        try:
            return self.pool(self.featurize(wave))
        finally:
            self.train(was_training)

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
        # 0: patch embedding (and a CLS token, as MAE's layer decay has it); 1..depth: encoder
        # blocks; depth + 1: final norm, pooling, head.
        if name.startswith("encoder.patch_embed") or name == "encoder.cls_token":
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


def clip_normalize(spec: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Log-mel ``(B, F, T)`` with each clip's mean over frames (per mel bin) replaced by
    ``reference`` ``(F,)``: a fixed filter (microphone, room, channel) adds the same offset to
    every frame of a log spectrum, and this removes it."""
    return spec - spec.mean(dim=-1, keepdim=True) + reference[:, None].to(spec)


def active_level(spec: torch.Tensor, fraction: float = 0.25) -> torch.Tensor:
    """Per-clip speech level of log-mel ``(B, F, T)``: the mean over mel bins of the loudest
    ``fraction`` of frames, ``(B,)``. Unlike the clip mean it does not depend on how much
    silence pads the clip."""
    frames = spec.mean(dim=1)
    k = max(1, int(round(frames.shape[-1] * fraction)))
    return frames.topk(k, dim=-1).values.mean(dim=-1)


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
