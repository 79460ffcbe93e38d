"""Screen fine-tune variants on FSDD's five unseen-speaker folds, then re-test the best with new seeds.

Stage 1 runs every variant in ``VARIANTS`` (one change each against the settings of
``fsdd_experiment.py``) at 100% labels on all five folds with seed 0. Stage 2 (``--final-seeds``)
takes the variant with the best mean fine-tune accuracy and runs fine-tune *and* from-scratch
with its settings at 100% and 10% labels on fresh seeds, so the reported figures are not the
maximum over the screen's seed-0 noise. All runs share one process pool, so on a GPU machine
the whole screen is one command:

    python experiments/fsdd_screen.py --device cuda --jobs 12 --cache runs/fsdd_cache.npz \\
        --final-seeds 1 2 --budget-min 8 --out experiments/results/fsdd_screen

Options this script does not know (``--clip-seconds``, ``--random-encoder``, ...) are passed to
every run. Results are rewritten after every finished run (``screen.json``, ``screen.md``), so a run
stopped by ``--budget-min`` (no new runs start after it) or by a kill still leaves a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import fsdd_experiment as fx  # noqa: E402

from audiomae.audio import atomic_write  # noqa: E402

# name -> (setting, extra fsdd_experiment arguments). Order is priority: with a budget, the
# first variants finish first.
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "base": ("finetune", []),
    "gain1": ("finetune", ["--gain", "1.0"]),
    "level": ("finetune", ["--level-norm"]),
    "gain1-long": ("finetune", ["--gain", "1.0", "--steps", "2400", "--warmup", "120"]),
    "level-long": ("finetune", ["--level-norm", "--steps", "2400", "--warmup", "120"]),
    "gain1-masks2": ("finetune", ["--gain", "1.0", "--time-masks", "2", "--freq-masks", "2"]),
    "gain1-mixup": ("finetune", ["--gain", "1.0", "--mixup", "0.3"]),
    "gain1-b64": ("finetune", ["--gain", "1.0", "--batch-size", "64"]),
    "gain1-lr4": ("finetune", ["--gain", "1.0", "--lr-finetune", "4e-3"]),
    "gain1-ld65": ("finetune", ["--gain", "1.0", "--layer-decay", "0.65"]),
    "gain1-warp2": ("finetune", ["--gain", "1.0", "--freq-warp", "0.2"]),
    "gain15": ("finetune", ["--gain", "1.5"]),
    "scratch-base": ("scratch", []),
    "scratch-gain1": ("scratch", ["--gain", "1.0"]),
    "scratch-level": ("scratch", ["--level-norm"]),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--folds", nargs="+", default=None, help="test speakers (default: all five)")
    p.add_argument("--final-seeds", type=int, nargs="*", default=[], help="stage 2 seeds (none: skip)")
    p.add_argument("--budget-min", type=float, default=None, help="start no run after this many minutes")
    p.add_argument("--out", default="experiments/results/fsdd_screen")
    p.add_argument("--data", default="../shared/data/fsdd")
    p.add_argument("--encoder", default="audiomae/assets/mae_tiny_speech")
    p.add_argument("--cache", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=None, help="cap every run's steps (smoke tests)")
    a, a.passthrough = p.parse_known_args(argv)  # the rest goes to every run (e.g. --clip-seconds)
    return a


def run_args(a, extra: list[str], seed: int, setting: str, fraction: float) -> argparse.Namespace:
    """fsdd_experiment's arguments for one run: shared options, the variant's changes, the seed."""
    common = ["--data", a.data, "--encoder", a.encoder, "--device", a.device, "--threads", str(a.threads)]
    common += ["--seed", str(seed), "--settings", setting, "--fractions", str(fraction), *a.passthrough]
    args = fx.parse_args(common + extra)
    if a.max_steps:
        args.steps = min(args.steps, a.max_steps)
        args.warmup = min(args.warmup, args.steps)
    return args


def summarise(done: list[dict]) -> dict:
    groups: dict[str, dict] = {}
    for r in done:
        g = groups.setdefault(r["key"], {"stage": r["stage"], "variant": r["variant"], "folds": {}})
        g["folds"][r["fold"]] = r["acc"]
    for g in groups.values():
        accs = list(g["folds"].values())
        g.update(mean=float(np.mean(accs)), std=float(np.std(accs)), n=len(accs))
    return groups


def render(groups: dict, folds: list[str], header: str) -> str:
    lines = [header, "", "| run | mean ± std | folds | " + " | ".join(folds) + " |"]
    lines.append("|---|---|---|" + "---|" * len(folds))
    for key, g in groups.items():
        cells = [f"{g['folds'][f]:.1%}" if f in g["folds"] else "-" for f in folds]
        lines.append(f"| {key} | {g['mean']:.1%} ± {g['std']:.1%} | {g['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    base = run_args(a, [], 0, "finetune", 1.0)
    base.cache = a.cache
    pretrained = fx.load_encoder(base)
    raw, full = fx.load_features(base, pretrained)
    folds = a.folds or sorted(set(full.column("speaker")))
    fx._STATE.update(pretrained=pretrained, raw=raw, y=full.targets(), full=full, n_classes=len(full.classes))
    print(f"{len(full)} clips, folds {folds}, {len(a.variants)} variants, device {a.device}, {a.jobs} jobs")

    stage1 = []
    for name in a.variants:
        setting, extra = VARIANTS[name]
        args = run_args(a, extra, 0, setting, 1.0)
        stage1 += [
            dict(stage=1, variant=name, key=name, setting=setting, args=args, fraction=1.0, fold=f)
            for f in folds
        ]

    out = Path(a.out)
    done: list[dict] = []
    deadline = t0 + a.budget_min * 60 if a.budget_min else float("inf")
    cmd = "python experiments/fsdd_screen.py " + " ".join(argv if argv is not None else sys.argv[1:])

    def write() -> dict:
        groups = summarise(done)
        header = (
            f"# FSDD fine-tune screen ({time.perf_counter() - t0:.0f} s, device {a.device})\n\n"
            f"Stage 1: one change each vs `fsdd_experiment.py` defaults, 100% labels, seed 0. "
            f"Stage 2: the best stage-1 fine-tune variant, fine-tune and scratch, fresh seeds.\n\n"
            f"```\n{cmd}\n```"
        )
        text = json.dumps({"runs": [{k: v for k, v in r.items() if k != "args"} for r in done],
                           "groups": groups, "variants": VARIANTS}, indent=1)  # fmt: skip
        atomic_write(out / "screen.json", lambda tmp: Path(tmp).write_text(text))
        atomic_write(out / "screen.md", lambda tmp: Path(tmp).write_text(render(groups, folds, header)))
        return groups

    import multiprocessing as mp

    pending: dict = {}
    queue = list(stage1)
    stage2_added = not a.final_seeds
    with ProcessPoolExecutor(a.jobs, mp_context=mp.get_context("fork")) as pool:
        while queue or pending:
            while queue and len(pending) < a.jobs and time.perf_counter() < deadline:
                item = queue.pop(0)
                job = (item["args"], item["setting"], item["fraction"], item["fold"])
                fut = pool.submit(fx.run_item, job)
                pending[fut] = item
            if not pending:
                break
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                item = pending.pop(fut)
                setting, frac, spk, n_train, acc, _conf, secs, *_adapted = fut.result()
                done.append(item | {"acc": acc, "secs": secs, "n_train": n_train})
                elapsed = time.perf_counter() - t0
                print(f"[{elapsed:5.0f} s] {item['key']:28s} {spk:9s} acc {acc:.3f} ({secs:.0f} s)")
            groups = write()
            stage1_left = any(i["stage"] == 1 for i in queue) or any(
                i["stage"] == 1 for i in pending.values()
            )
            if not stage2_added and not stage1_left:
                stage2_added = True
                ft = {k: g for k, g in groups.items() if VARIANTS[g["variant"]][0] == "finetune"}
                best = max(ft, key=lambda k: ft[k]["mean"])
                print(f"stage 2: best fine-tune variant '{best}' ({ft[best]['mean']:.1%})")
                extra = VARIANTS[best][1]
                for seed in a.final_seeds:
                    for setting in ("finetune", "scratch"):
                        for frac in (1.0, 0.1):
                            args = run_args(a, extra, seed, setting, frac)
                            key = f"{best}/{setting}@{frac:g}/seed{seed}"
                            queue += [dict(stage=2, variant=best, key=key, setting=setting, args=args,
                                           fraction=frac, fold=f) for f in folds]  # fmt: skip
    groups = write()
    print((out / "screen.md").read_text())
    return groups


if __name__ == "__main__":
    main()
