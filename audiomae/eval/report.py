"""The listening page: clean, lossy and concealed audio side by side, as one static HTML file.

Per clip, a row per signal: its name, an ``<audio>`` player and its spectrogram with the lost
packets shaded. Every spectrogram of a clip has the same pixel size, time axis and colour scale,
so a loss sits at the same x position in each; clicking one plays that signal from the clicked
time. Score tables mark the best value per column. The page opens from disk with no server and
no network: the style and script are inline and the audio and images are files beside it,
written with :func:`page_writes` for :func:`audiomae.audio.write_all` (all files or none).
"""

from __future__ import annotations

import functools
import html
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np

from audiomae.audio import SAMPLE_RATE, SAMPLES_PER_PACKET, audio_writer

PAGE = "index.html"
# Metrics where a smaller value is better; every other column of a score table: larger is better.
LOWER_IS_BETTER = frozenset({"LSD lost (dB)", "LSD", "ms/packet"})
# Decimals shown (and compared when marking the best) per column; others: 2.
DIGITS = {"STOI": 3}

# Spectrogram geometry: every image of a page is drawn at this size with its axes at these
# fractions of the width, which the click handler maps back to time.
_SPEC_SIZE = (9.0, 1.25)  # inches
_SPEC_DPI = 100
_AXES = (0.055, 0.2, 0.925, 0.76)  # left, bottom, width, height (figure fractions)
_DYNAMIC_RANGE_DB = 80.0


@dataclass(frozen=True)
class ListeningClip:
    """One clip of the page: the signals to hear and see, the loss trace and the scores.

    ``folder``: where its files go, relative to the page ("" = beside it); ``outputs``: method ->
    concealed audio, same length as ``clean``; ``scores``: method -> column -> value (columns
    as shown, e.g. ``"PESQ-WB"``; may be empty)."""

    title: str
    folder: str
    clean: np.ndarray
    lossy: np.ndarray
    lost: np.ndarray
    outputs: Mapping[str, np.ndarray]
    scores: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


def track_names(methods: Sequence[str]) -> list[str]:
    return ["clean", "lossy", *methods]


def clip_files(folder: str, methods: Sequence[str], audio_ext: str = "wav") -> dict[str, list[str]]:
    """The files a clip needs, relative to the page: ``{"audio": [...], "images": [...]}``, one
    per signal in :func:`track_names` order (``<name>.<audio_ext>``, ``<name>_spec.png``)."""
    base = f"{folder.strip('/')}/" if folder.strip("/") else ""
    names = track_names(methods)
    return {
        "audio": [f"{base}{n}.{audio_ext}" for n in names],
        "images": [f"{base}{n}_spec.png" for n in names],
    }


def page_writes(
    out_dir: str | os.PathLike,
    title: str,
    clips: Sequence[ListeningClip],
    tables: Sequence[tuple[str, Mapping[str, Mapping[str, float]]]] = (),
    intro: str = "",
    audio_ext: str = "wav",
    audio: bool = True,
) -> list[tuple]:
    """``(path, write_fn)`` pairs for :func:`audiomae.audio.write_all`: each clip's audio (unless
    ``audio`` is False: the caller writes the same files itself) and spectrograms, and ``index.html``.

    ``tables``: ``(caption, rows)`` score tables shown above the clips (rows: method -> column ->
    value), e.g. means over a benchmark."""
    out_dir = Path(out_dir)
    writes: list[tuple] = []
    for clip in clips:
        files = clip_files(clip.folder, list(clip.outputs), audio_ext)
        signals = _signals(clip)
        scale = _colour_scale(clip.clean)
        seconds = clip.clean.size / SAMPLE_RATE
        for (name, y), a, img in zip(signals.items(), files["audio"], files["images"]):
            if audio:
                writes.append((out_dir / a, audio_writer(out_dir / a, y)))
            draw = functools.partial(spectrogram_png, y, clip.lost, scale=scale, label=name, duration=seconds)
            writes.append((out_dir / img, draw))
    text = render_page(title, clips, tables, intro, audio_ext)
    writes.append((out_dir / PAGE, lambda tmp: Path(tmp).write_text(text, encoding="utf-8")))
    return writes


def _signals(clip: ListeningClip) -> dict[str, np.ndarray]:
    return {"clean": clip.clean, "lossy": clip.lossy, **clip.outputs}


def log_spectrogram(y: np.ndarray) -> np.ndarray:
    """Log-magnitude STFT (dB), (F, T): 512-sample frames every 160 samples (10 ms)."""
    from scipy.signal import stft

    y = np.pad(np.asarray(y, dtype=np.float64), (0, max(0, 512 - y.size)))  # at least one frame
    _, _, z = stft(y, fs=SAMPLE_RATE, nperseg=512, noverlap=352)
    return 20 * np.log10(np.abs(z) + 1e-5)


