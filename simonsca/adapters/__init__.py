"""Every adapter a finetuner holds -> a GGUF LoRA (see :mod:`simonsca.adapters.resolve`).

Formats: llama.cpp GGUF LoRA (used as is), Hugging Face PEFT, MLX (``mlx_lm.lora``), and llama.cpp's
old ``finetune`` files (``lora.bin``, ``checkpoint-N.gguf``); converted with numpy and the
``gguf`` package alone (no torch, no MLX).
"""

from simonsca.adapters.checkpoints import Checkpoint, list_checkpoints
from simonsca.adapters.detect import DetectedAdapter, detect
from simonsca.adapters.resolve import ResolvedAdapter, convert_adapter, resolve_adapter
from simonsca.adapters.source import AdapterDropWarning, AdapterFormat

__all__ = [
    "AdapterDropWarning",
    "AdapterFormat",
    "Checkpoint",
    "DetectedAdapter",
    "ResolvedAdapter",
    "convert_adapter",
    "detect",
    "list_checkpoints",
    "resolve_adapter",
]
