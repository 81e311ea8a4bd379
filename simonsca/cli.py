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
        "improved, every threshold holds and (with --prompt-mode both) the gain survives the "
        "chat format; 1 otherwise.",
    )
    cmp.add_argument("base_model", metavar="BASE.gguf")
    cmp.add_argument(
        "merged_model",
        metavar="MERGED.gguf",
        nargs="?",
        help="omit and pass --lora to compare BASE with BASE + adapter",
    )
    options.add_options(
        cmp.add_argument, options.EVAL_OPTIONS + options.GATE_OPTIONS + options.REPORT_OPTIONS
    )
    cmp.set_defaults(handler=_compare)

    diff = sub.add_parser(
        "diff",
        help="why nothing changed: GGUF weight diff, or adapter size vs quantisation step",
        description="simonsca diff BASE MERGED: per-tensor byte identity, quantisation types and "
        "relative change. simonsca diff BASE --lora ADAPTER: the adapter's update per tensor and "
        "how much of it survives the base's quantisation. Add --logit-items N to measure the "
        "next-token KL divergence on N eval prompts (slow: runs both models).",
    )
    diff.add_argument("base", metavar="BASE.gguf")
    diff.add_argument("merged", metavar="MERGED.gguf", nargs="?")
    diff.add_argument("--lora", metavar="ADAPTER.gguf", help="inspect this adapter against BASE")
    diff.add_argument(
        "--merge-type",
        metavar="TYPE",
        help="judge the adapter's survival in this type (e.g. Q6_K) instead of BASE's",
    )
    diff.add_argument(
        "--logit-items",
        type=int,
        default=0,
        metavar="N",
        help="also compare next-token distributions on N eval items",
    )
    diff.add_argument("--json", action="store_true", help="print JSON instead of tables")
    diff.set_defaults(handler=_diff)

    doc = sub.add_parser(
        "doctor",
        help="check a training file (and log) against the model's tokenizer and context",
        description="Tokenise every sample of a v5 train_data.txt with the model's own tokenizer: "
        "samples over the context, how much of the answer is cut off, whether the sample-start "
        "marker is a special token, duplicates, overlap with the eval set; with --train-log, "
        "how far training got.",
    )
    doc.add_argument("--train-data", required=True, metavar="FILE")
    doc.add_argument("--model", required=True, metavar="BASE.gguf", help="whose tokenizer to use")
    doc.add_argument(
        "--ctx", type=int, default=512, metavar="N", help="training context (default 512)"
    )
    doc.add_argument(
        "--sample-start", default="<s>", metavar="S", help="sample-start marker (default <s>)"
    )
    doc.add_argument("--train-log", metavar="FILE", help="llama.cpp finetune log to read")
    doc.add_argument(
        "--merge-base",
        metavar="BASE.gguf",
        help="the GGUF the adapter was merged into: checked against the log's "
        "training base (quantisation types)",
    )
    doc.add_argument(
        "--eval-size",
        type=int,
        default=200,
        metavar="N",
        help="eval items to check for overlap (default 200)",
    )
    doc.add_argument("--json", action="store_true", help="print JSON instead of a table")
    doc.set_defaults(handler=_doctor)

    mrg = sub.add_parser(
        "merge",
        help="apply a LoRA adapter GGUF to a base GGUF and write a merged GGUF",
        description="Merged tensors are written as F16 (or --requantize TYPE, with a warning when "
        "that would erase the update); everything else is copied byte for byte.",
    )
    mrg.add_argument("base", metavar="BASE.gguf")
    mrg.add_argument("adapter", metavar="ADAPTER.gguf")
    mrg.add_argument("out", metavar="OUT.gguf")
    mrg.add_argument("--requantize", metavar="TYPE", help="Q8_0, Q4_0, Q5_0, ... (default F16)")
    mrg.add_argument("--force", action="store_true", help="replace OUT if it exists")
    mrg.set_defaults(handler=_merge)
    return parser


def _diff(args: argparse.Namespace) -> int:
    from simonsca import forensics

    if (args.merged is None) == (args.lora is None):
        raise SimonscaError("give either MERGED.gguf or --lora ADAPTER.gguf (one of the two)")
    findings: list[Any] = []
    reports: dict[str, Any] = {}
    if args.merged is not None:
        d = forensics.diff_models(args.base, args.merged)
        reports["diff"] = d
        findings += d.findings
        if not args.json:
            print(d.summary())
    else:
        a = forensics.inspect_adapter(args.base, args.lora, resolution_type=args.merge_type)
        reports["adapter"] = a
        findings += a.findings
        if not args.json:
            print(a.summary())
    if args.logit_items:
        from simonsca.forensics.logit import logit_effect

        items = dataset.eval_items(args.logit_items)
        other = args.merged or args.base
        effect = logit_effect(
            args.base,
            other,
            [(i.prompt, i.output) for i in items],
            lora_b=args.lora,
        )
        reports["logits"] = effect
        findings += effect.findings
        if not args.json:
            print(effect.summary())
    if args.json:
        print(forensics.to_json({**reports, "findings": forensics.sort_findings(findings)}))
    else:
        print(
            forensics.format_findings_table(forensics.sort_findings(findings))
            if findings
            else "no findings"
        )
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from simonsca import forensics

    report = forensics.doctor(
        args.train_data,
        args.model,
        n_ctx=args.ctx,
        sample_start=args.sample_start,
        train_log=args.train_log,
        eval_items=dataset.eval_items(args.eval_size) if args.eval_size else None,
    )
    findings = list(report.findings)
    if args.merge_base and report.log is not None:
        findings += forensics.training_base_findings(report.log, args.merge_base)
    findings = list(forensics.sort_findings(findings))
    if args.json:
        print(forensics.to_json({"report": report, "findings": findings}))
    else:
        print(report.summary())
        print(forensics.format_findings_table(findings) if findings else "no findings")
    return 0


def _merge(args: argparse.Namespace) -> int:
    from simonsca.merge import merge_adapter

    out = merge_adapter(args.base, args.adapter, args.out, args.requantize, overwrite=args.force)
    print(f"wrote {out}")
    return 0


def _settings(args: argparse.Namespace, tables: tuple[options.Option, ...]) -> dict[str, Any]:
    from pathlib import Path

    from simonsca.suite import read_pyproject_settings

    overrides = {key: getattr(args, key) for _, key, _ in tables}
    return {
        **read_pyproject_settings(Path.cwd()),
        **{k: v for k, v in overrides.items() if v is not None},
    }


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
    if result.report_dir is not None:
        print(f"reports: {result.report_dir}/report.html (summary.md, report.json)")
    ok = (
        result.comparison.verdict is Verdict.IMPROVED
        and not result.gate_failures
        and result.gain_lost_in_chat is None
    )
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
