"""``simonsca eval`` and ``simonsca compare``: the suite run from the command line, with every
setting of :mod:`simonsca.settings` (the options ``pytest evals/`` has, by the same names)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from simonsca import options
from simonsca.commands.common import EXIT_FAILED
from simonsca.errors import ConfigError
from simonsca.settings import Group, Settings


def _settings(args: argparse.Namespace) -> Settings:
    command_line = {o.key: getattr(args, options.dest(o.key), None) for o in options.options()}
    return options.resolve(command_line, options.read_pyproject(Path.cwd()))


def _print_result(result: Any) -> None:
    from simonsca.report.terminal import render_terminal

    print(render_terminal(result.record), end="")
    if result.report_dir is not None:
        print(f"reports: {result.report_dir}/report.html (summary.md, report.json)")


def _eval(args: argparse.Namespace) -> int:
    from simonsca.suite import run_suite

    chosen = _settings(args)
    if chosen.base_model or chosen.merged_model or chosen.merged_from_lora or chosen.compare_to:
        raise ConfigError("simonsca eval takes one MODEL; use simonsca compare for two")
    if len(chosen.lora) > 1:
        raise ConfigError(
            "simonsca eval takes one --lora; use simonsca compare MODEL --lora A --lora B to "
            "judge several adapters"
        )
    _print_result(run_suite(chosen, single=args.model))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from simonsca.suite import run_suite

    if args.base is not None:
        given = getattr(args, options.dest("base_model"))
        if given is not None and given != args.base:
            raise ConfigError(f"{args.base} and --base-model {given} name two different models")
        setattr(args, options.dest("base_model"), args.base)
    if args.candidates:
        flagged = getattr(args, options.dest("merged_model")) or []
        merged = [*args.candidates, *(m for m in flagged if m not in args.candidates)]
        setattr(args, options.dest("merged_model"), merged)
    result = run_suite(_settings(args))
    _print_result(result)
    return 0 if result.record.passed else EXIT_FAILED


def add_parsers(sub: Any) -> None:
    """Register ``eval`` and ``compare``."""
    run_groups: tuple[Group, ...] = ("items", "backend", "checks", "output")
    cache_note = (
        "Answers are cached in $SIMONSCA_CACHE/completions.sqlite3 (default: "
        "~/.cache/simonsca/completions.sqlite3); --no-cache neither reads nor writes it. A cache "
        "file that is damaged is moved aside (never deleted) and started afresh."
    )
    ev = sub.add_parser(
        "eval",
        help="score one model (optionally + LoRA) on held-out items beside the trivial baselines",
        description="Evaluate MODEL (a GGUF file or a server URL) on held-out SimonsCA1 items "
        "and print its scores beside the all-dead, copy-input, most-common-count and oracle "
        "baselines.",
        epilog=cache_note,
    )
    ev.add_argument("model", metavar="MODEL", help="a .gguf file or a server URL")
    ev.add_argument(
        "--lora",
        dest=options.dest("lora"),
        metavar="ADAPTER",
        help="LoRA adapter applied at load (GGUF LoRA, PEFT or MLX folder, lora.bin)",
    )
    options.add_options(ev.add_argument, run_groups, plugin=False)
    ev.set_defaults(handler=_eval)

    cmp = sub.add_parser(
        "compare",
        help="base vs one or more candidates on the same held-out items: deltas, CIs, tests, a "
        "verdict and checks per candidate",
        description="The same evaluation as `pytest evals/`, with the same options: exit status "
        "0 when every check of every candidate passes, 1 when one fails (exactly when `pytest evals/` fails), 2 on "
        "a usage error.",
        epilog=cache_note,
    )
    cmp.add_argument("base", metavar="BASE", nargs="?", help="base .gguf or server URL")
    cmp.add_argument(
        "candidates",
        metavar="CANDIDATE",
        nargs="*",
        help="candidates: merged .gguf files, folders of checkpoint GGUFs or server URLs "
        "(NAME=PATH names one); omit and pass --lora to compare BASE with BASE + adapter",
    )
    options.add_options(cmp.add_argument, ("models", *run_groups), plugin=False)
    cmp.set_defaults(handler=_compare)
