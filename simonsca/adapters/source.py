"""What every adapter reader returns: low-rank updates in llama.cpp's layout, before renaming.

A reader (PEFT, MLX, llama.cpp's old ``finetune``) knows its own file; the converter knows the base
model. Between them flows one :class:`SourceAdapter`: each update already transposed into the
GGUF LoRA layout (``lora_a`` (rank, n_in), ``lora_b`` (n_out, rank), ``dW = scale * b @ a``) and
carrying its own scale, so rsLoRA, per-module ranks and alphas, and MLX's stored scale are one
number per tensor by the time the converter sees them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np


class AdapterFormat(StrEnum):
    GGUF = "gguf"  # llama.cpp's own LoRA GGUF: used as it is
    PEFT = "peft"  # Hugging Face PEFT / unsloth / TRL: adapter_model.safetensors
    MLX = "mlx"  # mlx_lm.lora: adapters.safetensors
    GGLA = "ggla"  # llama.cpp's old finetune: lora.bin ("ggla" v1)
    FINETUNE_CHECKPOINT = "finetune-checkpoint"  # llama.cpp's old finetune: checkpoint-N.gguf


@dataclass(frozen=True)
class SourceUpdate:
    """One target's update, in GGUF LoRA layout (the token embedding flipped, as llama.cpp
    stores it: ``a`` (n_vocab, rank), ``b`` (n_embd, rank), ``dW = scale * a @ b.T``)."""

    source: str  # the name in the user's file, for messages
    target: str  # a Hugging Face module path (model.layers.0.self_attn.q_proj) or a GGUF name
    a: np.ndarray
    b: np.ndarray
    scale: float
    embedding: bool = False

    @property
    def rank(self) -> int:
        return int(self.a.shape[1] if self.embedding else self.a.shape[0])


@dataclass(frozen=True)
class SourceAdapter:
    format: AdapterFormat
    path: Path  # the file or folder the user named
    files: tuple[Path, ...]  # every file the conversion reads (hashed for the cache)
    updates: tuple[SourceUpdate, ...]
    gguf_names: bool  # targets are GGUF tensor names already (llama.cpp's own files)
    architecture: str | None = None  # when the file records it


class AdapterDropWarning(UserWarning):
    """Part of an adapter that llama.cpp would not apply anyway was left out of the GGUF."""


def warn_dropped(path: Path, what: str, names: list[str], why: str) -> None:
    shown = ", ".join(names[:3]) + (f" (+{len(names) - 3} more)" if len(names) > 3 else "")
    warnings.warn(
        AdapterDropWarning(f"adapter {path}: left out {len(names)} {what} ({shown}): {why}"),
        stacklevel=3,
    )


def max_abs_update(a: np.ndarray, b: np.ndarray, scale: float) -> float:
    """Largest |scale * b @ a| (formed: only used on the small tensors that are dropped)."""
    if a.size == 0 or b.size == 0:
        return 0.0
    return float(np.max(np.abs(scale * (b.astype(np.float64) @ a.astype(np.float64)))))
