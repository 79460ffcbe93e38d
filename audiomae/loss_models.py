"""Packet-loss models and PLC-challenge trace files.

A loss pattern is a 1-D numpy bool array with one entry per 20 ms packet
(``SAMPLES_PER_PACKET`` samples); ``True`` means the packet was lost.

Two ways to name a loss model:

- benchmark condition names, short enough for table headers: ``ge10b2`` (Gilbert-Elliott,
  10 % loss, mean burst 2 packets), ``ge05b1.5`` (5 %, bursts of 1.5), ``ber5`` (Bernoulli 5 %);
- CLI specs with plain fractions: ``ge:0.1:2``, ``bernoulli:0.1``.

Both parse to the same :class:`LossSpec`.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from audiomae.audio import SAMPLES_PER_PACKET, atomic_write, regular_file

BERNOULLI = "bernoulli"
GILBERT_ELLIOTT = "gilbert_elliott"


class LossSpec(NamedTuple):
    """A parsed loss model: ``kind`` is ``"bernoulli"`` or ``"gilbert_elliott"``.

    ``rate`` is the stationary loss probability (fraction, not percent) and ``mean_burst``
    the mean number of consecutive lost packets (1.0 for Bernoulli, where it is not a
    parameter). A NamedTuple so ``kind, rate, burst = parse_condition(...)`` works.
    """

    kind: str
    rate: float
    mean_burst: float

    @property
    def name(self) -> str:
        """Condition name in the ``geRbB`` / ``berR`` form (rate in percent)."""
        pct = _fmt(self.rate * 100)
        if self.kind == BERNOULLI:
            return f"ber{pct}"
        return f"ge{pct}b{_fmt(self.mean_burst)}"

    def draw(self, n_packets: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``(n_packets,)`` bool loss flags from this model."""
        if self.kind == BERNOULLI:
            return bernoulli(n_packets, self.rate, rng)
        return gilbert_elliott(n_packets, self.rate, self.mean_burst, rng)


def _fmt(x: float) -> str:
    return f"{x:g}"


MAX_MEAN_BURST = 1000.0  # packets (20 s): longer is an outage, not a loss model
MAX_TRACE_BYTES = 64 << 20  # two bytes a packet: over 18 days of 20 ms packets


def _check_n(n_packets: int) -> int:
    if int(n_packets) != n_packets or n_packets < 0:
        raise ValueError(f"n_packets must be a non-negative integer, got {n_packets!r}")
    return int(n_packets)


def bernoulli(n_packets: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Independent losses: each packet lost with probability ``rate`` in [0, 1].

    Returns ``(n_packets,)`` bool.
    """
    n = _check_n(n_packets)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"Bernoulli loss rate must be in [0, 1], got {rate}")
    return rng.random(n) < rate


def gilbert_elliott_probabilities(rate: float, mean_burst: float) -> tuple[float, float]:
    """Transition probabilities ``(p_good_to_bad, p_bad_to_good)`` for a target loss rate and burst.

    Bad-state sojourns are geometric with mean ``1 / p_bad_to_good`` = ``mean_burst``; the
    stationary bad probability ``p_gb / (p_gb + p_bg)`` is ``rate``.
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"Gilbert-Elliott loss rate must be in [0, 1), got {rate}")
    if not 1.0 <= mean_burst <= MAX_MEAN_BURST:
        raise ValueError(
            f"Gilbert-Elliott mean burst must be 1 to {MAX_MEAN_BURST:g} packets, got {mean_burst}"
        )
    p_bg = 1.0 / mean_burst
    p_gb = rate / (mean_burst * (1.0 - rate))
    if p_gb > 1.0:
        raise ValueError(
            f"loss rate {rate} with mean burst {mean_burst} needs p(good->bad) = {p_gb:.3f} > 1: "
            "use a longer mean burst for such a high rate"
        )
    return p_gb, p_bg


