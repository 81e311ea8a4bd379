"""The llama.cpp LoRA GGUF itself: read one (:func:`read_adapter`) into ``dW = scale * U @ V``
pairs, and write one from ``lora_a``/``lora_b`` arrays (:func:`write_lora_gguf`).

Layout (llama.cpp ``src/llama-adapter.cpp``, ``convert_lora_to_gguf.py``): an adapter GGUF has
``general.type = "adapter"``, ``adapter.type = "lora"``, ``adapter.lora.alpha`` and, per target
weight ``W`` (numpy shape ``(n_out, n_in)``), tensors ``<W>.lora_a`` with numpy shape
``(rank, n_in)`` and ``<W>.lora_b`` with numpy shape ``(n_out, rank)``; the applied update is
``dW = scale * B @ A`` with ``scale = alpha / rank`` (``1`` when alpha is 0) times the user's
adapter scale. The token embedding is the exception: llama.cpp stores it "flipped", ``lora_a``
``(n_vocab, rank)`` and ``lora_b`` ``(n_embd, rank)``, and ``dW = scale * A @ B.T``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGUFWriter

from simonsca import gguf_file
from simonsca.errors import ModelFileError


@dataclass(frozen=True)
class LoraPair:
    """One target weight's low-rank update, normalised so that ``dW = scale * U @ V``."""

    target: str  # the base tensor name, e.g. blk.0.attn_q.weight
    u: np.ndarray  # (n_out, rank)
    v: np.ndarray  # (rank, n_in)
    scale: float
    a_type: str
    b_type: str

    @property
    def rank(self) -> int:
        return int(self.u.shape[1])

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.u.shape[0]), int(self.v.shape[1]))

    def delta_rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of ``dW`` as float32."""
        return (
            self.scale * (self.u[start:stop].astype(np.float64) @ self.v.astype(np.float64))
        ).astype(np.float32)

    def delta(self) -> np.ndarray:
        return self.delta_rows(0, self.shape[0])

    def frobenius_norm(self) -> float:
        """||scale * U V||_F without forming the product: sqrt(trace((U'U)(VV')))."""
        u = self.u.astype(np.float64)
        v = self.v.astype(np.float64)
        return float(abs(self.scale) * math.sqrt(max(0.0, float(np.sum((u.T @ u) * (v @ v.T))))))


@dataclass(frozen=True)
class LoraAdapter:
    path: Path
    architecture: str
    alpha: float
    pairs: tuple[LoraPair, ...]
    skipped: tuple[str, ...]  # tensors llama.cpp ignores too (e.g. *_norm.weight)

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(p.target for p in self.pairs)


def read_adapter(path: str | Path, *, adapter_scale: float = 1.0) -> LoraAdapter:
    """Read a llama.cpp LoRA GGUF; ModelFileError when it is not one."""
    p = Path(path)
    reader = gguf_file.open_gguf(p, "adapter")
    gtype = gguf_file.field_value(reader, "general.type")
    atype = gguf_file.field_value(reader, "adapter.type")
    if gtype != "adapter" or atype != "lora":
        raise ModelFileError(
            f"adapter file {p} is not a llama.cpp LoRA adapter (general.type={gtype!r}, adapter.type={atype!r});"
            " convert it with convert_lora_to_gguf.py"
        )
    alpha = float(gguf_file.field_value(reader, "adapter.lora.alpha", 0.0) or 0.0)
    a_tensors: dict[str, object] = {}
    b_tensors: dict[str, object] = {}
    skipped: list[str] = []
    for t in reader.tensors:
        if t.name.endswith(".lora_a"):
            a_tensors[t.name[: -len(".lora_a")]] = t
        elif t.name.endswith(".lora_b"):
            b_tensors[t.name[: -len(".lora_b")]] = t
        elif t.name.endswith("_norm.weight"):
            skipped.append(t.name)
        else:
            raise ModelFileError(
                f"adapter file {p} has tensor {t.name!r} with an unexpected suffix (want .lora_a/.lora_b)"
            )
    pairs = []
    for name in sorted(set(a_tensors) | set(b_tensors)):
        if name not in a_tensors or name not in b_tensors:
            raise ModelFileError(
                f"adapter file {p}: LoRA pair for {name!r} is missing its lora_{'a' if name not in a_tensors else 'b'} tensor"
            )
        ta, tb = a_tensors[name], b_tensors[name]
        a = gguf_file.dequantize_tensor(ta)  # type: ignore[arg-type]
        b = gguf_file.dequantize_tensor(tb)  # type: ignore[arg-type]
        if a.ndim != 2 or b.ndim != 2:
            raise ModelFileError(
                f"adapter file {p}: {name} lora tensors are not 2-D (a {a.shape}, b {b.shape})"
            )
        rank = b.shape[1]
        scale = adapter_scale * (alpha / rank if alpha else 1.0)
        if name.endswith("token_embd.weight"):
            u, v = a, b.T  # flipped layout: A (n_vocab, r), B (n_embd, r)
        else:
            u, v = b, a  # B (n_out, r), A (r, n_in)
        if u.shape[1] != v.shape[0]:
            raise ModelFileError(
                f"adapter file {p}: {name} lora_a {a.shape} and lora_b {b.shape} ranks differ"
                " (lora_a not transposed: adapters from the old finetune example are not supported)"
            )
        pairs.append(
            LoraPair(
                target=name,
                u=np.ascontiguousarray(u, dtype=np.float32),
                v=np.ascontiguousarray(v, dtype=np.float32),
                scale=scale,
                a_type=gguf_file.type_name(ta),  # type: ignore[arg-type]
                b_type=gguf_file.type_name(tb),  # type: ignore[arg-type]
            )
        )
    return LoraAdapter(
        path=p,
        architecture=gguf_file.architecture(reader),
        alpha=alpha,
        pairs=tuple(pairs),
        skipped=tuple(skipped),
    )


def write_lora_gguf(
    path: str | Path,
    architecture: str,
    pairs: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    alpha: float,
    dtype: type = np.float32,
) -> Path:
    """Write a llama.cpp LoRA GGUF from ``{base tensor name: (lora_a, lora_b)}`` in llama.cpp layout.

    ``lora_a`` has numpy shape (rank, n_in), ``lora_b`` (n_out, rank) -- for the token embedding
    the flipped layout (n_vocab, rank) and (n_embd, rank). Used by tests and the fixture script.
    """
    p = Path(path)
    w = GGUFWriter(p, architecture)
    w.add_type("adapter")
    w.add_string("adapter.type", "lora")
    w.add_float32("adapter.lora.alpha", float(alpha))
    for name, (a, b) in pairs.items():
        w.add_tensor(f"{name}.lora_a", np.ascontiguousarray(a, dtype=dtype))
        w.add_tensor(f"{name}.lora_b", np.ascontiguousarray(b, dtype=dtype))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return p
