"""A :class:`SourceAdapter` + the base model -> the tensors and alpha of one GGUF LoRA.

Names are mapped with the base's own architecture tables, q/k ``lora_b`` rows permuted where the
architecture's converter permutes q/k, and every update checked against the base tensor it
targets (a wrong base, or an adapter for another architecture, is one line here, before anything
is written or loaded).

Scales: a GGUF LoRA has one ``adapter.lora.alpha`` and llama.cpp applies ``alpha / rank`` to each
tensor (``1`` when alpha is 0). Each update's own scale (PEFT's alpha/r or rsLoRA's alpha/sqrt(r),
``rank_pattern``/``alpha_pattern``, MLX's stored scale, the old finetune's alpha/r) is an
"effective alpha" ``scale * rank``; the most common one is written as the file's alpha and any
tensor that differs has the ratio multiplied into its ``lora_b``, so ``scale * B @ A`` is kept
exactly for every tensor.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from simonsca.adapters.base_model import BaseModel
from simonsca.adapters.names import PERMUTES_QK, NameMap, is_expert, permute_rows, qk_kind
from simonsca.adapters.source import SourceAdapter, SourceUpdate
from simonsca.errors import AdapterMismatch, ModelFileError


@dataclass(frozen=True)
class GGUFLora:
    """What gets written: ``{base tensor name: (lora_a, lora_b)}`` in llama.cpp's layout."""

    architecture: str
    alpha: float
    pairs: dict[str, tuple[np.ndarray, np.ndarray]]
    baked: tuple[str, ...]  # tensors whose scale went into lora_b


def _target(source: SourceAdapter, update: SourceUpdate, names: NameMap) -> str:
    if source.gguf_names:
        return update.target
    if is_expert(update.target):
        raise ModelFileError(
            f"adapter {source.path} has a LoRA on a mixture-of-experts expert ({update.source}): "
            "llama.cpp applies no LoRA to a single expert; merge the adapter and convert the model"
        )
    name = names.gguf_name(update.target)
    if name is None:
        raise AdapterMismatch(
            f"adapter {source.path} targets {update.target} ({update.source}), which a "
            f"{names.architecture} model has no tensor for (an adapter for another architecture?)"
        )
    return name


def _effective_alpha(update: SourceUpdate) -> float:
    return update.scale * update.rank


def to_gguf_lora(source: SourceAdapter, base: BaseModel, *, scale: float = 1.0) -> GGUFLora:
    """Map, fix up and check every update; ``scale`` multiplies the whole update (0: none)."""
    if source.architecture is not None and source.architecture != base.architecture:
        raise AdapterMismatch(
            f"adapter {source.path} was trained on a {source.architecture} model but base "
            f"{base.path} is {base.architecture}"
        )
    if not source.updates:
        raise ModelFileError(f"adapter {source.path} holds no LoRA tensors")
    names = NameMap(base.architecture, base.n_blocks)
    permute = base.architecture in PERMUTES_QK and not source.gguf_names
    mapped: list[tuple[str, SourceUpdate, np.ndarray, np.ndarray]] = []
    seen: dict[str, str] = {}
    for update in source.updates:
        target = _target(source, update, names)
        if target in seen:
            raise ModelFileError(
                f"adapter {source.path}: {update.source} and {seen[target]} both target {target}"
            )
        seen[target] = update.source
        shape = base.shapes.get(target)
        if shape is None:
            raise AdapterMismatch(
                f"adapter {source.path} targets {target} ({update.source}), which base "
                f"{base.path} does not have (wrong base model?)"
            )
        a, b = update.a, update.b
        rows, cols = (a.shape[0], b.shape[0]) if update.embedding else (b.shape[0], a.shape[1])
        if tuple(shape) != (rows, cols):
            raise AdapterMismatch(
                f"adapter {source.path}: the update for {target} ({update.source}) has shape "
                f"{(rows, cols)} but base {base.path} has {tuple(shape)} (wrong base model?)"
            )
        kind = qk_kind(target) if permute else None
        if kind is not None:
            if base.n_head <= 0 or rows % (2 * (base.n_head if kind == "q" else base.n_head_kv)):
                raise AdapterMismatch(
                    f"base {base.path} has no usable head counts for {target}'s q/k permutation"
                )
            b = permute_rows(b, base.n_head, base.n_head if kind == "q" else base.n_head_kv)
        mapped.append((target, update, a, b))
    alphas = Counter(round(_effective_alpha(u), 6) for _, u, _, _ in mapped)
    alpha = float(alphas.most_common(1)[0][0])
    baked: list[str] = []
    pairs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    order = {name: i for i, name in enumerate(base.shapes)}
    for target, update, a, b in sorted(mapped, key=lambda m: order.get(m[0], 0)):
        wanted = update.scale  # the source's scale for this tensor
        applied = alpha / update.rank if alpha else 1.0  # what llama.cpp will apply
        factor = scale * (wanted / applied if applied else 0.0)
        if not math.isclose(wanted, applied, rel_tol=1e-6):
            baked.append(target)
        if factor != 1.0:
            b = b * np.float32(factor)
        pairs[target] = (np.ascontiguousarray(a, np.float32), np.ascontiguousarray(b, np.float32))
    return GGUFLora(base.architecture, alpha, pairs, tuple(baked))
