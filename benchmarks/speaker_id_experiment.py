"""Does Audio-MAE pretraining help a task other than digits? Speaker identification, unseen voices.

speechocean762's test split (125 speakers, 20 read English utterances each, none of them in the
encoder's pretraining data): each speaker's utterances, sorted by file name, go alternately to
classifier-train and classifier-test, so every speaker is in both halves and the task is to name
which of the 125 speakers said a test utterance. The settings, budget and augmentation are
``fsdd_experiment.py``'s (its functions run them): (a) the tiny encoder from scratch, (b) a linear
probe on the pretrained encoder, (c) a full fine-tune of it, (d) MFCC statistics with logistic
regression; each with 100% and 10% (per speaker, at least one utterance) of the train half.

    python benchmarks/speaker_id_experiment.py --manifest ../shared/data/speech/MANIFEST.tsv \\
        --encoder audiomae/assets/mae_tiny_speech --out benchmarks/results/speaker_id

writes ``speaker_id.md`` (table, split sizes, settings, command) and ``speaker_id.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # for fsdd_experiment when imported

import fsdd_experiment as fx  # noqa: E402

from audiomae.audio import atomic_write  # noqa: E402
from audiomae.labels import Clip, LabelSet  # noqa: E402

SETTINGS = {**fx.SETTINGS, "mfcc": "(d) 20 MFCCs + deltas, mean/std + logistic regression, no encoder"}
FOLD = "heldout"  # one split, reported as fsdd_experiment's single fold


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--manifest",
        default="../shared/data/speech/MANIFEST.tsv",
        help="tab-separated path, speaker, duration_s, split, ... (paths relative to its folder)",
    )
    p.add_argument("--corpus", default="speechocean762", help="first folder of the manifest's paths")
    p.add_argument(
        "--split", default="test", help="the manifest's split to use (voices unseen in pretraining)"
    )
    p.add_argument("--out", default="benchmarks/results/speaker_id", help="folder for speaker_id.md / .json")
    fx.add_run_args(p)
    p.add_argument("--clip-seconds", type=float, default=2.0, help="centre crop (zero-padded when shorter)")
    # 450 steps: the six encoder runs of the published table fit an hour on one CPU thread. No
    # mel-axis warp: it mimics another vocal tract, i.e. another speaker.
    p.set_defaults(
        steps=450, freq_warp=0.0, jobs=1, settings=[s for s in fx.SETTINGS if not s.endswith("-spk")]
    )
    args = p.parse_args(argv)
    args.adapt, args.enrol, args.speaker_batches = False, 0, False  # the speaker is the label
    per_speaker = [s for s in args.settings if s.endswith("-spk")]
    if per_speaker:
        p.error(f"{', '.join(per_speaker)}: standardising per speaker removes what this task classifies")
    return args


def read_manifest(manifest: Path, corpus: str, split: str) -> LabelSet:
    """The speakers' utterances, label = speaker; column ``half`` is ``train`` for the 1st, 3rd, ...
    of each speaker's files in sorted order and ``test`` for the others."""
    with open(manifest, newline="") as fh:
        rows = [{k: v.strip() for k, v in r.items()} for r in csv.DictReader(fh, delimiter="\t")]
    rows = [r for r in rows if r["path"].split("/")[0] == corpus and r["split"] == split]
    if not rows:
        raise ValueError(f"{manifest}: no {corpus} files in split '{split}'")
    by_speaker: dict[str, list[dict]] = {}
    for r in sorted(rows, key=lambda r: r["path"]):
        by_speaker.setdefault(r["speaker"], []).append(r)
    clips = []
    for speaker, own in sorted(by_speaker.items()):
        if len(own) < 2:
            raise ValueError(f"{manifest}: speaker {speaker} has {len(own)} file(s); a split needs two")
        for i, r in enumerate(own):
            meta = (
                ("speaker", speaker),
                ("half", "test" if i % 2 else "train"),
                ("duration_s", r["duration_s"]),
            )
            clips.append(Clip(manifest.parent / r["path"], (speaker,), meta))
    return LabelSet(tuple(clips), tuple(sorted(by_speaker)))


def load_features(args, pretrained) -> tuple[torch.Tensor, LabelSet]:
    """(raw log-mels (N, F, T), LabelSet), the log-mels from ``args.cache`` when it exists."""
    manifest = Path(args.manifest)
    full = read_manifest(manifest, args.corpus, args.split)

    def name(clip: Clip) -> str:
        return clip.path.relative_to(manifest.parent).as_posix()

    cached = fx.read_cache(args, pretrained)
    if cached is None:
        return fx.clip_log_mels(args, pretrained, full, name)
    names, classes, raw = cached
    index = {name(c): i for i, c in enumerate(full.clips)}
    if classes != full.classes or not set(names) <= set(index):
        raise ValueError(
            f"{args.cache}: made for other files than {manifest}'s; delete it or pass another --cache"
        )
    return raw, full.subset([index[n] for n in names])


