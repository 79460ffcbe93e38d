"""The Audio-MAE concealer: predict the lost packet's log-mel column, render it, cross-fade it in.

Per lost packet ``t`` the concealer builds a window of ``context_packets`` packets of received
audio (lost ones zeroed) ending with ``t`` and then either one unknown future packet (causal)
or the ``lookahead`` packets after ``t``; it masks every lost column, lets the MAE fill them,
and renders packet ``t`` (plus a short tail) from the filled log-mel:

    received ... | t-1 |   t (lost)   | t+1 ...
                 ......\\____/~~~~~~~~~\\.....            \\ / : cross-fades
                  LPC     renderer     tail -> next packet (recovery, or the next lost one)
                  continuation

* Burst start: the rendering may not match the audio already played sample for sample, so
  the first :data:`FADE` samples cross-fade from an LPC continuation of the played audio
  (:func:`~audiomae.plc.dsp.lpc_continuation`); the default renderer shapes that same
  continuation with the MAE's log-mel (:class:`~audiomae.plc.render.PitchGuidedRenderer`).
* The continuation's excitation is mixed: the last pitch period of the LPC residual repeats
  only at low frequencies (below :data:`NOISE_ABOVE_HZ` in a burst's first lost packet,
  :data:`NOISE_ABOVE_LATER_HZ` after it), noise of the same power fills the band above.
* The first lost packet of a burst plays the continuation itself; the MAE shapes the packets
  after it (``mae_from_packet``; None switches the MAE off, which is the ``lpc`` method).
* Recovery: the rendered tail beyond the lost packet is cross-faded into the first received
  packet, so recovery adds no delay; after a burst of :data:`RECOVERY_RAMP_AFTER` or more, a
  packet louder than the concealment ramps up from its level (``recovery_ramp``).
* With lookahead, when the packet after the gap is already received, the gap is bridged from
  both sides: the continuation, time-warped to arrive in phase with that packet, cross-fades
  into the packet's own LPC continuation run backwards. Bridged packets are not reshaped.
* Long bursts: after ``full_level_packets`` lost packets the prediction fades, over
  ``fade_packets`` packets, into comfort noise at the speaker's background level.

Every call does a bounded amount of work: at most one MAE pass (int8 by default) over
``context_packets`` columns and one render over ``VOCODER_CONTEXT + 6`` frames per lost
packet; a received packet only updates ring buffers. The constants below were tuned on
LibriSpeech train files apart from the dev benchmark (``experiments/tune_concealer.py``; the
tables are in ``experiments/results/tune_concealer.md``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from audiomae.audio import SAMPLE_RATE, SAMPLES_PER_PACKET
from audiomae.plc.base import StreamingConcealer, check_lookahead, register_concealer
from audiomae.plc.dsp import find_pitch, lpc_continuation, period_near, raised_cosine
from audiomae.plc.models import (
    BACKENDS,
    DEFAULT_PLC_MODEL,
    default_backend,
    int8_copy,
    load_default_plc_model,
    model_ref,
)
from audiomae.plc.params import FrameParams, steered_continuation
from audiomae.plc.render import (
    GriffinLimRenderer,
    PitchGuidedRenderer,
    VocoderRenderer,
    as_renderer,
    known_frames,
    numpy_pitch_guided_renderer,
)

if TYPE_CHECKING:  # torch is imported only where the torch backend runs
    import torch

    from audiomae.model import AudioMAE

VOCODER_CONTEXT = 6  # mel frames of left context given to the renderer (enough for its STFT window)
FADE = 40  # cross-fade samples at burst start and recovery: 2.5 ms scored best of 20 / 40 / 80 / 160
COMFORT_GAIN = 1.0  # comfort noise at the background level; 0.5, 1.5 and 2 scored lower PLCMOS
LPC_ORDER = 24  # the continuation's synthesis filter: 24 beat 8 and 16, 32 scored as 24
NOISE_ABOVE_HZ = 3000.0  # mixed excitation in a burst's first lost packet: periodic below, noise above
NOISE_ABOVE_LATER_HZ = 1000.0  # ... and after it, where a periodic excitation turns buzzy sooner
RECOVERY_RAMP_AFTER = 2  # bursts after which recovery ramps (after single losses it cost PESQ-WB)
BRIDGE_WARP = 0.15  # most a bridge may stretch or squeeze the continuation (share of the gap)
BRIDGE_WEIGHT_EXP = 0.7  # bridge cross-fade weight (t / gap) ** 0.7 beat a linear one and 1.5
PITCH_HISTORY_S = 0.05  # played audio kept for the pitch search and the continuation
LEVEL_HISTORY_PACKETS = 150  # received packets (3 s) behind the background-level estimate


@dataclass(frozen=True)
class ConcealerConfig:
    """The MAE concealer's settings (the model and the lookahead are arguments of the concealer)."""

    context_packets: int = 24  # MAE window in packets, the target and those after it included
    mae_from_packet: int | None = 2  # the MAE shapes lost packets from this one of a burst on (None: never)
    full_level_packets: int = 1  # lost packets of a burst played at full level before the fade
    fade_packets: int = 4  # packets over which a long burst then fades into comfort noise
    comfort_noise: bool = True  # fill a faded burst with noise at the background level (else silence)
    bridge: bool = True  # with lookahead, bridge a gap whose end is received (else fade as causal)
    recovery_ramp: int = 320  # samples over which a loud packet after a burst ramps up (0: off)
    int8: bool = True  # run the MAE's linear layers in int8 (~1.7x faster on x86; fp32 where unsupported)
    noise_seed: int = 0  # seed of the comfort noise and the continuation's excitation noise

    def __post_init__(self) -> None:
        if self.context_packets < 4:
            raise ValueError(f"context_packets must be at least 4, got {self.context_packets}")
        if self.mae_from_packet is not None and self.mae_from_packet < 1:
            raise ValueError(f"mae_from_packet must be >= 1 or None, got {self.mae_from_packet}")
        if self.fade_packets < 1 or self.full_level_packets < 0:
            raise ValueError("fade_packets must be >= 1 and full_level_packets >= 0")
        if not 0 <= self.recovery_ramp <= SAMPLES_PER_PACKET:
            raise ValueError(
                f"need 0 <= recovery_ramp <= {SAMPLES_PER_PACKET} samples, got {self.recovery_ramp}"
            )


