"""Vocoders: log-mel ``(B, F, T)`` -> waveform ``(B, S)``.

Both take the project's log-mel exactly as :class:`audiomae.features.LogMel` makes it
(natural log of mel power, not normalised; the MAE de-normalises before vocoding).
Frame ``t`` is centred on sample ``t * hop`` (``center=True``), so T frames render
``(T - 1) * hop`` samples, and "the samples of frame t" means ``[t * hop, (t + 1) * hop)``.

- :func:`griffin_lim` / :class:`GriffinLim`: mel power -> linear power by non-negative least
  squares on the mel filterbank, then fast Griffin-Lim (Perraudin et al. 2013, momentum 0.99),
  from random phase, from :func:`pghi` phase (phase-gradient heuristic integration), or seeded
  with known audio whose frames keep their phase. ``GriffinLim()`` (flat-start NNLS, PGHI start,
  :data:`COPY_SYNTHESIS_ITERS` iterations) is the default copy-synthesis vocoder (the best
  measured: see ``docs/results.md``).
- :class:`Vocoder`: a Vocos-style model (Siuzdak 2023): a ConvNeXt backbone over mel frames
  and an inverse-STFT head that predicts log-magnitude and phase of the *front end's own*
  STFT (same n_fft, window and hop), so a perfect head output is the analysis STFT and the
  iSTFT reconstructs the waveform exactly. The magnitude is predicted as a correction of the
  pseudo-inverse of the mel filterbank, which makes it right from the first step and leaves
  training to the phase and the detail. Backbone convolutions are causal by default
  (``lookahead=0``), so rendering a window with enough left context is exactly the same as
  rendering the whole utterance: see :meth:`Vocoder.synthesize_window`.
"""

from audiomae.vocoder.data import RandomCrops
from audiomae.vocoder.griffin_lim import COPY_SYNTHESIS_ITERS, GriffinLim, griffin_lim
from audiomae.vocoder.losses import MultiResolutionSTFTLoss, VocoderLoss, phase_loss
from audiomae.vocoder.model import (
    VOCODER_PRESETS,
    Vocoder,
    VocoderConfig,
    default_vocoder_path,
    load_default_vocoder,
    vocoder_preset,
)
from audiomae.vocoder.pghi import pghi
from audiomae.vocoder.spectral import istft, mel_to_linear_power, spectral_convergence, stft
from audiomae.vocoder.task import VocoderTask

__all__ = [
    "VocoderConfig",
    "VOCODER_PRESETS",
    "vocoder_preset",
    "Vocoder",
    "GriffinLim",
    "COPY_SYNTHESIS_ITERS",
    "griffin_lim",
    "pghi",
    "mel_to_linear_power",
    "spectral_convergence",
    "stft",
    "istft",
    "load_default_vocoder",
    "default_vocoder_path",
    "MultiResolutionSTFTLoss",
    "VocoderLoss",
    "phase_loss",
    "VocoderTask",
    "RandomCrops",
]
