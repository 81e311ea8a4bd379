"""``simonsca merge``, ``simonsca convert`` and ``simonsca checkpoints``: adapter files."""

from __future__ import annotations

import argparse
from typing import Any

from simonsca.commands.common import finite, output_file, typed
from simonsca.errors import ConfigError


def _merge(args: argparse.Namespace) -> int:
    from simonsca.merge import merge_adapter

    out = merge_adapter(args.base, args.adapter, args.out, args.requantize, overwrite=args.force)
    print(f"wrote {out}")
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


def add_parsers(sub: Any) -> None:
    """Register ``merge``, ``convert`` and ``checkpoints``."""
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
    mrg.add_argument("out", metavar="OUT.gguf", type=output_file)
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
    cnv.add_argument("out", metavar="OUT.gguf", type=output_file)
    cnv.add_argument(
        "--base", required=True, metavar="BASE.gguf", help="the base model the adapter applies to"
    )
    cnv.add_argument(
        "--scale",
        type=typed(finite),
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
