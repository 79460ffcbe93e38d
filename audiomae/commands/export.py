"""``audiomae export CHECKPOINT -o DIR``: the PLC model as ONNX for the torch-free runtime."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="write a PLC checkpoint as ONNX + JSON config, for the torch-free runtime"
    )
    p.add_argument("checkpoint", help="PLC checkpoint directory (model.safetensors + config.json)")
    p.add_argument("-o", "--output", required=True, help="directory for model.onnx and config.json")
    # The default lives in audiomae.export (which imports torch; --help must not).
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    try:
        from audiomae.export import DEFAULT_OPSET, export_checkpoint
    except ModuleNotFoundError as exc:  # a runtime-only install: one line, as other errors
        raise SystemExit(
            f"audiomae export: error: needs {exc.name}, which this install lacks: "
            "pip install 'audiomae[export]'"
        ) from None

    opset = DEFAULT_OPSET if args.opset is None else args.opset
    out = export_checkpoint(args.checkpoint, args.output, opset=opset)
    size = (Path(out) / "model.onnx").stat().st_size
    print(f"{out}: model.onnx ({size / 1e6:.1f} MB, opset {opset}) and config.json")
    return 0
