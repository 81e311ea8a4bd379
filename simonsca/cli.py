"""The ``simonsca`` command: generate | prepare | eval | compare | diff | doctor | merge.

Each subcommand is a thin shell over a library function; user mistakes (``SimonscaError``) are
printed as one line, never as a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from typing import Any

from simonsca import dataset, options
from simonsca.errors import SimonscaError

def _generate(args: argparse.Namespace) -> int:
    if args.split == "train":
        start = 0 if args.seed_start is None else args.seed_start
        items = dataset.v5_items(args.count, seed_start=start)
    else:
        start = dataset.EVAL_SEED_START if args.seed_start is None else args.seed_start
        if args.count is None:
            raise SimonscaError("--split eval needs --count N")
        items = iter(dataset.eval_items(args.count, start, dataset.families(args.family)))
    n = dataset.write_items(items, args.out, args.format, force=args.force)
    print(f"wrote {n} {args.split} items (seeds from {start}) to {args.out} [{args.format}]")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    n = dataset.write_items(dataset.v5_items(), args.out, args.format, force=args.force)
    print(
        f"wrote {n} v5 items (seeds 0..{n - 1}; stopped at {dataset.V5_MAX_ITEMS} items or "
        f"{dataset.V5_MAX_BYTES // 2**20} MiB of JSON) to {args.out} [{args.format}]"
    )
    return 0


def _add_output_args(p: argparse.ArgumentParser, default_format: str) -> None:
    p.add_argument("--out", required=True, help="file to write (refused if it exists)")
    p.add_argument(
        "--format",
        choices=dataset.FORMATS,
        default=default_format,
        help="jsonl: instruction/input/output + metadata; v5: llama.cpp finetune "
        "train_data.txt with '<s>' sample starts; mlx: {\"text\": ...} lines "
        f"(default: {default_format})",
    )
    p.add_argument("--force", action="store_true", help="replace --out if it already exists")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simonsca",
        description="Tell whether an LLM finetune really learned the SimonsCA1 cellular automaton.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    gen = sub.add_parser(
        "generate",
        help="write SimonsCA1 puzzles (training items or held-out eval items)",
        description="Write deterministic SimonsCA1 items. --split train uses the seed's v5 "
        "generator (seeds from 0, the very items v5 trained on); --split eval draws held-out "
        f"items from seeds >= {dataset.EVAL_SEED_START}, checked against every v5 grid.",
    )
    gen.add_argument("--split", choices=("train", "eval"), default="train")
    gen.add_argument(
        "--count", type=int, help="number of items (train default: the seed's 50,000/10 MiB budget)"
    )
    gen.add_argument("--seed-start", type=int, help="first seed (train: 0, eval: 1000000)")
    gen.add_argument(
        "--family",
        default="v5-small",
        help=f"eval family: {', '.join(sorted(dataset.PRESETS))} (default: v5-small)",
    )
    _add_output_args(gen, "jsonl")
    gen.set_defaults(handler=_generate)

    prep = sub.add_parser(
        "prepare",
        help="write the seed's v5 train_data.txt (19,587 items) for llama.cpp finetune",
        description="Reproduce the seed's prepare_train_data.py: v5 items from seed 0 until "
        "50,000 items or 10 MiB of JSON (19,587 items).",
    )
    _add_output_args(prep, "v5")
    prep.set_defaults(handler=_prepare)

    ev = sub.add_parser(
        "eval",
        help="score one model (optionally + LoRA) on held-out items beside the trivial baselines",
        description="Evaluate MODEL on held-out SimonsCA1 items and print its scores beside the "
        "all-dead, copy-input, most-common-count and oracle baselines.",
    )
    ev.add_argument("model", metavar="MODEL.gguf")
    options.add_options(ev.add_argument, options.EVAL_OPTIONS + options.REPORT_OPTIONS)
    ev.set_defaults(handler=_eval)

    cmp = sub.add_parser(
        "compare",
        help="base vs merged on the same held-out items: deltas, CIs, McNemar, verdict",
        description="The same evaluation as `pytest evals/`: exit status 0 when the verdict is "
        "improved and every threshold holds, 1 otherwise.",
    )
    cmp.add_argument("base_model", metavar="BASE.gguf")
    cmp.add_argument("merged_model", metavar="MERGED.gguf", nargs="?",
                     help="omit and pass --lora to compare BASE with BASE + adapter")
    options.add_options(
        cmp.add_argument, options.EVAL_OPTIONS + options.GATE_OPTIONS + options.REPORT_OPTIONS
    )
    cmp.set_defaults(handler=_compare)
    return parser


def _settings(args: argparse.Namespace, tables: tuple[options.Option, ...]) -> dict[str, Any]:
    from pathlib import Path

    from simonsca.suite import read_pyproject_settings

    overrides = {key: getattr(args, key) for _, key, _ in tables}
    return {**read_pyproject_settings(Path.cwd()), **{k: v for k, v in overrides.items() if v is not None}}


def _eval(args: argparse.Namespace) -> int:
    from simonsca.report import build_report, render_terminal_table, write_reports
    from simonsca.suite import evaluate_one

    settings = _settings(args, options.EVAL_OPTIONS + options.REPORT_OPTIONS)
    items, runs, baselines = evaluate_one(args.model, settings)
    report = build_report(items, runs, baselines=baselines)
    print(render_terminal_table(report))
    out = write_reports(report, settings.get("reports_dir") or "reports")
    print(f"reports: {out}/report.html (summary.md, report.json)")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from simonsca.compare import Verdict
    from simonsca.report import render_terminal_table
    from simonsca.suite import build_config, run_suite

    settings = _settings(args, options.EVAL_OPTIONS + options.GATE_OPTIONS + options.REPORT_OPTIONS)
    settings.update(base_model=args.base_model, merged_model=args.merged_model)
    result = run_suite(build_config(settings))
    print(f"compared: {result.config.describe()}")
    print(render_terminal_table(result.report))
    for finding in result.findings:
        print(f"finding: {finding}")
    if result.report_dir is not None:
        print(f"reports: {result.report_dir}/report.html (summary.md, report.json)")
    ok = result.comparison.verdict is Verdict.IMPROVED and not result.gate_failures
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except SimonscaError as error:
        print(f"simonsca {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"simonsca {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
