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
    "convert-reference": "audiomae.commands.convert",
    "export": "audiomae.commands.export",
    "rtp": "audiomae.commands.rtp",
}


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (the option and the problem), not the
    usage block; subcommand parsers inherit it."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from audiomae import __version__

    parser = OneLineParser(
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
    return run_guarded(f"audiomae {args.command}", lambda: args.func(args))


def run_guarded(name: str, fn) -> int:
    """Run a command's ``fn() -> int | None`` (its exit code; None is 0), turning its expected
    failures into one line on stderr: bad input or options (ValueError, exit 2), files (OSError,
    exit 1), Ctrl-C (exit 130; outputs are written atomically, so what earlier runs wrote is
    intact). Anything else returned is a programming error (TypeError): a result object passed
    up as an exit code would turn a finished run into a failed one."""
    try:
        code = fn()
        if code is None:
            return 0
        if isinstance(code, bool) or not isinstance(code, int):
            raise TypeError(
                f"{name}: a command returns its exit code (int or None), got {type(code).__name__}"
            )
        return code
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError) as exc:
        print(f"{name}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{name}: error: {where}{exc.strerror or _one_line(exc)}", file=sys.stderr)
        return 1


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return "; ".join(lines) if lines else type(exc).__name__


if __name__ == "__main__":
    raise SystemExit(main())
