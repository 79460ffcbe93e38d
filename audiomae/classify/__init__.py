"""Audio classification on top of a (pretrained) Audio-MAE encoder.

:class:`AudioClassifier` pools the encoder's patch embeddings and applies a linear head.
Two modes, as in MAE:

- ``"finetune"``: every encoder weight trains, with layer-wise learning-rate decay
  (:meth:`AudioClassifier.param_groups`) so the early, most general layers move least;
- ``"linear_probe"``: the encoder is frozen and the head sees batch-normalised features
  (BatchNorm without affine parameters; MAE found un-normalised MAE features probe badly).

Both modes batch-normalise the pooled features before the linear head (with affine
parameters when fine-tuning); see the comment in :class:`AudioClassifier`.

Single-label tasks use cross-entropy and accuracy; multi-label tasks use per-class BCE and
mean average precision (:func:`mean_average_precision`).

:class:`ClassificationTask` adapts the classifier to :func:`audiomae.train.fit`.
"""

from audiomae.classify.data import FinetuneData, fit_spectrogram, load_labelled, log_mels
from audiomae.classify.finetune import (
    FinetuneSettings,
    adapted_accuracy,
    adapted_evaluate,
    build_encoder,
    evaluate,
    run_finetune,
)
from audiomae.classify.metrics import accuracy, average_precision, confusion_matrix, mean_average_precision
from audiomae.classify.model import (
    AudioClassifier,
    ClassifierConfig,
    ClassifierOutput,
    active_level,
    clip_normalize,
    strip_decoder,
)
from audiomae.classify.task import ClassificationTask

__all__ = [
    "AudioClassifier",
    "ClassifierConfig",
    "ClassifierOutput",
    "ClassificationTask",
    "strip_decoder",
    "active_level",
    "clip_normalize",
    "accuracy",
    "average_precision",
    "mean_average_precision",
    "confusion_matrix",
    "FinetuneData",
    "FinetuneSettings",
    "load_labelled",
    "log_mels",
    "fit_spectrogram",
    "build_encoder",
    "evaluate",
    "adapted_evaluate",
    "adapted_accuracy",
    "run_finetune",
]
