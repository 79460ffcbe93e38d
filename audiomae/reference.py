"""The original Audio-MAE code's checkpoints (facebookresearch/AudioMAE ``.pth``), read safely and
converted to this project's models.

The reference saves ``{"model": state_dict, "args": argparse.Namespace, ...}`` with
``torch.save``. :func:`read_reference` loads that with ``torch.load(weights_only=True)``, which
rebuilds tensors and plain containers only; ``argparse.Namespace`` is the one class allowed on top,
and only for the duration of the call. A file whose pickle asks for anything else (a function
to call, a class to build) is refused before any of it runs.

:func:`convert_reference` maps the ViT encoder (timm layout: ``patch_embed.proj``, ``blocks.N``,
``cls_token``, ``pos_embed``) onto :class:`AudioMAE` with the ``reference_base`` options (CLS
token, stored positional table, LayerNorm epsilon 1e-6, no decoder), and a fine-tuned file's
global-pool head (``fc_norm``, ``head``) onto :class:`AudioClassifier` (``head_norm="layer"``).
Its input is the reference's: Kaldi fbank (:class:`audiomae.kaldi.KaldiFbank`), padded or cut to
the positional table's length, normalised with the dataset's statistics.
"""

from __future__ import annotations

import argparse
import csv
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

MAX_REFERENCE_BYTES = 8 << 30  # ViT-H with its decoder and optimiser state stays below this

# main_finetune_as.py: norm_stats (mean, std; inputs are (x - mean) / (2 * std)), target_length and
# multilabel_dataset per dataset.
NORM_STATS = {
    "audioset": (-4.2677393, 4.5689974),
    "k400": (-4.2677393, 4.5689974),
    "esc50": (-6.6268077, 5.358466),
    "speechcommands": (-6.845978, 5.5654526),
}
MULTILABEL = {"audioset": True, "k400": False, "esc50": False, "speechcommands": True}
# Heads by the reference's model names (models_vit.py, models_mae.py), then by width.
HEADS_BY_NAME = {"small": 6, "base": 12, "large": 16, "huge": 16}
HEADS_BY_DIM = {384: 6, 768: 12, 1024: 16, 1280: 16}
REFERENCE_EPS = 1e-6  # every reference model builds its LayerNorms with eps=1e-6
AUDIOSET_LABELS = Path(__file__).parent / "assets" / "audioset_class_labels_indices.csv"

_BLOCK = re.compile(r"blocks\.(\d+)\.(.+)")
_BLOCK_PARTS = {
    "norm1.weight": "norm1.weight",
    "norm1.bias": "norm1.bias",
    "attn.qkv.weight": "attn.qkv.weight",
    "attn.qkv.bias": "attn.qkv.bias",
    "attn.proj.weight": "attn.proj.weight",
    "attn.proj.bias": "attn.proj.bias",
    "norm2.weight": "norm2.weight",
    "norm2.bias": "norm2.bias",
    "mlp.fc1.weight": "mlp.0.weight",
    "mlp.fc1.bias": "mlp.0.bias",
    "mlp.fc2.weight": "mlp.2.weight",
    "mlp.fc2.bias": "mlp.2.bias",
}
# The MAE decoder (plain or Swin-local), which this project does not represent.
_DECODER = ("decoder_", "mask_token")


@dataclass(frozen=True)
class ReferenceCheckpoint:
    """A reference ``.pth`` as read: its model ``state`` (name -> tensor, the reference's layout)
    and its training ``args`` (``vars`` of the Namespace; empty when the file has none)."""

    path: Path
    state: dict[str, torch.Tensor]
    args: dict[str, Any] = field(default_factory=dict)


def read_reference(path: str | Path) -> ReferenceCheckpoint:
    """Read a reference checkpoint without running pickled code. ValueError (one line, naming
    the file) for a file that needs more than tensors, plain containers and
    ``argparse.Namespace``, or that holds no model state dict."""
    from audiomae.audio import regular_file

    path = Path(path)
    regular_file(path, "reference checkpoint", MAX_REFERENCE_BYTES)
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic != b"PK" and magic[:1] != b"\x80":  # torch.save: a zip archive, or a legacy pickle
        raise ValueError(f"{path}: not a torch checkpoint (neither a zip archive nor a pickle)")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(f"{path}: refused: {_refusal(exc)}") from None
    except (RuntimeError, EOFError, OSError, ValueError, TypeError, AttributeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"{path}: not a readable torch checkpoint ({first})") from None
    state, args = _unpack(obj, path)
    return ReferenceCheckpoint(path=path, state=state, args=args)


