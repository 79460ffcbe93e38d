"""Where the continuation loses: the ``lpc`` concealer given the clean signal's speech parameters.

    python experiments/oracle_params.py [--data ../shared/data/librispeech/train] [--files 8]
        [--conditions ge05b1.5,ge10b2,ge20b3] [--modes lpc,la1,la2] [--variants NAME ...]
        [--out runs/oracle_params] [--report]

Each variant runs the ``lpc`` concealer (the MAE concealer's signal path with the MAE off) with
some of the clean signal's parameters (:func:`audiomae.plc.params.extract_params`: pYIN pitch
period, voicing cut-off, 18 band energies, level per 10 ms frame) given to its continuation
through :meth:`audiomae.plc.mae.ConcealerHooks.params` (see ``VARIANTS``): what a perfect
predictor of those parameters would add to ``lpc``. ``logmel`` is, for scale, the clean
log-mel given to the MAE concealer's renderer trusted fully (``tune_concealer.py``'s ``trust``
variant with ``--oracle``: the MAE from the first lost packet, one gain per mel band up to
24 dB, three packets at full level). Modes: ``lpc`` (causal), ``la1`` / ``la2`` (one / two
packets of lookahead, gaps bridged to the packet after them).

Every (variant, mode, file, condition) is scored once (PLCMOS, PESQ-WB) and appended to
``OUT/rows.jsonl``, and each file's parameters are kept in ``OUT/params``, so a stopped run
resumes where it stopped; ``--report`` only prints the table of what is there. Files run one
after another (all cells of a file before the next), so a partial run gives a complete table
on fewer files. The table: per mode and condition, each variant's mean PLCMOS / PESQ-WB minus
``lpc``'s, file by file, on the files every variant has finished. The loss traces are the PLC
benchmark's (:func:`audiomae.eval.plc_benchmark.trace_seed`); the first 10 s of each file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from tuning_set import add_tuning_set_args, tuning_files  # noqa: E402

from audiomae.audio import SAMPLE_RATE, load_audio  # noqa: E402
from audiomae.eval.metrics import pesq_wb, plcmos  # noqa: E402
from audiomae.eval.plc_benchmark import trace_seed  # noqa: E402
from audiomae.loss_models import apply_loss, as_loss_spec, draw_loss, n_packets  # noqa: E402
from audiomae.plc import conceal  # noqa: E402
from audiomae.plc.mae import (  # noqa: E402
    LPC_DEFAULTS,
    ConcealerConfig,
    ConcealerHooks,
    MAEConcealer,
    PitchGuidedRenderer,
    load_default_plc_model,
)
from audiomae.plc.params import FrameParams, extract_params  # noqa: E402

MODES = {"lpc": 0, "la1": 1, "la2": 2}  # lookahead in packets
# variant: the parameters given to the continuation (None: the log-mel oracle); "vuv" gives only
# the voiced / unvoiced decision: noise-only excitation in unvoiced frames, the concealer's own
# cut-off in voiced ones.
VARIANTS: dict[str, tuple[str, ...] | None] = {
    "lpc": (),
    "pitch": ("period",),
    "voicing": ("cutoff",),
    "bands": ("band_db",),
    "level": ("level_db",),
    "pitch+voicing": ("period", "cutoff"),
    "pitch+voicing+level": ("period", "cutoff", "level_db"),
    "all": ("period", "cutoff", "band_db", "level_db"),
    "vuv": ("vuv",),
    "pitch+bands": ("period", "band_db"),
    "pitch+vuv+bands": ("period", "vuv", "band_db"),
    "logmel": None,
}
MAX_SECONDS = 10.0
PARAMS_VERSION = 1  # bump when extract_params changes what it measures


class OracleParamHooks(ConcealerHooks):
    """The clean signal's parameters for the continuation (``given``), or its log-mel for the
    renderer (``clean`` with a log-mel front end)."""

    def __init__(
        self, given: FrameParams | None = None, clean: np.ndarray | None = None, features=None
    ) -> None:
        self.given, self.clean = given, clean
        if features is not None:
            from audiomae.features import LogMel

            self.frontend = LogMel(features, backend="torch")

    def params(self, start, n):
        return self.given

    def logmel(self, window, predicted):
        if self.clean is None:
            return predicted
        import torch

        true = np.zeros(window.wave.size, dtype=np.float32)
        src = self.clean[max(0, window.start) : window.start + window.wave.size]
        true[max(0, -window.start) : max(0, -window.start) + src.size] = src
        return self.frontend(torch.from_numpy(true).unsqueeze(0))


def make_concealer(variant: str, lookahead: int, params: FrameParams, clean: np.ndarray) -> MAEConcealer:
    fields = VARIANTS[variant]
    if fields is None:  # the clean log-mel, trusted fully
        features = load_default_plc_model().feature_cfg
        return MAEConcealer(
            vocoder=PitchGuidedRenderer(features, n_iter=0, gain_groups=None, max_gain_db=24.0),
            lookahead=lookahead,
            config=ConcealerConfig(mae_from_packet=1, full_level_packets=3, fade_packets=3),
            hooks=OracleParamHooks(clean=clean, features=features),
        )
    if "vuv" in fields:
        params = dataclasses.replace(params, cutoff=np.where(np.isfinite(params.period), np.nan, 0.0))
        fields = tuple("cutoff" if f == "vuv" else f for f in fields)
    hooks = OracleParamHooks(params.only(*fields)) if fields else None
    return MAEConcealer(lookahead=lookahead, config=ConcealerConfig(**LPC_DEFAULTS), hooks=hooks)


def file_params(file: Path, clean: np.ndarray, out: Path) -> FrameParams:
    """The clean file's parameters, extracted once and kept in ``out/params``."""
    path = out / "params" / f"{file.stem}.v{PARAMS_VERSION}.npz"
    if path.exists():
        with np.load(path) as z:
            return FrameParams(**{k: z[k] for k in ("period", "cutoff", "band_db", "level_db")})
    params = extract_params(clean)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp, period=params.period, cutoff=params.cutoff, band_db=params.band_db, level_db=params.level_db
    )
    tmp.replace(path)
    return params


