"""Which kind of adapter a path holds, judged from its content (magic bytes, tensor names, the
config beside it) -- not from its name alone, since ``lora.bin`` may be a torch pickle and
``adapter.gguf`` a finetune checkpoint.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from simonsca import gguf_file
from simonsca.adapters import mlx, peft
from simonsca.adapters.checkpoint_names import stepped_entries
from simonsca.adapters.finetune_files import GGLA_MAGIC_BYTES, is_finetune_checkpoint
from simonsca.adapters.safetensors_file import MAX_HEADER, looks_like_safetensors
from simonsca.adapters.source import AdapterFormat
from simonsca.errors import ModelFileError

_PICKLE_OR_ZIP = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


@dataclass(frozen=True)
class DetectedAdapter:
    format: AdapterFormat
    path: Path  # what the user named
    weights: Path  # the file holding the tensors
    config: Path | None = None  # adapter_config.json for PEFT and MLX


def _safetensors_keys(path: Path) -> list[str]:
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise ModelFileError(f"adapter file {path} is truncated ({size} bytes); copy it again")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER:
            return []
        if 8 + n > size:
            raise ModelFileError(
                f"adapter file {path} is truncated: its safetensors header needs {8 + n} bytes, "
                f"the file has {size}; copy it again"
            )
        try:
            header = json.loads(fh.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ModelFileError(f"adapter file {path} has a corrupt safetensors header") from None
    return [k for k in header if k != "__metadata__"] if isinstance(header, dict) else []


def _safetensors_kind(path: Path, given: Path) -> DetectedAdapter:
    keys = _safetensors_keys(path)
    config = path.parent / peft.CONFIG
    if any(".lora_A." in k or ".lora_B." in k or "lora_embedding_" in k for k in keys):
        fmt = AdapterFormat.PEFT
    elif any(k.endswith((".lora_a", ".lora_b")) for k in keys):
        fmt = AdapterFormat.MLX
    else:
        shown = ", ".join(keys[:3]) or "no tensors"
        raise ModelFileError(
            f"adapter file {path} is a safetensors file without LoRA tensors ({shown}); "
            "pass the adapter (PEFT adapter_model.safetensors or MLX adapters.safetensors)"
        )
    if not config.is_file():
        what = "lora_alpha and r" if fmt == AdapterFormat.PEFT else "lora_parameters.scale"
        raise ModelFileError(
            f"{fmt.value.upper()} adapter {path} needs its adapter_config.json beside it "
            f"(for {what}); none in {path.parent}"
        )
    return DetectedAdapter(fmt, given, path, config)


def _file_kind(path: Path, given: Path) -> DetectedAdapter:
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise ModelFileError(f"cannot read adapter file {path}: {exc.strerror}") from None
    if not head:
        raise ModelFileError(f"adapter file {path} is empty (0 bytes); copy it again")
    if head[:4] == gguf_file.GGUF_MAGIC:
        reader = gguf_file.open_gguf(path, "adapter")
        if is_finetune_checkpoint(reader):
            return DetectedAdapter(AdapterFormat.FINETUNE_CHECKPOINT, given, path)
        if reader.is_adapter:
            return DetectedAdapter(AdapterFormat.GGUF, given, path)
        raise ModelFileError(
            f"adapter file {path} is a GGUF model, not a llama.cpp LoRA adapter (general.type="
            f"{reader.value('general.type')!r}); pass a model as --base-model/--merged-model"
        )
    if head[:4] == GGLA_MAGIC_BYTES:
        return DetectedAdapter(AdapterFormat.GGLA, given, path)
    if looks_like_safetensors(path):
        return _safetensors_kind(path, given)
    if head.startswith(_PICKLE_OR_ZIP):
        raise ModelFileError(
            f"adapter file {path} is a torch pickle, which simonsca does not read (it could run "
            "code); save the adapter with safetensors (save_pretrained(safe_serialization=True))"
        )
    if len(head) < 8 and (GGLA_MAGIC_BYTES.startswith(head) or b"GGUF".startswith(head)):
        raise ModelFileError(f"adapter file {path} is truncated ({len(head)} bytes); copy it again")
    raise ModelFileError(
        f"adapter file {path} is not an adapter simonsca knows (starts with {head[:4]!r}): want a "
        "GGUF LoRA, a PEFT or MLX adapter folder, or llama.cpp finetune's lora.bin / checkpoint"
    )


def _folder_kind(folder: Path) -> DetectedAdapter:
    peft_weights = folder / peft.WEIGHTS
    mlx_weights = folder / mlx.WEIGHTS
    if peft_weights.is_file():
        return _safetensors_kind(peft_weights, folder)
    if mlx_weights.is_file():
        return _safetensors_kind(mlx_weights, folder)
    if (folder / peft.PICKLE).is_file():
        raise ModelFileError(
            f"PEFT adapter {folder} is saved as adapter_model.bin (a torch pickle, which simonsca "
            "does not read); save it with safetensors (save_pretrained(safe_serialization=True))"
        )
    steps = [(step, entry) for step, entry in stepped_entries(folder) if _is_adapter(entry)]
    if steps:
        listed = ", ".join(str(s) for s, _ in steps[:8]) + (" ..." if len(steps) > 8 else "")
        raise ModelFileError(
            f"adapter folder {folder} is a training run with checkpoints at steps {listed}; "
            f"pass one of them (e.g. {steps[-1][1]})"
        )
    raise ModelFileError(
        f"adapter folder {folder} holds no adapter: want adapter_model.safetensors + "
        "adapter_config.json (PEFT), adapters.safetensors + adapter_config.json (MLX), or pass "
        "the adapter file itself (.gguf, lora.bin)"
    )


def _is_adapter(entry: Path) -> bool:
    try:
        detect(entry)
    except ModelFileError:
        return False
    return True


def detect(path: str | Path) -> DetectedAdapter:
    """The adapter's format and files; ModelFileError (one line) when it is none we know."""
    p = Path(path)
    try:
        p.stat()
    except FileNotFoundError:
        raise ModelFileError(f"adapter not found: {p}") from None
    except OSError as exc:
        raise ModelFileError(f"cannot read adapter {p}: {exc.strerror}") from None
    if p.is_dir():
        return _folder_kind(p)
    if not p.is_file():
        raise ModelFileError(f"adapter {p} is not a regular file or folder")
    return _file_kind(p, p)
