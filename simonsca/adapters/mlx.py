"""MLX adapters (``mlx_lm.lora``): ``adapters.safetensors`` (and ``0000100_adapters.safetensors``
every ``save_every`` steps) beside ``adapter_config.json``.

``LoRALinear`` computes ``y = W x + scale * lora_b.T (lora_a.T x)`` with ``lora_a`` (n_in, rank)
and ``lora_b`` (rank, n_out) -- transposed against PEFT -- and ``scale`` stored as it is in
``lora_parameters.scale`` (no alpha, no division by the rank). DoRA (``fine_tune_type: dora``, an
``m`` magnitude per module) and full fine-tunes are refused; a ``LoRASwitchLinear`` (MoE experts,
3-D ``lora_a``) cannot be expressed as one GGUF LoRA pair and is refused.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from simonsca.adapters.peft import read_config
from simonsca.adapters.safetensors_file import read_safetensors
from simonsca.adapters.source import AdapterFormat, SourceAdapter, SourceUpdate
from simonsca.errors import ModelFileError

CONFIG = "adapter_config.json"
WEIGHTS = "adapters.safetensors"
NUMBERED = re.compile(r"(\d+)_adapters\.safetensors")


def mlx_scale(config: dict[str, Any]) -> float:
    params = config.get("lora_parameters") or {}
    return float(params.get("scale", 20.0))  # mlx_lm's default when the config omits it


def read_mlx(weights: Path, config_path: Path, given: Path) -> SourceAdapter:
    config = read_config(config_path, "MLX adapter")
    kind = str(config.get("fine_tune_type", "dora" if config.get("use_dora") else "lora"))
    if kind != "lora":
        raise ModelFileError(
            f"MLX adapter {given} is a {kind} fine-tune (fine_tune_type={kind!r}): llama.cpp "
            "applies only LoRA; fuse it with mlx_lm.fuse and convert the fused model"
        )
    scale = mlx_scale(config)
    st = read_safetensors(weights, "MLX adapter")
    halves: dict[str, dict[str, Any]] = {}
    other: list[str] = []
    for name, array in st.tensors.items():
        m = re.fullmatch(r"(.+)\.(lora_a|lora_b)", name)
        if m:
            halves.setdefault(m.group(1), {})[m.group(2)] = (name, array)
        else:
            other.append(name)
    magnitudes = [n for n in other if n.endswith(".m")]
    if magnitudes:
        raise ModelFileError(
            f"MLX adapter {given} is DoRA ({magnitudes[0]}): llama.cpp cannot apply DoRA; fuse "
            "it with mlx_lm.fuse and convert the fused model"
        )
    if other:
        raise ModelFileError(
            f"MLX adapter {given} holds tensors that are not LoRA pairs ({', '.join(other[:3])})"
        )
    experts = [
        p["lora_a"][0] for p in halves.values() if "lora_a" in p and p["lora_a"][1].ndim != 2
    ]
    if experts:
        raise ModelFileError(
            f"MLX adapter {given} has LoRAs on MoE experts ({', '.join(experts[:3])}): llama.cpp "
            "applies no per-expert LoRA; fuse it with mlx_lm.fuse and convert the fused model"
        )
    updates = []
    for module, pair in sorted(halves.items()):
        if "lora_a" not in pair or "lora_b" not in pair:
            raise ModelFileError(
                f"MLX adapter {given}: {module} has no {'lora_a' if 'lora_a' not in pair else 'lora_b'}"
            )
        (a_name, a), (_b_name, b) = pair["lora_a"], pair["lora_b"]
        if b.ndim != 2 or a.shape[1] != b.shape[0]:
            raise ModelFileError(
                f"MLX adapter {given}: {a_name} {tuple(a.shape)} and its lora_b "
                f"{tuple(b.shape)} are not a rank-r pair"
            )
        if module.endswith("embed_tokens"):  # LoRAEmbedding: W[x] + scale * lora_a[x] @ lora_b
            updates.append(SourceUpdate(a_name, module, a, b.T.copy(), scale, embedding=True))
        else:
            updates.append(SourceUpdate(a_name, module, a.T.copy(), b.T.copy(), scale))
    return SourceAdapter(
        AdapterFormat.MLX, given, (weights, config_path), tuple(updates), gguf_names=False
    )
