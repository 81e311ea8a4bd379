"""The checkpoints a training run's folder holds, in step order, so a sweep can take the folder
as the trainer left it: Hugging Face Trainer ``checkpoint-N/`` folders, MLX's numbered
``0000100_adapters.safetensors``, llama.cpp finetune's ``checkpoint-N.gguf`` / ``lora-N.bin``
(any name ending in ``-N`` or ``_N``; the ``-LATEST`` copies are skipped).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from simonsca.adapters import mlx, peft
from simonsca.errors import ModelFileError

_TRAINER = re.compile(r"checkpoint-(\d+)")
_NUMBERED_FILE = re.compile(r".*?[-_](\d+)\.(gguf|bin)")


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: Path
    format: str


def _kind(path: Path) -> str | None:
    from simonsca.adapters.detect import detect

    try:
        return detect(path).format.value
    except ModelFileError:
        return None


def list_checkpoints(folder: str | Path) -> tuple[Checkpoint, ...]:
    """Every adapter checkpoint directly in ``folder``, by step (then name); files that are
    not adapters (optimizer states, models, logs) are passed over."""
    root = Path(folder)
    if not root.is_dir():
        raise ModelFileError(f"checkpoint folder {root} is not a folder")
    found: list[Checkpoint] = []
    for entry in sorted(root.iterdir()):
        step: int | None = None
        if entry.is_dir() and (m := _TRAINER.fullmatch(entry.name)):
            if (entry / peft.WEIGHTS).is_file() or (entry / mlx.WEIGHTS).is_file():
                step = int(m.group(1))
        elif entry.is_file():
            m = mlx.NUMBERED.fullmatch(entry.name) or _NUMBERED_FILE.fullmatch(entry.name)
            step = int(m.group(1)) if m else None
        if step is None:
            continue
        kind = _kind(entry)
        if kind is not None:
            found.append(Checkpoint(step, entry, kind))
    return tuple(sorted(found, key=lambda c: (c.step, c.path.name)))
