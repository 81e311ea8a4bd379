"""What a conversion needs to know about the base model, read from its GGUF header alone."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from simonsca import gguf_file
from simonsca.errors import ConfigError


@dataclass(frozen=True)
class BaseModel:
    path: Path
    architecture: str
    n_blocks: int
    n_head: int
    n_head_kv: int
    shapes: dict[str, tuple[int, ...]]  # numpy order (rows first)

    def identity(self) -> str:
        """A digest of everything the conversion reads from the base (not its weights)."""
        blob = json.dumps(
            [
                self.architecture,
                self.n_blocks,
                self.n_head,
                self.n_head_kv,
                sorted(self.shapes.items()),
            ]
        )
        return hashlib.sha256(blob.encode()).hexdigest()


def _int(value: object, default: int) -> int:
    if isinstance(value, list):  # per-layer head counts: the first layer's
        value = value[0] if value else default
    return int(value) if isinstance(value, int | float) else default


def read_base(path: str | Path) -> BaseModel:
    p = Path(path)
    reader = gguf_file.open_gguf(p, "base model")
    if reader.is_adapter:
        raise ConfigError(f"base model file {p} is a LoRA adapter, not a model")
    arch = reader.architecture
    n_head = _int(reader.value(f"{arch}.attention.head_count"), 0)
    return BaseModel(
        path=p,
        architecture=arch,
        n_blocks=_int(reader.value(f"{arch}.block_count"), 0),
        n_head=n_head,
        n_head_kv=_int(reader.value(f"{arch}.attention.head_count_kv"), n_head),
        shapes={t.name: gguf_file.tensor_shape(t) for t in reader.tensors},
    )
