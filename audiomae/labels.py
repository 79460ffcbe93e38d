"""Labelled audio collections for classification: parsing, splitting and loading.

Three layouts are understood:

- a folder per class (``root/dog/*.wav``, ``root/cat/*.wav``): :func:`from_folders`;
- a CSV of ``path,label[,label...]`` rows (several labels make a multi-label task):
  :func:`from_csv`; an optional header row starting with ``path`` can name extra metadata
  columns (e.g. ``path,label,speaker``);
- a file-name pattern such as FSDD's ``{digit}_{speaker}_{take}.wav``: :func:`from_pattern`;
  every field becomes a metadata column and one of them is the label.

Metadata columns let a split hold out whole groups (:meth:`LabelSet.split_by`), so a test
set can contain only unseen speakers.
"""

from __future__ import annotations

import csv
import os
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from audiomae.audio import AUDIO_EXTENSIONS, SAMPLE_RATE, find_audio, load_audio


@dataclass(frozen=True)
class Clip:
    """One labelled file. ``meta`` holds (column, value) pairs such as ("speaker", "george")."""

    path: Path
    labels: tuple[str, ...]
    meta: tuple[tuple[str, str], ...] = ()

    def get(self, column: str) -> str:
        if column == "label":
            return ",".join(self.labels)
        for key, value in self.meta:
            if key == column:
                return value
        known = ["label", *(k for k, _ in self.meta)]
        raise ValueError(f"{self.path}: no column '{column}' (has {known})")


@dataclass(frozen=True)
class LabelSet:
    """Clips plus the ordered class list their labels index into.

    Construction checks that every label is a known class, so a typo in a CSV fails here,
    naming the file, rather than as an index error deep inside training."""

    clips: tuple[Clip, ...]
    classes: tuple[str, ...]
    multilabel: bool = False
    _index: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"duplicate class names in {list(self.classes)}")
        self._index.update({c: i for i, c in enumerate(self.classes)})
        for clip in self.clips:
            if not clip.labels:
                raise ValueError(f"{clip.path}: has no label")
            if not self.multilabel and len(clip.labels) > 1:
                raise ValueError(f"{clip.path}: has labels {list(clip.labels)} but the task is single-label")
            for lab in clip.labels:
                if lab not in self._index:
                    raise ValueError(f"{clip.path}: unknown label '{lab}' (known: {list(self.classes)})")

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_index(self, label: str) -> int:
        if label not in self._index:
            raise ValueError(f"unknown label '{label}' (known: {list(self.classes)})")
        return self._index[label]

    def targets(self) -> torch.Tensor:
        """``(N,)`` long class indices, or ``(N, C)`` float 0/1 for a multi-label set."""
        if self.multilabel:
            out = torch.zeros(len(self.clips), self.num_classes)
            for i, clip in enumerate(self.clips):
                out[i, [self._index[lab] for lab in clip.labels]] = 1.0
            return out
        return torch.tensor([self._index[c.labels[0]] for c in self.clips], dtype=torch.long)

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(self.classes, 0)
        for clip in self.clips:
            for lab in clip.labels:
                out[lab] += 1
        return out

    def check_nonempty(self, name: str = "label set") -> None:
        """Raise ValueError naming every class without a single clip (a head cannot learn it)."""
        empty = [c for c, n in self.counts().items() if n == 0]
        if empty:
            raise ValueError(f"{name}: classes without any clips: {empty}")

    def column(self, name: str) -> list[str]:
        return [clip.get(name) for clip in self.clips]

    def subset(self, indices: Iterable[int]) -> LabelSet:
        return LabelSet(tuple(self.clips[i] for i in indices), self.classes, self.multilabel)

    def filter(self, keep: Callable[[Clip], bool]) -> LabelSet:
        return LabelSet(tuple(c for c in self.clips if keep(c)), self.classes, self.multilabel)

    def with_classes(self, classes: Sequence[str]) -> LabelSet:
        """The same clips indexed into ``classes`` (e.g. a trained model's); unknown labels raise."""
        return LabelSet(self.clips, tuple(classes), self.multilabel)

    def split_by(self, column: str, test_values: Iterable[str]) -> tuple[LabelSet, LabelSet]:
        """(train, test): clips whose ``column`` value is in ``test_values`` go to test.

        Splitting by a group column (speaker, recording session) keeps every group on one side."""
        test_values = {str(v) for v in test_values}
        values = self.column(column)
        unknown = test_values - set(values)
        if unknown:
            have = sorted(set(values))
            raise ValueError(f"split by '{column}': values {sorted(unknown)} not present (have {have})")
        train = [i for i, v in enumerate(values) if v not in test_values]
        test = [i for i, v in enumerate(values) if v in test_values]
        return self.subset(train), self.subset(test)

    def split_random(self, test_fraction: float, seed: int = 0) -> tuple[LabelSet, LabelSet]:
        """(train, test) with a class-stratified random ``test_fraction`` of clips in test."""
        test = self.subsample(test_fraction, seed)
        chosen = {c.path for c in test.clips}
        return self.filter(lambda c: c.path not in chosen), test

    def subsample(self, fraction: float, seed: int = 0) -> LabelSet:
        """A class-stratified random ``fraction`` of the clips, at least one per non-empty class.

        Multi-label sets are stratified by their first label."""
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        if fraction == 1.0:
            return self
        rng = np.random.default_rng(seed)
        by_class: dict[str, list[int]] = {}
        for i, clip in enumerate(self.clips):
            by_class.setdefault(clip.labels[0], []).append(i)
        keep: list[int] = []
        for idx in by_class.values():
            n = max(1, int(round(len(idx) * fraction)))
            keep.extend(rng.choice(idx, size=n, replace=False).tolist())
        return self.subset(sorted(keep))


