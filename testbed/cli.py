"""The ``testbed`` command line.

Each subcommand lives in the module that owns the feature and is registered here with
``register(subparsers)``; that function adds its parser and sets ``func`` (``args -> int``).
Modules import heavy dependencies (torch, GNU Radio) inside their handlers only, so
``testbed --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from testbed.errors import (
    EXIT_INTERRUPTED,
    EXIT_RUNTIME,
    EXIT_USAGE,
    EmulatorConfigError,
    UserError,
)

__all__ = ["build_parser", "main"]

log = logging.getLogger("testbed")

# Modules that provide ``register(subparsers)``, in --help order.
_COMMAND_MODULES = (
    "testbed.commands.link",
    "testbed.commands.channel",
    "testbed.commands.transfer",
    "testbed.fl.cli",
    "testbed.commands.run",
    "testbed.commands.report",
    "testbed.commands.replay",
    "testbed.commands.keys",
)


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line with exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """Build the full parser with every available subcommand."""
    parser = _Parser(
        prog="testbed",
        description="Hardware-in-the-loop testbed for federated fine-tuning over LEO "
        "satellite links.",
    )
    from testbed import __version__

    parser.add_argument("--version", action="version", version=f"testbed {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="errors only; no live progress display"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue  # feature not present in this build
        module.register(sub)
    _add_verbosity(parser)
    return parser


def _add_verbosity(parser: argparse.ArgumentParser) -> None:
    """Accept ``-v``/``-q`` after every sub-command too (``testbed run x -v``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sp in set(action.choices.values()):
                opts = {o for a in sp._actions for o in a.option_strings}
                if "-v" not in opts:
                    sp.add_argument(
                        "-v",
                        "--verbose",
                        action="count",
                        default=argparse.SUPPRESS,
                        help="more logging",
                    )
                if "-q" not in opts:
                    sp.add_argument(
                        "-q",
                        "--quiet",
                        action="store_true",
                        default=argparse.SUPPRESS,
                        help="errors only; no live progress display",
                    )
                _add_verbosity(sp)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``testbed`` console script; returns the exit status."""
    # Third-party progress bars (transformers' "Loading weights", hub downloads) would mix
    # into our display; they are off in this process and in every child it starts.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "quiet", False) and getattr(args, "verbose", 0):
        parser.error("-q and -v contradict each other")
    level = logging.ERROR if args.quiet else logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"testbed: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except EmulatorConfigError as exc:
        print(f"testbed: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("testbed: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:
        print(f"testbed: error: {exc}", file=sys.stderr)
        return EXIT_RUNTIME


if __name__ == "__main__":
    sys.exit(main())
