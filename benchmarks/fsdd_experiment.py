"""Does Audio-MAE pretraining help recognition with few labels? Spoken digits (FSDD), unseen speakers.

Leave-one-speaker-out over FSDD's five speakers: train on four, test on the fifth, rotate, and
report the mean accuracy. Three settings at an equal training budget (same steps, batch size
and schedule): (a) the same tiny encoder from scratch, (b) a linear probe on the pretrained
encoder, (c) a full fine-tune of the pretrained encoder; each with 100% and 10% (stratified,
per digit) of the training labels. Log-mels are computed once; the probe trains on pooled
features computed once (its encoder is frozen).

    python benchmarks/fsdd_experiment.py --data ../shared/data/fsdd \\
        --encoder audiomae/assets/mae_tiny_speech --out benchmarks/results

writes ``fsdd.md`` (table, per-fold accuracies, settings, command), ``fsdd.json`` and
``fsdd_confusion.png`` (setting c, 100% labels, summed over the five folds).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiomae.audio import atomic_write  # noqa: E402
from audiomae.augment import AugmentConfig  # noqa: E402
from audiomae.classify import (  # noqa: E402
    AudioClassifier,
    ClassificationTask,
    adapted_evaluate,
    evaluate,
    fit_spectrogram,
    log_mels,
)
from audiomae.classify.adapt import cluster_refine, enrolment_mask, group_standardize  # noqa: E402
from audiomae.classify.model import POOLINGS, clip_normalize  # noqa: E402
from audiomae.config import FeatureConfig, model_preset  # noqa: E402
from audiomae.features import NormStats  # noqa: E402
from audiomae.labels import Clip, LabelSet, from_pattern, load_clips, pattern_regex  # noqa: E402
from audiomae.model import AudioMAE  # noqa: E402
from audiomae.train import TrainConfig, fit  # noqa: E402

FSDD_PATTERN = "{digit}_{speaker}_{take}.wav"
SETTINGS = {
    "scratch": "(a) from scratch",
    "probe": "(b) linear probe, pretrained",
    "finetune": "(c) fine-tune, pretrained",
    "mfcc": "(d) 20 MFCCs (5 segments) + logistic regression, no encoder",
    "layers": "(b2) linear probe on every encoder layer (5 segments x mel band) + logistic regression",
    "layers-spk": "(b3) as (b2), features standardised per speaker",
    "mfcc-spk": "(d2) as (d), features standardised per speaker",
}
# Rows a run adds beside its own: the fine-tuned (or from-scratch) classifier adapted to the test
# speaker from its unlabelled clips (AudioClassifier.adapt), scored on the same clips.
ADAPTED = {
    "scratch": "(a2) as (a), adapted to the test speaker",
    "finetune": "(c2) as (c), adapted to the test speaker",
}
# ... and then its labels refined by the clusters the speaker's clips form (cluster_refine).
REFINED = {
    "scratch": "(a3) as (a2), labels refined by clustering the speaker's clips",
    "finetune": "(c3) as (c2), labels refined by clustering the speaker's clips",
    "layers-spk": "(b4) as (b3), labels refined by clustering the speaker's clips",
    "mfcc-spk": "(d3) as (d2), labels refined by clustering the speaker's clips",
}
N_MFCC = 20


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/fsdd", help="FSDD folder ({digit}_{speaker}_{take}.wav)")
    p.add_argument("--out", default="benchmarks/results", help="folder for fsdd.md / .json / _confusion.png")
    add_run_args(p)
    p.add_argument("--clip-seconds", type=float, default=0.8)
    p.add_argument("--folds", nargs="+", default=None, help="test speakers (default: all)")
    p.add_argument(
        "--enrol",
        type=int,
        default=0,
        help="settings *-spk and adaptation: the test speaker's statistics from this many of its "
        "clips, unlabelled (0: all)",
    )
    p.add_argument(
        "--speaker-batches",
        action="store_true",
        help="fine-tune / scratch: every training batch from one speaker (see speaker_batches)",
    )
    p.add_argument(
        "--no-adapt",
        dest="adapt",
        action="store_false",
        help="do not also score the fine-tuned / from-scratch classifiers adapted to the test speaker",
    )
    return p.parse_args(argv)


def add_run_args(p: argparse.ArgumentParser) -> None:
    """The encoder, budget, augmentation and runner options (shared by speaker_id_experiment.py)."""
    p.add_argument(
        "--encoder", default="audiomae/assets/mae_tiny_speech", help="pretrained AudioMAE checkpoint"
    )
    p.add_argument(
        "--random-encoder", action="store_true", help="stand in a random tiny encoder for the pretrained one"
    )
    p.add_argument("--steps", type=int, default=1200, help="optimiser steps per run (every setting)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--warmup", type=int, default=60)
    p.add_argument("--lr-scratch", type=float, default=3e-3)
    p.add_argument("--lr-finetune", type=float, default=4e-3)
    p.add_argument("--lr-probe", type=float, default=1e-2)
    p.add_argument("--layer-decay", type=float, default=0.75)
    p.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.1])
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--mask-time", type=float, default=0.25)
    p.add_argument("--mask-freq", type=float, default=0.2)
    p.add_argument("--mixup", type=float, default=0.0)
    p.add_argument(
        "--freq-warp", type=float, default=0.12, help="max mel-axis stretch (speaker augmentation)"
    )
    p.add_argument("--gain", type=float, default=1.0, help="max level offset, normalised log-mel units")
    p.add_argument("--time-stretch", type=float, default=0.0, help="max speaking-rate change")
    p.add_argument("--time-masks", type=int, default=1, help="SpecAugment time bands (<= 6 frames each)")
    p.add_argument("--freq-masks", type=int, default=1, help="SpecAugment mel bands (<= 8 bins each)")
    p.add_argument(
        "--level-norm", action="store_true", help="classifier shifts each clip's speech level to 0"
    )
    p.add_argument(
        "--clip-norm",
        action="store_true",
        help="every clip gets the training clips' mean spectrum (AudioClassifier clip_norm; the probes too)",
    )
    p.add_argument(
        "--pooling", default="mean", choices=POOLINGS, help="the classifier's pooling (scratch, fine-tune)"
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (workers fork: CUDA-safe)")
    p.add_argument(
        "--cache",
        default=None,
        help="npz of the clips' log-mels (written on first use, read after): skips decoding 2,500 files",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel (processes of --threads each)")
    p.add_argument("--threads", type=int, default=1)


def load_encoder(args) -> AudioMAE:
    if args.random_encoder:
        torch.manual_seed(args.seed)
        return AudioMAE(model_preset("tiny"), features=FeatureConfig())
    return AudioMAE.from_pretrained(args.encoder)


def scratch_encoder(pretrained: AudioMAE, seed: int) -> AudioMAE:
    """Same architecture and front end as the pretrained encoder, random weights."""
    torch.manual_seed(seed)
    return AudioMAE(pretrained.cfg, features=pretrained.feature_cfg)


@torch.no_grad()
def pooled_features(model: AudioClassifier, spec: torch.Tensor, batch: int = 128) -> torch.Tensor:
    model.eval()
    return torch.cat([model.pool(spec[i : i + batch]) for i in range(0, len(spec), batch)])


def mfcc_stats(raw: torch.Tensor, segments: int = 5) -> np.ndarray:
    """(N, segments * N_MFCC + 1): the first N_MFCC cepstral coefficients (DCT-II of the log-mel,
    as librosa's mfcc computes them from its dB mel spectrogram) averaged over ``segments`` equal
    parts of the clip's voiced span (frames within 8 nepers of its loudest), and the span's
    length. Averages over parts keep the order of a digit's sounds, which a mean over the whole
    clip loses (47.6% instead of 64.8% on these folds)."""
    from scipy.fft import dct

    out = []
    for mel in raw.double().numpy():
        parts = voiced_parts(mel, segments)
        cep = dct(mel, type=2, axis=0, norm="ortho")[:N_MFCC]
        out.append(np.concatenate([cep[:, i].mean(-1) for i in parts] + [[sum(p.size for p in parts)]]))
    return np.array(out)


def voiced_parts(mel: np.ndarray, segments: int) -> list[np.ndarray]:
    """``segments`` equal parts of the frames of a raw log-mel ``(F, T)`` within 8 nepers of
    its loudest (the clip's voiced span)."""
    level = mel.max(0)
    voiced = np.flatnonzero(level > level.max() - 8.0)
    return np.array_split(np.arange(voiced[0], voiced[-1] + 1), segments)


@torch.no_grad()
def layer_stats(encoder: AudioMAE, raw: torch.Tensor, segments: int = 5, batch: int = 128) -> np.ndarray:
    """(N, layers * segments * grid_f * enc_dim): the frozen encoder's tokens after each block,
    averaged over the patch columns of ``segments`` equal parts of the clip's voiced span, kept
    per mel band of patches. MAE papers probe intermediate layers; keeping the frequency rows
    and the order of the parts keeps what a mean over all tokens loses (chosen on a validation
    speaker inside the training voices of each fold: per band and 5 parts best in 4 of 5)."""
    spec = fit_spectrogram(raw, encoder)
    encoder.eval()
    grid_t, grid_f = encoder.grid(spec[:1])
    outs: list[torch.Tensor] = []
    hooks = [blk.register_forward_hook(lambda m, i, o: outs.append(o)) for blk in encoder.encoder]
    try:
        rows = []
        for i in range(0, len(spec), batch):
            outs.clear()
            encoder.encode(spec[i : i + batch])
            tokens = torch.stack(outs, 1)  # (B, layers, grid_t * grid_f, D)
            rows.append(tokens.view(*tokens.shape[:2], grid_t, grid_f, -1))
    finally:
        for h in hooks:
            h.remove()
    tokens = torch.cat(rows)
    pt = encoder.cfg.patch_t
    out = []
    for mel, tok in zip(raw.numpy(), tokens):
        parts = voiced_parts(mel[:, : grid_t * pt], segments)
        cols = [np.unique(p // pt) if p.size else np.arange(grid_t) for p in parts]
        out.append(torch.cat([tok[:, c].mean(1) for c in cols], -1).reshape(-1).numpy())
    return np.array(out)


def mfcc_baseline(
    raw: torch.Tensor,
    y,
    tr_idx,
    te_idx,
    n_classes: int,
    seed: int,
    features=mfcc_stats,
    c: float = 1.0,
    refine: bool = False,
):
    """The classic baseline: standardised MFCC statistics (``features(raw)``, one row per clip),
    multinomial logistic regression (scikit-learn, inverse regularisation ``c``); returns
    (accuracy, confusion) and, with ``refine``, (accuracy, confusion) of the test clips' labels
    refined by clustering (:func:`~audiomae.classify.adapt.cluster_refine`; the test clips are
    one speaker's)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = features(raw)
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000, random_state=seed))
    clf.fit(x[tr_idx.numpy()], y[tr_idx].numpy())
    truth = y[te_idx].numpy()

    def scored(pred):
        conf = np.zeros((n_classes, n_classes), dtype=int)
        np.add.at(conf, (truth, pred), 1)
        return float((pred == truth).mean()), conf

    test = x[te_idx.numpy()]
    if not refine:
        return scored(clf.predict(test))
    scaled = clf[0].transform(test)
    return (*scored(clf.predict(test)), scored(cluster_refine(scaled, clf[-1].decision_function(scaled))))


def augment_config(args) -> AugmentConfig:
    """The fine-tune / from-scratch augmentation the run options describe."""
    return AugmentConfig(
        time_masks=args.time_masks,
        time_width=6,
        freq_masks=args.freq_masks,
        freq_width=8,
        max_shift=5,
        mask_time=args.mask_time,
        mask_freq=args.mask_freq,
        mixup_alpha=args.mixup,
        freq_warp=args.freq_warp,
        gain=args.gain,
        time_stretch=args.time_stretch,
    )


def train_config(args, lr: float) -> TrainConfig:
    """One run's optimiser budget: ``args.steps`` steps, no logging or checkpoints."""
    return TrainConfig(
        lr=lr,
        steps=args.steps,
        batch_size=args.batch_size,
        warmup_steps=min(args.warmup, args.steps),
        weight_decay=0.05,
        seed=args.seed,
        log_every=0,
        ckpt_every=0,
        tensorboard=False,
        progress=False,
        device=args.device,
    )


def train_one(args, setting: str, pretrained: AudioMAE, raw: torch.Tensor, y, tr_idx, te_idx, workdir):
    """One run; returns (accuracy, confusion, seconds)."""
    t0 = time.perf_counter()
    if setting in ("mfcc", "layers", "mfcc-spk", "layers-spk"):
        if args.clip_norm:
            raw = fold_clip_normalized(raw, tr_idx)
        if setting.startswith("layers"):
            feats = layer_stats(pretrained, raw) if args.clip_norm else _STATE["layer_feats"]
        else:
            feats = mfcc_stats(raw)
        if setting.endswith("-spk"):
            feats = speaker_standardized(args, feats, tr_idx, te_idx)
        c = 0.1 if setting.startswith("layers") else 1.0
        acc, conf, *refined = mfcc_baseline(
            raw,
            y,
            tr_idx,
            te_idx,
            _STATE["n_classes"],
            args.seed,
            features=lambda _: feats,
            c=c,
            refine=setting.endswith("-spk"),
        )
        return acc, conf, time.perf_counter() - t0, *[("refine", *r) for r in refined]
    aug = augment_config(args)
    if setting == "probe":
        torch.manual_seed(args.seed)
        model = AudioClassifier(
            pretrained, _STATE["n_classes"], mode="linear_probe", level_norm=args.level_norm
        )
        task = ClassificationTask(model, seed=args.seed, pooled_inputs=True)
        if args.clip_norm:
            feats = pooled_features(model, fit_spectrogram(fold_clip_normalized(raw, tr_idx), pretrained))
        else:
            feats = _STATE["probe_feats"]
        ds = torch.utils.data.TensorDataset(feats[tr_idx], y[tr_idx])
        fit(task, ds, None, train_config(args, args.lr_probe), workdir)
        model.cpu().eval()
        with torch.no_grad():
            logits = model.head_logits(feats[te_idx])
        pred = logits.argmax(-1)
        acc = float((pred == y[te_idx]).float().mean())
        conf = np.zeros((_STATE["n_classes"],) * 2, dtype=int)
        np.add.at(conf, (y[te_idx].numpy(), pred.numpy()), 1)
        return acc, conf, time.perf_counter() - t0
    if setting == "scratch":
        encoder = scratch_encoder(pretrained, args.seed)
        train_raw = raw[tr_idx]
        encoder.norm = NormStats(float(train_raw.mean()), float(train_raw.std()))
        lr = args.lr_scratch
    else:
        encoder = pretrained
        lr = args.lr_finetune
    spec = fit_spectrogram(raw, encoder)
    torch.manual_seed(args.seed)
    model = AudioClassifier(
        encoder,
        _STATE["n_classes"],
        mode="finetune",
        level_norm=args.level_norm,
        pooling=args.pooling,
        clip_norm=args.clip_norm,
    )
    if args.clip_norm:
        model.fit_clip_reference(spec[tr_idx])
    task = ClassificationTask(model, augment=aug, layer_decay=args.layer_decay, seed=args.seed)
    ds = torch.utils.data.TensorDataset(spec[tr_idx], y[tr_idx])
    if args.speaker_batches:
        ds = speaker_batches(spec, y, tr_idx, args.batch_size, args.seed)
    fit(task, ds, None, train_config(args, lr), workdir)
    out = evaluate(model, spec[te_idx], y[te_idx])
    if not args.adapt:
        return out["acc"], np.array(out["confusion"]), time.perf_counter() - t0
    adapted = [(k, *adapted_score(args, model, spec, y, te_idx, k == "refine")) for k in ("adapt", "refine")]
    return out["acc"], np.array(out["confusion"]), time.perf_counter() - t0, *adapted


def speaker_batches(spec: torch.Tensor, y, tr_idx, batch_size: int, seed: int):
    """A ``fit`` data factory: each epoch, every training speaker's clips in seeded random order,
    cut into batches of one speaker each (the rest dropped), the batches shuffled. The head's
    batch statistics are then one speaker's, as :meth:`AudioClassifier.adapt` gives them at test."""
    speakers = np.array(_STATE["full"].column("speaker"))[tr_idx.numpy()]
    groups = [tr_idx[torch.from_numpy(np.flatnonzero(speakers == name))] for name in np.unique(speakers)]
    if all(len(g) < batch_size for g in groups):
        raise ValueError(f"--speaker-batches: no training speaker has {batch_size} clips")

    def epoch(e: int):
        rng = np.random.default_rng([seed, e])
        batches = []
        for g in groups:
            order = g[torch.from_numpy(rng.permutation(len(g)))]
            batches += [order[i : i + batch_size] for i in range(0, len(g) - batch_size + 1, batch_size)]
        for i in rng.permutation(len(batches)):
            yield spec[batches[i]], y[batches[i]]

    return epoch


def adapted_score(args, model: AudioClassifier, spec: torch.Tensor, y, te_idx, refine: bool = False):
    """(accuracy, confusion) of ``model`` on the test clips after :meth:`AudioClassifier.adapt`
    to ``args.enrol`` random test clips of the speaker (all when 0), their labels unread;
    ``refine``: the labels then refined by clustering (:func:`adapted_evaluate`)."""
    reference = None
    if 0 < args.enrol < len(te_idx):
        reference = torch.from_numpy(enrolment_mask(np.zeros(len(te_idx)), args.enrol, seed=args.seed))
    out = adapted_evaluate(model, spec[te_idx], y[te_idx], [0] * len(te_idx), reference, refine=refine)
    return out["acc"], np.array(out["confusion"])


def fold_clip_normalized(raw: torch.Tensor, tr_idx) -> torch.Tensor:
    """Raw log-mels with every clip's mean spectrum replaced by the training clips' (the
    classifier's ``clip_norm`` for features computed outside it)."""
    return clip_normalize(raw, raw[tr_idx].mean(dim=(0, 2)))


def speaker_standardized(args, feats: np.ndarray, tr_idx, te_idx) -> np.ndarray:
    """``feats`` z-scored per speaker (no labels read): each training speaker by its training
    clips, the test speaker by ``args.enrol`` random clips of its own (all when 0)."""
    speakers = np.array(_STATE["full"].column("speaker"))
    reference = np.zeros(len(speakers), dtype=bool)
    reference[tr_idx.numpy()] = True
    test = np.zeros(len(speakers), dtype=bool)
    test[te_idx.numpy()] = True
    if args.enrol > 0:
        test &= enrolment_mask(speakers, args.enrol, seed=args.seed)
    return group_standardize(feats, speakers, reference | test)


_STATE: dict = {}  # set before workers fork; read-only inside them


def run_item(item):
    """One (args, setting, fraction, test speaker) run; args travel with the item so that one
    pool can run several variants (experiments/fsdd_screen.py)."""
    args, setting, frac, spk = item
    st = _STATE
    full = st["full"]
    torch.set_num_threads(args.threads)
    train_set, _ = full.split_by("speaker", [spk])
    chosen = {c.path for c in train_set.subsample(frac, seed=args.seed).clips}
    tr_idx = torch.tensor([i for i, c in enumerate(full.clips) if c.path in chosen])
    te_idx = torch.tensor([i for i, c in enumerate(full.clips) if c.get("speaker") == spk])
    with tempfile.TemporaryDirectory() as tmp:
        acc, conf, secs, *extra = train_one(
            args, setting, st["pretrained"], st["raw"], st["y"], tr_idx, te_idx, tmp
        )
    return setting, frac, spk, len(tr_idx), acc, conf, secs, *extra


def load_features(args, pretrained: AudioMAE):
    """(raw log-mels (N, F, T), LabelSet) of every FSDD clip, from ``args.cache`` when it exists."""
    cached = read_cache(args, pretrained)
    if cached is not None:
        names, classes, raw = cached
        regex = pattern_regex(FSDD_PATTERN)
        clips = []
        for name in names:
            fields = regex.fullmatch(name).groupdict()
            clips.append(Clip(Path(args.data) / name, (fields["digit"],), tuple(fields.items())))
        return raw, LabelSet(tuple(clips), classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # README or stray files in the data folder
        full = from_pattern(args.data, FSDD_PATTERN, label="digit")
    return clip_log_mels(args, pretrained, full, lambda c: c.path.name)


def _feature_key(pretrained: AudioMAE) -> str:
    return json.dumps(dataclasses.asdict(pretrained.feature_cfg), sort_keys=True)


def read_cache(args, pretrained: AudioMAE):
    """(clip names, classes, raw log-mels) from ``args.cache``, or None when there is none yet.

    The cache holds file names, the clip length and the feature config; a cache made with
    other settings is an error rather than silently reused."""
    cache = Path(args.cache) if args.cache else None
    if cache is None or not cache.exists():
        return None
    with np.load(cache, allow_pickle=False) as z:
        stale = {"names", "classes", "raw", "features", "clip_seconds"} - set(z.files)
        fcfg = _feature_key(pretrained)
        if stale or str(z["features"]) != fcfg or float(z["clip_seconds"]) != args.clip_seconds:
            raise ValueError(
                f"{cache}: made by another version or with other features or clip length; "
                "delete it or pass another --cache"
            )
        names, raw = [str(n) for n in z["names"]], torch.from_numpy(z["raw"].astype(np.float32))
        return names, tuple(str(c) for c in z["classes"]), raw


def clip_log_mels(args, pretrained: AudioMAE, labels: LabelSet, name):
    """(raw log-mels (N, F, T), the clips that loaded) of ``labels`` centred in ``args.clip_seconds``;
    written to ``args.cache`` (when given) under ``name(clip)`` for :func:`read_cache`."""
    waves, full = load_clips(labels, args.clip_seconds, pretrained.feature_cfg.sample_rate)
    raw = log_mels(waves, pretrained.feature_cfg, progress=True)
    if args.cache:
        cache = Path(args.cache)
        names = np.array([name(c) for c in full.clips])
        # float16 keeps 3 significant digits of natural-log mel power: far below the augmentation noise.
        arrays = dict(names=names, classes=np.array(full.classes), raw=raw.numpy().astype(np.float16))
        arrays["features"] = np.array(_feature_key(pretrained))
        arrays["clip_seconds"] = np.array(args.clip_seconds)
        cache.parent.mkdir(parents=True, exist_ok=True)

        def write(tmp):
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

        atomic_write(cache, write)
    return raw, full


def _collect(outcome, results, confusions, bar, names=SETTINGS) -> None:
    """Record one run's outcome; elements after the 7th are further scores of the same run,
    (name, accuracy, confusion): "adapt" (the classifier adapted to the test speaker), "refine"
    (its labels then refined by clustering)."""
    setting, frac, spk, n_train, acc, conf, secs, *extra = outcome
    scores = [(setting, acc, conf)] + [(f"{setting}-{k}", a, c) for k, a, c in extra]
    for name, a, c in scores:
        key = f"{name}@{frac:g}"
        results.setdefault(key, {})[spk] = a
        confusions[key] = confusions.get(key, 0) + c
    bar.update(1)
    more = "".join(f" {k} {a:.4f}" for k, a, _ in extra)
    bar.write(
        f"{names[setting]:30s} labels {frac:4.0%} ({n_train:4d} clips) test {spk:9s} "
        f"acc {acc:.4f}{more} ({secs:.0f} s)"
    )


def confusion_png(conf: np.ndarray, labels, title: str, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2, 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    norm = conf / np.maximum(conf.sum(axis=1, keepdims=True), 1)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(conf.shape[0]):
        for j in range(conf.shape[1]):
            if conf[i, j]:
                ax.text(j, i, str(conf[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")  # fmt: skip
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("spoken digit")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the row")
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))


def describe_encoder(args, pretrained: AudioMAE) -> str:
    return (
        f"{'random (stand-in)' if args.random_encoder else args.encoder} "
        f"({sum(p.numel() for p in pretrained.parameters()) / 1e6:.2f} M params incl. decoder)"
    )


def set_state(args, pretrained: AudioMAE, raw: torch.Tensor, full: LabelSet) -> None:
    """Fill ``_STATE`` for :func:`train_one` (before any worker forks)."""
    if "probe" in args.settings and not args.clip_norm:
        # The frozen encoder's pooled features are the same for every fold: compute them once
        # (with --clip-norm they depend on the fold's training clips: train_one makes them).
        probe = AudioClassifier(
            pretrained, len(full.classes), mode="linear_probe", level_norm=args.level_norm
        )
        _STATE["probe_feats"] = pooled_features(probe, fit_spectrogram(raw, pretrained))
    if {"layers", "layers-spk"} & set(args.settings) and not args.clip_norm:
        _STATE["layer_feats"] = layer_stats(pretrained, raw)
    _STATE.update(
        args=args, pretrained=pretrained, raw=raw, y=full.targets(), full=full, n_classes=len(full.classes)
    )


def run_plan(plan, worker, jobs: int, names=SETTINGS):
    """Run ``worker(item)`` for every item of ``plan`` (``jobs`` forked processes when > 1);
    returns (results {"setting@fraction": {fold: acc}}, confusions {"setting@fraction": summed})."""
    from tqdm import tqdm

    results: dict[str, dict[str, float]] = {}
    confusions: dict[str, np.ndarray] = {}
    # Heavy runs first so that parallel workers finish together.
    plan = sorted(plan, key=lambda p: (p[1] == "probe", -p[2]))
    bar = tqdm(total=len(plan), desc="runs")
    if jobs > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        # fork: workers inherit the loaded data instead of re-reading 2,500 files each.
        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("fork")) as pool:
            outcomes = pool.map(worker, plan)
            for outcome in outcomes:
                _collect(outcome, results, confusions, bar, names)
    else:
        for item in plan:
            _collect(worker(item), results, confusions, bar, names)
    bar.close()
    return results, confusions


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    pretrained = load_encoder(args)
    raw, full = load_features(args, pretrained)
    speakers = sorted(set(full.column("speaker")))
    folds = args.folds or speakers
    print(
        f"{len(full)} clips, speakers {speakers}; log-mel {tuple(raw.shape)} in "
        f"{time.perf_counter() - t_start:.0f} s; encoder {describe_encoder(args, pretrained)}"
    )
    set_state(args, pretrained, raw, full)
    plan = [(args, s, f, spk) for s in args.settings for f in args.fractions for spk in folds]
    results, confusions = run_plan(plan, run_item, args.jobs)
    total = time.perf_counter() - t_start

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        key: {"mean": float(np.mean(list(v.values()))), "std": float(np.std(list(v.values()))), "folds": v}
        for key, v in results.items()
    }
    payload = {"args": vars(args), "results": summary, "elapsed_s": total, "speakers": folds}
    text = json.dumps(payload, indent=1)
    atomic_write(out / "fsdd.json", lambda tmp: Path(tmp).write_text(text))
    key_c = "finetune@1"
    if key_c in confusions:
        acc_c = summary[key_c]["mean"]
        confusion_png(
            confusions[key_c],
            full.classes,
            f"FSDD, unseen speakers (folds summed)\nfine-tune, 100% labels, mean acc {acc_c:.1%}",
            out / "fsdd_confusion.png",
        )
    md = render_markdown(args, summary, folds, total, argv)
    atomic_write(out / "fsdd.md", lambda tmp: Path(tmp).write_text(md))
    print(md)
    return payload


def settings_table(
    args, summary, cell=lambda r: f"{r['mean']:.1%} ± {r['std']:.1%}", names=SETTINGS
) -> list[str]:
    """Markdown rows: one per setting (named by ``names``), one column per label fraction."""
    fracs = args.fractions
    lines = [
        "| setting | " + " | ".join(f"{f:.0%} labels" for f in fracs) + " |",
        "|---|" + "---|" * len(fracs),
    ]
    rows = [(s, names[s]) for s in args.settings]
    rows += [(f"{s}-adapt", ADAPTED[s]) for s in args.settings if s in ADAPTED]
    rows += [(f"{s}-refine", REFINED[s]) for s in args.settings if s in REFINED]
    for key, name in rows:
        if not any(f"{key}@{f:g}" in summary for f in fracs):
            continue
        cells = []
        for f in fracs:
            r = summary.get(f"{key}@{f:g}")
            cells.append(cell(r) if r else "n/a")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def training_text(args, clips: str) -> str:
    """The report's sentences on the budget, ``clips`` (how clips were cut) and augmentation."""
    return (
        f"Equal budget for every setting: {args.steps} AdamW steps of batch "
        f"{args.batch_size}, {args.warmup} warm-up steps then cosine; lr scratch {args.lr_scratch:g}, "
        f"fine-tune {args.lr_finetune:g} (layer decay {args.layer_decay:g}), probe {args.lr_probe:g}. "
        f"{clips} Fine-tune and scratch use "
        f"SpecAugment ({args.time_masks} time band(s) <= 6 frames, {args.freq_masks} mel band(s) "
        "<= 8 bins), random shift <= 5 frames, "
        f"mel-axis warp <= {args.freq_warp:g}, time stretch <= {args.time_stretch:g}, "
        f"gain <= {args.gain:g}, and structured patch masking "
        f"(time {args.mask_time:g}, freq {args.mask_freq:g}); mixup {args.mixup:g}"
        f"{'; clip level normalised' if args.level_norm else ''}"
        f"{'; every clip given the mean spectrum of the training clips' if args.clip_norm else ''}. "
        "Label fractions below 100% are drawn stratified per class."
    )


def render_markdown(args, summary, folds, total, argv) -> str:
    lines = settings_table(args, summary)
    per_fold = ["| run | " + " | ".join(folds) + " |", "|---|" + "---|" * len(folds)]
    for key, r in summary.items():
        per_fold.append(f"| {key} | " + " | ".join(f"{r['folds'][spk]:.1%}" for spk in folds) + " |")
    encoder = "a random tiny encoder (stand-in)" if args.random_encoder else f"`{args.encoder}`"
    return "\n".join(
        [
            "# FSDD: spoken digits from unseen speakers",
            "",
            f"Leave-one-speaker-out over {len(folds)} speakers (train on the others, test on the held-out "
            "one), mean ± std of test accuracy over folds. Pretrained encoder: "
            f"{encoder}. "
            + training_text(args, f"Clips resampled 8 -> 16 kHz, centred in {args.clip_seconds:g} s."),
            "",
            *lines,
            "",
            "Per fold (test speaker):",
            "",
            *per_fold,
            "",
            *report_footer(args, total, argv, "fsdd_experiment.py"),
        ]
    )


def report_footer(args, total: float, argv, script: str) -> list[str]:
    """The report's last lines: time taken and the command that made it."""
    cmd = f"python benchmarks/{script} " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    return [
        f"Total time {total / 60:.1f} min on this machine ({args.threads} threads).",
        "",
        "```",
        cmd,
        "```",
        "",
    ]


if __name__ == "__main__":
    main()
