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

from audiomae.audio import SAMPLE_RATE, SAMPLES_PER_PACKET, load_audio  # noqa: E402
from audiomae.eval.metrics import pesq_wb, plcmos  # noqa: E402
from audiomae.eval.plc_benchmark import trace_seed  # noqa: E402
from audiomae.loss_models import apply_loss, as_loss_spec, draw_loss, n_packets  # noqa: E402
from audiomae.plc import conceal  # noqa: E402
from audiomae.plc.dsp import lpc_inverse_filter, lpc_source  # noqa: E402
from audiomae.plc.mae import (  # noqa: E402
    LPC_DEFAULTS,
    LPC_ORDER,
    ConcealerConfig,
    ConcealerHooks,
    MAEConcealer,
    PitchGuidedRenderer,
    load_default_plc_model,
)
from audiomae.plc.params import FrameParams, extract_params, shape_frames  # noqa: E402

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
    # The clean signal's own excitation (its LPC residual, whitened frame by frame) through the
    # continuation's synthesis filter, which keeps the envelope of the last 30 ms played:
    # "excitation" as it is (its pitch, voicing and level), "excitation-fine" at the power the
    # continuation's own excitation has in each 10 ms frame (only the pulse and noise pattern),
    # "excitation+bands" then shaped to the clean band energies (nearly the clean signal).
    "excitation": ("excitation",),
    "excitation-fine": ("excitation", "fine"),
    "excitation+bands": ("excitation", "band_db"),
    # The same with the concealer's fade switched off: every lost packet at full level.
    "bands-nofade": ("band_db",),
    "excitation+bands-nofade": ("excitation", "band_db"),
    "lpc-nofade": (),
    # Gains that may only lower the continuation (a model need only say where speech falls).
    "bands-cut": ("band_db",),
    "level-cut": ("level_db",),
    "pitch+bands-cut": ("period", "band_db"),
}
NO_FADE = {"full_level_packets": 10**6}
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


def clean_excitation(clean: np.ndarray, hop: int = 160, analysis: int = 480) -> np.ndarray:
    """The LPC residual of ``clean``: each 10 ms block filtered by the analysis filter fitted
    around it (``analysis`` samples centred on the block), the filter's state carried across."""
    from scipy.signal import lfilter

    x = np.asarray(clean, dtype=np.float64)
    out = np.zeros_like(x)
    state = np.zeros(LPC_ORDER)
    for b in range(0, x.size, hop):
        lo = max(0, b + hop // 2 - analysis // 2)
        inverse = lpc_inverse_filter(x[: lo + analysis], LPC_ORDER, analysis, SAMPLE_RATE)
        if inverse is None:
            inverse = np.concatenate([[1.0], np.zeros(LPC_ORDER)])
        out[b : b + hop], state = lfilter(inverse, [1.0], x[b : b + hop], zi=state)
    return out


_EXCITATION: list = [None, None]  # (clean signal, its excitation): every cell of a file shares it


def _file_excitation(clean: np.ndarray) -> np.ndarray:
    if _EXCITATION[0] is not clean:
        _EXCITATION[:] = [clean, clean_excitation(clean)]
    return _EXCITATION[1]


class ExcitationOracle(MAEConcealer):
    """The ``lpc`` concealer whose continuation is driven by the clean excitation (``VARIANTS``)."""

    def __init__(self, excitation: np.ndarray, fine: bool, bands: FrameParams | None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.excitation, self.fine, self.bands = excitation, fine, bands

    def _continuation(self, n: int) -> np.ndarray:
        from scipy.signal import lfilter

        s = self.state
        if s.cont is not None and s.cont.size >= n:
            return s.cont[:n]
        own = super()._continuation(n)  # the concealer's continuation (fills s.cont)
        size, start = s.cont.size, self.emit_index * SAMPLES_PER_PACKET
        source = lpc_source(s.played, self._last_cycle().size, LPC_ORDER, 480, SAMPLE_RATE)
        if source is None:
            return own
        inverse, _, state, _ = source
        e = np.zeros(size)
        seg = self.excitation[start : start + size]
        e[: seg.size] = seg
        if self.fine:  # the power of the continuation's own excitation, frame by frame
            mine = lfilter(inverse, [1.0], np.concatenate([s.played, s.cont]))[-size:]
            hop = SAMPLE_RATE // 100
            frames = np.arange(0, size, hop)
            p_mine = np.array([mine[f : f + hop] @ mine[f : f + hop] for f in frames])
            p_true = np.array([e[f : f + hop] @ e[f : f + hop] for f in frames]) + 1e-12
            gain = np.sqrt(p_mine / p_true)
            e *= np.interp(np.arange(size), frames + hop / 2, gain)
        out, _ = lfilter([1.0], inverse, e, zi=state)
        out = out.astype(np.float32)
        if self.bands is not None:
            out = shape_frames(s.played, out, self.bands, start)
        s.cont = out
        return s.cont[:n]


def make_concealer(variant: str, lookahead: int, params: FrameParams, clean: np.ndarray) -> MAEConcealer:
    fields = VARIANTS[variant]
    config = ConcealerConfig(**(LPC_DEFAULTS | (NO_FADE if variant.endswith("-nofade") else {})))
    if fields is not None and "excitation" in fields:
        return ExcitationOracle(
            _file_excitation(clean),
            fine="fine" in fields,
            bands=params.only("band_db") if "band_db" in fields else None,
            lookahead=lookahead,
            config=config,
        )
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
    given = params.only(*fields)
    if variant.endswith("-cut"):
        given = dataclasses.replace(given, max_boost_db=0.0)
    hooks = OracleParamHooks(given) if fields else None
    return MAEConcealer(lookahead=lookahead, config=config, hooks=hooks)


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
