"""PLC benchmark: files x loss conditions x concealment methods -> metrics table, markdown and plot."""

from __future__ import annotations

import csv
import functools
import io
import math
import os
import sys
import time
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from audiomae.audio import SAMPLE_RATE, SAMPLES_PER_PACKET, check_outputs, load_audio, write_all
from audiomae.eval.metrics import lsd_lost, pesq_wb, plcmos, stoi
from audiomae.eval.report import benchmark_page_files, benchmark_page_writes, example_folders
from audiomae.loss_models import apply_loss, as_loss_spec, draw_loss, loss_rate, n_packets
from audiomae.plc.base import ablations, baseline_methods, check_model_taken

METRICS = ("pesq", "stoi", "plcmos", "lsd_lost")
COLUMNS = ("file", "condition", "method", "seconds", "loss_rate", *METRICS, "ms_per_packet", "notes")
RESULT_FILES = ("results.csv", "results.md", "results.png")


def trace_seed(file: str | os.PathLike, condition: str, seed: int = 0) -> int:
    """Seed for the loss trace of one (file, condition): stable across runs and machines.

    Uses the file's name, not its path, so moving the data set keeps the traces; every
    method sees the same trace for a given file and condition.
    """
    return zlib.crc32(f"{Path(file).name}|{condition}|{seed}".encode())


def _check_methods(methods: Sequence[str], model=None) -> None:
    from audiomae.plc import make_concealer

    for method in methods:
        try:
            make_concealer(method, **_model_option(method, model))
        except (ValueError, ImportError) as exc:
            raise ValueError(f"method {method!r} is not available: {exc}") from exc


def _model_option(method: str, model) -> dict:
    """:func:`~audiomae.plc.base.model_option`, a model directory loaded once per process."""
    from audiomae.plc.base import model_option

    return model_option(method, _loaded(model) if isinstance(model, (str, os.PathLike)) else model)


@functools.lru_cache(maxsize=2)
def _loaded(directory: str | os.PathLike):
    """A model directory loaded once per process (each worker process loads its own)."""
    from audiomae.plc.models import load_plc_model

    return load_plc_model(directory)


def run_plc_benchmark(
    files: Sequence[str | os.PathLike],
    methods: Sequence[str],
    conditions: Sequence[str],
    out_dir: str | os.PathLike,
    seed: int = 0,
    max_seconds: float | None = None,
    progress: bool = True,
    workers: int = 1,
    model=None,
    html_clips: int = 0,
) -> list[dict]:
    """Conceal every file under every loss condition with every method and score the result.

    Args:
        files: audio files (resampled to SAMPLE_RATE, mixed to mono).
        methods: registered concealer names (``zero``, ``g711``, ``opus``, ``opus-fec``, ``opus-deep``, ...).
        conditions: loss conditions such as ``ge10b2`` or specs such as ``ge:0.1:2``.
        out_dir: receives ``results.csv``, ``results.md`` and ``results.png``.
        seed: mixed into every trace seed (see :func:`trace_seed`).
        max_seconds: keep only the first ``max_seconds`` of each file.
        progress: show a tqdm bar.
        workers: processes to spread (file, condition) jobs over (results are identical).
        model: the PLC model of the methods that run one (``mae``, ``opus+mae``, ...): a model
            directory (:func:`audiomae.plc.models.load_plc_model`) or a loaded model; None: the
            bundled one. Other methods run as always.
        html_clips: also write a listening page, ``index.html``, with the first ``html_clips``
            files under every condition (their clean, lossy and concealed audio as FLAC under
            ``clips/``, spectrograms and scores) and the mean scores per condition.

    Returns one dict per (file, condition, method) with the keys in ``COLUMNS``; metrics are
    float (nan where a metric is not defined for a clip, with the reason in ``notes`` and printed
    once per file on stderr). The output folder is checked before any work starts and the three
    files are written together at the end. Opus methods are given the clean file as
    the sender's signal, so their ``ms_per_packet`` (wall time of ``conceal`` per packet)
    includes the simulated sender's encoding.
    """
    if not files:
        raise ValueError("no audio files to benchmark")
    if not methods:
        raise ValueError("no methods to benchmark")
    if not conditions:
        raise ValueError("no loss conditions")
    specs = {c: as_loss_spec(c) for c in conditions}  # bad names fail here, before any work
    check_model_taken(methods, model)
    _check_methods(methods, model)
    if max_seconds is not None and max_seconds <= 0:
        raise ValueError(f"max_seconds must be positive, got {max_seconds}")
    if html_clips < 0:
        raise ValueError(f"html_clips must be >= 0, got {html_clips}")
    out_dir = Path(out_dir)
    examples = example_folders(files[:html_clips], conditions)
    page_files = benchmark_page_files(examples, methods)
    check_outputs(
        {"--out": out_dir, **{name: out_dir / name for name in [*RESULT_FILES, *page_files]}},
        inputs=list(files),
        directories=["--out"],
    )

    from tqdm.auto import tqdm

    job = (tuple(methods), seed, max_seconds, model)
    jobs = [(str(f), c, specs[c], *job, (str(f), c) in examples) for f in files for c in conditions]
    rows: list[dict] = []
    heard: dict[tuple[str, str], tuple[list[dict], dict]] = {}  # the examples' rows and audio
    bar = tqdm(total=len(jobs), desc="plc benchmark", unit="trace", disable=not progress)
    if workers <= 1:
        for job in jobs:
            job_rows, audio = _run_job(job)
            rows.extend(_report(job_rows))
            if audio:
                heard[job[0], job[1]] = job_rows, audio
            bar.update()
    else:
        import concurrent.futures as cf
        import multiprocessing as mp

        # One torch thread per worker: several single-threaded processes beat one process
        # whose threads fight over the cores (and every method runs single-threaded anyway).
        ctx = mp.get_context("spawn")
        with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
            for job, (job_rows, audio) in zip(jobs, pool.map(_run_job, jobs)):
                rows.extend(_report(job_rows))
                if audio:
                    heard[job[0], job[1]] = job_rows, audio
                bar.update()
    bar.close()
    means = summarise(rows, methods, conditions)
    page = benchmark_page_writes(out_dir, examples, heard, means, methods, conditions)
    write_results(rows, out_dir, methods=methods, conditions=conditions, extra=page)
    return rows


