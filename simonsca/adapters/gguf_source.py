"""A GGUF LoRA read back as a :class:`SourceAdapter`, so it can be re-scaled (``--scale``) and
checked against a base by the same code as every other format."""

from __future__ import annotations

from pathlib import Path

from simonsca.adapters.gguf_lora import read_adapter
from simonsca.adapters.source import AdapterFormat, SourceAdapter, SourceUpdate


def read_gguf_lora(path: Path) -> SourceAdapter:
    lora = read_adapter(path)
    updates = []
    for pair in lora.pairs:
        embedding = pair.target.endswith("token_embd.weight")
        # LoraPair is dW = scale * u @ v: u = lora_b, v = lora_a (embedding: u = a, v = b.T)
        a, b = (pair.u, pair.v.T) if embedding else (pair.v, pair.u)
        updates.append(SourceUpdate(pair.target, pair.target, a, b, pair.scale, embedding))
    return SourceAdapter(AdapterFormat.GGUF, path, (path,), tuple(updates), True, lora.architecture)
