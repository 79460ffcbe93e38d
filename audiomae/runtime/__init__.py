"""The torch-free runtime: numpy, scipy and onnxruntime only.

``audiomae.runtime`` runs a PLC model exported with ``audiomae export`` (:class:`OnnxPLCModel`)
with a numpy log-mel front end (:class:`LogMel`) and renderer (:class:`PitchGuidedRenderer`).
The streaming concealer uses it with ``backend="onnx"`` (the default where torch is not
installed)::

    from audiomae.plc import make_concealer
    concealer = make_concealer("mae", backend="onnx")
"""

from audiomae.runtime.features import LogMel, mel_filterbank
from audiomae.runtime.model import OnnxPLCModel, load_default_onnx_model, read_export_config
from audiomae.runtime.render import PitchGuidedRenderer

__all__ = [
    "LogMel",
    "OnnxPLCModel",
    "PitchGuidedRenderer",
    "load_default_onnx_model",
    "mel_filterbank",
    "read_export_config",
]