def gilbert_elliott(n_packets: int, rate: float, mean_burst: float, rng: np.random.Generator) -> np.ndarray:
    """Two-state Markov (Gilbert-Elliott) losses: every packet in the bad state is lost.

    ``rate`` is the stationary loss rate in [0, 1), ``mean_burst`` the mean burst length in
    packets (>= 1). The start state is drawn from the stationary distribution, so the
    pattern has no warm-up transient. Returns ``(n_packets,)`` bool.
    """
    n = _check_n(n_packets)
    p_gb, p_bg = gilbert_elliott_probabilities(rate, mean_burst)
    if n == 0 or p_gb == 0.0:
        return np.zeros(n, dtype=bool)
    # Sojourn times of a two-state chain are geometric, so drawing alternating run lengths
    # is the same process as stepping the chain, without a Python loop per packet.
    start_bad = bool(rng.random() < rate)
    mean_cycle = 1.0 / p_gb + 1.0 / p_bg
    chunks, total = [], 0
    while total < n:
        k = int((n - total) / mean_cycle) + 16
        runs = np.empty(2 * k, dtype=np.int64)
        runs[0::2] = rng.geometric(p_bg if start_bad else p_gb, k)
        runs[1::2] = rng.geometric(p_gb if start_bad else p_bg, k)
        states = np.empty(2 * k, dtype=bool)
        states[0::2], states[1::2] = start_bad, not start_bad
        # An even number of runs ends in the state opposite to the first, so the next
        # chunk correctly starts in `start_bad` again.
        chunks.append(np.repeat(states, runs))
        total += chunks[-1].size
    return np.concatenate(chunks)[:n]


_NUMBER = r"\d+(?:\.\d*)?"
_CONDITION_RE = re.compile(rf"^ge(?P<rate>{_NUMBER})b(?P<burst>{_NUMBER})$|^ber(?P<brate>{_NUMBER})$")


def parse_condition(name: str) -> LossSpec:
    """Parse a benchmark condition: ``geRbB`` (GE, R percent, mean burst B) or ``berR``.

    ``ge05b1.5`` -> ``LossSpec("gilbert_elliott", 0.05, 1.5)``; ``ber5`` -> Bernoulli 5 %.
    """
    m = _CONDITION_RE.match(name.strip().lower())
    if not m:
        raise ValueError(
            f"bad loss condition {name!r}: expected geRbB (e.g. ge10b2 = Gilbert-Elliott 10 % loss, "
            "mean burst 2 packets) or berR (e.g. ber5 = Bernoulli 5 %)"
        )
    if m.group("brate") is not None:
        spec = LossSpec(BERNOULLI, float(m.group("brate")) / 100.0, 1.0)
    else:
        spec = LossSpec(GILBERT_ELLIOTT, float(m.group("rate")) / 100.0, float(m.group("burst")))
    _validate(spec, f"loss condition {name!r}")
    return spec


_KIND_ALIASES = {
    "ge": GILBERT_ELLIOTT,
    "gilbert_elliott": GILBERT_ELLIOTT,
    "gilbert-elliott": GILBERT_ELLIOTT,
    "bernoulli": BERNOULLI,
    "bern": BERNOULLI,
    "ber": BERNOULLI,
}


def parse_loss_spec(spec: str) -> LossSpec:
    """Parse a CLI loss spec: ``ge:RATE:BURST`` or ``bernoulli:RATE`` (RATE a fraction, 0.1 = 10 %)."""
    parts = spec.strip().lower().split(":")
    kind = _KIND_ALIASES.get(parts[0])
    usage = "expected ge:RATE:BURST (e.g. ge:0.1:2) or bernoulli:RATE (e.g. bernoulli:0.1)"
    n_args = {GILBERT_ELLIOTT: 2, BERNOULLI: 1}.get(kind)
    if kind is None or len(parts) != 1 + n_args:
        raise ValueError(f"bad loss spec {spec!r}: {usage}")
    try:
        values = [float(p) for p in parts[1:]]
    except ValueError:
        raise ValueError(f"bad loss spec {spec!r}: {usage}") from None
    out = LossSpec(kind, values[0], values[1] if kind == GILBERT_ELLIOTT else 1.0)
    _validate(out, f"loss spec {spec!r}")
    return out


def _validate(spec: LossSpec, what: str) -> None:
    try:
        if spec.kind == BERNOULLI:
            bernoulli(0, spec.rate, np.random.default_rng(0))
        else:
            gilbert_elliott_probabilities(spec.rate, spec.mean_burst)
    except ValueError as exc:
        raise ValueError(f"bad {what}: {exc}") from None


