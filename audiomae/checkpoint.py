"""Self-describing checkpoints: ``model.safetensors`` + ``config.json``. Nothing is unpickled.

``config.json`` holds the format version, the model kind, its config dataclasses, the
normalisation statistics and the SHA-256 of the weights file, so a truncated or tampered
weights file is caught before it is used. Both files are written to temporary names, fsynced
and renamed, so an interrupted save never leaves a half-written checkpoint behind.

Reading validates before it allocates, in one place (:func:`inspect_checkpoint`): both files
must be regular files of bounded size; the config's fields must have the types and ranges of
their dataclasses; the weights' checksum must match (required: ``require_checksum=False`` is
the explicit opt-out for hand-made checkpoints); and the model the config describes is built
on the ``meta`` device, stopping as soon as it asks for more than the weights file holds, and
compared tensor by tensor with the file's header. Only then are weights read and a model
allocated. Every failure is one ValueError naming the file and the field.

Model families register themselves with :func:`register_kind` when their module is imported.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audiomae.audio import atomic_write, file_sha256, first_line, regular_file

FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"

MAX_CONFIG_BYTES = 4 << 20  # a config is a few kB; labels of a large classifier stay far below
# Checked before the file is hashed or read: ViT-B with its decoder is 0.45 GB in fp32.
MAX_WEIGHTS_BYTES = 2 << 30
# No trained weight comes near this; 1e30 or inf would only surface later, as NaN or as a
# quantiser's error on the first lost packet.
MAX_ABS_WEIGHT = 1e6
_SHA256 = re.compile(r"[0-9a-f]{64}")

_BUILDERS: dict[str, Callable[[dict[str, Any]], nn.Module]] = {}
_SECTIONS: dict[str, dict[str, type]] = {}
_EXPORTERS: dict[type, Callable[[nn.Module], tuple[str, dict[str, Any]]]] = {}


def register_kind(
    kind: str,
    cls: type,
    build: Callable[[dict[str, Any]], nn.Module],
    describe: Callable[[nn.Module], dict[str, Any]],
    sections: dict[str, type] | None = None,
) -> None:
    """Teach the checkpoint module a model family: ``describe(model)`` gives the JSON config,
    ``build(config)`` makes an untrained model from it. ``sections`` maps each config section
    ``build`` reads to the dataclass it becomes, so a config is checked field by field before
    anything is built (:func:`audiomae.config.check_fields`)."""
    _BUILDERS[kind] = build
    _SECTIONS[kind] = dict(sections or {})
    _EXPORTERS[cls] = lambda m: (kind, describe(m))


def save_checkpoint(
    directory: str | os.PathLike, tensors: dict[str, torch.Tensor], config: dict[str, Any]
) -> Path:
    """Write ``tensors`` (safetensors) and ``config`` (JSON) into ``directory`` atomically."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    weights = atomic_write(directory / WEIGHTS_NAME, lambda tmp: save_file(tensors, tmp))
    meta = {"format_version": FORMAT_VERSION, **config, "weights_sha256": file_sha256(weights)}
    text = json.dumps(meta, indent=2, sort_keys=True)
    atomic_write(directory / CONFIG_NAME, lambda tmp: Path(tmp).write_text(text))
    return directory


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's ``config.json``, checked: a JSON object with an integer ``format_version``
    this audiomae reads, a string ``kind`` if any, and a well-formed ``weights_sha256`` if any."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint directory not found: {directory}")
    path = directory / CONFIG_NAME
    if not path.exists() and not path.is_symlink():
        raise FileNotFoundError(f"{directory}: not a checkpoint (missing {CONFIG_NAME})")
    regular_file(path, "checkpoint config", MAX_CONFIG_BYTES)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
        config = json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: corrupt checkpoint config ({exc})") from exc
    except RecursionError:
        raise ValueError(f"{path}: corrupt checkpoint config (nested too deeply)") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read checkpoint config ({exc.strerror})") from exc
    if not isinstance(config, dict) or "format_version" not in config:
        raise ValueError(f"{path}: not an audiomae checkpoint config (no format_version)")
    version = config["format_version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"{path}: format_version must be an integer >= 1, got {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{path}: format version {version} is newer than this audiomae "
            f"understands ({FORMAT_VERSION}); upgrade audiomae"
        )
    if "kind" in config and not isinstance(config["kind"], str):
        raise ValueError(f"{path}: kind must be a string, got {config['kind']!r}")
    sha = config.get("weights_sha256")
    if sha is not None and not (isinstance(sha, str) and _SHA256.fullmatch(sha)):
        raise ValueError(f"{path}: weights_sha256 must be 64 lowercase hex digits, got {sha!r}")
    return config


def _header(weights: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """name -> (dtype, shape) from the safetensors header, without reading any tensor data."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights), framework="pt") as fh:
            return {k: (fh.get_slice(k).get_dtype(), tuple(fh.get_slice(k).get_shape())) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{weights}: corrupt weights file ({exc})") from exc


@dataclass(frozen=True)
class CheckpointInfo:
    """What :func:`inspect_checkpoint` found: the checked config and the weights' tensors
    (name -> (dtype, shape)), read from the header only."""

    directory: Path
    config: dict[str, Any]
    tensors: dict[str, tuple[str, tuple[int, ...]]]

    @property
    def n_params(self) -> int:
        return sum(_numel(shape) for _, shape in self.tensors.values())


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def inspect_checkpoint(
    directory: str | os.PathLike, require_checksum: bool = True, build: bool = True
) -> CheckpointInfo:
    """Check a checkpoint without allocating its model or reading its tensors.

    The config is checked (:func:`read_config`), the weights file must be a regular file whose
    SHA-256 matches ``weights_sha256`` (a checkpoint without one is refused unless
    ``require_checksum=False``), and with ``build`` the model the config describes is built on
    the meta device and must have exactly the file's tensors and shapes."""
    directory = Path(directory)
    config = read_config(directory)
    config_path = directory / CONFIG_NAME
    weights = directory / WEIGHTS_NAME
    regular_file(weights, "weights file", MAX_WEIGHTS_BYTES)
    expected = config.get("weights_sha256")
    if expected is None and require_checksum:
        raise ValueError(
            f"{config_path}: no weights_sha256, so the weights cannot be verified (save the checkpoint "
            "with audiomae, or load a hand-made one with require_checksum=False)"
        )
    if expected is not None and file_sha256(weights) != expected:
        raise ValueError(
            f"{weights}: checksum mismatch (file truncated, modified, or not saved with this config)"
        )
    tensors = _header(weights)
    info = CheckpointInfo(directory=directory, config=config, tensors=tensors)
    if build:
        _check_against_weights(info)
    return info


def _check_against_weights(info: CheckpointInfo) -> None:
    """Build the config's model on the meta device (bounded by the weights file) and compare."""
    _ensure_registered()
    path = info.directory / CONFIG_NAME
    kind = info.config.get("kind")
    if kind not in _BUILDERS:
        raise ValueError(f"{path}: unknown model kind {kind!r} (known: {sorted(_BUILDERS)})")
    from audiomae.config import check_fields

    for section, cls in _SECTIONS[kind].items():
        if section not in info.config:
            raise ValueError(f"{path}: missing section {section!r}")
        check_fields(cls, info.config[section], f"{path}: {section}")
    # Parameters and buffers together may hold a little more than the file (non-persistent
    # buffers such as positional tables); far more means the config does not describe it.
    max_elements = 2 * info.n_params + (1 << 22)
    max_tensors = 2 * len(info.tensors) + 64
    try:
        with _bounded_build(max_elements, max_tensors), torch.device("meta"):
            model = _BUILDERS[kind](info.config)
    except _TooLarge as exc:
        raise ValueError(f"{path}: the config describes a model larger than {WEIGHTS_NAME} ({exc})") from None
    except (ValueError, TypeError, KeyError, AttributeError, RuntimeError, ArithmeticError) as exc:
        raise ValueError(f"{path}: the config does not describe a model ({first_line(exc)})") from exc
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(want) - set(info.tensors))
    unexpected = sorted(set(info.tensors) - set(want))
    if missing or unexpected:
        raise ValueError(
            f"{path}: weights do not match the config (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    for name, shape in want.items():
        if info.tensors[name][1] != shape:
            raise ValueError(
                f"{path}: weights do not match the config: {name} is {list(info.tensors[name][1])} in "
                f"{WEIGHTS_NAME}, the config makes it {list(shape)}"
            )


class _TooLarge(Exception):
    pass


@contextlib.contextmanager
def _bounded_build(max_elements: int, max_tensors: int):
    """Stop a model build as soon as it registers more parameter and buffer elements, or more
    tensors, than allowed (so even a config asking for a billion layers fails fast)."""
    from torch.nn.modules import module as nn_module

    count = {"elements": 0, "tensors": 0}

    def hook(module, name, tensor):
        if tensor is None:
            return None
        count["elements"] += tensor.numel()
        count["tensors"] += 1
        if count["elements"] > max_elements:
            raise _TooLarge(f"over {max_elements:,} elements")
        if count["tensors"] > max_tensors:
            raise _TooLarge(f"over {max_tensors} tensors")
        return None

    handles = [
        nn_module.register_module_parameter_registration_hook(hook),
        nn_module.register_module_buffer_registration_hook(hook),
    ]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def load_checkpoint(
    directory: str | os.PathLike, map_location: str | torch.device = "cpu", require_checksum: bool = True
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read and verify a checkpoint; returns (tensors, config). Checks the files and the
    checksum (:func:`inspect_checkpoint`), not whether the config builds a model."""
    info = inspect_checkpoint(directory, require_checksum=require_checksum, build=False)
    return _read_tensors(info, map_location), info.config


def _read_tensors(info: CheckpointInfo, map_location) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights = info.directory / WEIGHTS_NAME
    try:
        tensors = load_file(str(weights), device=str(map_location))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{weights}: corrupt weights file ({first_line(exc)})") from exc
    for name, t in tensors.items():
        if t.is_floating_point() and t.numel() and not bool(t.abs().max() <= MAX_ABS_WEIGHT):
            raise ValueError(
                f"{weights}: tensor {name} holds non-finite or huge values (|x| > {MAX_ABS_WEIGHT:g})"
            )
    return tensors


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


def load_model(
    directory: str | os.PathLike, map_location: str | torch.device = "cpu", require_checksum: bool = True
) -> nn.Module:
    """Build the model a checkpoint describes and load its weights (strictly), after
    :func:`inspect_checkpoint` has checked everything that can be checked without allocating."""
    info = inspect_checkpoint(directory, require_checksum=require_checksum)
    model = _BUILDERS[info.config["kind"]](info.config)
    tensors = _read_tensors(info, map_location)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:  # inspect_checkpoint compared shapes; dtypes or the like remain
        raise ValueError(f"{info.directory}: weights do not load ({first_line(exc)})") from exc
    return model.to(map_location).eval()


# The built-in model families and the module that registers each (register_kind, on import).
# Read by name only when a checkpoint of a kind not registered yet is read or a model of an
# unregistered class is saved; this module imports none of them.
BUILTIN_FAMILIES = {
    "audiomae": "audiomae.model",
    "residual_plc": "audiomae.model",
    "vocoder": "audiomae.vocoder",
    "classifier": "audiomae.classify",
}


def _ensure_registered() -> None:
    import importlib

    for module in dict.fromkeys(BUILTIN_FAMILIES.values()):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