# The ``lpc`` methods: the MAE off, and the continuation held at full level for two lost packets
# (with the MAE, two cost PLCMOS at 20% loss; without it, two beat one).
LPC_DEFAULTS = {"mae_from_packet": None, "full_level_packets": 2}
# A residual model (ResidualPLCMAE) was trained on what ``lpc`` plays, and its correction is
# applied from the first lost packet of a burst on.
RESIDUAL_DEFAULTS = {"mae_from_packet": 1, "full_level_packets": LPC_DEFAULTS["full_level_packets"]}


@dataclass
class StreamState:
    """Everything the MAE concealer remembers of a stream; ``reset()`` replaces it with a fresh one."""

    hist: np.ndarray  # received audio of the history columns (lost packets zero)
    hist_lost: np.ndarray  # (history packets,) bool
    hist_played: np.ndarray  # what was played over the same columns (a residual model's input)
    played: np.ndarray  # the last PITCH_HISTORY_S of what the listener heard
    noise: np.random.Generator  # the comfort noise
    burst: int = 0  # lost packets so far in the current burst
    tail: np.ndarray | None = None  # rendered samples beyond the last lost packet (cross-faded in next)
    levels: list[float] = field(default_factory=list)  # RMS of the last received packets
    cycle: np.ndarray | None = None  # this packet's last pitch period of ``played``, found on demand
    cont: np.ndarray | None = None  # this packet's continuation of ``played``, built on demand

    @classmethod
    def start(cls, history_packets: int, played: int, seed: int) -> StreamState:
        return cls(
            hist=np.zeros(history_packets * SAMPLES_PER_PACKET, dtype=np.float32),
            hist_lost=np.zeros(history_packets, dtype=bool),
            hist_played=np.zeros(history_packets * SAMPLES_PER_PACKET, dtype=np.float32),
            played=np.zeros(played, dtype=np.float32),
            noise=np.random.default_rng(seed),
        )


