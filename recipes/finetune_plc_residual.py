"""Train the residual PLC model on precomputed windows.

    python recipes/finetune_plc_residual.py --config recipes/configs/plc_residual/speech.yaml

Needs the window pools (``recipes/build_plc_pool.py``). Each invocation adds a stage to
``out_dir`` that starts from the previous stage's model (else from ``init``); ``--resume``
continues a killed stage. ``--evaluate MODEL_DIR`` trains nothing and prints MODEL_DIR's
validation figures beside the continuation's. ``--calibrate MODEL_DIR --out DIR`` writes a copy
of MODEL_DIR with a level calibration per burst position fitted on the training pool
(``calibrate_levels``: scale and offset of the predicted level change). Overrides: ``train.time_limit_s=600``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiomae.train import distributed as dist_utils  # noqa: E402
from audiomae.train.plc_residual import (  # noqa: E402
    ResidualPLCSettings,
    calibrate_levels,
    evaluate_residual,
    load_residual,
    run_residual_plc,
)
from audiomae.train.runner import run_recipe  # noqa: E402


def main(cfg: dict, args: argparse.Namespace) -> None:
    s = ResidualPLCSettings.from_dict(cfg)
    if (args.calibrate or args.export_step) and not args.out:
        raise ValueError("--calibrate and --export-step need --out")
    if args.export_step:
        export_step(args.export_step, args.out, s)
    elif args.calibrate:
        calibrate(args.calibrate, args.out, s, args.windows)
    elif args.evaluate:
        figures = evaluate_residual(args.evaluate, s)
        print(f"{args.evaluate}: " + ", ".join(f"{k} {v:.4f}" for k, v in figures.items()))
    else:
        result = run_residual_plc(s, resume=args.resume)
        if dist_utils.is_main():
            val = ", ".join(f"{k} {v:.4f}" for k, v in result.val.items())
            print(f"done: {result.steps} steps in {result.elapsed_s:.0f} s; validation {val or 'n/a'}")


def calibrate(model_dir: str, out: str, s: ResidualPLCSettings, windows: int) -> None:
    import torch

    from audiomae.train.plc_pool import load_pool

    if s.threads:
        torch.set_num_threads(s.threads)
    model = load_residual(model_dir)
    pool = {k: v[:windows] for k, v in load_pool(s.pool, list(s.groups) if s.groups else None).items()}
    offset, scale = calibrate_levels(model, pool)
    db = ", ".join(f"{10 * v / 2.302585:+.2f}" for v in offset)
    print(f"level by burst position 1..{len(offset)} (from {len(pool['target'])} windows):")
    print(f"  offset (dB) {db}\n  scale {', '.join(f'{v:.2f}' for v in scale)}")
    model.save_pretrained(out, extra={"calibrated_on": {"pool": s.pool, "windows": len(pool["target"])}})


def export_step(step_dir: str, out: str, s: ResidualPLCSettings) -> None:
    from safetensors.torch import load_file

    weights = Path(step_dir) / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{step_dir}: no model.safetensors (expected a stage's checkpoints/step_N)")
    model = load_residual(s.init)  # the architecture; every weight is replaced below
    model.load_state_dict(load_file(weights), strict=True)
    model.reset_calibration()
    model.save_pretrained(out, extra={"exported_from": str(step_dir)})
    print(f"{step_dir} -> {out}")


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--evaluate", metavar="MODEL_DIR", help="only report MODEL_DIR's validation figures")
    parser.add_argument("--calibrate", metavar="MODEL_DIR", help="write a level-calibrated copy to --out")
    parser.add_argument("--export-step", metavar="CKPT_DIR", help="write a saved step as a model to --out")
    parser.add_argument("--out", help="where --calibrate / --export-step write")
    parser.add_argument("--windows", type=int, default=20000, help="training windows --calibrate uses")


if __name__ == "__main__":
    raise SystemExit(run_recipe(__doc__, main, options=options))
