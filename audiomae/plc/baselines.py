"""Classical concealment baselines: silence and ITU-T G.711 Appendix I (the Opus codec's own
PLC and FEC are in :mod:`audiomae.plc.opus`)."""

from __future__ import annotations

import numpy as np

from audiomae.audio import SAMPLE_RATE, SAMPLES_PER_PACKET
from audiomae.plc.base import StreamingConcealer, register_concealer
from audiomae.plc.dsp import find_pitch, linear_crossfade


class ZeroConcealer(StreamingConcealer):
    """Lost packets become silence: the floor every method must beat."""

    lookahead = 0

    def _conceal(self, window: list[np.ndarray | None]) -> np.ndarray:
        packet = window[0]
        return np.zeros(SAMPLES_PER_PACKET, dtype=np.float32) if packet is None else packet


class G711Concealer(StreamingConcealer):
    """Pitch-repetition PLC after ITU-T G.711 Appendix I, run at 16 kHz with no added delay.

    Times are those of the appendix, scaled from 8 kHz: 10 ms processing frames, pitch
    search over 5-15 ms on the last 20 ms of history (coarse at 4 kHz, then full rate),
    a 48.75 ms history, 1/2/3 pitch periods replayed as the erasure passes 0/10/20 ms,
    attenuation of 20 % per 10 ms from 10 ms on, silence from 60 ms, and an overlap-add of
    4 ms + 4 ms per extra 10 ms of erasure (at most 10 ms) into the first good frame.

    Delay: the appendix delays its output by 3.75 ms so that, when an erasure starts, it can
    still rewrite the last quarter pitch period of the signal already decoded. Here the
    concealer is causal with ``lookahead = 0``: those samples have already been played, so
    the quarter-period overlap-add smooths only the seam inside the repeated pitch buffer
    (where the period wraps), and the junction with the played signal is left as the pitch
    search made it (the search maximises exactly that similarity). On recovery the
    synthetic signal is overlap-added into the start of the first received packet instead
    of into delayed samples, so the stream stays delay-free.
    """

    lookahead = 0

    _ATTEN_PER_FRAME = 0.2  # gain lost per 10 ms after the first 10 ms of an erasure
    _SILENT_FROM_FRAME = 6  # 60 ms: by then the gain has ramped to zero

    def __init__(self) -> None:
        super().__init__()
        ms = SAMPLE_RATE / 1000.0
        self.frame = round(10 * ms)
        if SAMPLES_PER_PACKET % self.frame:
            raise ValueError(
                f"G.711 App. I works in 10 ms frames; a {SAMPLES_PER_PACKET}-sample packet is not"
            )
        self.pitch_min = round(5 * ms)
        self.pitch_max = round(15 * ms)
        self.overlap_step = round(4 * ms)
        # 3 periods of the longest pitch plus its quarter-period overlap: 48.75 ms.
        self.history_len = 3 * self.pitch_max + self.pitch_max // 4
        self._reset()

    def _reset(self) -> None:
        self._history = np.zeros(self.history_len)
        self._erased = 0  # 10 ms frames concealed in the current erasure
        self._base = self._history
        self._pitch = self.pitch_min
        self._quarter = self.pitch_min // 4
        self._last_quarter = np.zeros(self._quarter)
        self._buffer = np.zeros(self.pitch_min)
        self._offset = 0

    # -- streaming --------------------------------------------------------------------------

    def _conceal(self, window: list[np.ndarray | None]) -> np.ndarray:
        packet = window[0]
        out = np.empty(SAMPLES_PER_PACKET)
        for start in range(0, SAMPLES_PER_PACKET, self.frame):
            span = slice(start, start + self.frame)
            out[span] = self._erase_frame() if packet is None else self._receive_frame(packet[span])
        return out

    def _receive_frame(self, frame: np.ndarray) -> np.ndarray:
        frame = frame.astype(np.float64)
        if self._erased:
            n = min(self.overlap_step * self._erased, self.frame)
            synthetic = self._synthesise(n) * self._gains(self._erased, n)
            frame[:n] = linear_crossfade(synthetic, frame[:n])
            self._erased = 0
        self._remember(frame)
        return frame

    def _erase_frame(self) -> np.ndarray:
        k = self._erased
        if k == 0:
            self._start_erasure()
            out = self._synthesise(self.frame)
        elif k <= 2:
            # Replay one more period from 10 and 20 ms on, so a long erasure is less buzzy;
            # keep the phase and cross-fade from the old buffer's continuation.
            offset = self._offset
            tail = self._synthesise(self._quarter)
            self._offset = offset % self._pitch
            self._build_buffer(k + 1)
            out = self._synthesise(self.frame)
            out[: self._quarter] = linear_crossfade(tail, out[: self._quarter])
        elif k < self._SILENT_FROM_FRAME:
            out = self._synthesise(self.frame)
        else:
            out = np.zeros(self.frame)
        out *= self._gains(k, self.frame)
        self._erased += 1
        self._remember(out)
        return out

    def _remember(self, frame: np.ndarray) -> None:
        self._history = np.concatenate([self._history[frame.size :], frame])

    # -- synthesis --------------------------------------------------------------------------

    def _start_erasure(self) -> None:
        self._base = self._history.copy()
        self._pitch = self.find_pitch(self._base)
        self._quarter = self._pitch // 4
        self._last_quarter = self._base[-self._quarter :].copy()
        self._offset = 0
        self._build_buffer(1)

    def _build_buffer(self, periods: int) -> None:
        """The last ``periods`` pitch periods of history, their end blended into what preceded them."""
        n, q, h = periods * self._pitch, self._quarter, self._base
        buf = h[h.size - n :].copy()
        # When the buffer wraps, its end is followed by its start; fading the end into the
        # samples just before the start makes that seam continuous.
        buf[-q:] = linear_crossfade(self._last_quarter, h[h.size - n - q : h.size - n])
        self._buffer = buf

    def _synthesise(self, n: int) -> np.ndarray:
        idx = (self._offset + np.arange(n)) % self._buffer.size
        self._offset = (self._offset + n) % self._buffer.size
        return self._buffer[idx]

    def _gains(self, k: int, n: int) -> np.ndarray:
        """Gain for ``n`` samples from the start of erasure frame ``k`` (0-based, 10 ms each)."""
        if k == 0:
            return np.ones(n)
        step = self._ATTEN_PER_FRAME / self.frame
        g = 1.0 - self._ATTEN_PER_FRAME * (k - 1) - step * np.arange(n)
        return np.maximum(g, 0.0)

    def find_pitch(self, history: np.ndarray) -> int:
        """Pitch period in samples (5-15 ms) of ``history``: :func:`audiomae.plc.dsp.find_pitch`."""
        return find_pitch(history, SAMPLE_RATE)


register_concealer("zero", ZeroConcealer, group="baseline", lists=("demo", "eval", "bench"))
register_concealer("g711", G711Concealer, group="baseline", lists=("demo", "eval", "bench"))
