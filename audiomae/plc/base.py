"""The streaming concealer interface and the registry of concealment methods.

A receiver pushes one 20 ms packet at a time (``None`` for a lost one) and gets back one
packet of output. A concealer with ``lookahead = k`` answers with packet ``t - k`` when
packet ``t`` arrives, so it can interpolate across a gap from the k packets after it:

    push:     p0   p1   p2   p3   ...   flush()
    output:   0    0    o0   o1   ...   o(n-2) o(n-1)      (k = 2)

The base class owns everything that is the same for every method: packet validation,
the delay line, clipping and the NaN guard. A subclass implements only ``_conceal``. A concealer
that runs another one inside it (on Opus-decoded audio, say) drives it with :meth:`step`,
which conceals one packet from a window the caller supplies.

A push that raises (a bad packet, or a concealment that fails) leaves the stream exactly as it
was before the call: the packet is not in the delay line and the method's state is rolled back
(:meth:`StreamingConcealer._snapshot`), so the caller can carry on with the next packet.
"""

from __future__ import annotations

import abc
import dataclasses
import numbers
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from audiomae.audio import SAMPLE_RATE, SAMPLES_PER_PACKET, validate_waveform


class StreamingConcealer(abc.ABC):
    """Base class for packet-loss concealers.

    Attributes:
        lookahead: packets of algorithmic delay (0 = causal). Output is delayed by exactly
            ``lookahead`` packets; the first ``lookahead`` outputs are zeros.
        requires_source: True for codec simulations (Opus) that encode the sender's clean
            signal themselves; such a concealer needs ``set_source(clean)`` before pushing.
    """

    lookahead: int = 0
    requires_source: bool = False

    def __init__(self) -> None:
        self._window: deque[np.ndarray | None] = deque()
        self._n_pushed = 0
        self._n_emitted = 0

    # -- public streaming API -------------------------------------------------------------

    def push(self, packet: np.ndarray | None) -> np.ndarray:
        """Take packet ``t`` (``(SAMPLES_PER_PACKET,)`` float, or None if lost).

        Returns ``(SAMPLES_PER_PACKET,)`` float32 in [-1, 1]: output packet ``t - lookahead``
        (zeros while the delay line fills). Samples outside [-1, 1] are clipped to it; NaN or
        inf raise ValueError naming the packet, and leave the stream as it was.
        """
        checked = self.check_packet(packet, self._n_pushed)
        if len(self._window) < self.lookahead:
            self._window.append(checked)
            self._n_pushed += 1
            return np.zeros(SAMPLES_PER_PACKET, dtype=np.float32)
        saved = self._snapshot()
        self._window.append(checked)
        try:
            out = self._emit(list(self._window))
        except BaseException:
            self._window.pop()
            self._restore(saved)
            raise
        self._n_pushed += 1
        return out

    def flush(self) -> np.ndarray:
        """End the stream: return the ``lookahead * SAMPLES_PER_PACKET`` samples still delayed.

        Packets after the end of the stream look lost to the concealer (a receiver cannot
        tell a hang-up from a loss). The concealer is reset afterwards, ready for a new stream;
        if a concealment raises, the stream is left as it was before the call.
        """
        window, counts, saved = list(self._window), (self._n_pushed, self._n_emitted), self._snapshot()
        out = []
        try:
            for _ in range(self.lookahead):
                self._window.append(_END)
                if len(self._window) <= self.lookahead:
                    out.append(np.zeros(SAMPLES_PER_PACKET, dtype=np.float32))
                else:
                    out.append(self._emit([None if p is _END else p for p in self._window]))
        except BaseException:
            self._window = deque(window)
            self._n_pushed, self._n_emitted = counts
            self._restore(saved)
            raise
        self.reset()
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def reset(self) -> None:
        """Forget the stream: empty the delay line and the method's history."""
        self._window.clear()
        self._n_pushed = 0
        self._n_emitted = 0
        self._reset()

    @property
    def emit_index(self) -> int:
        """Index of the packet the next :meth:`step` conceals (stream position)."""
        return self._n_emitted

    def step(self, window: list[np.ndarray | None]) -> np.ndarray:
        """Conceal packet :attr:`emit_index` from ``window`` (that packet and the ``lookahead``
        after it, float32 or None where lost) and move on to the next packet. Returns
        ``(SAMPLES_PER_PACKET,)`` float32 in [-1, 1] (NaN and inf replaced, clipped).

        For a concealer that runs this one on a delay line of its own (``push`` keeps one);
        packets must be validated (:meth:`check_packet`) and given in order."""
        out = np.asarray(self._conceal(window), dtype=np.float32)
        if out.shape != (SAMPLES_PER_PACKET,):
            raise RuntimeError(
                f"{type(self).__name__}._conceal returned shape {out.shape}, expected ({SAMPLES_PER_PACKET},)"
            )
        self._n_emitted += 1
        # A model that diverges must not put NaN or full-scale garbage on the line.
        out = np.nan_to_num(out, nan=0.0, posinf=1.0, neginf=-1.0)
        return np.clip(out, -1.0, 1.0)

    # -- for subclasses -------------------------------------------------------------------

    @abc.abstractmethod
    def _conceal(self, window: list[np.ndarray | None]) -> np.ndarray:
        """Return output packet ``t``, ``(SAMPLES_PER_PACKET,)`` float.

        ``window[j]`` is packet ``t + j`` for ``j = 0..lookahead`` (float32, or None if
        lost). Called once per packet, in order, so the method may keep history.
        """

    def _reset(self) -> None:  # noqa: B027 - optional hook, stateless methods need not override
        """Clear method state; override when the method keeps history."""

    @staticmethod
    def check_packet(packet: np.ndarray | None, index: int | None = None) -> np.ndarray | None:
        """Validate one packet; return it as a float32 copy in [-1, 1] (None passes through).

        Raises ValueError naming the packet index and the problem. Finite samples beyond
        full scale are clipped (as :func:`~audiomae.audio.validate_waveform` does), before the
        cast to float32, so what the concealer computes with is always finite.
        """
        if packet is None:
            return None
        where = f"packet {index}" if index is not None else "packet"
        arr = np.asarray(packet)
        if arr.dtype.kind in "iub":
            raise ValueError(
                f"{where}: integer samples ({arr.dtype}) are not accepted; pass float samples in "
                "[-1, 1] (e.g. int16 / 32768)"
            )
        if arr.dtype.kind != "f":
            raise ValueError(f"{where}: expected float32 or float64 samples, got dtype {arr.dtype}")
        if arr.ndim != 1:
            raise ValueError(f"{where}: expected a 1-D array of samples, got shape {arr.shape}")
        if arr.size != SAMPLES_PER_PACKET:
            raise ValueError(
                f"{where}: expected {SAMPLES_PER_PACKET} samples "
                f"({SAMPLES_PER_PACKET * 1000 // SAMPLE_RATE} ms at {SAMPLE_RATE} Hz), got {arr.size}"
            )
        return validate_waveform(arr, where)

    # A failed push rolls the method's state back to this snapshot. The default covers the
    # state these concealers keep: attributes rebound per packet (restored by reference),
    # private containers and arrays changed in place (copied), a dataclass of streaming state
    # (deep-copied), random generators (their state) and concealers nested in this one. A method
    # holding other in-place state (a C library's decoder) extends both methods.
    def _snapshot(self) -> dict[str, Any]:
        saved: dict[str, Any] = {}
        for key, value in vars(self).items():
            if key == "_window":
                continue
            if isinstance(value, StreamingConcealer):
                saved[key] = _InPlace(value, (value._snapshot(), value._window.copy()))
            elif isinstance(value, np.random.Generator):
                saved[key] = _InPlace(value, value.bit_generator.state)
            elif _is_state(value):
                saved[key] = _InPlace(
                    value, {f.name: _saved(getattr(value, f.name)) for f in dataclasses.fields(value)}
                )
            elif key.startswith("_") and isinstance(value, (list, dict, set, np.ndarray)):
                saved[key] = value.copy()
            else:
                saved[key] = value
        return saved

    def _restore(self, saved: dict[str, Any]) -> None:
        for key in [k for k in vars(self) if k != "_window" and k not in saved]:
            delattr(self, key)  # created by the failed call
        for key, value in saved.items():
            if isinstance(value, _InPlace):
                obj = value.obj
                if isinstance(obj, StreamingConcealer):
                    obj._restore(value.state[0])
                    obj._window = value.state[1]
                elif _is_state(obj):
                    for name, field_value in value.state.items():
                        setattr(obj, name, _restored(getattr(obj, name), field_value))
                else:
                    obj.bit_generator.state = value.state
                value = obj
            setattr(self, key, value)

    def _emit(self, window: list[np.ndarray | None]) -> np.ndarray:
        out = self.step(window)
        self._window.popleft()
        return out


