"""The concealer's model: the bundled PLC checkpoint, its int8 copy, and the backend it runs in.

A concealer knows what its model is (:class:`ModelSpec`: patch geometry, front end, residual or
not) before it loads the weights (:class:`ModelRef`), so a concealer that never runs its model
(``lpc``) never loads or quantises it.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audiomae.config import FeatureConfig, ModelConfig, from_dict

if TYPE_CHECKING:  # torch is imported only where the torch backend runs
    import torch

    from audiomae.model import AudioMAE

DEFAULT_PLC_MODEL = "plc_tiny_speech"
# "torch": the model in torch (int8 by default); "onnx": its ONNX export on onnxruntime with a
# numpy front end and renderer (audiomae.runtime: no torch needed).
BACKENDS = ("torch", "onnx")


@functools.lru_cache(maxsize=4)
def _cached_default_model(map_location: str, int8: bool = False) -> AudioMAE:
    model = load_default_plc_model(map_location).eval()
    return int8_copy(model) if int8 else model


def int8_copy(model: AudioMAE) -> AudioMAE:
    """A copy of ``model`` whose ``nn.Linear`` layers run in int8 (CPU inference only); the
    model itself is untouched. Returns ``model`` unchanged, with a warning, where this torch
    build cannot quantise."""
    import warnings

    import torch

    try:
        from torch.ao.quantization import quantize_dynamic

        with warnings.catch_warnings():
            # torch marks eager-mode quantisation deprecated in favour of torchao; it still works.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    except (ImportError, RuntimeError, AttributeError) as exc:
        warnings.warn(f"int8 MAE unavailable ({exc}); running it in fp32", stacklevel=2)
        return model


def load_default_plc_model(map_location: str | torch.device = "cpu") -> AudioMAE:
    """The bundled PLC-fine-tuned Audio-MAE (package data, no download)."""
    from importlib.resources import files

    from audiomae.model import AudioMAE

    path = files("audiomae") / "assets" / DEFAULT_PLC_MODEL
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"bundled PLC model not found at {path}; reinstall audiomae or pass model= "
            "(train one with recipes/finetune_plc.py)"
        )
    return AudioMAE.from_pretrained(str(path), map_location=map_location)


# config.json "kind" of the checkpoints a concealer runs in torch (AudioMAE.from_pretrained).
TORCH_PLC_KINDS = ("audiomae", "residual_plc")


def load_plc_model(directory: str | os.PathLike, threads: int = 1) -> Any:
    """The PLC model saved in ``directory``: a torch checkpoint (an AudioMAE or ResidualPLCMAE
    saved with ``save_pretrained``, e.g. ``audiomae/assets/plc_residual_speech``) or an ONNX
    export (``audiomae export``; run by :class:`audiomae.runtime.OnnxPLCModel` with ``threads``),
    told apart by the ``kind`` in its ``config.json``. Raises FileNotFoundError for a missing
    directory and ValueError, in one line, for one that holds neither."""
    path = Path(directory)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such model directory")
    config = path / "config.json"
    expected = "a PLC model checkpoint (save_pretrained) or ONNX export (audiomae export)"
    if not config.is_file():
        raise ValueError(f"{path}: not {expected}: no config.json")
    from audiomae.audio import regular_file

    regular_file(config, "model config", 4 << 20)  # bounded before it is read
    try:
        kind = json.loads(config.read_text()).get("kind")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
        raise ValueError(f"{config}: not {expected}: unreadable config ({type(exc).__name__})") from None
    if kind == "onnx_plc":
        from audiomae.runtime.model import OnnxPLCModel

        return OnnxPLCModel(path, threads=threads)
    if kind in TORCH_PLC_KINDS:
        from audiomae.model import AudioMAE

        return AudioMAE.from_pretrained(path)
    raise ValueError(f"{path}: not {expected}: its config.json kind is {kind!r}")


def as_plc_model(model: Any) -> Any:
    """``model`` itself, or for a directory (a str or path) the model saved there
    (:func:`load_plc_model`); None stays None (the bundled model)."""
    return load_plc_model(model) if isinstance(model, (str, os.PathLike)) else model


def default_backend() -> str:
    """The default backend: "torch" where torch is installed, else "onnx" (an install without
    the train extra)."""
    import importlib.util

    try:
        found = importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):  # an import hook that refuses it, or a broken install
        found = False
    return "torch" if found else "onnx"


@dataclass(frozen=True)
class ModelSpec:
    """What a concealer knows of its model without running it: the patch geometry (``cfg``),
    the log-mel front end (``feature_cfg``) and whether it is a residual model."""

    cfg: ModelConfig
    feature_cfg: FeatureConfig
    residual: bool

    @classmethod
    def of(cls, model) -> ModelSpec:
        """The spec of a loaded model (an AudioMAE or an OnnxPLCModel)."""
        return cls(model.cfg, model.feature_cfg, is_residual(model))

    @classmethod
    def from_config(cls, config: dict) -> ModelSpec:
        """The spec in a checkpoint's or an export's ``config.json``, as its loader reads it."""
        kind = config.get("model_kind", config.get("kind"))  # an export names its source's kind
        return cls(
            from_dict(ModelConfig, config["model"]),
            from_dict(FeatureConfig, config["features"]),
            kind == "residual_plc",
        )


class ModelRef:
    """A concealer's model: its :class:`ModelSpec` at once, the model itself from :meth:`get`,
    which loads it (and makes the int8 copy) on the first call only."""

    __slots__ = ("spec", "_load", "_model")

    def __init__(self, spec: ModelSpec, load: Callable[[], Any]) -> None:
        self.spec, self._load, self._model = spec, load, None

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def get(self):
        if self._model is None:
            self._model = self._load()
        return self._model


def _bundled_config(name: str, what: str) -> dict:
    from importlib.resources import files

    path = files("audiomae") / "assets" / name / "config.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"bundled {what} not found at {path.parent}; reinstall audiomae or pass model= "
            "(train one with recipes/finetune_plc.py)"
        )
    return json.loads(path.read_text())


def model_ref(model, backend: str | None, int8: bool) -> tuple[str, ModelRef]:
    """(backend, model reference) for a concealer: the bundled model in ``backend`` (or the
    default backend) when ``model`` is None; otherwise the backend that ``model`` runs in, and
    ``model`` itself (or its int8 copy, made on first use). Wrong combinations raise at once."""
    from audiomae.runtime.model import (
        DEFAULT_ONNX_MODEL,
        OnnxPLCModel,
        check_bundled_export,
        load_default_onnx_model,
    )

    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if model is None:
        # Concealers only read the model, so those built by name share one loaded copy.
        if (backend or default_backend()) == "onnx":
            spec = ModelSpec.from_config(_bundled_config(DEFAULT_ONNX_MODEL, "ONNX model"))
            check_bundled_export()  # a stale export fails here, not at the first lost packet
            return "onnx", ModelRef(spec, load_default_onnx_model)
        spec = ModelSpec.from_config(_bundled_config(DEFAULT_PLC_MODEL, "PLC model"))
        return "torch", ModelRef(spec, functools.partial(_cached_default_model, "cpu", int8))
    model = as_plc_model(model)
    if not (isinstance(model, OnnxPLCModel) or hasattr(model, "eval")):
        raise ValueError(
            "model must be an AudioMAE, an audiomae.runtime.OnnxPLCModel or a directory holding one, "
            f"got {type(model).__name__}"
        )
    if isinstance(model, OnnxPLCModel):
        if backend == "torch":
            raise ValueError("an ONNX model runs with backend='onnx'")
        return "onnx", ModelRef(ModelSpec.of(model), lambda: model)
    if backend == "onnx":
        raise ValueError(
            "backend='onnx' takes an exported model: audiomae.runtime.OnnxPLCModel(DIR) from "
            "audiomae export CHECKPOINT -o DIR"
        )
    model = model.eval()
    return "torch", ModelRef(
        ModelSpec.of(model), functools.partial(int8_copy, model) if int8 else lambda: model
    )


def is_residual(model) -> bool:
    if hasattr(model, "residual"):  # an OnnxPLCModel says so itself
        return bool(model.residual)
    from audiomae.model import ResidualPLCMAE

    return isinstance(model, ResidualPLCMAE)


__all__ = [
    "BACKENDS",
    "DEFAULT_PLC_MODEL",
    "ModelRef",
    "ModelSpec",
    "TORCH_PLC_KINDS",
    "as_plc_model",
    "default_backend",
    "int8_copy",
    "is_residual",
    "load_default_plc_model",
    "load_plc_model",
    "model_ref",
]
