"""An exported PLC model (``audiomae export``) run by onnxruntime, with the numpy front end.

:class:`OnnxPLCModel` offers what :class:`~audiomae.plc.mae.MAEConcealer` asks of a model:
``cfg`` (geometry), ``feature_cfg`` (front end), ``norm``, ``residual`` and
:meth:`~OnnxPLCModel.predict_logmel`. Nothing here imports torch.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiomae.audio import file_sha256, first_line, regular_file
from audiomae.config import (
    FeatureConfig,
    ModelConfig,
    check_fields,
    check_norm,
    check_plc_geometry,
    from_dict,
)
from audiomae.runtime.features import LogMel

EXPORT_FORMAT_VERSION = 1
MAX_CONFIG_BYTES = 1 << 20
MAX_ONNX_BYTES = 2 << 30  # checked before the file is hashed or parsed
_SHA256 = re.compile(r"[0-9a-f]{64}")
DEFAULT_ONNX_MODEL = "plc_tiny_speech_onnx"
DEFAULT_SOURCE_MODEL = "plc_tiny_speech"  # the bundled checkpoint the bundled export was made from


@dataclass(frozen=True)
class Norm:
    """The dataset mean / std the model normalises log-mel with (applied inside the graph)."""

    mean: float
    std: float


def read_export_config(directory: str | os.PathLike) -> dict:
    """The ``config.json`` of an export directory, checked as a torch checkpoint's is (typed and
    ranged fields, a geometry that conceals 20 ms packets, the model file named inside the
    directory with its SHA-256); raises one clear error otherwise."""
    directory = Path(directory)
    path = directory / "config.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{directory}: not an ONNX export (no config.json; make one with audiomae export)"
        )
    regular_file(path, "export config", MAX_CONFIG_BYTES)
    try:
        config = json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(f"{path}: corrupt export config ({first_line(exc)})") from exc
    if not isinstance(config, dict) or config.get("kind") != "onnx_plc":
        kind = config.get("kind") if isinstance(config, dict) else None
        torch_kinds = ("audiomae", "residual_plc")
        hint = "; export it first: audiomae export CHECKPOINT -o DIR" if kind in torch_kinds else ""
        raise ValueError(f"{directory}: not an ONNX PLC export (kind {kind!r}){hint}")
    version = config.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"{path}: format_version must be an integer >= 1, got {version!r}")
    if version > EXPORT_FORMAT_VERSION:
        raise ValueError(
            f"{path}: export format {version} is newer than this audiomae understands "
            f"({EXPORT_FORMAT_VERSION}); upgrade audiomae"
        )
    _check_sections(config, path)
    return config


def _check_sections(config: dict, path: Path) -> None:
    for section, cls in (("model", ModelConfig), ("features", FeatureConfig), ("norm", Norm)):
        if section not in config:
            raise ValueError(f"{path}: missing section {section!r}")
        check_fields(cls, config[section], f"{path}: {section}")
    try:
        model = from_dict(ModelConfig, config["model"])
        features = from_dict(FeatureConfig, config["features"])
        check_norm(config["norm"]["mean"], config["norm"]["std"], f"{path}: norm")
        check_plc_geometry(features, model, f"{path}")
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}" if str(path) not in str(exc) else str(exc)) from None
    if config.get("model_kind", "audiomae") not in ("audiomae", "residual_plc"):
        raise ValueError(f"{path}: model_kind must be audiomae or residual_plc, got {config['model_kind']!r}")
    onnx = config.get("onnx")
    if not isinstance(onnx, dict):
        raise ValueError(f"{path}: missing section 'onnx'")
    name = onnx.get("file")
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        raise ValueError(f"{path}: onnx.file must be a file name inside the export directory, got {name!r}")
    sha = onnx.get("sha256")
    if not (isinstance(sha, str) and _SHA256.fullmatch(sha)):
        raise ValueError(
            f"{path}: onnx.sha256 must be the model file's 64-hex-digit SHA-256 "
            "(re-export with audiomae export)"
        )


class OnnxPLCModel:
    """A PLC model exported to ONNX. ``threads``: onnxruntime's intra-op threads (1 suits a
    receive path: one call per lost packet, and the cores stay free for the rest)."""

    def __init__(self, directory: str | os.PathLike, threads: int = 1) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - a core dependency
            raise ImportError("the ONNX backend needs onnxruntime: pip install onnxruntime") from exc
        self.directory = Path(directory)
        config = read_export_config(self.directory)
        self.config = config
        self.cfg = from_dict(ModelConfig, config["model"])
        self.feature_cfg = from_dict(FeatureConfig, config["features"])
        self.norm = Norm(float(config["norm"]["mean"]), float(config["norm"]["std"]))
        self.residual = config.get("model_kind") == "residual_plc"
        self.frontend = LogMel(self.feature_cfg)
        onnx_path = self.directory / config["onnx"]["file"]
        regular_file(onnx_path, "ONNX model", MAX_ONNX_BYTES)
        if file_sha256(onnx_path) != config["onnx"]["sha256"]:
            raise ValueError(
                f"{onnx_path}: checksum mismatch (file truncated, modified, or not this export's)"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for a bad file
            raise ValueError(f"{onnx_path}: cannot load the ONNX model ({exc})") from exc

    def fill(self, logmel: np.ndarray, lost: np.ndarray) -> np.ndarray:
        """The exported graph: log-mel ``(B, F, T)`` and per-column loss ``(B, T / patch_t)``
        -> log-mel ``(B, F, T)`` with every lost column predicted."""
        logmel = np.ascontiguousarray(logmel, dtype=np.float32)
        lost = np.ascontiguousarray(lost, dtype=bool)
        return self.session.run(None, {"logmel": logmel, "lost": lost})[0]

    def predict_logmel(
        self, wave: np.ndarray, lost: np.ndarray, columns: tuple[int, int] | None = None
    ) -> np.ndarray:
        """Log-mel ``(1, F, T)`` of a window ``(S,)`` of ``lost.size`` packets with its lost
        columns filled in (only those in ``columns`` = (start, stop) when given). At least one
        column must be received."""
        pt = self.cfg.patch_t
        spec = self.frontend(np.asarray(wave)[None])[..., : lost.size * pt].astype(np.float32)
        filled = self.fill(spec, np.asarray(lost, dtype=bool)[None])
        if columns is None:
            return filled
        out = spec.copy()
        part = slice(columns[0] * pt, columns[1] * pt)
        out[..., part] = filled[..., part]
        return out


def _asset(name: str) -> Path:
    from importlib.resources import files

    return Path(str(files("audiomae") / "assets" / name))


@functools.lru_cache(maxsize=4)
def load_default_onnx_model(threads: int = 1) -> OnnxPLCModel:
    """The bundled PLC model's ONNX export (package data). Raises if it was exported from other
    weights than the bundled checkpoint's (a stale export)."""
    path = _asset(DEFAULT_ONNX_MODEL)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"bundled ONNX model not found at {path}; reinstall audiomae")
    check_bundled_export(path)
    return OnnxPLCModel(path, threads=threads)


def check_bundled_export(path: Path | None = None) -> None:
    """Raise ValueError where the bundled export was not made from the bundled checkpoint."""
    path = path or _asset(DEFAULT_ONNX_MODEL)
    source = _asset(DEFAULT_SOURCE_MODEL) / "config.json"
    if not source.is_file():
        return  # the checkpoint is not installed: nothing to compare against
    expected = json.loads(source.read_text()).get("weights_sha256")
    got = read_export_config(path).get("source_weights_sha256")
    if expected != got:
        raise ValueError(
            f"{path}: exported from other weights than the bundled {DEFAULT_SOURCE_MODEL} checkpoint; "
            f"re-export it: audiomae export audiomae/assets/{DEFAULT_SOURCE_MODEL} "
            f"-o audiomae/assets/{DEFAULT_ONNX_MODEL}"
        )


__all__ = ["Norm", "OnnxPLCModel", "check_bundled_export", "load_default_onnx_model", "read_export_config"]