_END = object()  # marks packets after the end of the stream inside flush()


def _is_state(value: Any) -> bool:
    """A dataclass instance of mutable streaming state (frozen ones are settings)."""
    return (
        dataclasses.is_dataclass(value)
        and not isinstance(value, type)
        and not type(value).__dataclass_params__.frozen
    )


def _saved(value: Any) -> Any:
    """A field's value as a snapshot keeps it: containers and arrays copied, a generator's state."""
    if isinstance(value, np.random.Generator):
        return _InPlace(value, value.bit_generator.state)
    if isinstance(value, (list, dict, set, np.ndarray)):
        return value.copy()
    return value


def _restored(current: Any, saved: Any) -> Any:
    if isinstance(saved, _InPlace):
        saved.obj.bit_generator.state = saved.state
        return saved.obj
    return saved


class _InPlace:
    """A snapshot entry for an object that is restored in place (a nested concealer, a random
    generator): the object itself and its saved state."""

    __slots__ = ("obj", "state")

    def __init__(self, obj: Any, state: Any) -> None:
        self.obj, self.state = obj, state


# -- registry -----------------------------------------------------------------------------

# Groups of methods, in the order listings show them.
GROUPS = ("baseline", "mae", "on-opus")


@dataclass(frozen=True)
class MethodInfo:
    """A registered concealment method and what listings say about it."""

    name: str
    factory: Callable[..., StreamingConcealer]
    group: str = "mae"  # "baseline": a reference to beat; "on-opus": a concealer on Opus-decoded audio
    lists: tuple[str, ...] = ()  # default method lists it is in: "demo", "eval" (the benchmark), "bench"
    ablation_of: str | None = None  # the method this one is with one part switched off
    note: str = ""  # what the method needs, for help texts (e.g. "--clean")
    takes_model: bool = False  # runs a PLC model given as ``model=`` (the CLI's --model)
    needs_source: bool = False  # simulates a codec at the sender: needs the clean signal (set_source)