def lost_spans(lost: np.ndarray) -> list[tuple[float, float]]:
    """(start, end) seconds of each run of lost packets."""
    flags = np.concatenate([[False], np.asarray(lost, dtype=bool), [False]])
    edges = np.flatnonzero(np.diff(flags.astype(np.int8)))
    sec = SAMPLES_PER_PACKET / SAMPLE_RATE
    return [(float(a * sec), float(b * sec)) for a, b in zip(edges[::2], edges[1::2])]


def _colour_scale(clean: np.ndarray) -> tuple[float, float]:
    top = float(log_spectrogram(clean).max())
    return top - _DYNAMIC_RANGE_DB, top


def spectrogram_png(
    y: np.ndarray,
    lost: np.ndarray,
    path: str | os.PathLike,
    scale: tuple[float, float] | None = None,
    label: str = "",
    duration: float | None = None,
) -> None:
    """Draw ``y``'s spectrogram to a PNG of fixed size, lost packets shaded and marked in red
    along the top. ``scale``: (vmin, vmax) dB, shared by a clip's images; ``duration``: the
    time axis' length in seconds (default ``y``'s)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image

    duration = y.size / SAMPLE_RATE if duration is None else duration
    spec = log_spectrogram(y)
    vmin, vmax = scale if scale is not None else (spec.max() - _DYNAMIC_RANGE_DB, spec.max())
    fig = Figure(figsize=_SPEC_SIZE, dpi=_SPEC_DPI)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes(_AXES)
    ax.imshow(
        spec,
        origin="lower",
        aspect="auto",
        extent=(0, y.size / SAMPLE_RATE, 0, SAMPLE_RATE / 2000),
        cmap="magma",
        vmin=vmin,
        vmax=vmax,
        interpolation="bilinear",
    )
    top = SAMPLE_RATE / 2000
    spans = [(a, b - a) for a, b in lost_spans(lost)]
    ax.broken_barh(spans, (0, top), color="white", alpha=0.22, lw=0)
    ax.broken_barh(spans, (0.92 * top, 0.08 * top), color="#ff3030", lw=0)
    ax.set_xlim(0, duration)
    ax.set_ylim(0, top)
    ax.set_yticks([0, 4, 8])
    ax.tick_params(labelsize=7, length=2, pad=1)
    ax.set_ylabel("kHz", fontsize=7, labelpad=1)
    if label:
        ax.text(0.005, 0.86, label, transform=ax.transAxes, color="white", fontsize=8, va="top")
    canvas.draw()
    # A 256-colour palette keeps each image small (the spectrogram is noise to PNG's filters).
    image = Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3])
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, format="png", optimize=True)


def best_cells(rows: Mapping[str, Mapping[str, float]]) -> set[tuple[str, str]]:
    """(method, column) pairs holding the best value of their column at the shown precision
    (:data:`DIGITS`; ties all marked; nan never): the largest, or the smallest for
    :data:`LOWER_IS_BETTER`."""
    best: set[tuple[str, str]] = set()
    columns = list(dict.fromkeys(c for vals in rows.values() for c in vals))
    for col in columns:
        shown = {
            m: round(float(v[col]), DIGITS.get(col, 2))
            for m, v in rows.items()
            if col in v and not math.isnan(float(v[col]))
        }
        if not shown:
            continue
        target = (min if col in LOWER_IS_BETTER else max)(shown.values())
        best |= {(m, col) for m, v in shown.items() if v == target}
    return best


def _table_html(caption: str, rows: Mapping[str, Mapping[str, float]]) -> str:
    if not rows:
        return ""
    columns = list(dict.fromkeys(c for vals in rows.values() for c in vals))
    best = best_cells(rows)
    head = "".join(f"<th>{html.escape(c)}{' ↓' if c in LOWER_IS_BETTER else ''}</th>" for c in columns)
    body = []
    for m, vals in rows.items():
        cells = []
        for c in columns:
            v = float(vals.get(c, float("nan")))
            text = "–" if math.isnan(v) else f"{v:.{DIGITS.get(c, 2)}f}"
            cells.append(f'<td class="best">{text}</td>' if (m, c) in best else f"<td>{text}</td>")
        body.append(f"<tr><th>{html.escape(m)}</th>{''.join(cells)}</tr>")
    return (
        f'<table class="scores"><caption>{html.escape(caption)}</caption>'
        f"<thead><tr><th>method</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _clip_html(index: int, clip: ListeningClip, audio_ext: str) -> str:
    methods = list(clip.outputs)
    files = clip_files(clip.folder, methods, audio_ext)
    duration = clip.clean.size / SAMPLE_RATE
    x0, x1 = _AXES[0], _AXES[0] + _AXES[2]
    rows = []
    for name, a, img in zip(track_names(methods), files["audio"], files["images"]):
        ident = f"c{index}-{len(rows)}"
        rows.append(
            f'<div class="name">{html.escape(name)}<br>'
            f'<audio id="{ident}" controls preload="metadata" src="{quote(a)}"></audio></div>'
            f'<div class="spec"><img src="{quote(img)}" alt="{html.escape(name)} spectrogram" '
            f'data-audio="{ident}" data-x0="{x0}" data-x1="{x1}" data-dur="{duration:.4f}">'
            f'<div class="head"></div></div>'
        )
    lost = np.asarray(clip.lost, dtype=bool)
    info = f"{duration:.2f} s, {int(lost.sum())} of {lost.size} packets lost ({lost.mean():.1%})"
    return (
        f'<section><h2>{html.escape(clip.title)}</h2><p class="info">{info}</p>'
        f"{_table_html('scores of this clip', clip.scores)}"
        f'<div class="tracks">{"".join(rows)}</div></section>'
    )


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:1250px;padding:0 1em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin:1.6em 0 .2em}.info,.intro{color:#555;margin:.2em 0 .6em}
table.scores{border-collapse:collapse;margin:.5em 0 1em;font-variant-numeric:tabular-nums}
table.scores caption{text-align:left;font-weight:600;padding-bottom:.2em}
.scores th,.scores td{border:1px solid #ccc;padding:2px 10px;text-align:right}
.scores th:first-child{text-align:left}.scores td.best{font-weight:700;background:#dff3df}
.tracks{display:grid;grid-template-columns:16em 1fr;gap:4px 10px;align-items:center}
.name{font-weight:600}.name audio{width:100%;height:32px;margin-top:2px}
.spec{position:relative;line-height:0}.spec img{width:100%;cursor:pointer}
.head{position:absolute;top:0;bottom:0;width:2px;background:#3cf;display:none;pointer-events:none}
"""

