"""What every training runner does around :func:`~audiomae.train.fit`, in one place.

A runner (``run_pretraining``, ``run_plc_finetune``, ``run_residual_plc``, ``run_finetune``,
``run_vocoder_training``) starts with :func:`start_run` (torch threads, then torchrun's process
group, before any data or model is built), takes a staged run's directory from
:func:`stage_directory` (the same on every rank) and ends with :func:`export_model` (rank 0
copies the final model to ``export``). Every recipe's command line is :func:`run_recipe`:
``--config FILE`` plus dotted ``key=value`` overrides and ``--resume``. Runners that did these
things each in their own way drifted apart: one never joined the process group, so under
torchrun every process trained as rank 0 of 1.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from audiomae.train import distributed as dist_utils
from audiomae.train.state import starting_point


def start_run(threads: int | None = None) -> dist_utils.DistInfo:
    """Set torch's threads (when given) and join torchrun's process group (single-process
    without torchrun's environment); returns this process's rank and the world size."""
    if threads:
        torch.set_num_threads(threads)
    return dist_utils.init_distributed()


def stage_directory(out_dir: str | os.PathLike, init: str | None, resume: bool) -> tuple[Path, str | None]:
    """:func:`~audiomae.train.state.starting_point`, agreed by every rank: all ranks read the
    run directory before any of them can create the new stage's folder."""
    point = starting_point(out_dir, init, resume)
    dist_utils.barrier()
    return point


def export_model(
    model_dir: str | os.PathLike,
    export: str | os.PathLike | None,
    load: Callable[[str | os.PathLike], Any],
    extra: dict[str, Any] | None = None,
) -> None:
    """Copy a run's final model to ``export`` (when set) on rank 0: loaded with ``load`` (so a
    copy that would not load back fails here) and saved with ``extra`` in its config."""
    if export and dist_utils.is_main():
        load(model_dir).save_pretrained(export, extra=extra)


def run_recipe(
    doc: str,
    main: Callable[[dict[str, Any], argparse.Namespace], object],
    argv: list[str] | None = None,
    options: Callable[[argparse.ArgumentParser], None] | None = None,
    resume: bool = True,
) -> int:
    """A recipe's command line: parse ``argv`` (``--config``, overrides, ``--resume`` and the
    recipe's own ``options(parser)``), load the config with the overrides applied and run
    ``main(cfg, args)``. Returns the exit code: 0, or as the ``audiomae`` command, one line on
    stderr and 2 for bad input, 1 for a file error, 130 for Ctrl-C."""
    from audiomae.cli import OneLineParser, run_guarded
    from audiomae.commands import add_config_arguments
    from audiomae.train.config import load_config

    parser = OneLineParser(description=doc.strip().splitlines()[0])
    add_config_arguments(parser, resume=resume)
    if options is not None:
        options(parser)
    args = parser.parse_args(argv)

    def run() -> int:
        main(load_config(args.config, args.overrides), args)
        dist_utils.cleanup()  # every rank got here: leave the process group together
        return 0

    return run_guarded(parser.prog, run)


__all__ = ["export_model", "run_recipe", "stage_directory", "start_run"]