_REGISTRY: dict[str, MethodInfo] = {}


class UnsupportedOptionError(ValueError):
    """``make_concealer`` was given an option the method's factory does not take."""


def check_lookahead(value: Any) -> int:
    """``value`` as packets of lookahead: a whole number >= 0 (ValueError otherwise)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(
            f"lookahead must be a whole number of packets >= 0, got {value!r} ({type(value).__name__})"
        )
    if value < 0:
        raise ValueError(f"lookahead must be >= 0 packets, got {value}")
    return int(value)


def register_concealer(
    name: str,
    factory: Callable[..., StreamingConcealer],
    *,
    group: str = "mae",
    lists: tuple[str, ...] = (),
    ablation_of: str | None = None,
    note: str = "",
    takes_model: bool = False,
    needs_source: bool = False,
) -> None:
    """Make ``make_concealer(name, **kwargs)`` call ``factory(**kwargs)``; re-registering replaces.
    The keywords are the method's :class:`MethodInfo` (where listings show it, whether it runs
    a model, whether it needs the sender's clean signal)."""
    if not name or not isinstance(name, str):
        raise ValueError(f"concealer name must be a non-empty string, got {name!r}")
    _REGISTRY[name] = MethodInfo(
        name, factory, group, tuple(lists), ablation_of, note, takes_model, needs_source
    )


def method_info(name: str) -> MethodInfo:
    """The registration of ``name`` (ValueError naming the known methods if there is none)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown concealment method {name!r}; available: {', '.join(available_methods())}")
    return _REGISTRY[name]


def available_methods() -> list[str]:
    """Names accepted by :func:`make_concealer`, sorted."""
    return sorted(_REGISTRY)


def listed_methods(list_name: str | None = None) -> list[str]:
    """Registered methods in listing order (by :data:`GROUPS`, then as registered); only those
    in the default list ``list_name`` ("demo", "eval", "bench") when given."""
    rank = {g: i for i, g in enumerate(GROUPS)}
    infos = sorted(_REGISTRY.values(), key=lambda m: rank.get(m.group, len(GROUPS)))
    return [m.name for m in infos if list_name is None or list_name in m.lists]


def baseline_methods() -> list[str]:
    """The registered baselines (group "baseline"), in listing order."""
    return [m for m in listed_methods() if _REGISTRY[m].group == "baseline"]


def model_methods() -> list[str]:
    """The methods that run a PLC model (``model=``), in listing order."""
    return [m for m in listed_methods() if _REGISTRY[m].takes_model]


def ablations() -> dict[str, str]:
    """Method -> the same concealer with one part switched off (its ablation)."""
    return {info.ablation_of: name for name, info in _REGISTRY.items() if info.ablation_of}


def methods_help() -> str:
    """Every method in listing order, then what some of them need (for ``--help`` texts)."""
    notes: dict[str, list[str]] = {}
    for name in listed_methods():
        if _REGISTRY[name].note:
            notes.setdefault(_REGISTRY[name].note, []).append(name)
    needs = "; ".join(f"{', '.join(names)} {note}" for note, names in notes.items())
    return ", ".join(listed_methods()) + (f" ({needs})" if needs else "")


def model_option(method: str, model) -> dict:
    """``{"model": model}`` for a method that runs one when one is given, else nothing: the
    keywords to build ``method`` with for a run that gives every method the same model."""
    return {"model": model} if model is not None and method_info(method).takes_model else {}


def check_model_taken(methods, model) -> None:
    """ValueError where a model is given but none of ``methods`` runs one."""
    if model is not None and not any(method_info(m).takes_model for m in methods):
        raise ValueError(f"a model was given but none of the methods {', '.join(methods)} runs one")


def make_concealer(name: str, **kwargs) -> StreamingConcealer:
    """Build a fresh concealer by registered name (``zero``, ``g711``, ``opus``, ``opus-fec``, ``mae``...)."""
    factory = method_info(name).factory
    if kwargs.get("lookahead") is not None:
        check_lookahead(kwargs["lookahead"])
    try:
        return factory(**kwargs)
    except TypeError as exc:
        if "keyword argument" not in str(exc):
            raise ValueError(f"method {name!r}: bad option value ({exc})") from exc
        # An option the method does not have (e.g. lookahead for a causal one).
        raise UnsupportedOptionError(
            f"method {name!r} does not accept options {sorted(kwargs)}: {exc}"
        ) from exc
