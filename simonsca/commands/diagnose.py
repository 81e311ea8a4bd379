"""``simonsca diff`` and ``simonsca doctor``: why a finetune changed nothing
(:mod:`simonsca.forensics`)."""

from __future__ import annotations

import argparse
from typing import Any

from simonsca import dataset, settings
from simonsca.commands.common import typed
from simonsca.errors import ConfigError
from simonsca.parsers import integer


def _diff(args: argparse.Namespace) -> int:
    from simonsca import forensics

    if (args.merged is None) == (args.lora is None):
        raise ConfigError("give either MERGED.gguf or --lora ADAPTER.gguf (one of the two)")
    if args.merge_type is not None:
        from simonsca.forensics.resolution import qtype_of

        try:
            qtype_of(args.merge_type)
        except ValueError as error:
            raise ConfigError(f"--merge-type: {error} (e.g. Q8_0, Q6_K, Q4_K, F16)") from None
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
        lora = None
        if args.lora is not None:
            from simonsca.adapters import resolve_adapter

            lora = resolve_adapter(args.lora, args.base).gguf
        effect = logit_effect(
            args.base,
            args.merged or args.base,
            [(i.prompt, i.output) for i in items],
            lora_b=lora,
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


def add_parsers(sub: Any) -> None:
    """Register ``diff`` and ``doctor``."""
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
    diff.add_argument(
        "--lora",
        metavar="ADAPTER",
        help="inspect this adapter against BASE (GGUF LoRA, PEFT or MLX folder, lora.bin, "
        "finetune checkpoint-N.gguf)",
    )
    diff.add_argument(
        "--merge-type",
        metavar="TYPE",
        help="judge the adapter's survival in this type (e.g. Q6_K) instead of BASE's",
    )
    diff.add_argument(
        "--logit-items",
        type=typed(integer(0, 10_000)),
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
        "--ctx",
        type=typed(integer(16, 1 << 22)),
        default=512,
        metavar="N",
        help="training context (default 512)",
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
        type=typed(integer(0, settings.MAX_ITEMS)),
        default=200,
        metavar="N",
        help="eval items to check for overlap (default 200)",
    )
    doc.add_argument("--json", action="store_true", help="print JSON instead of a table")
    doc.set_defaults(handler=_doctor)
