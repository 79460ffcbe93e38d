"""The fine-tuning pipeline used by the recipe, the CLI and the FSDD benchmark: settings,
the encoder to start from, training with :func:`audiomae.train.fit` and test-set metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from audiomae.augment import AugmentConfig
from audiomae.classify.data import FinetuneData, fit_spectrogram, load_labelled, log_mels
from audiomae.classify.metrics import accuracy, confusion_matrix, mean_average_precision
from audiomae.classify.model import AudioClassifier
from audiomae.classify.task import ClassificationTask
from audiomae.features import make_frontend
from audiomae.model import AudioMAE


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
    # True: every clip gets the training clips' mean spectrum (AudioClassifier clip_norm).
    clip_norm: bool = False
    head_norm: str = "batch"
    layer_decay: float = 0.75
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: Any = None  # audiomae.train.TrainConfig (imported lazily: the model must not need the loop)
    out_dir: str = "runs/classify"
    threads: int | None = None
    eval_batch_size: int = 128
    # True: also score the model adapted to each held-out group (data.split_column value, e.g.
    # a speaker) from that group's test clips, their labels unread (AudioClassifier.adapt).
    adapt: bool = False

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FinetuneSettings:
        from audiomae.config import from_dict
        from audiomae.train import TrainConfig

        d = dict(d)
        d["model"] = dict(d.get("model") or {})
        d["preset"] = d["model"].pop("preset", d.get("preset", "tiny"))
        sections = {"data": FinetuneData, "augment": AugmentConfig, "train": TrainConfig}
        return from_dict(cls, d, sections, what="fine-tune settings")


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


def adapted_evaluate(
    model: AudioClassifier,
    spec: torch.Tensor,
    target: torch.Tensor,
    groups: list,
    reference: torch.Tensor | None = None,
    batch_size: int = 128,
    refine: bool = False,
) -> dict:
    """:func:`evaluate`'s ``acc`` and ``confusion`` over all clips, each group (speaker, channel)
    scored with the model adapted to it (:meth:`AudioClassifier.adapt`) from its own clips, or
    only those where the bool mask ``reference`` is set (an enrolment set), labels unread; a
    group with fewer than two such clips is scored unadapted. ``refine``: each group's labels
    then refined by the clusters its clips form (:func:`~audiomae.classify.adapt.cluster_refine`).
    The model is left as it was."""
    model.eval()
    device = next(model.parameters()).device
    keep = torch.ones(len(groups), dtype=torch.bool) if reference is None else reference.bool()
    pred = torch.empty(len(groups), dtype=torch.long)
    for name in sorted(set(groups)):
        idx = torch.tensor([g == name for g in groups]).nonzero().flatten()
        with torch.no_grad():  # each group's clips pooled once, for the adaptation and the labels
            feats = torch.cat([model.pool(spec[i].to(device)) for i in idx.split(batch_size)])
            if int(keep[idx].sum()) > 1:
                model.adapt(feats[keep[idx].to(feats.device)])
            pred[idx] = model.refine(feats) if refine else model.head_logits(feats).argmax(-1).cpu()
        model.reset_adaptation()
    return {
        "acc": float((pred == target).float().mean()),
        "confusion": confusion_matrix(pred, target, model.cfg.num_classes).tolist(),
    }


def adapted_accuracy(
    model: AudioClassifier, spec: torch.Tensor, target: torch.Tensor, groups: list, batch_size: int = 128
) -> float:
    """The accuracy of :func:`adapted_evaluate`, every clip of a group adapting to it."""
    return adapted_evaluate(model, spec, target, groups, batch_size=batch_size)["acc"]


def run_finetune(s: FinetuneSettings, resume: bool = False) -> dict[str, Any]:
    """Load and split the data, build the classifier, train it with :func:`audiomae.train.fit`
    (validating on the test split), and evaluate. Returns the test metrics plus ``result``
    (the TrainResult); the model is saved in ``out_dir/model``, metrics in ``out_dir/test.json``."""
    import json

    from audiomae.audio import atomic_write
    from audiomae.features import compute_norm_stats
    from audiomae.labels import load_clips
    from audiomae.train import fit
    from audiomae.train.runner import start_run

    if s.train is None:
        raise ValueError("FinetuneSettings.train is required (a TrainConfig)")
    info = start_run(s.threads)
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
        encoder.norm = compute_norm_stats(train_w, make_frontend(encoder.feature_cfg))
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
        head_norm=s.head_norm,
        clip_norm=s.clip_norm,
    )
    if s.clip_norm:
        model.fit_clip_reference(x_train)
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
    if s.adapt and s.data.split_column and not train_set.multilabel and s.head_norm == "batch":
        groups = test_set.column(s.data.split_column)
        metrics["acc_adapted"] = adapted_accuracy(model, x_test, y_test, groups, b)
        metrics["acc_refined"] = adapted_evaluate(model, x_test, y_test, groups, batch_size=b, refine=True)[
            "acc"
        ]
    if info.rank == 0:
        text = json.dumps({**metrics, "labels": list(train_set.classes), "steps": result.steps}, indent=1)
        atomic_write(out / "test.json", lambda tmp: Path(tmp).write_text(text))
    return {**metrics, "result": result}