@dataclass(frozen=True)
class MAEWindow:
    """One MAE pass, as :meth:`ConcealerHooks.logmel` sees it (frames are log-mel frames of the
    window, samples are stream samples)."""

    index: int  # the lost packet being concealed
    burst: int  # its position in the burst (1: the first lost packet)
    start: int  # stream sample of ``wave[0]`` (negative at the start of a stream)
    wave: np.ndarray  # (S,) the MAE's input window
    lost: np.ndarray  # (packets,) bool, which of the window's packets are lost
    target: int  # first frame of the lost packet
    guide: np.ndarray  # what the renderer shapes, from frame ``guide_start`` on
    guide_start: int


@dataclass(frozen=True)
class LostPacket:
    """A lost packet about to be played, as :meth:`ConcealerHooks.replace` sees it."""

    index: int  # its position in the stream
    burst: int  # its position in the burst (1: the first lost packet)
    bridged: bool  # bridged to the received packet after the gap (lookahead)
    size: int  # samples wanted: the packet and the tail cross-faded into the next one


class ConcealerHooks:
    """Hooks into :class:`MAEConcealer` for diagnostics and experiments (``experiments/``,
    ``benchmarks/plc_prediction_error.py``); these defaults change nothing."""

    def logmel(self, window: MAEWindow, predicted: Any) -> Any:
        """The log-mel ``(1, F, T)`` the renderer gets for ``window``, given the MAE's
        ``predicted`` one (a tensor with the torch backend, an array with onnx)."""
        return predicted

    def reshape(self, packet: LostPacket, audio: np.ndarray) -> np.ndarray:
        """What to play for a lost packet given the concealer's rendering ``audio``
        ``(packet.size,)`` (before the fade into comfort noise); ``audio`` unchanged here."""
        return audio

    def replace(self, packet: LostPacket) -> np.ndarray | None:
        """Samples ``(packet.size,)`` to play instead of the concealment (at full level), or None."""
        return None

    def params(self, start: int, n: int) -> FrameParams | None:
        """Speech parameters (pitch, voicing, band energies, level per 10 ms frame) that the
        continuation of stream samples ``[start, start + n)`` follows instead of the concealer's
        fixed rules (:func:`~audiomae.plc.params.steered_continuation`), or None."""
        return None