def speaker_mfcc(raw: torch.Tensor) -> np.ndarray:
    """(N, 4 * N_MFCC): mean and std over a clip's voiced frames (within 8 nepers of its loudest)
    of the first N_MFCC cepstral coefficients (DCT-II of the log-mel) and of their frame-to-frame
    deltas: the classic utterance-level description of a voice."""
    from scipy.fft import dct

    out = []
    for mel in raw.double().numpy():
        level = mel.max(0)
        cep = dct(mel, type=2, axis=0, norm="ortho")[: fx.N_MFCC]
        delta = np.diff(cep, axis=1, prepend=cep[:, :1])[:, level > level.max() - 8.0]
        cep = cep[:, level > level.max() - 8.0]
        out.append(np.concatenate([cep.mean(1), cep.std(1), delta.mean(1), delta.std(1)]))
    return np.array(out)


def run_item(item):
    """One (args, setting, fraction, fold) run."""
    args, setting, frac, fold = item
    st = fx._STATE
    full = st["full"]
    torch.set_num_threads(args.threads)
    train_half = full.filter(lambda c: c.get("half") == "train")
    chosen = {c.path for c in train_half.subsample(frac, seed=args.seed).clips}
    tr_idx = torch.tensor([i for i, c in enumerate(full.clips) if c.path in chosen])
    te_idx = torch.tensor([i for i, c in enumerate(full.clips) if c.get("half") == "test"])
    t0 = time.perf_counter()
    if setting == "mfcc":
        acc, conf = fx.mfcc_baseline(
            st["raw"], st["y"], tr_idx, te_idx, st["n_classes"], args.seed, features=speaker_mfcc
        )
        return setting, frac, fold, len(tr_idx), acc, conf, time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        acc, conf, secs = fx.train_one(
            args, setting, st["pretrained"], st["raw"], st["y"], tr_idx, te_idx, tmp
        )
    return setting, frac, fold, len(tr_idx), acc, conf, secs


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    pretrained = fx.load_encoder(args)
    raw, full = load_features(args, pretrained)
    halves = full.column("half")
    sizes = {h: halves.count(h) for h in ("train", "test")}
    sizes.update({f"train@{f:g}": len(full.filter(lambda c: c.get("half") == "train").subsample(f, args.seed))
                  for f in args.fractions})  # fmt: skip
    short = sum(float(d) < args.clip_seconds for d in full.column("duration_s"))
    print(
        f"{len(full)} clips of {full.num_classes} speakers ({sizes}); {args.clip_seconds:g} s centre crop "
        f"({short} shorter, zero-padded); log-mel {tuple(raw.shape)} in "
        f"{time.perf_counter() - t_start:.0f} s; "
        f"encoder {fx.describe_encoder(args, pretrained)}"
    )
    fx.set_state(args, pretrained, raw, full)
    plan = [(args, s, f, FOLD) for s in args.settings for f in args.fractions]
    results, _ = fx.run_plan(plan, run_item, args.jobs, SETTINGS)
    total = time.perf_counter() - t_start

    summary = {key: {"acc": v[FOLD]} for key, v in results.items()}
    payload = {
        "args": vars(args),
        "results": summary,
        "elapsed_s": total,
        "speakers": full.num_classes,
        "clips": sizes,
        "shorter_than_clip": short,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(payload, indent=1)
    atomic_write(out / "speaker_id.json", lambda tmp: Path(tmp).write_text(text))
    md = render_markdown(args, summary, full, sizes, short, total, argv)
    atomic_write(out / "speaker_id.md", lambda tmp: Path(tmp).write_text(md))
    print(md)
    return payload


def render_markdown(args, summary, full: LabelSet, sizes, short: int, total: float, argv) -> str:
    table = fx.settings_table(args, summary, cell=lambda r: f"{r['acc']:.1%}", names=SETTINGS)
    encoder = "a random tiny encoder (stand-in)" if args.random_encoder else f"`{args.encoder}`"
    fracs = ", ".join(f"{f:.0%}: {sizes[f'train@{f:g}']}" for f in args.fractions)
    clips = (
        f"Clips: the centre {args.clip_seconds:g} s of each utterance, zero-padded when shorter "
        f"({short} of {len(full)} are)."
    )
    return "\n".join(
        [
            f"# Speaker identification: {full.num_classes} voices unseen in pretraining",
            "",
            f"{args.corpus} `{args.split}` split: {full.num_classes} speakers; each speaker's files, sorted "
            "by name, go alternately to classifier-train and classifier-test, so every speaker is in both. "
            f"Utterances: {sizes['train']} train, {sizes['test']} test (train utterances used per label "
            f"fraction: {fracs}). Test accuracy over the {sizes['test']} test utterances; chance "
            f"{1 / full.num_classes:.1%}. Pretrained encoder: {encoder}. " + fx.training_text(args, clips),
            "",
            *table,
            "",
            *fx.report_footer(args, total, argv, "speaker_id_experiment.py"),
        ]
    )


if __name__ == "__main__":
    main()
