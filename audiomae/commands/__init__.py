"""The ``audiomae`` subcommands (one module each, see :mod:`audiomae.cli`) and the argument
types they share, so every option is checked when it is parsed."""

from __future__ import annotations

import argparse


def add_config_arguments(p: argparse.ArgumentParser, resume: bool = True) -> None:
    """A training run's command line, the same for every recipe and the ``pretrain`` and
    ``finetune`` commands: ``--config FILE``, ``--resume`` (unless ``resume=False``) and dotted
    ``key=value`` overrides (:func:`audiomae.train.config.load_config`)."""
    p.add_argument("--config", help="YAML config (see recipes/configs/)")
    if resume:
        p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in out_dir")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted keys, e.g. train.steps=100")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _bounded(int, text, 1, "an integer >= 1")


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _bounded(int, text, 0, "an integer >= 0")


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = _bounded(float, text, None, "a number > 0")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def _bounded(kind: type, text: str, low, what: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if low is not None and value < low:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value
