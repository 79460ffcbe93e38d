"""Pictures a person looks at during training (PNG files, no pyplot global state)."""

from __future__ import annotations

import os

import numpy as np

from audiomae.audio import atomic_write


def save_spectrogram_plot(specs: list[np.ndarray], titles: list[str], path: str | os.PathLike) -> None:
    """Stacked spectrogram panels as a PNG (matplotlib Agg, no pyplot global state)."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cmap = colormaps["magma"].with_extremes(bad="#777777")  # masked patches are NaN: grey
    fig = Figure(figsize=(10, 2.2 * len(specs)), layout="constrained")
    FigureCanvasAgg(fig)
    finite = np.concatenate([s[np.isfinite(s)].ravel() for s in specs])
    vmin, vmax = np.percentile(finite, [1, 99.5]) if finite.size else (0, 1)
    for i, (s, title) in enumerate(zip(specs, titles)):
        ax = fig.add_subplot(len(specs), 1, i + 1)
        ax.imshow(s, origin="lower", aspect="auto", vmin=vmin, vmax=vmax, cmap=cmap, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("mel bin")
    ax.set_xlabel("frame (10 ms)")
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=80))
