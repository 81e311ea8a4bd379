"""Write a GGUF LoRA the way llama.cpp's ``convert_lora_to_gguf.py`` does: ``general.type =
adapter``, ``adapter.type = lora``, ``adapter.lora.alpha``, ``general.architecture`` from the
base, and ``<base tensor>.lora_a`` / ``.lora_b`` per target (F32). Written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGUFWriter

from simonsca.adapters.convert import GGUFLora
from simonsca.atomic import atomic_path


def write_gguf_lora(lora: GGUFLora, out: Path, *, source: str = "") -> Path:
    with atomic_path(out) as tmp:
        w = GGUFWriter(tmp, lora.architecture)
        w.add_type("adapter")
        w.add_string("adapter.type", "lora")
        w.add_float32("adapter.lora.alpha", float(lora.alpha))
        if source:
            w.add_string("simonsca.adapter.source", source)
        for name, (a, b) in lora.pairs.items():
            w.add_tensor(f"{name}.lora_a", np.ascontiguousarray(a, dtype=np.float32))
            w.add_tensor(f"{name}.lora_b", np.ascontiguousarray(b, dtype=np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    return out
