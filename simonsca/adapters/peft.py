"""Hugging Face PEFT adapters (also what unsloth and TRL save): ``adapter_model.safetensors``
beside ``adapter_config.json``.

Tensors are ``base_model.model.<module>.lora_A.weight`` (rank, n_in) and ``.lora_B.weight``
(n_out, rank); an embedding LoRA is ``lora_embedding_A`` (rank, n_vocab) and ``lora_embedding_B``
(n_embd, rank). PEFT scales each module by ``lora_alpha / r`` (``lora_alpha / sqrt(r)`` with
``use_rslora``), where ``rank_pattern`` and ``alpha_pattern`` override r and alpha per module
(matched, as PEFT matches them, as a dotted suffix of the module's name). DoRA's magnitude vectors
and ``modules_to_save`` copies are whole-weight changes llama.cpp cannot apply: refused.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from simonsca.adapters.safetensors_file import read_safetensors
from simonsca.adapters.source import AdapterFormat, SourceAdapter, SourceUpdate
from simonsca.errors import ModelFileError

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
PICKLE = "adapter_model.bin"
_PREFIX = "base_model.model."


def read_config(path: Path, role: str = "PEFT adapter") -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFileError(f"{role} config not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{role} config {path} is not readable JSON: {exc}") from None
    if not isinstance(config, dict):
        raise ModelFileError(f"{role} config {path} is not a JSON object")
    return config


def _pattern_value(patterns: dict[str, Any], module: str, default: float) -> float:
    """PEFT's rule: a pattern key applies when it is the module's name or a dotted suffix of it
    (a regular expression is allowed)."""
    for key, value in patterns.items():
        if key == module or re.fullmatch(rf"(?:.*\.)?(?:{key})", module):
            return float(value)
    return default


def module_scale(config: dict[str, Any], module: str, rank: int) -> float:
    """PEFT's ``scaling`` for one module: alpha / r, or alpha / sqrt(r) with rsLoRA."""
    alpha = _pattern_value(
        config.get("alpha_pattern") or {}, module, float(config.get("lora_alpha", 8))
    )
    return alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


def read_peft(weights: Path, config_path: Path, given: Path) -> SourceAdapter:
    """Read a PEFT LoRA; ModelFileError (one line) for DoRA, other PEFT types, bad pairs."""
    config = read_config(config_path)
    peft_type = str(config.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        raise ModelFileError(
            f"PEFT adapter {given} is {peft_type}, not LoRA: llama.cpp applies only LoRA adapters"
        )
    st = read_safetensors(weights, "PEFT adapter")
    halves: dict[str, dict[str, Any]] = {}
    dora: list[str] = []
    whole: list[str] = []
    for name, array in st.tensors.items():
        key = name.removeprefix(_PREFIX)
        m = re.fullmatch(r"(.+)\.(lora_A|lora_B)(?:\.[^.]+)?\.weight", key) or re.fullmatch(
            r"(.+)\.(lora_embedding_A|lora_embedding_B)(?:\.[^.]+)?", key
        )
        if m:
            halves.setdefault(m.group(1), {})[m.group(2)] = (name, array)
        elif "lora_magnitude_vector" in key:
            dora.append(name)
        else:
            whole.append(name)
    if dora or config.get("use_dora"):
        raise ModelFileError(
            f"PEFT adapter {given} is DoRA (magnitude vectors such as "
            f"{(dora or ['lora_magnitude_vector'])[0]}): llama.cpp cannot apply DoRA; merge it "
            "into the model with PEFT (merge_and_unload) and convert the merged model"
        )
    if whole:
        raise ModelFileError(
            f"PEFT adapter {given} holds whole weights ({', '.join(whole[:3])}"
            f"{' ...' if len(whole) > 3 else ''}; modules_to_save or trainable tokens): "
            "llama.cpp applies only low-rank updates; merge it with PEFT and convert the model"
        )
    updates = []
    for module, pair in sorted(halves.items()):
        embedding = "lora_embedding_A" in pair or "lora_embedding_B" in pair
        a_key, b_key = (
            ("lora_embedding_A", "lora_embedding_B") if embedding else ("lora_A", "lora_B")
        )
        if a_key not in pair or b_key not in pair:
            missing = a_key if a_key not in pair else b_key
            raise ModelFileError(f"PEFT adapter {given}: {module} has no {missing} tensor")
        (a_name, a), (_b_name, b) = pair[a_key], pair[b_key]
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
            raise ModelFileError(
                f"PEFT adapter {given}: {a_name} {tuple(a.shape)} and its lora_B "
                f"{tuple(b.shape)} are not a rank-r pair"
            )
        rank = int(a.shape[0])
        scale = module_scale(config, module, rank)
        if embedding:  # PEFT: dW (vocab, embd) = scale * (B @ A).T = scale * A.T @ B.T
            updates.append(SourceUpdate(a_name, module, a.T.copy(), b, scale, embedding=True))
        else:
            updates.append(SourceUpdate(a_name, module, a, b, scale))
    return SourceAdapter(
        AdapterFormat.PEFT, given, (weights, config_path), tuple(updates), gguf_names=False
    )
