"""The tuning set: LibriSpeech train files kept apart from the dev benchmark, and its loss
conditions (used by ``plc_prediction_error.py`` and ``experiments/tune_concealer.py``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from audiomae.data import find_audio


def add_tuning_set_args(ap: argparse.ArgumentParser) -> None:
    """``--data``, ``--files``, ``--every``, ``--conditions``: the tuning set (LibriSpeech train,
    not the dev benchmark) and its loss conditions; :func:`tuning_files` lists the files."""
    ap.add_argument(
        "--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/librispeech/train")
    )
    ap.add_argument("--files", type=int, default=12)
    ap.add_argument("--every", type=int, default=20, help="take every Nth file of --data (sorted)")
    ap.add_argument("--conditions", default="ge10b2,ge20b3")


def tuning_files(args: argparse.Namespace) -> list:
    return find_audio(args.data)[:: args.every][: args.files]