# Click a spectrogram: play its audio from the clicked time (pausing any other) with a playhead
# over the image. Loaded as index.html?check, the page reports whether every audio file and
# image loaded, and where a click on the first spectrogram seeks to, in <pre id="check"> (tests
# read it from a headless browser's DOM).
_SCRIPT = """
const problems = [];
addEventListener('error', e => problems.push(e.target.src || e.target.currentSrc || String(e.message)), true);
for (const level of ['error', 'warn']) {
  const log = console[level];
  console[level] = (...args) => { problems.push(args.join(' ')); log(...args); };
}
addEventListener('DOMContentLoaded', () => {
  const players = [...document.querySelectorAll('audio')];
  for (const img of document.querySelectorAll('.spec img')) {
    const a = document.getElementById(img.dataset.audio), head = img.nextElementSibling;
    const x0 = +img.dataset.x0, x1 = +img.dataset.x1, dur = +img.dataset.dur;
    const draw = () => {
      head.style.left = 100 * (x0 + (x1 - x0) * a.currentTime / dur) + '%';
      head.style.display = 'block';
      if (!a.paused) requestAnimationFrame(draw);
    };
    a.addEventListener('play', draw);
    a.addEventListener('seeked', draw);
    img.addEventListener('click', e => {
      const r = img.getBoundingClientRect(), f = ((e.clientX - r.left) / r.width - x0) / (x1 - x0);
      players.forEach(p => p !== a && p.pause());
      a.currentTime = Math.min(Math.max(f, 0), 1) * dur;
      a.play().catch(() => {});  // a synthetic click may not start playback
    });
  }
  players.forEach(a => a.addEventListener('play', () => players.forEach(p => p !== a && p.pause())));
  if (!new URLSearchParams(location.search).has('check')) return;
  const report = () => {
    const images = [...document.images];
    if (!players.every(a => a.readyState >= 1 || a.error) || !images.every(i => i.complete))
      return setTimeout(report, 50);
    // Click the first spectrogram at the middle of its time axis: its audio should seek there.
    const img = document.querySelector('.spec img');
    let click = null;
    if (img) {
      const r = img.getBoundingClientRect(), a = document.getElementById(img.dataset.audio);
      const x = r.left + r.width * (+img.dataset.x0 + (img.dataset.x1 - img.dataset.x0) / 2);
      img.dispatchEvent(new MouseEvent('click', {clientX: x, clientY: r.top + r.height / 2}));
      click = {expected: img.dataset.dur / 2, currentTime: a.currentTime};
      a.pause();
    }
    const out = document.createElement('pre');
    out.id = 'check';
    out.textContent = JSON.stringify({
      audio: players.map(a => ({src: a.getAttribute('src'), readyState: a.readyState,
                                duration: a.duration, error: a.error && a.error.code})),
      images: images.map(i => ({src: i.getAttribute('src'), naturalWidth: i.naturalWidth})),
      click, errors: problems});
    document.body.append(out);
  };
  report();
});
"""


