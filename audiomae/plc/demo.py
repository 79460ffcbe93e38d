"""``audiomae demo``: simulate packet loss on a bundled clip, conceal it every way, score and plot.

Runs offline on package data: the demo clip, the bundled PLC model and vocoder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np

from audiomae.audio import (
    SAMPLE_RATE,
    atomic_write,
    audio_writer,
    check_outputs,
    load_audio,
    write_all,
)
from audiomae.loss_models import apply_loss, as_loss_spec, draw_loss, loss_rate, n_packets, trace_text
from audiomae.plc.base import check_model_taken, listed_methods, model_option

DEFAULT_METHODS = tuple(listed_methods("demo"))  # the methods registered for the demo's list


MIN_CLIP_SECONDS = 0.5  # shorter clips leave the metrics nothing to score and the plot nothing to show


def demo_clip_path() -> Path:
    return Path(str(files("audiomae") / "assets" / "demo_speech.flac"))


@dataclass(frozen=True)
class DemoResult:
    """One row per method: metric name -> value; ``lost`` is the packet-loss trace used."""

    rows: dict[str, dict[str, float]]
    lost: np.ndarray
    out_dir: Path


def available(methods: tuple[str, ...] | list[str], model=None) -> tuple[list[str], dict[str, str]]:
    """Split ``methods`` into those that can run here and those that cannot (with the reason,
    e.g. an optional dependency that is not installed). A name that is no method at all raises
    ValueError. ``model``: a loaded PLC model for the methods that run one (None: the bundled)."""
    from audiomae.plc import available_methods, make_concealer

    known = available_methods()
    for m in methods:
        if m not in known:
            raise ValueError(f"unknown method {m!r}; available: {', '.join(known)}")
    ok, skipped = [], {}
    for m in methods:
        try:
            make_concealer(m, **model_option(m, model))
            ok.append(m)
        except (ValueError, ImportError, FileNotFoundError) as exc:
            skipped[m] = str(exc)
    return ok, skipped


def run_demo(
    out_dir: str | os.PathLike = "audiomae_demo",
    condition: str = "ge10b2",
    methods: tuple[str, ...] | list[str] = DEFAULT_METHODS,
    seed: int = 0,
    clip: str | os.PathLike | None = None,
    metrics: bool = True,
    progress: bool = True,
    model=None,
) -> DemoResult:
    """Conceal one clip under one loss condition with every method; write wavs, a PNG, a table
    and a listening page (``index.html``: players, spectrograms and scores side by side).

    ``model``: the PLC model of the methods that run one (``mae``, ``opus+mae``, ...), a model
    directory (:func:`~audiomae.plc.models.load_plc_model`) or a loaded model; None: the bundled
    one. Everything is checked before the work starts (condition, methods, clip, output folder,
    model) and the files are written together at the end, all or none."""
    from tqdm.auto import tqdm

    from audiomae.eval.report import PAGE, ListeningClip, clip_files, page_writes
    from audiomae.plc import conceal

    out_dir = Path(out_dir)
    spec = as_loss_spec(condition)
    if not methods:
        raise ValueError("no methods to run")
    if model is not None:
        from audiomae.plc.models import as_plc_model

        check_model_taken(methods, model)
        model = as_plc_model(model)
    runnable, skipped = available(list(methods), model)
    if not runnable:
        raise ValueError(
            f"none of the methods can run here: {'; '.join(f'{m}: {w}' for m, w in skipped.items())}"
        )
    clip_path = Path(clip) if clip is not None else demo_clip_path()
    listed = clip_files("", runnable, "wav")
    names = [*listed["audio"], "lossy.txt", "demo.png", *listed["images"], PAGE]
    targets = check_outputs(
        {"--out": out_dir, **{name: out_dir / name for name in names}},
        inputs=[clip_path],
        directories=["--out"],
    )
    clean = load_audio(clip_path)
    if clean.size < MIN_CLIP_SECONDS * SAMPLE_RATE:
        raise ValueError(
            f"{clip_path}: {clean.size / SAMPLE_RATE:.3f} s long; "
            f"the demo needs at least {MIN_CLIP_SECONDS} s"
        )
    lost = draw_loss(spec, n_packets(clean.size), seed)
    lossy = apply_loss(clean, lost)
    for m, why in skipped.items():
        print(f"skipping {m}: {why}")
    outputs: dict[str, np.ndarray] = {}
    for m in tqdm(runnable, desc="concealing", unit="method", disable=not progress):
        outputs[m] = conceal(lossy, lost, m, clean=clean, **model_option(m, model))

    rows: dict[str, dict[str, float]] = {}
    if metrics:
        from audiomae.eval.metrics import lsd_lost, pesq_wb, plcmos, stoi

        for m, y in tqdm(outputs.items(), desc="scoring", unit="method", disable=not progress):
            rows[m] = {
                "PESQ-WB": pesq_wb(clean, y),
                "STOI": stoi(clean, y),
                "PLCMOS": plcmos(y),
                "LSD lost (dB)": lsd_lost(clean, y, lost),
            }
    trace = trace_text(lost)
    title = f"{condition}: {loss_rate(lost):.1%} lost"
    page = ListeningClip(f"{clip_path.name}, {condition}", "", clean, lossy, lost, outputs, rows)
    # The page plays the wavs written here; it adds its spectrograms and index.html.
    page_files = page_writes(out_dir, f"audiomae demo: {clip_path.name}, {condition}", [page], audio=False)
    write_all(
        [
            (targets["clean.wav"], audio_writer(targets["clean.wav"], clean)),
            (targets["lossy.wav"], audio_writer(targets["lossy.wav"], lossy)),
            (targets["lossy.txt"], lambda tmp: Path(tmp).write_text(trace)),
            *((targets[f"{m}.wav"], audio_writer(targets[f"{m}.wav"], y)) for m, y in outputs.items()),
            (targets["demo.png"], lambda tmp: _save_plot(clean, outputs, lost, tmp, title)),
            *page_files,
        ]
    )
    return DemoResult(rows=rows, lost=lost, out_dir=out_dir)


def format_table(result: DemoResult) -> str:
    if not result.rows:
        return ""
    names = list(next(iter(result.rows.values())))
    lines = ["| method | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for m, vals in result.rows.items():
        lines.append(f"| {m} | " + " | ".join(f"{vals[k]:.2f}" for k in names) + " |")
    return "\n".join(lines)


def plot_concealment(
    clean: np.ndarray,
    outputs: dict[str, np.ndarray],
    lost: np.ndarray,
    path: str | os.PathLike,
    title: str = "",
) -> None:
    """One row per signal: waveform (left) and log spectrogram (right), lost packets shaded."""
    atomic_write(path, lambda tmp: _save_plot(clean, outputs, lost, tmp, title))


def _save_plot(clean, outputs, lost, path, title: str = "") -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from audiomae.eval.report import log_spectrogram, lost_spans

    signals = {"clean": clean, **outputs}
    fig = Figure(figsize=(14, 1.9 * len(signals)), layout="constrained")
    FigureCanvasAgg(fig)
    t = np.arange(clean.size) / SAMPLE_RATE
    spans = lost_spans(lost)
    for row, (name, y) in enumerate(signals.items()):
        ax_w = fig.add_subplot(len(signals), 2, 2 * row + 1)
        ax_w.plot(t, y, lw=0.4, color="#1f4e79")
        ax_w.set_xlim(0, t[-1])
        ax_w.set_ylim(-1, 1)
        ax_w.set_ylabel(name, fontsize=10)
        ax_s = fig.add_subplot(len(signals), 2, 2 * row + 2)
        spec = log_spectrogram(y)
        ax_s.imshow(
            spec, origin="lower", aspect="auto", extent=(0, t[-1], 0, SAMPLE_RATE / 2000), cmap="magma"
        )
        ax_s.set_ylabel("kHz", fontsize=8)
        for a, b in spans:
            for ax in (ax_w, ax_s):
                ax.axvspan(a, b, color="#d62728", alpha=0.18 if ax is ax_w else 0.0, lw=0)
            ax_s.axvline(a, color="white", lw=0.3, alpha=0.6)
        if row == 0 and title:
            ax_w.set_title(f"waveform ({title}; lost packets shaded)", fontsize=10)
            ax_s.set_title("spectrogram (lost packets start at the white lines)", fontsize=10)
    fig.savefig(path, format="png", dpi=90)


__all__ = ["run_demo", "format_table", "plot_concealment", "DemoResult", "demo_clip_path"]