class MAEConcealer(StreamingConcealer):
    """Packet-loss concealment with an Audio-MAE and a log-mel renderer.

    ``model``: an AudioMAE fine-tuned for PLC (one patch column per packet), default the
    bundled one. ``vocoder``: what renders the filled log-mel: a :class:`PitchGuidedRenderer`
    (default), a :class:`GriffinLimRenderer`, an :class:`audiomae.vocoder.Vocoder` (wrapped in
    :class:`VocoderRenderer`), or any :class:`~audiomae.plc.render.Renderer`.
    ``lookahead``: packets of delay (0 = causal, extrapolates; k >= 1 interpolates across
    gaps of up to the lookahead's reach). ``backend``: "torch" or "onnx" (see
    :data:`BACKENDS`; default torch where it is installed): with "onnx", ``model`` is an
    :class:`audiomae.runtime.OnnxPLCModel` (default the bundled model's export) and nothing
    imports torch. ``hooks``: :class:`ConcealerHooks` for diagnostics.

    The stream's state is :attr:`state` (a :class:`StreamState`). The model is loaded when the
    concealer is built if its settings run it, and never where they do not (``lpc``:
    ``mae_from_packet=None``); its geometry comes from :attr:`spec` either way.
    """

    def __init__(
        self,
        model: AudioMAE | None = None,
        vocoder=None,
        lookahead: int = 0,
        config: ConcealerConfig | None = None,
        backend: str | None = None,
        hooks: ConcealerHooks | None = None,
    ) -> None:
        super().__init__()
        self.lookahead = check_lookahead(lookahead)
        int8 = ConcealerConfig.int8 if config is None else config.int8
        self.backend, self._model = model_ref(model, backend, int8)
        self.spec = self._model.spec
        self._residual = self.spec.residual
        if config is None:
            # A residual model corrects what the MAE-free concealer plays, so it gets that
            # concealer's burst handling by default.
            config = ConcealerConfig(**(RESIDUAL_DEFAULTS if self._residual else {}))
        self.cfg = config
        self.hooks = hooks
        if vocoder is None:
            # Phase-anchored rendering of the continuation shaped by the MAE's log-mel beat both
            # Griffin-Lim from the log-mel alone and the CPU-trained neural vocoder on dev.
            renderer = PitchGuidedRenderer if self.backend == "torch" else numpy_pitch_guided_renderer()
            vocoder = renderer(self.spec.feature_cfg, n_iter=0)
        self.renderer = as_renderer(vocoder)
        self._check_geometry()
        self.frames_per_packet = self.spec.cfg.patch_t
        self._after = max(1, self.lookahead)  # columns after the target inside the MAE window
        self.history_packets = self.cfg.context_packets - 1 - self._after
        if self.backend == "torch":
            from audiomae.features import LogMel

            self.frontend = LogMel(self.spec.feature_cfg, backend="torch")
        else:  # the exported model's numpy front end
            from audiomae.runtime.features import LogMel as NumpyLogMel

            self.frontend = NumpyLogMel(self.spec.feature_cfg)
        self._pitch_history = int(PITCH_HISTORY_S * self.spec.feature_cfg.sample_rate)
        if self.cfg.mae_from_packet is not None:
            self._model.get()  # now, not at the first lost packet: loading takes a while
        self._reset()

    @property
    def model(self):
        """The model the concealer runs (an AudioMAE, its int8 copy, or an OnnxPLCModel), loaded
        on first use."""
        return self._model.get()

    def _check_geometry(self) -> None:
        from audiomae.config import check_plc_geometry

        mcfg, fcfg = self.spec.cfg, self.spec.feature_cfg
        check_plc_geometry(fcfg, mcfg, "the MAE")  # before the first packet, not at a lost one
        if self.renderer.feature_cfg != fcfg:
            raise ValueError("the vocoder and the MAE were trained on different log-mel settings")
        if self.cfg.context_packets * mcfg.patch_t > mcfg.max_frames:
            raise ValueError(
                f"context of {self.cfg.context_packets} packets exceeds the MAE's {mcfg.max_frames} frames"
            )
        if max(1, self.lookahead) >= self.cfg.context_packets - 1:
            raise ValueError(
                f"lookahead {self.lookahead} leaves no history in a {self.cfg.context_packets}-packet window"
            )

    # ---- state ----------------------------------------------------------------------------
    def _reset(self) -> None:
        self.state = StreamState.start(self.history_packets, self._pitch_history, self.cfg.noise_seed)

    def _remember(self, received: np.ndarray | None, played: np.ndarray) -> None:
        s = self.state
        s.hist = np.concatenate(
            [s.hist[SAMPLES_PER_PACKET:], received if received is not None else np.zeros_like(played)]
        )
        s.hist_lost = np.append(s.hist_lost[1:], received is None)
        s.hist_played = np.concatenate([s.hist_played[SAMPLES_PER_PACKET:], played])
        s.played = np.concatenate([s.played[SAMPLES_PER_PACKET:], played])
        s.cycle = None
        s.cont = None
        if received is not None:
            s.levels.append(float(np.sqrt(np.mean(received.astype(np.float64) ** 2)) + 1e-9))
            del s.levels[:-LEVEL_HISTORY_PACKETS]

    def _last_cycle(self) -> np.ndarray:
        """The last pitch period of what was played. The pitch search runs at most once per
        packet however many callers want it."""
        s = self.state
        if s.cycle is None:
            s.cycle = s.played[-int(find_pitch(s.played, SAMPLE_RATE)) :]
        return s.cycle

    def _continuation(self, n: int) -> np.ndarray:
        """``n`` samples continuing what was played (phase-continuous). Every caller in one
        packet gets a prefix of the same continuation."""
        s = self.state
        if s.cont is None or s.cont.size < n:
            size, start = max(n, 3 * SAMPLES_PER_PACKET), self.emit_index * SAMPLES_PER_PACKET
            given = None if self.hooks is None else self.hooks.params(start, size)
            steer = {} if given is None else {"params": given, "start": start}
            s.cont = (lpc_continuation if given is None else steered_continuation)(
                s.played,
                self._last_cycle().size,
                size,
                order=LPC_ORDER,
                # Seeded by the packet: the same whatever was asked of the concealer before.
                rng=np.random.default_rng([self.cfg.noise_seed, self.emit_index]),
                decay=True,
                noise_above=NOISE_ABOVE_HZ if s.burst < 2 else NOISE_ABOVE_LATER_HZ,
                **steer,
            )
        return s.cont[:n]

    def extrapolate(self, n: int) -> np.ndarray:
        """``n`` samples continuing what was played so far (the concealer's own continuation);
        used by :class:`~audiomae.plc.opus.OpusDecodedConcealer` to re-encode a concealment."""
        return self._continuation(n).copy()

    def _bridge(self, n: int, after: np.ndarray) -> np.ndarray:
        """``n`` samples that continue the played audio (:meth:`_continuation`) and arrive in
        phase with ``after`` (the received audio that follows them).

        The continuation is read at a constant rate ``(n + d) / n`` with the shift ``d`` (at most
        ``BRIDGE_WARP * n`` and half a pitch period) that best lines its extension up with
        ``after``; it cross-fades (weight ``(t / n) ** BRIDGE_WEIGHT_EXP``) into ``after``'s own
        LPC continuation run backwards over the gap, with ``after``'s pitch period searched near
        the played one, so the gap's end has the spectrum, phase and level of what follows."""
        period = self._last_cycle().size
        reach = min(period // 2, int(BRIDGE_WARP * n))
        m = min(after.size, 2 * period)
        ref = after[:m].astype(np.float64)
        ext = self._continuation(n + reach + m).astype(np.float64)
        views = np.lib.stride_tricks.sliding_window_view(ext[n - reach :], m)  # shifts -reach..reach
        energy = np.sqrt(np.einsum("ij,ij->i", views, views) * float(ref @ ref)) + 1e-12
        d = int(np.argmax(views @ ref / energy)) - reach
        warped = np.interp(np.arange(n) * (n + d) / n, np.arange(ext.size), ext)
        back_period = min(period_near(after, period), after.size - LPC_ORDER)
        # Its excitation stays periodic (noise above 3 kHz scored lower there).
        backward = lpc_continuation(after[::-1], back_period, n, order=LPC_ORDER, decay=True)[::-1]
        w = (np.arange(n) / n) ** BRIDGE_WEIGHT_EXP
        return (warped * (1 - w) + backward.astype(np.float64) * w).astype(np.float32)

    def _background_level(self) -> float:
        if not self.state.levels:
            return 0.0
        return float(np.percentile(self.state.levels, 10))

    # ---- concealment ----------------------------------------------------------------------
    def _conceal(self, window: list[np.ndarray | None]) -> np.ndarray:
        if window[0] is not None:
            return self._receive(window[0])
        s = self.state
        s.burst += 1
        rendered, bridge = self._render(window)  # (SAMPLES_PER_PACKET + FADE,), bridge or None
        # Bridged to received audio: no fade towards comfort noise.
        gains = self._burst_gains() if bridge is None else np.ones_like(rendered)
        if self.hooks is not None:
            event = LostPacket(self.emit_index, s.burst, bridge is not None, rendered.size)
            rendered = np.asarray(self.hooks.reshape(event, rendered), dtype=np.float32)
            replaced = self.hooks.replace(event)
            if replaced is not None:
                rendered, gains = np.asarray(replaced, dtype=np.float32), np.ones_like(rendered)
        rendered = rendered * gains
        if self.cfg.comfort_noise:
            level = self._background_level() * COMFORT_GAIN
            noise = s.noise.standard_normal(rendered.size).astype(np.float32) * level
            rendered = rendered + noise * (1.0 - gains)
        out, tail = rendered[:SAMPLES_PER_PACKET].copy(), rendered[SAMPLES_PER_PACKET:]
        r = raised_cosine(FADE)
        if s.tail is not None:  # inside a burst: continue from the previous rendering's tail
            start = s.tail[:FADE]
        else:  # burst start: continue the played waveform, then hand over to the rendering
            start = self._continuation(FADE) if bridge is None else bridge[:FADE]
        out[:FADE] = start * (1 - r) + out[:FADE] * r
        s.tail = tail
        self._remember(None, out)
        return out

    def _receive(self, packet: np.ndarray) -> np.ndarray:
        """A received packet: played as it is, or after a burst cross-faded in from the rendered tail."""
        s = self.state
        out = packet.copy()
        if s.tail is not None:
            n = self.cfg.recovery_ramp
            if n and s.burst >= RECOVERY_RAMP_AFTER:
                e_conc = float(np.mean(s.played[-SAMPLES_PER_PACKET:].astype(np.float64) ** 2))
                e_new = float(np.mean(packet.astype(np.float64) ** 2))
                if e_conc < e_new:
                    g0 = np.sqrt(e_conc / e_new)
                    out[:n] *= (g0 + (1 - g0) * np.arange(n) / n).astype(np.float32)
            r = raised_cosine(FADE)
            out[:FADE] = s.tail[:FADE] * (1 - r) + out[:FADE] * r
        s.tail = None
        s.burst = 0
        self._remember(packet, out)
        return out

    def _burst_gains(self) -> np.ndarray:
        """Per-sample gain for this lost packet and its tail (1 = full level, 0 = comfort noise)."""
        n = SAMPLES_PER_PACKET + FADE
        pos = (self.state.burst - 1 - self.cfg.full_level_packets) + np.arange(n) / SAMPLES_PER_PACKET
        return np.clip(1.0 - pos / self.cfg.fade_packets, 0.0, 1.0).astype(np.float32)

    def _render(self, window: list[np.ndarray | None]) -> tuple[np.ndarray, np.ndarray | None]:
        """Packet ``t`` plus the cross-fade tail, and the bridge laid over the gap (None if the
        gap's end is not in view)."""
        cfg, s = self.cfg, self.state
        if s.burst > cfg.full_level_packets + cfg.fade_packets + 1:
            # Deep inside a long burst the output is comfort noise: skip the models.
            return np.zeros(SAMPLES_PER_PACKET + FADE, dtype=np.float32), None
        after = list(window[1:]) if self.lookahead else [None]
        zeros = np.zeros(SAMPLES_PER_PACKET, dtype=np.float32)
        wave = np.concatenate([s.hist, zeros] + [zeros if p is None else p for p in after])
        lost = np.concatenate([s.hist_lost, [True], [p is None for p in after]])
        # Frames of the target packet start after the history columns.
        fpp = self.frames_per_packet
        first = self.history_packets * fpp
        left = min(VOCODER_CONTEXT, first)
        stop = first + fpp + 1  # one frame past the packet gives the cross-fade tail
        right = min(len(lost) * fpp, stop + fpp)
        frames = slice(first - left, right)
        hop = self.spec.feature_cfg.hop_length
        segment = wave[frames.start * hop : right * hop]
        guide, gap, bridge = self._guide(segment, lost, after, (first - frames.start) * hop)
        if cfg.mae_from_packet is None or s.burst < cfg.mae_from_packet or bridge is not None:
            # Early in a burst, bridged to the audio after the gap, or the MAE switched off: the
            # continuation (or bridge) itself is played.
            return guide[gap : gap + SAMPLES_PER_PACKET + FADE].copy(), bridge
        # Only the rendered frames' columns are predicted (the decoder skips the rest).
        cols = (frames.start // fpp, -(-right // fpp))
        if self._residual:
            # The model corrects what the MAE-free concealer plays; its correction (prediction
            # minus input) scales the continuation's bands, so a zero correction plays ``lpc``.
            wave = self._residual_input(wave, guide, gap)
            # The history as played (not zeros where it was lost) under the frames that overlap it.
            shaped = guide.copy()
            shaped[:gap] = s.hist_played[s.hist_played.size - gap :]
            mel = self._predict(wave, lost, cols, shaped, frames.start)[..., frames]
            delta = np.array(mel - self.window_logmel(wave)[..., frames], dtype=np.float32)
            delta[..., :left] = 0.0  # only the target packet's frames (and the tail's) change
            delta[..., stop - frames.start :] = 0.0
            audio = self.renderer.correct(delta, left, left + (stop - first), shaped)
            return audio[: SAMPLES_PER_PACKET + FADE].astype(np.float32), bridge
        mel = self._predict(wave, lost, cols, guide, frames.start)[..., frames]
        known = known_frames(lost, fpp, hop, self.spec.feature_cfg.win_length)[frames]
        audio = self.renderer.render(mel, left, left + (stop - first), segment, known, guide=guide)
        return audio[: SAMPLES_PER_PACKET + FADE].astype(np.float32), bridge

    def _guide(
        self, segment: np.ndarray, lost: np.ndarray, after: list, gap: int
    ) -> tuple[np.ndarray, int, np.ndarray | None]:
        """The rendered segment with the continuation (or, where the gap's end is in view, the
        bridge) laid over its lost samples from ``gap`` on: what the renderer shapes. Returns
        (guide, gap, bridge or None)."""
        guide = segment.copy()
        guide[gap:] = np.where(
            np.repeat(lost[self.history_packets :], SAMPLES_PER_PACKET)[: guide.size - gap],
            self._continuation(guide.size - gap),
            guide[gap:],
        )
        bridge = None
        if self.lookahead and self.cfg.bridge:
            # The first received packet in the lookahead ends the gap: bridge to it.
            k = next((i for i, p in enumerate(after) if p is not None), None)
            if k is not None:
                bridge = self._bridge((k + 1) * SAMPLES_PER_PACKET, after[k])
                n = min(bridge.size, guide.size - gap)
                guide[gap : gap + n] = bridge[:n]
        return guide, gap, bridge

    def _predict(self, wave, lost, columns, guide: np.ndarray, guide_start: int):
        """:meth:`predict_logmel`, passed through :meth:`ConcealerHooks.logmel` where hooks are set."""
        mel = self.predict_logmel(wave, lost, columns=columns)
        if self.hooks is None:
            return mel
        start = (self.emit_index - self.history_packets) * SAMPLES_PER_PACKET
        first = self.history_packets * self.frames_per_packet
        window = MAEWindow(self.emit_index, self.state.burst, start, wave, lost, first, guide, guide_start)
        return self.hooks.logmel(window, mel)

    def _residual_input(self, wave: np.ndarray, guide: np.ndarray, gap: int) -> np.ndarray:
        """The window a :class:`ResidualPLCMAE` corrects, as its training windows hold it: the
        history as it was played, then the continuation over the target packet at the level the
        MAE-free concealer plays it, then the guide's view of what follows (received packets, the
        continuation over lost ones). Bridged packets are never corrected."""
        hist_played = self.state.hist_played
        tail = wave[hist_played.size :].copy()
        view = guide[gap:][: tail.size]
        tail[: view.size] = view
        gains = self._burst_gains()[:SAMPLES_PER_PACKET]
        tail[:SAMPLES_PER_PACKET] *= gains
        tail[SAMPLES_PER_PACKET:] *= gains[-1]
        return np.concatenate([hist_played, tail])

    def predict_logmel(
        self, wave: np.ndarray, lost: np.ndarray, columns: tuple[int, int] | None = None
    ) -> torch.Tensor | np.ndarray:
        """Log-mel ``(1, F, T)`` of a window with the lost columns filled in by the MAE (only
        those in ``columns`` = (start, stop) when given); a tensor with the torch backend, an
        array with onnx. Diagnostics change what the renderer gets with
        :meth:`ConcealerHooks.logmel`."""
        lost = lost.copy()
        if lost.all():
            lost[0] = False  # nothing received in the window: let the MAE see (silent) history
        if self.backend == "onnx":
            return self.model.predict_logmel(wave, lost, columns)
        import torch

        from audiomae.masking import packet_loss_mask

        with torch.inference_mode():
            spec = self._spectrogram(torch.from_numpy(wave))
            mask = packet_loss_mask(torch.from_numpy(lost).unsqueeze(0), self.model.cfg.grid_f)
            return self.model.norm.denormalize(self.model.reconstruct(spec, mask, columns))

    def window_logmel(self, wave: np.ndarray):
        """The (not normalised) log-mel ``(1, F, T)`` of a window, as the MAE sees it."""
        if self.backend == "onnx":
            return self.frontend(wave[None])[..., : self.cfg.context_packets * self.frames_per_packet]
        import torch

        with torch.inference_mode():
            return self.model.norm.denormalize(self._spectrogram(torch.from_numpy(wave)))

    def _spectrogram(self, wave: torch.Tensor) -> torch.Tensor:
        spec = self.model.norm.normalize(self.frontend(wave.unsqueeze(0)))
        return spec[..., : self.cfg.context_packets * self.frames_per_packet]


def mae_factory(default_lookahead: int) -> Callable[..., MAEConcealer]:
    """A ``make_concealer`` factory of MAE concealers with ``default_lookahead``."""

    def make(lookahead: int | None = None, **kwargs) -> MAEConcealer:
        return MAEConcealer(lookahead=default_lookahead if lookahead is None else lookahead, **kwargs)

    return make


def lpc_factory(default_lookahead: int) -> Callable[..., MAEConcealer]:
    """The same with the MAE switched off (:data:`LPC_DEFAULTS`; a config passed in keeps its own
    settings, only the MAE is switched off)."""

    def make(lookahead: int | None = None, config: ConcealerConfig | None = None, **kwargs) -> MAEConcealer:
        config = (
            ConcealerConfig(**LPC_DEFAULTS)
            if config is None
            else dataclasses.replace(config, mae_from_packet=None)
        )
        return mae_factory(default_lookahead)(lookahead, config=config, **kwargs)

    return make


register_concealer("mae", mae_factory(0), lists=("demo", "eval", "bench"), takes_model=True)
register_concealer("mae-la1", mae_factory(1), lists=("demo", "eval", "bench"), takes_model=True)
register_concealer("mae-la2", mae_factory(2), takes_model=True)
# The MAE concealer's signal path with the MAE switched off: the LPC continuation with its mixed
# excitation, the two-sided bridge, fades, comfort noise. What the MAE's prediction adds.
register_concealer("lpc", lpc_factory(0), lists=("demo", "bench"), ablation_of="mae")
register_concealer("lpc-la1", lpc_factory(1), lists=("demo", "bench"), ablation_of="mae-la1")

__all__ = [
    "BACKENDS",
    "DEFAULT_PLC_MODEL",
    "LPC_DEFAULTS",
    "RESIDUAL_DEFAULTS",
    "ConcealerConfig",
    "ConcealerHooks",
    "GriffinLimRenderer",
    "LostPacket",
    "MAEConcealer",
    "MAEWindow",
    "PitchGuidedRenderer",
    "StreamState",
    "VocoderRenderer",
    "default_backend",
    "int8_copy",
    "load_default_plc_model",
    "lpc_continuation",
    "lpc_factory",
    "mae_factory",
]