def render_page(
    title: str,
    clips: Sequence[ListeningClip],
    tables: Sequence[tuple[str, Mapping[str, Mapping[str, float]]]] = (),
    intro: str = "",
    audio_ext: str = "wav",
) -> str:
    """The page's HTML (see the module's description)."""
    help_line = (
        "Lost packets are shaded, with a red mark along the top; time in seconds. Click a spectrogram "
        "to play that signal from there."
    )
    if any(rows for _, rows in tables) or any(clip.scores for clip in clips):
        help_line += " Bold cells: the best value of each column (↓: lower is better)."
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # No network at all: a page opened from disk must not reach out, even by accident.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'self\'; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">",
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style><script>{_SCRIPT}</script></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if intro:
        parts.append(f'<p class="intro">{html.escape(intro)}</p>')
    parts.append(f'<p class="intro">{help_line}</p>')
    parts += [_table_html(caption, rows) for caption, rows in tables]
    parts += [_clip_html(i, clip, audio_ext) for i, clip in enumerate(clips)]
    parts.append("</body></html>\n")
    return "\n".join(parts)


# The PLC benchmark's page (eval-plc --html): its first few files under every condition.
BENCHMARK_LABELS = {"pesq": "PESQ-WB", "stoi": "STOI", "plcmos": "PLCMOS", "lsd_lost": "LSD lost (dB)"}


def example_folders(files: Sequence, conditions: Sequence[str]) -> dict[tuple[str, str], str]:
    """(file, condition) -> the folder of its files on the page, in the page's order (by condition)."""

    def safe(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9._+-]+", "_", text)

    return {
        (str(f), c): f"clips/{safe(c)}/{i + 1:02d}-{safe(Path(f).stem)}"
        for c in conditions
        for i, f in enumerate(files)
    }


def benchmark_page_files(examples: Mapping[tuple[str, str], str], methods: Sequence[str]) -> list[str]:
    """Every file of the benchmark's page, relative to it (none without examples)."""
    names = [PAGE] if examples else []
    for folder in examples.values():
        names += [name for group in clip_files(folder, methods, "flac").values() for name in group]
    return names


def benchmark_page_writes(
    out_dir: str | os.PathLike,
    examples: Mapping[tuple[str, str], str],
    heard: Mapping[tuple[str, str], tuple[Sequence[Mapping], Mapping]],
    table: Mapping[tuple[str, str], Mapping[str, float]],
    methods: Sequence[str],
    conditions: Sequence[str],
) -> list[tuple]:
    """The benchmark page's ``(path, write_fn)`` pairs: the mean scores per condition (``table``,
    as from ``plc_benchmark.summarise``), then each example of ``examples`` with its rows and
    audio from ``heard`` (``{"clean", "lossy", "lost", "outputs"}``), its audio as FLAC. None
    without examples."""
    if not examples:
        return []
    tables = [
        (
            f"{c}: means over {table[c, methods[0]]['n']} files",
            {m: {label: table[c, m][k] for k, label in BENCHMARK_LABELS.items()} for m in methods},
        )
        for c in conditions
    ]
    clips = []
    for (file, condition), folder in examples.items():
        rows, audio = heard[file, condition]
        scores = {r["method"]: {label: r[k] for k, label in BENCHMARK_LABELS.items()} for r in rows}
        clips.append(ListeningClip(f"{Path(file).name}, {condition}", folder, **audio, scores=scores))
    n = len({file for file, _ in examples})
    intro = f"The first {n} file{'s' * (n != 1)} under each loss condition; results.md has every file."
    return page_writes(out_dir, "PLC benchmark: listening examples", clips, tables, intro, audio_ext="flac")


__all__ = [
    "PAGE",
    "benchmark_page_files",
    "benchmark_page_writes",
    "example_folders",
    "ListeningClip",
    "best_cells",
    "clip_files",
    "log_spectrogram",
    "lost_spans",
    "page_writes",
    "render_page",
    "spectrogram_png",
    "track_names",
]