def load_rows(out: Path) -> dict[tuple, dict]:
    rows = {}
    path = out / "rows.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:  # a line cut off by a stopped run
                continue
            rows[r["variant"], r["mode"], r["file"], r["condition"]] = r
    return rows


def run(files, conditions, modes, variants, out: Path) -> None:
    from tqdm.auto import tqdm

    done = load_rows(out)
    out.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(files) * len(conditions) * len(modes) * len(variants), unit="run")
    with open(out / "rows.jsonl", "a") as log:
        for file in map(Path, files):
            todo = [
                (c, m, v)
                for c in conditions
                for m in modes
                for v in variants
                if (v, m, file.name, c) not in done
            ]
            bar.update(len(conditions) * len(modes) * len(variants) - len(todo))
            if not todo:
                continue
            clean = load_audio(file)[: int(MAX_SECONDS * SAMPLE_RATE)]
            params = file_params(file, clean, out)
            for condition in conditions:
                lost = draw_loss(as_loss_spec(condition), n_packets(clean.size), trace_seed(file, condition))
                lossy = apply_loss(clean, lost)
                for mode in modes:
                    for variant in variants:
                        if (condition, mode, variant) not in todo:
                            continue
                        bar.set_postfix_str(f"{file.stem} {condition} {mode} {variant}")
                        concealed = conceal(lossy, lost, make_concealer(variant, MODES[mode], params, clean))
                        row = {
                            "variant": variant,
                            "mode": mode,
                            "file": file.name,
                            "condition": condition,
                            "plcmos": plcmos(concealed),
                            "pesq": pesq_wb(clean, concealed),
                        }
                        log.write(json.dumps(row) + "\n")
                        log.flush()
                        bar.update()
    bar.close()


def report(out: Path, conditions, modes, variants) -> str:
    """Markdown: per mode, each variant's mean difference to ``lpc`` (PLCMOS / PESQ-WB, file by
    file) per condition, on the files every variant and condition has finished; ``lpc``'s own row
    gives its means."""
    rows = load_rows(out)
    files = sorted({k[2] for k in rows})
    complete = [
        f for f in files if all((v, m, f, c) in rows for v in variants for m in modes for c in conditions)
    ]
    lines = [
        f"{len(complete)} files complete (of {len(files)} started); PLCMOS / PESQ-WB, mean difference"
        " to `lpc` file by file (+- its standard error); the `lpc` row gives its means.",
        "",
    ]
    for mode in modes:
        lines += [
            f"**{mode}**",
            "",
            "| variant | " + " | ".join(conditions) + " |",
            "|---|" + "---|" * len(conditions),
        ]
        for variant in variants:
            cells = []
            for c in conditions:
                base = {f: rows["lpc", mode, f, c] for f in complete}
                if variant == "lpc":
                    p = np.mean([base[f]["plcmos"] for f in complete]) if complete else np.nan
                    q = np.mean([base[f]["pesq"] for f in complete]) if complete else np.nan
                    cells.append(f"{p:.3f} / {q:.3f}")
                    continue
                d = np.array(
                    [
                        [rows[variant, mode, f, c][k] - base[f][k] for k in ("plcmos", "pesq")]
                        for f in complete
                    ]
                ).reshape(-1, 2)
                mean = d.mean(0) if d.size else np.full(2, np.nan)
                se = d.std(0, ddof=1) / np.sqrt(len(d)) if len(d) > 1 else np.full(2, np.nan)
                cells.append(f"{mean[0]:+.3f} ±{se[0]:.3f} / {mean[1]:+.3f} ±{se[1]:.3f}")
            lines.append(f"| {variant} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_tuning_set_args(ap)
    ap.set_defaults(files=8, conditions="ge05b1.5,ge10b2,ge20b3")
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {list(MODES)}")
    ap.add_argument("--variants", nargs="*", choices=list(VARIANTS), default=list(VARIANTS))
    ap.add_argument("--out", default="runs/oracle_params", help="results and parameter cache (resumable)")
    ap.add_argument("--report", action="store_true", help="only print the table of what has run")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    conditions, modes = args.conditions.split(","), args.modes.split(",")
    unknown = set(modes) - set(MODES)
    if unknown:
        ap.error(f"unknown modes {sorted(unknown)}")
    variants = ["lpc"] + [v for v in args.variants if v != "lpc"]
    out = Path(args.out)
    files = tuning_files(args)
    if not args.report:
        run(files, conditions, modes, variants, out)
    print(f"\n{len(files)} files of {args.data} (every {args.every}th), first {MAX_SECONDS:g} s each\n")
    print(report(out, conditions, modes, variants))


if __name__ == "__main__":
    main()
