"""The ``simonsca`` command: generate | prepare | eval | compare | diff | doctor | merge | runs |
convert | checkpoints.

Each subcommand is a thin shell over a library function. ``eval`` and ``compare`` take every
setting of :mod:`simonsca.settings` (the options ``pytest evals/`` has, by the same names), and
``compare`` exits 1 exactly when a check of :mod:`simonsca.checks` failed -- when ``pytest
evals/`` would fail. A user mistake is one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from simonsca import dataset, options, settings
from simonsca.errors import ConfigError, SimonscaError
from simonsca.parsers import integer

EXIT_FAILED = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the full usage is one ``--help`` away)."""

    def _get_values(self, action: argparse.Action, arg_strings: list[str]) -> Any:
        # Python 3.11's argparse drops the value of `--count=--` and hands the handler an empty
        # list, unchecked by the option's type; say what is missing instead.
        if arg_strings == ["--"] and action.option_strings and action.nargs is None:
            self.error(f"argument {'/'.join(action.option_strings)}: expected one argument")
        return super()._get_values(action, arg_strings)

    def error(self, message: str) -> NoReturn:
        self.exit(
            EXIT_USAGE, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n"
        )


def _typed(parse: Callable[[Any], Any]) -> Callable[[str], Any]:
    def convert(value: str) -> Any:
        try:
            return parse(value)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def _finite(value: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {value!r}")
    return number


def _output_file(value: str) -> Path:
    if not value.strip():
        raise argparse.ArgumentTypeError("expected a file name, got ''")
    path = Path(value)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a folder; give a file name inside it")
    return path


# --------------------------------------------------------------------------- generate, prepare


def _generate(args: argparse.Namespace) -> int:
    if args.split == "train":
        start = 0 if args.seed_start is None else args.seed_start
        items = dataset.v5_items(args.count, seed_start=start)
    else:
        start = dataset.EVAL_SEED_START if args.seed_start is None else args.seed_start
        if args.count is None:
            raise ConfigError("--split eval needs --count N")
        items = dataset.iter_eval_items(args.count, start, dataset.families(args.family))
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
    p.add_argument(
        "--out", required=True, type=_output_file, help="file to write (refused if it exists)"
    )
    p.add_argument(
        "--format",
        choices=dataset.FORMATS,
        default=default_format,
        help="jsonl: instruction/input/output + metadata; v5: llama.cpp finetune "
        "train_data.txt with '<s>' sample starts; mlx: {\"text\": ...} lines "
        f"(default: {default_format})",
    )
    p.add_argument("--force", action="store_true", help="replace --out if it already exists")


# --------------------------------------------------------------------------- eval, compare


def _settings(args: argparse.Namespace) -> settings.Settings:
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


# --------------------------------------------------------------------------- diff, doctor, merge


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


def _convert(args: argparse.Namespace) -> int:
    from simonsca.adapters import convert_adapter

    done = convert_adapter(
        args.adapter, args.base, args.out, scale=args.scale, overwrite=args.force
    )
    print(f"wrote {done.gguf} (from the {done.format.value} adapter {done.source})")
    return 0


def _checkpoints(args: argparse.Namespace) -> int:
    from simonsca.adapters import list_checkpoints

    steps = list_checkpoints(args.folder)
    if not steps:
        raise ConfigError(f"{args.folder} holds no adapter checkpoints")
    for c in steps:
        print(f"{c.step}\t{c.format}\t{c.path}")
    return 0


def _merge(args: argparse.Namespace) -> int:
    from simonsca.merge import merge_adapter

    out = merge_adapter(args.base, args.adapter, args.out, args.requantize, overwrite=args.force)
    print(f"wrote {out}")
    return 0


# --------------------------------------------------------------------------- runs


def _runs_list(args: argparse.Namespace) -> int:
    from simonsca import runs
    from simonsca.runs.views import runs_table

    folder = runs.reports_folder(args.reports_dir)
    listed = runs.newest_first(runs.stored_runs(folder))
    print(runs_table(listed) if listed else f"no stored runs in {folder}")
    return 0


def _runs_compare(args: argparse.Namespace) -> int:
    from simonsca import runs
    from simonsca.runs.views import comparison_text

    folder = runs.reports_folder(args.reports_dir)
    a, b = runs.load_run(args.a, folder), runs.load_run(args.b, folder)
    print(comparison_text(runs.compare_stored(a, b)), end="")
    return 0


def _add_runs_parser(sub: Any) -> None:
    rn = sub.add_parser(
        "runs",
        help="stored runs (reports/): list them, compare two item by item -- no model needed",
        description="Read the runs simonsca compare and simonsca eval stored (report.json in "
        "a folder per run) back, with no model file. A RUN is a run folder, its report.json, "
        "or a run id in the reports folder (latest: the newest).",
    )
    actions = rn.add_subparsers(
        dest="runs_action", required=True, metavar="ACTION", parser_class=_Parser
    )
    reports = {
        "metavar": "DIR",
        "help": "the reports folder (default: [tool.simonsca] reports_dir, else reports/)",
    }
    ls = actions.add_parser(
        "list",
        help="one line per stored run, newest first",
        description="One line per stored run, newest first: run id, date, models, items, "
        "verdict, checks.",
    )
    ls.add_argument("--reports-dir", **reports)
    ls.set_defaults(handler=_runs_list)
    rc = actions.add_parser(
        "compare",
        help="run B against run A on the same items, from their stored scores",
        description="Pair two stored runs item by item and show, per model side both have "
        "(merged, base, ...), B minus A with paired bootstrap CIs: teacher-forced cell "
        "accuracy, answer NLL (signed-rank test), cell accuracy, parse rate. Refused in one "
        "line when the runs' items differ. No model is loaded.",
    )
    rc.add_argument("a", metavar="A", help="the earlier run (folder, report.json or run id)")
    rc.add_argument("b", metavar="B", help="the later run")
    rc.add_argument("--reports-dir", **reports)
    rc.set_defaults(handler=_runs_compare)


# --------------------------------------------------------------------------- the parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="simonsca",
        description="Tell whether an LLM finetune really learned the SimonsCA1 cellular automaton.",
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    count = _typed(integer(1, 10_000_000))
    seed = _typed(integer(0, settings.EVAL_SEED_END))

    gen = sub.add_parser(
        "generate",
        help="write SimonsCA1 puzzles (training items or held-out eval items)",
        description="Write deterministic SimonsCA1 items. --split train uses the seed's v5 "
        "generator (seeds from 0, the very items v5 trained on); --split eval draws held-out "
        f"items from seeds >= {dataset.EVAL_SEED_START}, checked against every v5 grid.",
    )
    gen.add_argument("--split", choices=("train", "eval"), default="train")
    gen.add_argument(
        "--count",
        type=count,
        help="number of items (train default: the seed's 50,000/10 MiB budget)",
    )
    gen.add_argument("--seed-start", type=seed, help="first seed (train: 0, eval: 1000000)")
    gen.add_argument(
        "--family",
        default="v5-small",
        choices=sorted(dataset.PRESETS),
        help="eval family (default: v5-small)",
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

    run_groups: tuple[settings.Group, ...] = ("items", "backend", "checks", "output")
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
        help="base vs merged on the same held-out items: deltas, CIs, tests, verdict, checks",
        description="The same evaluation as `pytest evals/`, with the same options: exit status "
        "0 when every check passes, 1 when one fails (exactly when `pytest evals/` fails), 2 on "
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
        type=_typed(integer(0, 10_000)),
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
        type=_typed(integer(16, 1 << 22)),
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
        type=_typed(integer(0, settings.MAX_ITEMS)),
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
    mrg.add_argument(
        "adapter", metavar="ADAPTER", help="GGUF LoRA, PEFT or MLX folder, lora.bin, checkpoint"
    )
    mrg.add_argument("out", metavar="OUT.gguf", type=_output_file)
    mrg.add_argument("--requantize", metavar="TYPE", help="Q8_0, Q4_0, Q5_0, ... (default F16)")
    mrg.add_argument("--force", action="store_true", help="replace OUT if it exists")
    mrg.set_defaults(handler=_merge)

    cnv = sub.add_parser(
        "convert",
        help="any LoRA adapter (PEFT, MLX, llama.cpp finetune) -> a GGUF LoRA for llama.cpp",
        description="Convert a Hugging Face PEFT folder (adapter_model.safetensors), an MLX "
        "adapter folder or numbered file (mlx_lm.lora), or llama.cpp finetune's lora.bin / "
        "checkpoint-N.gguf into the GGUF LoRA llama.cpp applies, using BASE.gguf's "
        "architecture (tensor names, q/k layout) and checking every shape against it. No torch "
        "needed.",
    )
    cnv.add_argument("adapter", metavar="ADAPTER", help="adapter file or folder")
    cnv.add_argument("out", metavar="OUT.gguf", type=_output_file)
    cnv.add_argument(
        "--base", required=True, metavar="BASE.gguf", help="the base model the adapter applies to"
    )
    cnv.add_argument(
        "--scale",
        type=_typed(_finite),
        default=1.0,
        metavar="S",
        help="multiply the update by S (default 1; 0 writes an adapter that changes nothing)",
    )
    cnv.add_argument("--force", action="store_true", help="replace OUT if it exists")
    cnv.set_defaults(handler=_convert)

    chk = sub.add_parser(
        "checkpoints",
        help="a training run's adapter checkpoints, in step order",
        description="List the checkpoints in a training run's folder as the trainer left it: "
        "Trainer checkpoint-N/ folders, MLX NNNNNNN_adapters.safetensors, llama.cpp finetune "
        "checkpoint-N.gguf / lora-N.bin. One line each: step, format, path.",
    )
    chk.add_argument("folder", metavar="RUN_FOLDER")
    chk.set_defaults(handler=_checkpoints)
    _add_runs_parser(sub)
    return parser


def _one_line(text: object) -> str:
    """A message as one line: a line break inside (a file name can hold one) is shown as ``\\n``."""
    return str(text).replace("\r", "\\r").replace("\n", "\\n")


def _say_warnings(command: str) -> Callable[..., None]:
    """Python warnings (an update erased by re-quantising, ...) as one line each, not the usual
    ``file:line: Category: message`` plus a line of simonsca's source."""

    def show(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        print(f"simonsca {command}: warning: {_one_line(message)}", file=sys.stderr)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _say_warnings(args.command)
            return int(args.handler(args))
    except SimonscaError as error:
        print(f"simonsca {args.command}: error: {_one_line(error)}", file=sys.stderr)
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
            f"simonsca {args.command}: error: {_one_line(error.strerror or error)}"
            f"{_one_line(where)}",
            file=sys.stderr,
        )
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