def _check_dir(root: str | os.PathLike) -> Path:
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"data directory not found: {root}")
    if not root.is_dir():
        raise ValueError(f"{root}: not a directory")
    return root


def from_folders(root: str | os.PathLike, extensions: Sequence[str] = AUDIO_EXTENSIONS) -> LabelSet:
    """One sub-folder per class; the folder name is the label. An empty class folder is an error."""
    root = _check_dir(root)
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise ValueError(f"{root}: no class sub-folders (expected root/<class>/<file>)")
    stray = [p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in extensions]
    if stray:
        warnings.warn(
            f"{root}: ignoring {len(stray)} audio files outside class folders (e.g. {stray[0]})", stacklevel=2
        )
    clips: list[Clip] = []
    empty: list[str] = []
    for d in class_dirs:
        files = find_audio(d, extensions)
        if not files:
            empty.append(d.name)
        clips.extend(Clip(p, (d.name,)) for p in files)
    if empty:
        raise ValueError(f"{root}: class folders without audio files: {empty}")
    return LabelSet(tuple(clips), tuple(d.name for d in class_dirs))


def from_csv(
    csv_path: str | os.PathLike,
    root: str | os.PathLike | None = None,
    classes: Sequence[str] | None = None,
    multilabel: bool | None = None,
) -> LabelSet:
    """Rows of ``path,label[,label...]``; relative paths are resolved against ``root``
    (default: the CSV's folder).

    An optional header row whose first cell is ``path`` names the columns: columns called
    ``label`` hold labels, any others are metadata (``path,label,speaker``). ``classes`` fixes
    the class list and order (labels outside it raise); otherwise it is the sorted set of
    labels seen. ``multilabel`` defaults to "some row has more than one label". Missing files
    are skipped with a warning each.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"label CSV not found: {csv_path}")
    base = Path(root) if root is not None else csv_path.parent
    with open(csv_path, newline="") as fh:
        rows = [r for r in csv.reader(fh) if r and any(cell.strip() for cell in r)]
    if not rows:
        raise ValueError(f"{csv_path}: no rows")
    header: list[str] | None = None
    if rows[0][0].strip().lower() == "path":
        header = [h.strip().lower() for h in rows[0]]
        rows = rows[1:]
    clips: list[Clip] = []
    missing = 0
    for lineno, row in enumerate(rows, start=2 if header else 1):
        cells = [c.strip() for c in row]
        if len(cells) < 2 or not cells[0]:
            raise ValueError(f"{csv_path}:{lineno}: expected 'path,label[,label...]', got {row}")
        if header is not None:
            if len(cells) > len(header):
                raise ValueError(f"{csv_path}:{lineno}: {len(cells)} cells but the header has {len(header)}")
            named = list(zip(header, cells))
            labels = tuple(v for k, v in named[1:] if k == "label" and v)
            meta = tuple((k, v) for k, v in named[1:] if k != "label")
        else:
            labels, meta = tuple(c for c in cells[1:] if c), ()
        if not labels:
            raise ValueError(f"{csv_path}:{lineno}: row for {cells[0]} has no label")
        path = Path(cells[0]) if Path(cells[0]).is_absolute() else base / cells[0]
        if not path.is_file():
            warnings.warn(f"{csv_path}:{lineno}: skipping missing file {path}", stacklevel=2)
            missing += 1
            continue
        clips.append(Clip(path, labels, meta))
    if not clips:
        raise ValueError(f"{csv_path}: none of the {missing} listed files exist (relative to {base})")
    if multilabel is None:
        multilabel = any(len(c.labels) > 1 for c in clips)
    if classes is None:
        classes = sorted({lab for c in clips for lab in c.labels})
    else:
        known = set(classes)
        for c in clips:
            bad = [lab for lab in c.labels if lab not in known]
            if bad:
                raise ValueError(f"{csv_path}: {c.path.name}: unknown labels {bad} (known: {list(classes)})")
    return LabelSet(tuple(clips), tuple(classes), multilabel)


_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """``"{digit}_{speaker}_{take}.wav"`` -> a regex with one named group per field.

    A pattern that already contains ``(?P<`` is taken as a regular expression as it is."""
    if "(?P<" in pattern:
        return re.compile(pattern)
    parts, pos, names = [], 0, []
    for m in _FIELD.finditer(pattern):
        parts.append(re.escape(pattern[pos : m.start()]))
        name = m.group(1)
        if name in names:
            raise ValueError(f"pattern {pattern!r}: field '{name}' appears twice")
        names.append(name)
        parts.append(f"(?P<{name}>.+?)")
        pos = m.end()
    parts.append(re.escape(pattern[pos:]))
    if not names:
        raise ValueError(f"pattern {pattern!r} has no {{field}}")
    return re.compile("".join(parts))


def from_pattern(
    root: str | os.PathLike,
    pattern: str,
    label: str,
    classes: Sequence[str] | None = None,
    extensions: Sequence[str] = AUDIO_EXTENSIONS,
) -> LabelSet:
    """Labels from file names: ``pattern`` (e.g. ``"{digit}_{speaker}_{take}.wav"``) is matched
    against each file name under ``root``; field ``label`` is the class, every field is a column.

    Files that do not match are skipped with one warning listing how many and an example."""
    root = _check_dir(root)
    regex = pattern_regex(pattern)
    if label not in regex.groupindex:
        raise ValueError(f"pattern {pattern!r} has no field '{label}' (fields: {list(regex.groupindex)})")
    clips: list[Clip] = []
    unmatched: list[str] = []
    for path in find_audio(root, extensions):
        m = regex.fullmatch(path.name)
        if m is None:
            unmatched.append(path.name)
            continue
        fields = m.groupdict()
        clips.append(Clip(path, (fields[label],), tuple(fields.items())))
    if unmatched:
        warnings.warn(
            f"{root}: skipped {len(unmatched)} files not matching {pattern!r} (e.g. {unmatched[0]})",
            stacklevel=2,
        )
    if not clips:
        raise ValueError(f"{root}: no audio file matches {pattern!r}")
    found = sorted({c.labels[0] for c in clips}, key=_natural_key)
    if classes is None:
        classes = found
    else:
        bad = sorted(set(found) - set(classes))
        if bad:
            raise ValueError(f"{root}: unknown label(s) {bad} in file names (known: {list(classes)})")
    return LabelSet(tuple(clips), tuple(classes))


def _natural_key(s: str) -> tuple:
    # "2" before "10" for numeric labels such as digits or class ids.
    return (0, int(s), "") if s.isdigit() else (1, 0, s)


def fix_length(wave: np.ndarray, num_samples: int) -> np.ndarray:
    """Centre-pad with zeros or centre-crop ``(S,)`` to ``num_samples``."""
    n = wave.shape[-1]
    if n >= num_samples:
        start = (n - num_samples) // 2
        return wave[start : start + num_samples]
    left = (num_samples - n) // 2
    return np.pad(wave, (left, num_samples - n - left))


def load_clips(
    labels: LabelSet,
    clip_seconds: float,
    sample_rate: int = SAMPLE_RATE,
    progress: bool = True,
) -> tuple[torch.Tensor, LabelSet]:
    """Read every clip, resampled to ``sample_rate`` and centred in ``clip_seconds``.

    Returns ``(waves (N, S) float32, kept)``: unreadable files are skipped with a warning
    naming each, and ``kept`` lists the clips that loaded, in order."""
    from tqdm import tqdm

    num_samples = int(round(clip_seconds * sample_rate))
    if num_samples <= 0:
        raise ValueError(f"clip_seconds must be positive, got {clip_seconds}")
    waves, kept = [], []
    for i, clip in enumerate(tqdm(labels.clips, desc="loading clips", disable=not progress, leave=False)):
        try:
            wave = load_audio(clip.path, sr=sample_rate)
        except (ValueError, FileNotFoundError) as exc:
            warnings.warn(f"skipping unreadable clip: {exc}", stacklevel=2)
            continue
        waves.append(fix_length(wave, num_samples))
        kept.append(i)
    if not waves:
        raise ValueError(f"none of the {len(labels)} clips could be read")
    return torch.from_numpy(np.stack(waves)), labels.subset(kept)


def write_synthetic_dataset(
    root: str | os.PathLike,
    classes: int = 3,
    speakers: int = 3,
    takes: int = 8,
    seconds: float = 0.5,
    sample_rate: int = 8000,
    seed: int = 0,
) -> str:
    """Write a small FSDD-like set ``{label}_{speaker}_{take}.wav`` under ``root`` and return
    the file-name pattern. A class is a vowel (two formants), a speaker a pitch and a slight
    formant shift, so a split by speaker is learnable from the spectral envelope alone."""
    from audiomae.audio import save_audio

    root = Path(root)
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    formants = [(800, 1200), (300, 2300), (350, 800), (500, 1700), (650, 1000), (400, 2000)]
    for c in range(classes):
        f1, f2 = formants[c % len(formants)]
        f1, f2 = f1 * (1 + 0.1 * (c // len(formants))), f2 * (1 + 0.1 * (c // len(formants)))
        for s in range(speakers):
            f0 = 100.0 * 1.3**s
            shift = 1.0 + 0.05 * s
            for k in range(takes):
                pitch = f0 * (1 + 0.05 * rng.standard_normal()) * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
                phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
                x = np.zeros(n)
                for h in range(1, int(0.45 * sample_rate / f0)):
                    fh = h * f0
                    gain = np.exp(-(((fh - f1 * shift) / 120) ** 2)) + np.exp(
                        -(((fh - f2 * shift) / 180) ** 2)
                    )
                    x += (gain + 0.02) * np.sin(h * phase)
                env = np.sin(np.pi * t / seconds) ** 2
                wave = 0.2 * env * x / max(1e-6, np.abs(x).max()) + 0.003 * rng.standard_normal(n)
                save_audio(root / f"{c}_s{s}_{k}.wav", wave.astype(np.float32), sample_rate)
    return "{label}_{speaker}_{take}.wav"


__all__ = [
    "Clip",
    "LabelSet",
    "from_folders",
    "from_csv",
    "from_pattern",
    "pattern_regex",
    "fix_length",
    "load_clips",
    "write_synthetic_dataset",
]
