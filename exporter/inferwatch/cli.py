"""The `inferwatch` command: one subcommand per module, imported only when it runs.

Each subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int``.

>>> sorted(SUBCOMMANDS)[:2]
['demo', 'events']
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from inferwatch._version import __version__

# The exit status of a command stopped by Ctrl-C, as shells report it: 128 + SIGINT.
INTERRUPTED = 130

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("inferwatch.generate.cli", "write Grafana dashboards and Prometheus rules"),
    "profile": ("inferwatch.quality.profile_cli", "build a reference profile from training data"),
    "demo": ("inferwatch.demo.cli", "run the demo model, traffic and monitoring stack"),
    "events": ("inferwatch.events.cli", "read the prediction event log"),
    "report": ("inferwatch.report.cli", "write an HTML drift report of a data file"),
}


class _StoreOnce(argparse._StoreAction):
    """A one-value flag that refuses to be given twice.

    argparse keeps the last of two (``--out a --out b``), so a value set in a script and
    again by the user silently loses one of them; flags meant to repeat use ``append``.
    """

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        given = getattr(parser, "_given_once", None)
        if self.option_strings and given is not None:
            if self in given:
                first = given[self]
                both = f" (as {first} and {option_string})" if first != option_string else ""
                raise argparse.ArgumentError(
                    self, f"given more than once{both}; it takes one value, give it once")
            given[self] = option_string
        super().__call__(parser, namespace, values, option_string)


class StrictArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser that takes no prefix of a flag and no one-value flag twice.

    A prefix (``--conf``) would stop working, or start meaning another flag, as soon as a
    flag with the same start is added. Subcommand parsers are made of this class too.

    >>> parser = StrictArgumentParser(prog="x")
    >>> _ = parser.add_argument("--out")
    >>> parser.parse_args(["--out", "a"]).out
    'a'
    """

    def __init__(self, *args: Any, allow_abbrev: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, allow_abbrev=allow_abbrev, **kwargs)
        self.register("action", None, _StoreOnce)
        self.register("action", "store", _StoreOnce)
        self._given_once: dict[argparse.Action, str | None] = {}

    def parse_known_args(self, args: Sequence[str] | None = None,
                         namespace: argparse.Namespace | None = None,
                         ) -> tuple[argparse.Namespace, list[str]]:
        self._given_once = {}
        return super().parse_known_args(args, namespace)


def build_parser() -> argparse.ArgumentParser:
    parser = StrictArgumentParser(
        prog="inferwatch", description="Monitoring for machine-learning models in production."
    )
    parser.add_argument("--version", action="version", version=f"inferwatch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        child = sub.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
        child.set_defaults(_module=module_name, _parser=child)
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            child.set_defaults(_unavailable=True)
            continue
        module.add_arguments(child)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status: the subcommand's, 2 for a usage
    error, 130 (:data:`INTERRUPTED`) when stopped by Ctrl-C.

    >>> main(["--version"])  # doctest: +SKIP
    """
    if sys.stderr is None:
        # Started with stderr closed (`2>&-`, some service managers): Python leaves
        # sys.stderr None, print(file=None) then writes the messages into stdout among the
        # data, and code that calls sys.stderr's methods raises. They have nowhere to go.
        sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - kept for the process
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # Told by the (sub)command they were given to, with its usage, which lists the flags
        # the user meant: the top level's usage names none of them.
        getattr(args, "_parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    if getattr(args, "_unavailable", False):
        parser.error(f"the '{args.command}' command is not available in this installation")
    try:
        module = importlib.import_module(args._module)
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        # Ctrl-C is the user's choice, not a fault: one line and the shell's status for
        # SIGINT, no traceback. Subcommands clean up what they started in `finally` blocks.
        print(f"inferwatch {args.command}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:
        # `inferwatch ... | head`: the reader took what it wanted and left, as `inferwatch
        # events` treats it. What is still buffered for stdout goes nowhere instead of
        # failing again, with a traceback, when Python flushes it at exit.
        with contextlib.suppress(OSError, AttributeError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
