"""The ``simonsca`` command: generate | prepare | eval | compare | diff | doctor | merge | runs |
convert | checkpoints.

Each subcommand is a thin shell over a library function (its handler and parser: a module of
:mod:`simonsca.commands`). ``eval`` and ``compare`` take every setting of :mod:`simonsca.settings`
(the options ``pytest evals/`` has, by the same names), and ``compare`` exits 1 exactly when a
check of :mod:`simonsca.checks` failed -- when ``pytest evals/`` would fail. A user mistake is one
line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from simonsca.commands import adapter_files, data, diagnose, evaluate, stored_runs
from simonsca.commands.common import EXIT_USAGE, Parser, one_line
from simonsca.errors import SimonscaError


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="simonsca",
        description="Tell whether an LLM finetune really learned the SimonsCA1 cellular automaton.",
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=Parser
    )
    for group in (data, evaluate, diagnose, adapter_files, stored_runs):
        group.add_parsers(sub)
    return parser


def _say_warnings(command: str) -> Callable[..., None]:
    """Python warnings (an update erased by re-quantising, ...) as one line each, not the usual
    ``file:line: Category: message`` plus a line of simonsca's source."""

    def show(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        print(f"simonsca {command}: warning: {one_line(message)}", file=sys.stderr)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _say_warnings(args.command)
            return int(args.handler(args))
    except SimonscaError as error:
        print(f"simonsca {args.command}: error: {one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(
            f"simonsca {args.command}: interrupted (finished answers are kept in the cache)",
            file=sys.stderr,
        )
        return 130
    except OSError as error:  # a disk that fills or a file that vanished under us
        where = f" ({error.filename})" if getattr(error, "filename", None) else ""
        print(
            f"simonsca {args.command}: error: {one_line(error.strerror or error)}{one_line(where)}",
            file=sys.stderr,
        )
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