_reported: set[str] = set()


def _report(rows: list[dict]) -> list[dict]:
    """Print each file's undefined-metric notes once (they repeat for every method)."""
    for row in rows:
        for note in filter(None, row["notes"].split("; ")):
            line = f"{row['file']}: {note}"
            if line not in _reported:
                _reported.add(line)
                print(line, file=sys.stderr)
    return rows


def _score(fn, *args) -> tuple[float, list[str]]:
    """``fn(*args)`` and the reasons it gave for a nan (its RuntimeWarnings)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = fn(*args)
    notes = []
    for w in caught:
        if issubclass(w.category, RuntimeWarning):
            notes.append(str(w.message).removesuffix("; returning nan"))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return value, notes


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _run_job(job: tuple) -> tuple[list[dict], dict | None]:
    """Conceal one (file, condition) with every method and score each output; the rows, and the
    audio (clean, lossy, lost, outputs) when the job asks to keep it (an example to listen to)."""
    from audiomae.plc import conceal

    file, condition, spec, methods, seed, max_seconds, model, keep = job
    clean = load_audio(file)
    if max_seconds is not None:
        clean = clean[: int(max_seconds * SAMPLE_RATE)]
    n = n_packets(clean.size)
    lost = draw_loss(spec, n, trace_seed(file, condition, seed))
    lossy = apply_loss(clean, lost)
    rows = []
    outputs = {}
    for method in methods:
        start = time.perf_counter()
        out = conceal(lossy, lost, method, clean=clean, **_model_option(method, model))
        elapsed = time.perf_counter() - start
        if keep:
            outputs[method] = out
        notes: list[str] = []
        scores = {}
        for key, fn, args in (
            ("pesq", pesq_wb, (clean, out)),
            ("stoi", stoi, (clean, out)),
            ("plcmos", plcmos, (out,)),
            ("lsd_lost", lsd_lost, (clean, out, lost)),
        ):
            scores[key], why = _score(fn, *args)
            notes += why
        rows.append(
            {
                "file": Path(file).name,
                "condition": condition,
                "method": method,
                "seconds": clean.size / SAMPLE_RATE,
                "loss_rate": loss_rate(lost),
                **scores,
                "ms_per_packet": 1000.0 * elapsed / n,
                "notes": "; ".join(notes),
            }
        )
    return rows, ({"clean": clean, "lossy": lossy, "lost": lost, "outputs": outputs} if keep else None)


def summarise(
    rows: Sequence[dict], methods: Sequence[str], conditions: Sequence[str]
) -> dict[tuple[str, str], dict[str, float]]:
    """Mean of each metric per (condition, method), ignoring nan."""
    table = {}
    for condition in conditions:
        for method in methods:
            sel = [r for r in rows if r["condition"] == condition and r["method"] == method]
            means = {}
            for key in (*METRICS, "loss_rate", "ms_per_packet"):
                values = np.array([r[key] for r in sel], dtype=float)
                values = values[~np.isnan(values)]
                means[key] = float(values.mean()) if values.size else float("nan")
            means["n"] = len(sel)
            table[condition, method] = means
    return table


def paired_difference(
    rows: Sequence[dict], method: str, reference: str, condition: str, metric: str
) -> dict[str, float]:
    """``method`` minus ``reference`` file by file (files scored by both, metric not nan):
    mean, its standard error, the number of files where ``method`` is ahead, and ``n``."""
    scores: dict[str, dict[str, float]] = {method: {}, reference: {}}
    for r in rows:
        if r["condition"] == condition and r["method"] in scores and not np.isnan(float(r[metric])):
            scores[r["method"]][r["file"]] = float(r[metric])
    files = sorted(set(scores[method]) & set(scores[reference]))
    d = np.array([scores[method][f] - scores[reference][f] for f in files])
    if not d.size:
        return {"mean": float("nan"), "se": float("nan"), "ahead": 0, "n": 0}
    se = float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else float("nan")
    return {"mean": float(d.mean()), "se": se, "ahead": int((d > 0).sum()), "n": int(d.size)}


def _paired_markdown(rows: Sequence[dict], methods: Sequence[str], conditions: Sequence[str]) -> list[str]:
    """Each method that is not a baseline against each baseline that ran, and against its
    ablation (the registered method with one part switched off, here the MAE's prediction:
    what that part adds) where that ran, in lossy conditions."""
    baselines, pairs = baseline_methods(), ablations()
    refs = [m for m in baselines if m in methods and m != "zero"]
    candidates = [m for m in methods if m not in baselines]
    lossy = [c for c in conditions if any(r["condition"] == c and r["loss_rate"] > 0 for r in rows)]
    if not refs or not candidates or not lossy:
        return []
    lines = [
        "",
        "## Paired differences",
        "",
        "File by file: mean difference +- its standard error (files where the method is ahead).",
        "",
        "| condition | method | vs | PLCMOS | PESQ-WB |",
        "|---|---|---|---|---|",
    ]
    for condition in lossy:
        for method in candidates:
            ablation = [pairs[method]] if pairs.get(method) in methods else []
            for ref in refs + ablation:
                cells = []
                for metric in ("plcmos", "pesq"):
                    p = paired_difference(rows, method, ref, condition, metric)
                    cells.append(f"{p['mean']:+.3f} +- {p['se']:.3f} ({p['ahead']} / {p['n']})")
                lines.append(f"| {condition} | {method} | {ref} | {cells[0]} | {cells[1]} |")
    return lines


def _markdown(table: dict, methods: Sequence[str], conditions: Sequence[str], rows=()) -> str:
    head = "| condition | method | files | loss % | PESQ-WB | STOI | PLCMOS | LSD lost (dB) | ms/packet |"
    lines = [
        "# PLC benchmark",
        "",
        f"Means over files; packets of {SAMPLES_PER_PACKET} samples at {SAMPLE_RATE} Hz.",
        "",
        head,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for condition in conditions:
        for method in methods:
            m = table[condition, method]
            # "-": not defined (nothing lost, or clips too short for the metric: results.csv notes)
            cell = {k: "-" if np.isnan(m[k]) else f"{m[k]:.{2 if k == 'lsd_lost' else 3}f}" for k in METRICS}
            lines.append(
                f"| {condition} | {method} | {m['n']} | {100 * m['loss_rate']:.1f} | {cell['pesq']} | "
                f"{cell['stoi']} | {cell['plcmos']} | {cell['lsd_lost']} | {m['ms_per_packet']:.3f} |"
            )
    lines += _paired_markdown(rows, methods, conditions)
    return "\n".join(lines) + "\n"


def _plot(table: dict, methods: Sequence[str], conditions: Sequence[str], path: str) -> None:
    # The object API with an explicit Agg canvas: no pyplot, so no global backend switch.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4 + 1.2 * len(conditions) * max(1, len(methods)) / 2, 6.5))
    FigureCanvasAgg(fig)
    x = np.arange(len(conditions))
    width = 0.8 / len(methods)
    for i, (metric, label) in enumerate((("plcmos", "PLCMOS"), ("pesq", "PESQ-WB"))):
        ax = fig.add_subplot(2, 1, i + 1)
        for j, method in enumerate(methods):
            values = [table[c, method][metric] for c in conditions]
            ax.bar(x + (j - (len(methods) - 1) / 2) * width, values, width, label=method)
        ax.set_xticks(x, list(conditions))
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
        if i == 0:
            ax.legend(ncols=min(len(methods), 4), fontsize="small")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)


def write_results(
    rows: Sequence[dict],
    out_dir: str | os.PathLike,
    methods: Sequence[str],
    conditions: Sequence[str],
    extra: Sequence[tuple] = (),
) -> None:
    """Write ``results.csv`` (one row per run), ``results.md`` and ``results.png`` (means), and the
    ``extra`` ``(path, write_fn)`` pairs (the listening page), all or none."""
    out_dir = Path(out_dir)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {k: (f"{v:.6g}" if isinstance(v, float) and not math.isnan(v) else v) for k, v in row.items()}
        )
    table = summarise(rows, methods, conditions)
    text = _markdown(table, methods, conditions, rows)
    write_all(
        [
            (out_dir / "results.csv", lambda tmp: Path(tmp).write_text(buf.getvalue())),
            (out_dir / "results.md", lambda tmp: Path(tmp).write_text(text)),
            (out_dir / "results.png", lambda tmp: _plot(table, methods, conditions, tmp)),
            *extra,
        ]
    )
