"""Opus 1.5's deep PLC as a baseline: the ``opus`` codec simulation decoded by a libopus that has it.

libopus 1.5 conceals a lost packet with a neural model (LPCNet-style PLC with a FARGAN vocoder)
when the decoder's complexity is 5 or more and the library was built with it. The libopus that
``opuslib-next-bundled`` ships is built without it, so ``opus-deep`` loads a second libopus,
given by path, through ctypes. Debian's ``libopus0`` (1.5.2 in trixie, built with deep PLC) is one
such library; it need not be installed, only unpacked (on a Debian or Ubuntu machine with the
``debian-archive-keyring`` package)::

    mkdir -p apt/lists/partial apt/cache/archives/partial
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]" \
        "http://deb.debian.org/debian trixie main" > apt/sources.list
    opts="-o Dir::Etc::sourcelist=$PWD/apt/sources.list -o Dir::Etc::sourceparts=-
          -o Dir::State::Lists=$PWD/apt/lists -o Dir::Cache=$PWD/apt/cache"
    apt-get $opts update && apt-get $opts download libopus0/trixie
    dpkg-deb -x libopus0_1.5.2-*_amd64.deb libopus-1.5
    export AUDIOMAE_LIBOPUS_DEEP=$PWD/libopus-1.5/usr/lib/x86_64-linux-gnu/libopus.so.0

(or build libopus >= 1.5 from source with deep PLC enabled). The path comes from ``library=``,
from :func:`set_library` (what the ``--libopus-deep`` options call) or from the environment
variable ``AUDIOMAE_LIBOPUS_DEEP``. The library is checked when loaded: version 1.5 or later, and
its concealment of a lost packet at complexity 5 must differ from its complexity-0 one (a build
without deep PLC conceals the same at both).
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import re
import sys
from collections.abc import Sequence

import numpy as np

from audiomae.audio import SAMPLE_RATE, SAMPLES_PER_PACKET
from audiomae.plc.base import register_concealer
from audiomae.plc.opus import OpusConcealer

ENV_VAR = "AUDIOMAE_LIBOPUS_DEEP"
METHOD = "opus-deep"
HOW_TO_GET = (
    f"{METHOD} needs a libopus >= 1.5 built with deep PLC (the bundled libopus lacks it): unpack "
    "Debian trixie's libopus0 package with dpkg-deb -x (apt-get download libopus0/trixie) and give "
    f"its usr/lib/x86_64-linux-gnu/libopus.so.0 with --libopus-deep PATH or {ENV_VAR}=PATH "
    "(README, 'Opus deep PLC')"
)
# Decoder complexity: 5 runs the deep PLC and nothing else; 6 and 7 also enhance every received
# packet (OSCE), which is not concealment, so the default keeps received packets as plain Opus.
DEEP_PLC_COMPLEXITY = 5

_OPUS_OK = 0
_OPUS_SET_COMPLEXITY_REQUEST = 4010
_OPUS_RESET_STATE = 4028


class LibopusDeepUnavailable(ImportError, ValueError):
    """No usable libopus with deep PLC: none configured, or the one given does not load or lacks it.
    An ImportError (an optional dependency) and a ValueError (a bad option), so the CLI reports it
    on one line."""


def library_path(library: str | os.PathLike | None = None) -> str | None:
    """The libopus to load: ``library`` if given, else ``$AUDIOMAE_LIBOPUS_DEEP``, else None."""
    if library is not None:
        return os.fspath(library)
    return os.environ.get(ENV_VAR) or None


def set_library(library: str | os.PathLike) -> str:
    """Check ``library`` (see :func:`load_library`) and make it the process's ``opus-deep`` library,
    for worker processes too (it sets ``$AUDIOMAE_LIBOPUS_DEEP``). Returns its version string."""
    path = os.path.abspath(os.fspath(library))
    version = load_library(path).version
    os.environ[ENV_VAR] = path
    return version


def unavailable_reason(library: str | os.PathLike | None = None) -> str | None:
    """Why ``opus-deep`` cannot run (None if it can)."""
    try:
        load_library(library)
    except LibopusDeepUnavailable as exc:
        return str(exc)
    return None


def skip_if_unavailable(methods: Sequence[str]) -> list[str]:
    """``methods`` without ``opus-deep`` when no library with deep PLC is configured, saying so once
    on stderr: for default method lists (a list the user wrote keeps it and fails with the reason)."""
    methods = list(methods)
    if METHOD in methods:
        reason = unavailable_reason()
        if reason is not None:
            print(f"note: skipping {METHOD}: {reason}", file=sys.stderr)
            methods.remove(METHOD)
    return methods


class _Libopus:
    """The few libopus decoder calls ``opus-deep`` uses, bound with their C signatures."""

    def __init__(self, path: str) -> None:
        lib = ctypes.CDLL(path)  # RTLD_LOCAL: its symbols do not replace the bundled libopus'
        lib.opus_get_version_string.restype = ctypes.c_char_p
        lib.opus_get_version_string.argtypes = []
        lib.opus_decoder_get_size.restype = ctypes.c_int
        lib.opus_decoder_get_size.argtypes = [ctypes.c_int]
        lib.opus_decoder_init.restype = ctypes.c_int
        lib.opus_decoder_init.argtypes = [ctypes.c_void_p, ctypes.c_int32, ctypes.c_int]
        lib.opus_decode_float.restype = ctypes.c_int
        lib.opus_decode_float.argtypes = [
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_int32,
            ctypes.POINTER(ctypes.c_float),
            ctypes.c_int,
            ctypes.c_int,
        ]
        # opus_decoder_ctl is variadic; every request used here takes one int (or none).
        lib.opus_decoder_ctl.restype = ctypes.c_int
        lib.opus_strerror.restype = ctypes.c_char_p
        lib.opus_strerror.argtypes = [ctypes.c_int]
        self.lib, self.path = lib, path
        self.version = lib.opus_get_version_string().decode()
        self.state_size = lib.opus_decoder_get_size(1)

    def error(self, code: int) -> str:
        return self.lib.opus_strerror(code).decode()


class DeepDecoder:
    """A 16 kHz mono libopus decoder at ``complexity``, its state in memory Python owns (a libopus
    decoder state is one block without pointers into itself, so a byte copy is a full copy)."""

    def __init__(self, lib: _Libopus, complexity: int = DEEP_PLC_COMPLEXITY) -> None:
        self._lib, self.complexity = lib, int(complexity)
        self._state = ctypes.create_string_buffer(lib.state_size)
        self._pcm = (ctypes.c_float * SAMPLES_PER_PACKET)()
        self._check(lib.lib.opus_decoder_init(self._state, SAMPLE_RATE, 1), "opus_decoder_init")
        self._set_complexity()

    def _check(self, code: int, call: str) -> int:
        if code < 0:
            raise RuntimeError(f"{call} ({self._lib.path}): {self._lib.error(code)}")
        return code

    def _set_complexity(self) -> None:
        ctl = self._lib.lib.opus_decoder_ctl
        code = ctl(self._state, ctypes.c_int(_OPUS_SET_COMPLEXITY_REQUEST), ctypes.c_int(self.complexity))
        self._check(code, f"OPUS_SET_COMPLEXITY({self.complexity})")

    def reset_state(self) -> None:
        """Start a new stream (the complexity is kept)."""
        ctl = self._lib.lib.opus_decoder_ctl
        self._check(ctl(self._state, ctypes.c_int(_OPUS_RESET_STATE)), "OPUS_RESET_STATE")
        self._set_complexity()

    def decode(self, payload: bytes | None) -> np.ndarray:
        """One 20 ms packet ``(SAMPLES_PER_PACKET,)`` float32; ``None`` (lost) runs the PLC."""
        data, size = (None, 0) if payload is None else (bytes(payload), len(payload))
        n = self._lib.lib.opus_decode_float(self._state, data, size, self._pcm, SAMPLES_PER_PACKET, 0)
        if self._check(n, "opus_decode_float") != SAMPLES_PER_PACKET:
            raise RuntimeError(f"opus_decode_float returned {n} samples, expected {SAMPLES_PER_PACKET}")
        return np.frombuffer(self._pcm, dtype=np.float32).copy()

    def copy(self) -> DeepDecoder:
        twin = DeepDecoder.__new__(DeepDecoder)
        twin._lib, twin.complexity = self._lib, self.complexity
        twin._state = ctypes.create_string_buffer(self._lib.state_size)
        ctypes.memmove(twin._state, self._state, self._lib.state_size)
        twin._pcm = (ctypes.c_float * SAMPLES_PER_PACKET)()
        return twin


def load_library(library: str | os.PathLike | None = None) -> _Libopus:
    """The libopus at ``library`` (default: ``$AUDIOMAE_LIBOPUS_DEEP``), checked to run deep PLC.

    Raises :class:`LibopusDeepUnavailable`, with how to get one, when none is configured, it does
    not load, is older than 1.5 or conceals at complexity 5 exactly as at complexity 0."""
    path = library_path(library)
    if path is None:
        raise LibopusDeepUnavailable(f"no library given; {HOW_TO_GET}")
    return _load_checked(os.path.abspath(path))


@functools.cache
def _load_checked(path: str) -> _Libopus:
    if not os.path.isfile(path):
        raise LibopusDeepUnavailable(f"{path}: no such file; {HOW_TO_GET}")
    try:
        lib = _Libopus(path)
    except (OSError, AttributeError) as exc:
        raise LibopusDeepUnavailable(f"{path}: not a loadable libopus ({exc}); {HOW_TO_GET}") from None
    # A build may not know its version ("libopus unknown"): then the deep PLC check alone decides.
    match = re.search(r"(\d+)\.(\d+)", lib.version)
    if match is not None and (int(match[1]), int(match[2])) < (1, 5):
        raise LibopusDeepUnavailable(f"{path} is {lib.version!r}, older than 1.5; {HOW_TO_GET}")
    try:
        deep = _runs_deep_plc(lib)
    except RuntimeError as exc:  # e.g. a decoder that does not take OPUS_SET_COMPLEXITY
        raise LibopusDeepUnavailable(f"{path} ({lib.version}): {exc}; {HOW_TO_GET}") from None
    if not deep:
        raise LibopusDeepUnavailable(f"{path} ({lib.version}) was built without deep PLC; {HOW_TO_GET}")
    return lib


def _runs_deep_plc(lib: _Libopus) -> bool:
    """Whether a lost packet after 0.4 s of a voiced test signal is concealed differently at
    complexity 5 than at 0 (the deep PLC runs from 5 on; below, the classic PLC)."""
    t = np.arange(25 * SAMPLES_PER_PACKET) / SAMPLE_RATE
    f0 = 140.0 + 20.0 * np.sin(2 * math.pi * 1.5 * t)
    phase = 2 * math.pi * np.cumsum(f0) / SAMPLE_RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12)) * 0.2 * (1 + 0.3 * np.sin(2 * math.pi * 4 * t))
    payloads = OpusConcealer().encode_stream(voiced.astype(np.float32))
    concealed = []
    for complexity in (0, DEEP_PLC_COMPLEXITY):
        decoder = DeepDecoder(lib, complexity)
        for p in payloads[:20]:
            decoder.decode(p)
        concealed.append(np.concatenate([decoder.decode(None), decoder.decode(None)]))
    return not np.array_equal(*concealed)


class OpusDeepConcealer(OpusConcealer):
    """The ``opus`` codec simulation (same encoder, settings and delay compensation) decoded by a
    libopus >= 1.5 whose deep PLC conceals the lost packets (decoder ``decoder_complexity`` >= 5).

    ``library``: path of that libopus (default ``$AUDIOMAE_LIBOPUS_DEEP``; see the module doc).
    The sender's payloads are identical to ``opus``'s, so the two differ only in the receiver.
    """

    def __init__(
        self,
        bitrate: int = 64000,
        complexity: int = 10,
        decoder_complexity: int = DEEP_PLC_COMPLEXITY,
        library: str | os.PathLike | None = None,
    ) -> None:
        if not DEEP_PLC_COMPLEXITY <= decoder_complexity <= 10:
            raise ValueError(
                f"decoder_complexity must be in [{DEEP_PLC_COMPLEXITY}, 10] for the deep PLC, got "
                f"{decoder_complexity}"
            )
        lib = load_library(library)
        super().__init__(bitrate=bitrate, fec=False, complexity=complexity)
        self.library_version = lib.version
        self.decoder = DeepDecoder(lib, decoder_complexity)

    def clone_decoder(self) -> DeepDecoder:
        return self.decoder.copy()

    def decode(self, t: int, received: bool) -> np.ndarray:
        return self.decoder.decode(self.payloads[t] if received else None)


register_concealer(
    METHOD,
    OpusDeepConcealer,
    group="baseline",
    lists=("eval", "bench"),
    note="simulates the codec and needs --clean and --libopus-deep",
    needs_source=True,
)
