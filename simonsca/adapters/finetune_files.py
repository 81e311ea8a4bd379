"""llama.cpp's old ``finetune`` example (the seed's trainer; removed from llama.cpp in 2024):
``lora.bin`` ("ggla" v1) and ``checkpoint-N.gguf`` (``training.type = finetune_lora``).

Both hold, per weight ``W`` (ggml ``ne = [n_in, n_out]``), ``lora_a`` with ``ne = [rank, n_in]``
and ``lora_b`` with ``ne = [rank, n_out]``; training added ``ggml_mul_mat(lora_a, lora_b)`` to W
with no scale (``finetune.cpp``, ``llama_build_lora_finetune_graphs``), which in numpy order is
``dW = B @ A.T`` for the arrays as read (A (n_in, rank), B (n_out, rank)) -- so GGUF's ``lora_a``
is ``A.T`` and ``lora_b`` is ``B``. The token embedding's update has the embedding's own layout
(n_vocab, n_embd) = B @ A.T with B (n_vocab, rank): in GGUF's flipped embedding layout that is
``lora_a = B``, ``lora_b = A``.

``lora.bin`` (``save_as_llama_lora``): u32 magic 0x67676c61, u32 version 1, u32 lora_r, u32
lora_alpha, then per tensor u32 n_dims, u32 name length, u32 ggml type, n_dims u32 ``ne``, the
name, zero padding to a multiple of 32 bytes from the file start, and the data; an absent tensor
is three zero u32s (and padding). llama.cpp's loader of that era scaled every update by
``lora_alpha / lora_r`` (``--lora-alpha``: "resulting LORA scaling is alpha/r"; alpha defaults to
r, so 1). The checkpoint stores no alpha: its update is the unscaled one training used.
Norm-weight LoRAs (rank 1 by default) are left out with a warning: today's llama.cpp applies
LoRA only inside matrix multiplications, never to a norm weight.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from simonsca import gguf_file
from simonsca.adapters.source import (
    AdapterFormat,
    SourceAdapter,
    SourceUpdate,
    max_abs_update,
    warn_dropped,
)
from simonsca.errors import ModelFileError

GGLA_MAGIC = 0x67676C61
GGLA_MAGIC_BYTES = struct.pack("<I", GGLA_MAGIC)  # b"algg" on disk
TRAINING_TYPE = "finetune_lora"
_GGML_F32, _GGML_F16 = 0, 1


def _ggla_tensors(path: Path) -> tuple[int, int, dict[str, np.ndarray]]:
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"cannot read adapter file {path}: {exc.strerror}") from None

    def truncated() -> ModelFileError:
        return ModelFileError(
            f"adapter file {path} (llama.cpp finetune lora.bin) is truncated: {len(blob)} bytes "
            "end inside a tensor; copy it again"
        )

    if len(blob) < 16:
        raise truncated()
    magic, version, rank, alpha = struct.unpack_from("<4I", blob, 0)
    if magic != GGLA_MAGIC:
        raise ModelFileError(f"adapter file {path} is not a llama.cpp finetune lora.bin")
    if version != 1:
        raise ModelFileError(
            f"adapter file {path} is a ggla LoRA of version {version}; only version 1 (llama.cpp's "
            "finetune) is known"
        )
    pos = 16
    tensors: dict[str, np.ndarray] = {}
    while pos < len(blob):
        if pos + 12 > len(blob):
            raise truncated()
        n_dims, name_len, ggml_type = struct.unpack_from("<3I", blob, pos)
        pos += 12
        if n_dims > 4 or name_len > 4096:
            raise ModelFileError(
                f"adapter file {path} has a corrupt tensor header at byte {pos - 12}"
            )
        if pos + 4 * n_dims + name_len > len(blob):
            raise truncated()
        ne = struct.unpack_from(f"<{n_dims}I", blob, pos)
        pos += 4 * n_dims
        name = blob[pos : pos + name_len].decode("utf-8", errors="replace")
        pos += name_len
        pos += (-pos) % 32
        if n_dims == 0 and name_len == 0:
            continue  # an absent tensor
        if ggml_type not in (_GGML_F32, _GGML_F16):
            raise ModelFileError(
                f"adapter file {path}: tensor {name} has ggml type {ggml_type} (want F32 or F16)"
            )
        count = int(np.prod(ne, dtype=np.int64))
        size = count * (4 if ggml_type == _GGML_F32 else 2)
        if pos + size > len(blob):
            raise truncated()
        dtype = "<f4" if ggml_type == _GGML_F32 else "<f2"
        array = np.frombuffer(blob, dtype=dtype, count=count, offset=pos).astype(np.float32)
        tensors[name] = array.reshape(tuple(reversed(ne)))
        pos += size
    return rank, alpha, tensors


def _updates(
    path: Path, tensors: dict[str, np.ndarray], suffixes: tuple[str, str], scale_of_rank: float
) -> tuple[SourceUpdate, ...]:
    """Pairs -> updates; norm LoRAs dropped (with a warning when they hold an update)."""
    a_suffix, b_suffix = suffixes
    targets = sorted({n[: -len(a_suffix)] for n in tensors if n.endswith(a_suffix)})
    stray = [n for n in tensors if not n.endswith((a_suffix, b_suffix))]
    if stray:
        raise ModelFileError(
            f"adapter file {path} has tensors that are not LoRA halves ({', '.join(stray[:3])})"
        )
    updates: list[SourceUpdate] = []
    dropped: list[str] = []
    largest = 0.0
    for target in targets:
        a = tensors.get(target + a_suffix)
        b = tensors.get(target + b_suffix)
        if a is None or b is None:
            raise ModelFileError(f"adapter file {path}: {target} lacks one of its LoRA halves")
        # numpy order of ggml's [rank, n]: (n, rank); a 1-D ne = [rank] (n = 1) reads as (rank,)
        a2, b2 = (x.reshape(1, -1) if x.ndim == 1 else x for x in (a, b))
        if a2.shape[1] != b2.shape[1]:
            raise ModelFileError(
                f"adapter file {path}: {target} halves {a.shape} and {b.shape} differ in rank"
            )
        if target.endswith("_norm.weight"):
            dropped.append(target)
            largest = max(largest, max_abs_update(a2.T, b2, scale_of_rank))
            continue
        if target.endswith("token_embd.weight"):
            updates.append(SourceUpdate(target + a_suffix, target, b2, a2, scale_of_rank, True))
        else:
            updates.append(SourceUpdate(target + a_suffix, target, a2.T.copy(), b2, scale_of_rank))
    if dropped and largest > 0:
        warn_dropped(
            path,
            "norm-weight LoRAs",
            dropped,
            f"largest |dW| {largest:.3g}; llama.cpp applies a LoRA only inside matrix "
            "multiplications, never to a norm weight (its old loader added them to the weights)",
        )
    return tuple(updates)


def read_ggla(path: Path) -> SourceAdapter:
    rank, alpha, tensors = _ggla_tensors(path)
    scale = alpha / rank if rank else 1.0
    updates = _updates(path, tensors, (".loraA", ".loraB"), scale)
    return SourceAdapter(AdapterFormat.GGLA, path, (path,), updates, gguf_names=True)


def is_finetune_checkpoint(reader: gguf_file.GGUFFile) -> bool:
    return reader.value("training.type") == TRAINING_TYPE


def read_finetune_checkpoint(path: Path) -> SourceAdapter:
    reader = gguf_file.open_gguf(path, "adapter")
    if not is_finetune_checkpoint(reader):
        raise ModelFileError(f"adapter file {path} is not a llama.cpp finetune_lora checkpoint")
    tensors = {
        t.name: gguf_file.dequantize_tensor(t)
        for t in reader.tensors
        if t.name.endswith((".lora_a", ".lora_b"))
    }
    updates = _updates(path, tensors, (".lora_a", ".lora_b"), 1.0)
    return SourceAdapter(
        AdapterFormat.FINETUNE_CHECKPOINT,
        path,
        (path,),
        updates,
        gguf_names=True,
        architecture=reader.architecture,
    )
