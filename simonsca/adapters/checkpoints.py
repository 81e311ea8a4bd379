"""The checkpoints a training run's folder holds, in step order, so a sweep can take the folder
as the trainer left it (which names count: :mod:`simonsca.adapters.checkpoint_names`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from simonsca.adapters.checkpoint_names import stepped_entries
from simonsca.adapters.detect import detect
from simonsca.errors import ModelFileError


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: Path
    format: str


def _kind(path: Path) -> str | None:
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
    return tuple(
        Checkpoint(step, entry, kind)
        for step, entry in stepped_entries(root)
        if (kind := _kind(entry)) is not None
    )
