"""Self-describing checkpoints: ``model.safetensors`` + ``config.json``. Nothing is unpickled.

``config.json`` holds the format version, the model kind, its config dataclasses, the
normalisation statistics and the SHA-256 of the weights file, so a truncated or tampered
weights file is caught before it is used. Both files are written to temporary names, fsynced
and renamed, so an interrupted save never leaves a half-written checkpoint behind.

Other model families (vocoder, classifier) register a builder with :func:`register_kind`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audiomae.audio import atomic_write

FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"

_BUILDERS: dict[str, Callable[[dict[str, Any]], nn.Module]] = {}
_EXPORTERS: dict[type, Callable[[nn.Module], tuple[str, dict[str, Any]]]] = {}


def register_kind(
    kind: str,
    cls: type,
    build: Callable[[dict[str, Any]], nn.Module],
    describe: Callable[[nn.Module], dict[str, Any]],
) -> None:
    """Teach the checkpoint module a model family: ``describe(model)`` gives the JSON config,
    ``build(config)`` makes an untrained model from it."""
    _BUILDERS[kind] = build
    _EXPORTERS[cls] = lambda m: (kind, describe(m))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(
    directory: str | os.PathLike, tensors: dict[str, torch.Tensor], config: dict[str, Any]
) -> Path:
    """Write ``tensors`` (safetensors) and ``config`` (JSON) into ``directory`` atomically."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    weights = atomic_write(directory / WEIGHTS_NAME, lambda tmp: save_file(tensors, tmp))
    meta = {"format_version": FORMAT_VERSION, **config, "weights_sha256": _sha256(weights)}
    text = json.dumps(meta, indent=2, sort_keys=True)
    atomic_write(directory / CONFIG_NAME, lambda tmp: Path(tmp).write_text(text))
    return directory


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint directory not found: {directory}")
    path = directory / CONFIG_NAME
    if not path.exists():
        raise FileNotFoundError(f"{directory}: not a checkpoint (missing {CONFIG_NAME})")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: corrupt checkpoint config ({exc})") from exc
    if not isinstance(config, dict) or "format_version" not in config:
        raise ValueError(f"{path}: not an audiomae checkpoint config (no format_version)")
    if config["format_version"] > FORMAT_VERSION:
        raise ValueError(
            f"{path}: format version {config['format_version']} is newer than this audiomae "
            f"understands ({FORMAT_VERSION}); upgrade audiomae"
        )
    return config


def load_checkpoint(
    directory: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read and verify a checkpoint; returns (tensors, config)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    config = read_config(directory)
    weights = directory / WEIGHTS_NAME
    if not weights.exists():
        raise FileNotFoundError(f"{directory}: missing {WEIGHTS_NAME}")
    expected = config.get("weights_sha256")
    if expected and _sha256(weights) != expected:
        raise ValueError(
            f"{weights}: checksum mismatch (file truncated, modified, or not saved with this config)"
        )
    try:
        tensors = load_file(str(weights), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{weights}: corrupt weights file ({exc})") from exc
    return tensors, config


def save_model(directory: str | os.PathLike, model: nn.Module, extra: dict[str, Any] | None = None) -> Path:
    """Save any registered model family (see :func:`register_kind`)."""
    _ensure_registered()
    for cls in type(model).__mro__:
        if cls in _EXPORTERS:
            kind, desc = _EXPORTERS[cls](model)
            break
    else:
        raise TypeError(f"no checkpoint format registered for {type(model).__name__}")
    state = model.state_dict()
    return save_checkpoint(directory, state, {"kind": kind, **desc, **({"extra": extra} if extra else {})})


def load_model(directory: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """Build the model a checkpoint describes and load its weights (strictly)."""
    _ensure_registered()
    tensors, config = load_checkpoint(directory, map_location=map_location)
    kind = config.get("kind")
    if kind not in _BUILDERS:
        raise ValueError(f"{directory}: unknown model kind {kind!r} (known: {sorted(_BUILDERS)})")
    model = _BUILDERS[kind](config)
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{directory}: weights do not match the config (missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]})"
        )
    return model.to(map_location).eval()


def _ensure_registered() -> None:
    # Model modules register themselves on import; import the known families lazily.
    import importlib

    for module in ("audiomae.model", "audiomae.vocoder", "audiomae.classify"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def _describe_mae(model: nn.Module) -> dict[str, Any]:
    from dataclasses import asdict

    return {
        "model": asdict(model.cfg),
        "features": asdict(model.feature_cfg),
        "norm": {"mean": model.norm.mean, "std": model.norm.std},
    }


def _build_mae(config: dict[str, Any]) -> nn.Module:
    from audiomae.config import FeatureConfig, ModelConfig, from_dict
    from audiomae.features import NormStats
    from audiomae.model import AudioMAE, ResidualPLCMAE

    cls = ResidualPLCMAE if config.get("kind") == "residual_plc" else AudioMAE
    return cls(
        from_dict(ModelConfig, config["model"]),
        features=from_dict(FeatureConfig, config["features"]),
        norm=NormStats(**config["norm"]),
    )


def _register_builtin() -> None:
    from audiomae.model import AudioMAE, ResidualPLCMAE

    register_kind("audiomae", AudioMAE, _build_mae, _describe_mae)
    register_kind("residual_plc", ResidualPLCMAE, _build_mae, _describe_mae)


_register_builtin()