def as_loss_spec(spec: LossSpec | str) -> LossSpec:
    """Accept a :class:`LossSpec`, a condition name (``ge10b2``) or a CLI spec (``ge:0.1:2``)."""
    if isinstance(spec, LossSpec):
        return spec
    if ":" in spec:
        return parse_loss_spec(spec)
    return parse_condition(spec)


def draw_loss(spec: LossSpec | str, n_packets: int, seed: int | np.random.Generator) -> np.ndarray:
    """Draw a ``(n_packets,)`` bool loss pattern; the same seed gives the same pattern."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return as_loss_spec(spec).draw(n_packets, rng)


def read_trace(path: str | os.PathLike) -> np.ndarray:
    """Read a PLC-challenge trace (one ``0`` or ``1`` per line, 1 = lost) into ``(n,)`` bool.

    Trailing blank lines are allowed; anything else raises ValueError naming file and line.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"trace file not found: {path}")
    regular_file(path, "loss trace", MAX_TRACE_BYTES)  # bounded before it is read
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read trace ({exc})") from exc
    while lines and not lines[-1].strip():
        lines.pop()
    values = []
    for lineno, line in enumerate(lines, start=1):
        token = line.strip()
        if token not in ("0", "1"):
            raise ValueError(f"{path}:{lineno}: expected 0 or 1 (1 = packet lost), got {line!r}")
        values.append(token == "1")
    if not values:
        raise ValueError(f"{path}: empty trace (no packets)")
    return np.array(values, dtype=bool)


def _as_lost(lost: np.ndarray, name: str = "loss trace") -> np.ndarray:
    arr = np.asarray(lost)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of per-packet flags, got shape {arr.shape}")
    if arr.dtype != bool:
        if arr.dtype.kind not in "iuf" or not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{name}: expected 0/1 or bool flags, got dtype {arr.dtype}")
        arr = arr.astype(bool)
    return arr


def trace_text(lost: np.ndarray) -> str:
    """``(n,)`` bool/0-1 flags as the text of a PLC-challenge trace (one 0/1 per line)."""
    return "".join("1\n" if f else "0\n" for f in _as_lost(lost))


def write_trace(path: str | os.PathLike, lost: np.ndarray) -> Path:
    """Write ``(n,)`` bool/0-1 flags as a PLC-challenge trace, atomically."""
    text = trace_text(lost)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def loss_rate(lost: np.ndarray) -> float:
    """Fraction of lost packets (0.0 for an empty pattern)."""
    flags = _as_lost(lost)
    return float(flags.mean()) if flags.size else 0.0


def burst_lengths(lost: np.ndarray) -> np.ndarray:
    """Lengths, in packets, of every run of consecutive losses, in order."""
    flags = _as_lost(lost).astype(np.int8)
    edges = np.diff(np.concatenate([[0], flags, [0]]))
    return np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)


def mean_burst_length(lost: np.ndarray) -> float:
    """Mean number of consecutive lost packets per burst (0.0 when nothing is lost)."""
    runs = burst_lengths(lost)
    return float(runs.mean()) if runs.size else 0.0


def n_packets(n_samples: int) -> int:
    """Packets needed to carry ``n_samples`` (the last one zero-padded)."""
    return math.ceil(n_samples / SAMPLES_PER_PACKET)


def check_trace_length(lost: np.ndarray, n_samples: int) -> np.ndarray:
    """Return the first ``ceil(n_samples / SAMPLES_PER_PACKET)`` flags; ValueError if the trace is short.

    A longer trace is allowed (challenge traces often outlast the clip); the rest is ignored.
    """
    flags = _as_lost(lost)
    need = n_packets(n_samples)
    if flags.size < need:
        raise ValueError(
            f"loss trace has {flags.size} packets but the audio ({n_samples} samples) needs {need} "
            f"packets of {SAMPLES_PER_PACKET} samples"
        )
    return flags[:need]


def apply_loss(audio: np.ndarray, lost: np.ndarray) -> np.ndarray:
    """Zero the samples of lost packets: ``(S,)`` float -> ``(S,)`` float32 copy."""
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"expected mono audio of shape (samples,), got {audio.shape}")
    flags = check_trace_length(lost, audio.size)
    mask = np.repeat(flags, SAMPLES_PER_PACKET)[: audio.size]
    out = audio.astype(np.float32, copy=True)
    out[mask] = 0.0
    return out
