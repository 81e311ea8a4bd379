"""``simonsca generate`` and ``simonsca prepare``: SimonsCA1 items written to a file."""

from __future__ import annotations

import argparse
from typing import Any

from simonsca import dataset
from simonsca.commands.common import output_file, typed
from simonsca.errors import ConfigError
from simonsca.parsers import integer
from simonsca.settings import EVAL_SEED_END


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
        "--out", required=True, type=output_file, help="file to write (refused if it exists)"
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


def add_parsers(sub: Any) -> None:
    """Register ``generate`` and ``prepare``."""
    count = typed(integer(1, 10_000_000))
    seed = typed(integer(0, EVAL_SEED_END))

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
