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


def add_model_argument(p: argparse.ArgumentParser) -> None:
    """``--model DIR``: the PLC model of the concealment methods that run one."""
    from audiomae.plc.base import model_methods

    p.add_argument(
        "--model",
        metavar="DIR",
        default=None,
        help=f"PLC model for {', '.join(model_methods())}: a checkpoint directory (save_pretrained, "
        "e.g. audiomae/assets/plc_residual_speech) or an ONNX export (audiomae export); "
        "default the bundled model",
    )


def model_option(directory: str | None, methods: list[str]):
    """The model ``--model`` names, loaded (None without it). ValueError, before anything is
    loaded, where none of ``methods`` runs a model."""
    if directory is None:
        return None
    from audiomae.plc.base import method_info, model_methods
    from audiomae.plc.models import load_plc_model

    if not any(method_info(m).takes_model for m in methods):
        which = f"method {methods[0]!r} runs" if len(methods) == 1 else f"methods {', '.join(methods)} run"
        raise ValueError(f"--model: {which} no model (--model is for {', '.join(model_methods())})")
    return load_plc_model(directory)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _bounded(int, text, 1, "an integer >= 1")


def int_in_range(low: int, high: int):
    """argparse type: an integer in [low, high]."""

    def parse(text: str) -> int:
        value = _bounded(int, text, low, f"an integer from {low} to {high}")
        if value > high:
            raise argparse.ArgumentTypeError(f"must be an integer from {low} to {high}, got {text!r}")
        return value

    return parse


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
