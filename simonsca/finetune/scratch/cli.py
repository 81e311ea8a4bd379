"""``python -m simonsca.finetune.scratch --out DIR``: items, training, GGUF checkpoints, record.

One command does everything: it writes the untrained model as ``step-000000.gguf`` (whose
vocabulary also tokenises the training items through llama.cpp), streams v5 training items,
trains, checkpoints every ``--checkpoint-every`` steps, and writes ``training_record.json`` (and
``loss.png`` when matplotlib is installed).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gguf import GGMLQuantizationType

from simonsca.finetune.data import TRAIN_SEED_RANGE, ItemFilter, parse_tasks, seeds_summary
from simonsca.finetune.record import library_versions
from simonsca.finetune.scratch.gguf_llama import LlamaShape, char_vocab

SCHEMA = "simonsca.finetune.scratch_record/1"
WEIGHT_TYPES = {
    "f32": GGMLQuantizationType.F32,
    "f16": GGMLQuantizationType.F16,
    "q8_0": GGMLQuantizationType.Q8_0,
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m simonsca.finetune.scratch",
        description="Train a small llama model from scratch on SimonsCA1 items; GGUF checkpoints.",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder (must be empty/new)")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--checkpoint-every", type=int, default=250)
    p.add_argument("--max-minutes", type=float, default=60.0, help="wall-clock cap on training")
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-head-kv", type=int, default=4)
    p.add_argument("--n-ff", type=int, default=384)
    p.add_argument("--n-ctx", type=int, default=2048, help="context length in the GGUF header")
    p.add_argument("--rope-base", type=float, default=10000.0)
    p.add_argument("--min-side", type=int, default=5)
    p.add_argument("--max-side", type=int, default=8)
    p.add_argument("--tasks", default="next,count")
    p.add_argument("--seed-start", type=int, default=100_000)
    p.add_argument("--torch-seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--init-from",
        type=Path,
        help="start from this checkpoint GGUF (its shape overrides --n-*; optimiser state is new)",
    )
    p.add_argument("--weight-type", choices=sorted(WEIGHT_TYPES), default="q8_0")
    return p


def _log(message: str) -> None:
    print(time.strftime("%H:%M:%S"), message, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    import torch

    from simonsca.finetune.scratch.data import LlamaCppTokens, example_stream
    from simonsca.finetune.scratch.train import TrainConfig, build_model, save_checkpoint, train

    started = datetime.now(UTC).isoformat(timespec="seconds")
    t_start = time.time()
    torch.set_num_threads(args.threads)
    out: Path = args.out
    if out.exists() and any(out.iterdir()):
        print(f"{out} is not empty; choose a new --out folder", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    shape = LlamaShape(
        n_embd=args.n_embd,
        n_layer=args.n_layer,
        n_head=args.n_head,
        n_head_kv=args.n_head_kv,
        n_ff=args.n_ff,
        n_ctx=args.n_ctx,
        rope_base=args.rope_base,
    )
    item_filter = ItemFilter(args.min_side, args.max_side, parse_tasks(args.tasks))
    cfg = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay,
        checkpoint_every=args.checkpoint_every,
        max_minutes=args.max_minutes,
        torch_seed=args.torch_seed,
    )
    weight_type = WEIGHT_TYPES[args.weight_type]
    model = build_model(shape, len(char_vocab()[0]), args.torch_seed)
    init_from: dict[str, Any] | None = None
    if args.init_from is not None:
        from simonsca.finetune.scratch.gguf_llama import read_llama_gguf
        from simonsca.finetune.scratch.train import sha256

        shape, weights = read_llama_gguf(args.init_from)
        model = build_model(shape, len(char_vocab()[0]), args.torch_seed)
        model.load_gguf_weights(weights)
        init_from = {"path": str(args.init_from), "sha256": sha256(args.init_from)}
        _log(f"initialised from {args.init_from}")
    n_params = sum(p.numel() for p in model.parameters())
    _log(f"model: {shape} -- {n_params:,} parameters")
    # The vocabulary lives in every checkpoint; tokenise with llama.cpp from a throwaway copy.
    vocab_file = save_checkpoint(model, out, 0, weight_type, t_start)
    tokens = LlamaCppTokens(out / vocab_file.file)
    examples = example_stream(tokens, args.seed_start, item_filter)
    result = train(model, examples, cfg, out, weight_type, log=_log)
    record = build_record(args, shape, n_params, cfg, result, started, t_start, argv)
    record["model"]["init_from"] = init_from
    (out / "training_record.json").write_text(json.dumps(record, indent=1) + "\n")
    try:
        from simonsca.finetune.record import plot_loss

        plot_loss(
            result.loss_curve, out / "loss.png", f"scratch-life {shape.n_layer}x{shape.n_embd}"
        )
    except ImportError:
        _log("matplotlib absent: no loss.png")
    _log(f"done: {len(result.loss_curve)} steps in {result.train_wall_s / 60:.1f} min -> {out}")
    return 0


def build_record(
    args: argparse.Namespace,
    shape: LlamaShape,
    n_params: int,
    cfg: Any,
    result: Any,
    started: str,
    t_start: float,
    argv: list[str] | None,
) -> dict[str, Any]:
    """Everything needed to reproduce and audit the run (see the module docstring)."""
    import platform

    import torch

    argv_list = list(sys.argv[1:] if argv is None else argv)
    tail = result.loss_curve[-10:]
    return {
        "schema": SCHEMA,
        "command": "python -m simonsca.finetune.scratch " + shlex.join(argv_list),
        "argv": argv_list,
        "model": {
            "architecture": "llama (RMSNorm, RoPE normal mode, SwiGLU, untied output)",
            "shape": shape.as_dict(),
            "n_vocab": len(char_vocab()[0]),
            "vocabulary": "SentencePiece-style char vocab: <unk> <s> </s>, 256 bytes, ▁, ASCII 33-126",
            "parameters": n_params,
            "weight_type": args.weight_type,
            "init": "N(0, 0.02); residual outputs / sqrt(2 n_layer); norms 1",
        },
        "checkpoints": [asdict(c) for c in result.checkpoints],
        "data": {
            "generator": "simonsca.dataset.make_item (v5)",
            "seed_range": [TRAIN_SEED_RANGE.start, TRAIN_SEED_RANGE.stop],
            "seed_start": args.seed_start,
            "filter": {"min_side": args.min_side, "max_side": args.max_side, "tasks": args.tasks},
            "tokenizer": "llama.cpp (LlamaCppModel.answer_tokens on the checkpoint's vocab)",
            "target": "BOS + prompt (masked), output + '\\n\\n' (loss)",
            "seeds_summary": seeds_summary(result.seeds),
            "seeds": result.seeds,
        },
        "training": {
            **asdict(cfg),
            "steps_done": len(result.loss_curve),
            "stopped_early": result.stopped_early,
            "optimizer": "AdamW betas (0.9, 0.98), warm-up then cosine to min_lr_ratio * lr",
            "threads": args.threads,
            "device": "cpu",
            "precision": "float32",
            "cpu": platform.processor() or platform.machine(),
            "torch_threads": torch.get_num_threads(),
        },
        "loss_curve": result.loss_curve,
        "step_wall_s": [round(s, 3) for s in result.step_wall_s],
        "final_loss": sum(tail) / max(1, len(tail)),
        "wall_time_s": {"train": result.train_wall_s, "total": time.time() - t_start},
        "versions": library_versions(("torch", "gguf", "numpy", "llama_cpp_python", "simonsca")),
        "started_utc": started,
    }
