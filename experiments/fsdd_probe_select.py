"""Choose the layer-wise FSDD probe's input normalisation and regularisation on validation speakers.

For each unseen-speaker fold of ``benchmarks/fsdd_experiment.py`` (test speaker held out), every
variant (input: plain or ``clip_norm``, the clip's mean spectrum replaced by the training clips',
or ``both`` feature sets side by side; logistic regression's inverse regularisation C) is
scored leave-one-speaker-out *inside* the four training voices (train on three, validate on the
fourth, four times); the variant with the best
mean validation accuracy is then trained on all four and scored once on the test speaker. The
test speaker's clips choose nothing::

    python experiments/fsdd_probe_select.py --encoder audiomae/assets/mae_tiny_speech_mixed \\
        --cache runs/fsdd_cache.npz --out experiments/results/fsdd_probe_select

Features: the layer-wise probe's (``fsdd_experiment.layer_stats``: every block's tokens, 5 parts
of the voiced span x mel band of patches), standardised, multinomial logistic regression.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import fsdd_experiment as fx  # noqa: E402

from audiomae.audio import atomic_write  # noqa: E402


def split_scores(encoder, raw, y, train, test, norms, cs, plain) -> dict[str, float]:
    """Accuracy of every (norm, C) variant trained on ``train`` and scored on ``test``."""
    scores, n_classes = {}, int(y.max()) + 1
    normed = None
    if {"clip_norm", "both"} & set(norms):
        normed = fx.layer_stats(encoder, fx.fold_clip_normalized(raw, train))
    for norm in norms:
        feats = {"plain": plain, "clip_norm": normed}.get(norm)
        if norm == "both":
            feats = np.concatenate([plain, normed], axis=1)
        for c in cs:
            acc, _ = fx.mfcc_baseline(raw, y, train, test, n_classes, 0, features=lambda _, f=feats: f, c=c)
            scores[f"{norm} C{c:g}"] = acc
    return scores


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--norms", nargs="+", default=["plain", "clip_norm"], choices=["plain", "clip_norm", "both"]
    )
    p.add_argument("--cs", type=float, nargs="+", default=[0.01, 0.03, 0.1, 0.3])
    p.add_argument("--out", default="experiments/results/fsdd_probe_select")
    own, rest = p.parse_known_args(argv)
    args = fx.parse_args(["--settings", "layers", "--fractions", "1.0", *rest])
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    encoder = fx.load_encoder(args)
    raw, full = fx.load_features(args, encoder)
    y = full.targets()
    speakers = np.array(full.column("speaker"))
    names = sorted(set(speakers))
    plain = fx.layer_stats(encoder, raw) if {"plain", "both"} & set(own.norms) else None
    folds = {}
    for spk in args.folds or names:
        inner = {}
        for val in names:
            if val == spk:
                continue
            train = torch.from_numpy((speakers != spk) & (speakers != val))
            held = torch.from_numpy(speakers == val)
            inner[val] = split_scores(encoder, raw, y, train, held, own.norms, own.cs, plain)
        keys = list(next(iter(inner.values())))
        val_mean = {k: float(np.mean([s[k] for s in inner.values()])) for k in keys}
        chosen = max(keys, key=lambda k: val_mean[k])
        train, held = torch.from_numpy(speakers != spk), torch.from_numpy(speakers == spk)
        test = split_scores(encoder, raw, y, train, held, own.norms, own.cs, plain)
        folds[spk] = {"validation": val_mean, "chosen": chosen, "test": test}
        print(f"{spk}: chose {chosen} (validation {val_mean[chosen]:.3f}), test {test[chosen]:.3f}")
    payload = {"argv": argv or sys.argv[1:], "folds": folds, "elapsed_s": time.perf_counter() - t0}
    out = Path(own.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "select.json", lambda tmp: Path(tmp).write_text(json.dumps(payload, indent=1)))
    md = render(folds, payload["elapsed_s"], args)
    atomic_write(out / "select.md", lambda tmp: Path(tmp).write_text(md))
    print(md)
    return payload


def render(folds: dict, elapsed: float, args) -> str:
    keys = list(next(iter(folds.values()))["test"])
    spk = list(folds)
    lines = [
        "# FSDD layer-wise probe: variants chosen on validation speakers",
        "",
        f"Encoder `{'random' if args.random_encoder else args.encoder}`. Per fold: mean accuracy over "
        "the four leave-one-speaker-out validation splits inside the training voices (V), and on the "
        "test speaker with all four training voices (T). The chosen variant per fold is the best V.",
        "",
        "| variant | " + " | ".join(f"{s} V / T" for s in spk) + " | mean T |",
        "|---|" + "---|" * (len(spk) + 1),
    ]
    for k in keys:
        cells = [f"{folds[s]['validation'][k]:.1%} / {folds[s]['test'][k]:.1%}" for s in spk]
        mean_t = np.mean([folds[s]["test"][k] for s in spk])
        lines.append(f"| {k} | " + " | ".join(cells) + f" | {mean_t:.1%} |")
    chosen = [folds[s]["test"][folds[s]["chosen"]] for s in spk]
    lines += [
        "| **chosen on validation** | "
        + " | ".join(f"{folds[s]['chosen']}: {c:.1%}" for s, c in zip(spk, chosen))
        + f" | **{np.mean(chosen):.1%} ± {np.std(chosen):.1%}** |",
        "",
        f"Total time {elapsed / 60:.1f} min ({args.threads} thread(s)).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
