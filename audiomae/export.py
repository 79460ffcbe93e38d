"""Export a PLC model to ONNX for the torch-free runtime (:mod:`audiomae.runtime`).

``export_onnx(model, directory)`` writes two files:

* ``model.onnx``: the computation the streaming concealer asks of the MAE
  (``MAEConcealer.predict_logmel`` after the front end): log-mel in, the same log-mel with every
  lost patch replaced by the model's prediction out. Normalisation is inside the graph.

  ======== ================ ======= ===============================================
  name     shape            dtype   meaning
  ======== ================ ======= ===============================================
  logmel   (B, F, T)        float32 natural-log mel power, T = columns * patch_t
  lost     (B, columns)     bool    True where the packet (patch column) is lost
  filled   (B, F, T)        float32 ``logmel`` with the lost columns predicted
  ======== ================ ======= ===============================================

  ``B`` and ``columns`` are dynamic axes (``columns`` from 1 to ``max_frames / patch_t``).
* ``config.json``: the export format version, the model kind, its geometry, the front end's
  settings and normalisation statistics (all the runtime needs to build the log-mel itself),
  the ONNX opset and axes, and the SHA-256 of the source checkpoint's weights.

The graph has no data-dependent shapes, so every packet costs the same: where
:class:`~audiomae.model.AudioMAE` gathers the visible patches, the graph runs the encoder on
all of them with lost patches masked out as attention keys (the visible patches' encodings are
the same), and the decoder predicts every column of the window (with its local attention, the
columns the concealer reads come out the same as from a span).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audiomae.audio import file_sha256, write_all
from audiomae.features import patchify, unpatchify
from audiomae.model import AudioMAE, ResidualPLCMAE

EXPORT_FORMAT_VERSION = 1
ONNX_NAME = "model.onnx"
CONFIG_NAME = "config.json"
DEFAULT_OPSET = 18
MIN_OPSET = 18  # torch's dynamo exporter writes opset 18 and newer


class PLCGraph(nn.Module):
    """``forward(logmel (B, F, T), lost (B, T / patch_t)) -> filled (B, F, T)``: what is exported.

    Equal (to float rounding) to ``denormalize(model.reconstruct(normalize(logmel), mask))``
    with ``mask`` the packet-loss mask of ``lost``."""

    def __init__(self, model: AudioMAE) -> None:
        super().__init__()
        if model.cfg.norm_pix_loss:
            raise ValueError(
                "a norm_pix_loss model predicts per-patch normalised values; PLC needs absolute ones"
            )
        self.model = model.eval()
        self.residual = isinstance(model, ResidualPLCMAE)

    def forward(self, logmel: torch.Tensor, lost: torch.Tensor) -> torch.Tensor:
        m, cfg = self.model, self.model.cfg
        spec = m.norm.normalize(logmel)
        patches = patchify(spec, cfg.patch_f, cfg.patch_t)  # (B, N, P)
        b, n, _ = patches.shape
        mask = lost[:, :, None].expand(b, lost.shape[1], cfg.grid_f).reshape(b, n)
        if self.residual:
            delta, _ = m._decode_all(m._encode_all(patches, mask), mask, None)
            pred = patches + delta - m.level_shift(patches, delta, mask)
        else:
            x = m.patch_embed(patches) + m.enc_pos[:n]
            visible = (~mask)[:, None, None, :]  # lost patches are no attention keys
            for blk in m.encoder:
                x = blk(x, visible)
            x = m.dec_embed(m.enc_norm(x))
            x = torch.where(mask[..., None], m.mask_token.to(x.dtype), x) + m.dec_pos[:n]
            local = m._local_mask(n, x.device)
            for blk in m.decoder:
                x = blk(x, local)
            pred = m.dec_pred(m.dec_norm(x))
        merged = torch.where(mask[..., None], pred, patches)
        return m.norm.denormalize(unpatchify(merged, cfg.n_mels, cfg.patch_f, cfg.patch_t))


def export_config(model: AudioMAE, opset: int, source_sha256: str | None = None) -> dict[str, Any]:
    """The JSON that describes an exported model (read by :class:`audiomae.runtime.OnnxPLCModel`)."""
    from dataclasses import asdict

    return {
        "format_version": EXPORT_FORMAT_VERSION,
        "kind": "onnx_plc",
        "model_kind": "residual_plc" if isinstance(model, ResidualPLCMAE) else "audiomae",
        "model": asdict(model.cfg),
        "features": asdict(model.feature_cfg),
        "norm": {"mean": model.norm.mean, "std": model.norm.std},
        "onnx": {
            "file": ONNX_NAME,
            "opset": opset,
            "inputs": {"logmel": ["batch", "n_mels", "frames"], "lost": ["batch", "columns"]},
            "outputs": {"filled": ["batch", "n_mels", "frames"]},
            "dynamic_axes": {
                "batch": "any",
                "columns": [1, model.cfg.max_grid_t],
                "frames": "columns * patch_t",
            },
        },
        "source_weights_sha256": source_sha256,
    }


def export_onnx(
    model: AudioMAE,
    directory: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    source_sha256: str | None = None,
) -> Path:
    """Write ``model.onnx`` and ``config.json`` for ``model`` into ``directory``; returns it.

    Uses torch's ONNX exporter (``torch.onnx.export(dynamo=True)``, which needs the ``onnx``
    and ``onnxscript`` packages: ``pip install 'audiomae[export]'``)."""
    try:
        import onnx
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"ONNX export needs {exc.name}: pip install 'audiomae[export]'") from exc
    from torch.onnx import _constants  # private: guarded

    newest = min(onnx.defs.onnx_opset_version(), getattr(_constants, "ONNX_MAX_OPSET", DEFAULT_OPSET))
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ValueError(
            f"opset must be {MIN_OPSET} to {newest} (what torch and onnx here write), got {opset}"
        )
    import logging
    import warnings

    graph = PLCGraph(model.float().cpu()).eval()
    cfg = model.cfg
    columns = min(24, cfg.max_grid_t)
    example = (
        torch.randn(1, cfg.n_mels, columns * cfg.patch_t) * model.norm.std + model.norm.mean,
        torch.zeros(1, columns, dtype=torch.bool),
    )
    example[1][0, columns // 2] = True
    cols = torch.export.Dim("columns", min=1, max=cfg.max_grid_t)
    batch = torch.export.Dim("batch", min=1, max=1024)
    dynamic = {"logmel": {0: batch, 2: cfg.patch_t * cols}, "lost": {0: batch, 1: cols}}
    directory = Path(directory)
    log = logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)  # the exporter logs every optional op library it skips
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                graph,
                example,
                dynamo=True,
                input_names=["logmel", "lost"],
                output_names=["filled"],
                opset_version=opset,
                dynamic_shapes=dynamic,
                external_data=False,
                verbose=False,
            )
    finally:
        log.setLevel(level)
    config = export_config(model, opset, source_sha256)
    written: dict[str, str] = {}

    def write_onnx(tmp: str) -> None:
        program.save(tmp, external_data=False)
        written["onnx"] = tmp

    def write_config(tmp: str) -> None:
        config["onnx"]["sha256"] = file_sha256(written["onnx"])
        Path(tmp).write_text(json.dumps(config, indent=2, sort_keys=True))

    # Both files or neither (and no folder left behind when the export fails).
    write_all([(directory / ONNX_NAME, write_onnx), (directory / CONFIG_NAME, write_config)])
    return directory


def export_checkpoint(
    checkpoint: str | os.PathLike, directory: str | os.PathLike, opset: int = DEFAULT_OPSET
) -> Path:
    """Export the PLC model saved in ``checkpoint`` (an :class:`AudioMAE` or
    :class:`ResidualPLCMAE` directory) to ``directory``."""
    from audiomae.audio import check_outputs
    from audiomae.checkpoint import load_model, read_config

    config = read_config(checkpoint)
    src = Path(checkpoint)
    inputs = [src / CONFIG_NAME, src / "model.safetensors"]
    out = Path(directory)
    check_outputs({"-o (model.onnx)": out / ONNX_NAME, "-o (config.json)": out / CONFIG_NAME}, inputs=inputs)
    model = load_model(checkpoint)
    if not isinstance(model, AudioMAE):
        raise ValueError(f"{checkpoint}: holds a {type(model).__name__}; only PLC models (AudioMAE) export")
    return export_onnx(model, directory, opset=opset, source_sha256=config.get("weights_sha256"))


__all__ = ["PLCGraph", "export_onnx", "export_checkpoint", "export_config", "DEFAULT_OPSET"]
