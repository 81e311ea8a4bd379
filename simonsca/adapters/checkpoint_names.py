"""Which entries of a training run's folder are named as one step's checkpoint -- by name and
layout alone, so both :mod:`simonsca.adapters.checkpoints` (which lists them) and
:mod:`simonsca.adapters.detect` (which names them when such a folder is passed as the adapter)
can use it: Hugging Face Trainer ``checkpoint-N/`` folders holding an adapter's weights, MLX's
numbered ``0000100_adapters.safetensors``, llama.cpp finetune's ``checkpoint-N.gguf`` /
``lora-N.bin`` (any name ending in ``-N`` or ``_N``; the ``-LATEST`` copies are skipped).
Whether each one really is an adapter is for the caller to judge (with ``detect``).
"""

from __future__ import annotations

import re
from pathlib import Path

from simonsca.adapters import mlx, peft

_TRAINER = re.compile(r"checkpoint-(\d+)")
_NUMBERED_FILE = re.compile(r".*?[-_](\d+)\.(gguf|bin)")


def step_of(entry: Path) -> int | None:
    """The training step ``entry`` is named for; None when it is not named as a checkpoint."""
    if entry.is_dir() and (m := _TRAINER.fullmatch(entry.name)):
        if (entry / peft.WEIGHTS).is_file() or (entry / mlx.WEIGHTS).is_file():
            return int(m.group(1))
    elif entry.is_file():
        m = mlx.NUMBERED.fullmatch(entry.name) or _NUMBERED_FILE.fullmatch(entry.name)
        return int(m.group(1)) if m else None
    return None


def stepped_entries(folder: Path) -> list[tuple[int, Path]]:
    """``(step, entry)`` for every entry directly in ``folder`` named as a checkpoint, by step
    (then name)."""
    found = [(step, e) for e in folder.iterdir() if (step := step_of(e)) is not None]
    return sorted(found, key=lambda se: (se[0], se[1].name))