def _refusal(exc: Exception) -> str:
    import pickletools

    text = str(exc)
    found = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"global[: ]+'?([\w.]+)", text)
    operand = re.search(r"Unsupported operand (\d+)", text)
    if found:
        what = f"its pickle asks for {found.group(1)}"
    elif operand and chr(int(operand.group(1))) in pickletools.code2op:
        what = f"its pickle uses the {pickletools.code2op[chr(int(operand.group(1)))].name} opcode"
    else:
        what = "its pickle asks for more than data"
    return (
        f"{what}, which could run code; only tensors, plain containers and argparse.Namespace "
        "are loaded (the reference's own files need nothing else)"
    )


def _unpack(obj: Any, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    args: dict[str, Any] = {}
    state = obj
    if isinstance(obj, dict):
        raw_args = obj.get("args")
        if isinstance(raw_args, argparse.Namespace):
            args = dict(vars(raw_args))
        elif isinstance(raw_args, dict):
            args = dict(raw_args)
        for key in ("model", "state_dict", "model_state"):
            if isinstance(obj.get(key), dict):
                state = obj[key]
                break
    if not isinstance(state, dict) or not state:
        raise ValueError(f"{path}: holds no model state dict (expected {{'model': {{name: tensor}}}})")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{path}: the model state holds non-tensor entries, e.g. {bad[0]!r}")
    if "module." in next(iter(state)):  # saved from a DistributedDataParallel wrapper
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state, args


def audioset_labels() -> tuple[str, ...]:
    """The 527 AudioSet display names in the reference's output order (``class_labels_indices.csv``
    as the AST repository publishes it)."""
    with open(AUDIOSET_LABELS, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if [int(r["index"]) for r in rows] != list(range(len(rows))):
        raise ValueError(f"{AUDIOSET_LABELS}: indices are not 0..{len(rows) - 1} in order")
    return tuple(r["display_name"] for r in rows)


@dataclass(frozen=True)
class Conversion:
    """What :func:`convert_reference` made: the ``model`` (an :class:`AudioMAE` encoder or an
    :class:`AudioClassifier`), and ``notes`` on what was dropped or assumed."""

    model: nn.Module
    notes: tuple[str, ...]


def convert_reference(
    ref: ReferenceCheckpoint,
    num_heads: int | None = None,
    n_mels: int = 128,
    dataset: str | None = None,
) -> Conversion:
    """Map a reference checkpoint onto this project's model; see the module docstring.

    ``num_heads``: attention heads, which the weights do not show (default: from ``args.model``,
    else from the width as the reference's ViT-S/B/L/H have them). ``n_mels``: mel bins of its
    input (128 in every reference recipe). ``dataset``: the reference's name for the data its
    normalisation statistics come from (default ``args.dataset``, else "audioset")."""
    from audiomae.config import FeatureConfig, ModelConfig
    from audiomae.features import NormStats
    from audiomae.model import AudioMAE

    where = str(ref.path)
    state = dict(ref.state)
    notes: list[str] = []
    for key in ("cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"):
        if key not in state:
            raise ValueError(f"{where}: not an Audio-MAE ViT state dict (no {key})")
    if any(
        k.startswith("patch_embed.") and k not in ("patch_embed.proj.weight", "patch_embed.proj.bias")
        for k in state
    ):
        raise ValueError(f"{where}: unexpected patch embedding tensors (an audio-visual model?)")
    dataset = dataset or str(ref.args.get("dataset") or "audioset")
    if dataset not in NORM_STATS:
        raise ValueError(
            f"{where}: unknown dataset {dataset!r} for the normalisation (known: {sorted(NORM_STATS)})"
        )
    if ref.args.get("use_custom_patch"):
        raise ValueError(f"{where}: overlapping patches (use_custom_patch, stride 10) are not supported")

    # ---- geometry ------------------------------------------------------------------------
    cls_token = state.pop("cls_token")
    pos = state.pop("pos_embed")
    proj_w, proj_b = state.pop("patch_embed.proj.weight"), state.pop("patch_embed.proj.bias")
    dim = cls_token.shape[-1]
    if cls_token.shape != (1, 1, dim) or pos.dim() != 3 or pos.shape[0] != 1 or pos.shape[2] != dim:
        raise ValueError(
            f"{where}: cls_token {list(cls_token.shape)} / pos_embed {list(pos.shape)} are not "
            "(1, 1, D) / (1, 1 + N, D)"
        )
    if proj_w.dim() != 4 or proj_w.shape[:2] != (dim, 1):
        raise ValueError(
            f"{where}: patch_embed.proj.weight {list(proj_w.shape)} is not a one-channel (D, 1, t, f) kernel"
        )
    patch_t, patch_f = int(proj_w.shape[2]), int(proj_w.shape[3])
    if n_mels % patch_f:
        raise ValueError(f"{where}: {n_mels} mel bins are not a whole number of {patch_f}-bin patches")
    grid_f = n_mels // patch_f
    n_patches = pos.shape[1] - 1
    if n_patches % grid_f:
        raise ValueError(
            f"{where}: the positional table has {n_patches} patches, not whole columns of {grid_f} "
            f"{patch_t}x{patch_f} patches over {n_mels} bins: overlapping patches (stride 10) are not "
            "supported"
        )
    max_frames = n_patches // grid_f * patch_t
    depth = 1 + max((int(m.group(1)) for m in map(_BLOCK.fullmatch, state) if m), default=-1)
    if depth == 0:
        raise ValueError(f"{where}: no transformer blocks (blocks.N.*)")
    hidden = state["blocks.0.mlp.fc1.weight"].shape[0] if "blocks.0.mlp.fc1.weight" in state else None
    if hidden is None:
        raise ValueError(f"{where}: blocks.0.mlp.fc1.weight missing")
    heads = num_heads or _heads(ref.args.get("model"), dim)
    if heads is None:
        raise ValueError(
            f"{where}: cannot tell the number of attention heads of a {dim}-wide ViT; give it (--heads)"
        )

    # ---- tensors in this project's layout ------------------------------------------------
    enc: dict[str, torch.Tensor] = {
        # The CLS token's positional entry is added once, so it folds into the token.
        "cls_token": cls_token + pos[:, :1],
        "enc_pos": pos[0, 1:],
        # Conv2d kernel (D, 1, t, f) over (time, freq) input -> Linear over (f, t) patch vectors.
        "patch_embed.weight": proj_w[:, 0].transpose(1, 2).reshape(dim, patch_f * patch_t),
        "patch_embed.bias": proj_b,
    }
    for key in [k for k in state if _BLOCK.fullmatch(k)]:
        index, part = _BLOCK.fullmatch(key).groups()
        if part not in _BLOCK_PARTS:
            raise ValueError(f"{where}: unexpected block tensor {key}")
        enc[f"encoder.{index}.{_BLOCK_PARTS[part]}"] = state.pop(key)
    dropped = [k for k in state if k.startswith(_DECODER)]
    for k in dropped:
        del state[k]
    if dropped:
        swin = any(".attn.meta_mlp." in k or "relative_position" in k for k in dropped)
        kind = "Swin-local" if swin else "global-attention"
        notes.append(
            f"dropped the reference's {kind} decoder ({len(dropped)} tensors): the converted model is "
            "an encoder (dec_depth=0) for fine-tuning, probing and classification"
        )
    final_norm = "norm.weight" in state
    if final_norm:
        enc["enc_norm.weight"], enc["enc_norm.bias"] = state.pop("norm.weight"), state.pop("norm.bias")
    head = {
        k: state.pop(k) for k in ("fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias") if k in state
    }
    if state:
        raise ValueError(f"{where}: tensors this converter does not know: {sorted(state)[:5]}")
    if head and final_norm:
        raise ValueError(
            f"{where}: a classifier on the CLS token (fine-tuned with --cls_token) is not supported; "
            "the reference's default, global pooling with fc_norm, is"
        )
    if head and set(head) != {"fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"}:
        raise ValueError(f"{where}: a classifier needs fc_norm.* and head.*, found {sorted(head)}")

    cfg = ModelConfig(
        n_mels=n_mels,
        max_frames=max_frames,
        patch_f=patch_f,
        patch_t=patch_t,
        enc_dim=dim,
        enc_depth=depth,
        enc_heads=heads,
        dec_depth=0,
        mlp_ratio=hidden / dim,
        cls_token=True,
        pos_embed="stored",
        norm_eps=REFERENCE_EPS,
        final_norm=final_norm,
    )
    if int(dim * cfg.mlp_ratio) != hidden:
        raise ValueError(f"{where}: MLP width {hidden} is not a whole ratio of {dim}")
    mean, std = NORM_STATS[dataset]
    features = FeatureConfig.kaldi_fbank(n_mels=n_mels, target_frames=max_frames)
    encoder = AudioMAE(cfg, features=features, norm=NormStats(mean=mean, std=2 * std))
    if not head:
        _load(encoder, enc, where)
        return Conversion(model=encoder, notes=tuple(notes))

    from audiomae.classify import AudioClassifier

    num_classes = head["head.weight"].shape[0]
    labels: tuple[str, ...] = ()
    if dataset == "audioset" and num_classes == 527:
        labels = audioset_labels()
    else:
        notes.append(
            f"{num_classes} outputs named by index (AudioSet names only for 527-class AudioSet heads)"
        )
    model = AudioClassifier(
        encoder,
        num_classes=num_classes,
        pooling="mean",
        mode="finetune",
        multilabel=MULTILABEL[dataset],
        labels=labels,
        head_norm="layer",
    )
    tensors = {f"encoder.{k}": v for k, v in enc.items()}
    tensors.update(
        {
            "head_norm.weight": head["fc_norm.weight"],
            "head_norm.bias": head["fc_norm.bias"],
            "head.weight": head["head.weight"],
            "head.bias": head["head.bias"],
        }
    )
    _load(model, tensors, where)
    return Conversion(model=model.eval(), notes=tuple(notes))


def _heads(model_name: Any, dim: int) -> int | None:
    if isinstance(model_name, str):
        for size, heads in HEADS_BY_NAME.items():
            if f"vit_{size}_" in model_name:
                return heads
    return HEADS_BY_DIM.get(dim)


def _load(model: nn.Module, tensors: dict[str, torch.Tensor], where: str) -> None:
    want = model.state_dict()
    missing = sorted(set(want) - set(tensors))
    unexpected = sorted(set(tensors) - set(want))
    if missing or unexpected:
        raise ValueError(
            f"{where}: does not map onto the model (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    for name, value in tensors.items():
        if tuple(value.shape) != tuple(want[name].shape):
            raise ValueError(
                f"{where}: {name} is {list(value.shape)}, the model needs {list(want[name].shape)} "
                "(wrong --heads or --n-mels?)"
            )
    model.load_state_dict({k: v.float().contiguous() for k, v in tensors.items()}, strict=True)


def convert_file(
    checkpoint: str | Path,
    output: str | Path,
    num_heads: int | None = None,
    n_mels: int = 128,
    dataset: str | None = None,
) -> Conversion:
    """Read ``checkpoint`` (:func:`read_reference`), convert it and save it in ``output`` as this
    project's checkpoint (``from_pretrained`` loads it). The source file's name, SHA-256 and the
    notes are kept in the config's ``extra``."""
    from audiomae.audio import file_sha256

    ref = read_reference(checkpoint)
    conv = convert_reference(ref, num_heads=num_heads, n_mels=n_mels, dataset=dataset)
    extra = {
        "converted_from": {
            "file": Path(checkpoint).name,
            "sha256": file_sha256(checkpoint),
            "notes": list(conv.notes),
        }
    }
    conv.model.save_pretrained(output, extra=extra)
    return conv


__all__ = [
    "AUDIOSET_LABELS",
    "Conversion",
    "NORM_STATS",
    "ReferenceCheckpoint",
    "audioset_labels",
    "convert_file",
    "convert_reference",
    "read_reference",
]
