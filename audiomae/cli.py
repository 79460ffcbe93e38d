"""The ``audiomae`` command: a thin layer of argument parsing over library calls.

Each subcommand lives in the module that owns its feature and exposes
``add_parser(subparsers)``; the parser registers a ``func(args) -> int``. Modules are
imported only when their command is looked up, so ``audiomae --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> module providing add_parser(subparsers). Order is the order shown in --help.
COMMANDS: dict[str, str] = {
    "demo": "audiomae.commands.demo",
    "info": "audiomae.commands.info",
    "pretrain": "audiomae.commands.pretrain",
    "resynth": "audiomae.commands.vocoder",
    "plc": "audiomae.commands.plc",
    "classify": "audiomae.commands.classify",
    "export": "audiomae.commands.export",
}


def build_parser() -> argparse.ArgumentParser:
    from audiomae import __version__

    parser = argparse.ArgumentParser(
        prog="audiomae",
        description="Masked autoencoders for audio: packet-loss concealment and classification.",
    )
    parser.add_argument("--version", action="version", version=f"audiomae {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError) as exc:
        print(f"audiomae {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
