"""Hugging Face module names -> GGUF tensor names, and the per-architecture row fix-ups.

The names come from the ``gguf`` package's own tables (``gguf.get_tensor_name_map``) for the
base model's architecture, read from the base GGUF -- the tables ``convert_hf_to_gguf.py`` uses,
so a name maps here exactly when llama.cpp's converter would map it.

llama.cpp's llama-family converters reorder the rows of the q and k projections (rotary halves
interleaved per head: ``LlamaModel.permute`` in convert_hf_to_gguf) and the LoRA converter
applies the same reordering to the update, i.e. to the rows of ``lora_b``. Gemma, Qwen, Phi and
most other architectures store q/k as Hugging Face does and need nothing.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import gguf
import numpy as np

#: general.architecture values whose converter permutes q/k rows (convert_hf_to_gguf.py's
#: LlamaModel and the classes that call LlamaModel.permute or inherit undo_permute = True).
PERMUTES_QK = frozenset(
    {"llama", "arcee", "granite", "granitemoe", "olmo", "arctic", "chameleon", "llada", "deci"}
)
_ARCHES = {name: arch for arch, name in gguf.MODEL_ARCH_NAMES.items()}


@dataclass(frozen=True)
class NameMap:
    architecture: str
    n_blocks: int

    def gguf_name(self, module: str) -> str | None:
        """``blk.0.attn_q.weight`` for ``model.layers.0.self_attn.q_proj`` (leading parts such as
        ``language_model.`` tried off in turn), or None when the architecture has no such tensor."""
        table = _table(self.architecture, self.n_blocks)
        if table is None:
            return None
        parts = module.split(".")
        for start in range(len(parts)):
            rest = ".".join(parts[start:])
            for candidate in (rest, "model." + rest):
                name = table.get_name(candidate)
                if name is not None:
                    return name + ".weight"
        return None


@functools.lru_cache(maxsize=8)
def _table(architecture: str, n_blocks: int) -> gguf.TensorNameMap | None:
    arch = _ARCHES.get(architecture)
    return None if arch is None else gguf.get_tensor_name_map(arch, n_blocks)


def is_expert(module: str) -> bool:
    """A per-expert module of a mixture-of-experts block (llama.cpp stacks experts into one
    3-D tensor and applies no LoRA to a single expert)."""
    return re.search(r"\.(experts|switch_mlp)\.", module + ".") is not None


def permute_rows(b: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """``LlamaModel.permute`` on the rows of ``b``: within each head, the two rotary halves are
    interleaved (row i of the first half, then row i of the second)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    rows = b.shape[0]
    return b.reshape(n_head, 2, rows // n_head // 2, *b.shape[1:]).swapaxes(1, 2).reshape(b.shape)


def qk_kind(target: str) -> str | None:
    """'q' or 'k' for a GGUF attention q/k weight name, else None."""
    if target.endswith(".attn_q.weight"):
        return "q"
    if target.endswith(".attn_k.weight"):
        return "k"
    return None
