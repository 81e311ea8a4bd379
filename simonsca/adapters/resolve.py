"""The one adapter resolver: any adapter a trainer writes -> a GGUF LoRA llama.cpp applies.

Called once, when a run is planned (and by ``diff``, ``merge`` and ``convert``); everything after
it handles GGUF only. A GGUF LoRA is used as it is; anything else is converted against the base
model's header and cached by content: the sha256 of the adapter's files, the base's
architecture, head counts and tensor shapes, the scale and this converter's version name the
file under ``$SIMONSCA_CACHE/adapters/``, so a second run (or the other side of a comparison)
reads it back without converting again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from simonsca import gguf_file
from simonsca.adapters import mlx, peft
from simonsca.adapters.base_model import BaseModel, read_base
from simonsca.adapters.convert import to_gguf_lora
from simonsca.adapters.detect import DetectedAdapter, detect
from simonsca.adapters.finetune_files import read_finetune_checkpoint, read_ggla
from simonsca.adapters.mlx import read_mlx
from simonsca.adapters.peft import read_peft
from simonsca.adapters.source import AdapterFormat, SourceAdapter
from simonsca.adapters.write import write_gguf_lora
from simonsca.atomic import check_output

#: Part of every cache key: bump when a conversion's output changes.
CONVERTER_VERSION = 1


@dataclass(frozen=True)
class ResolvedAdapter:
    source: Path  # what the user named
    format: AdapterFormat
    gguf: Path  # the GGUF LoRA llama.cpp applies
    converted: bool


def read_source(found: DetectedAdapter) -> SourceAdapter:
    if found.format == AdapterFormat.PEFT:
        assert found.config is not None
        return read_peft(found.weights, found.config, found.path)
    if found.format == AdapterFormat.MLX:
        assert found.config is not None
        return read_mlx(found.weights, found.config, found.path)
    if found.format == AdapterFormat.GGLA:
        return read_ggla(found.weights)
    if found.format == AdapterFormat.FINETUNE_CHECKPOINT:
        return read_finetune_checkpoint(found.weights)
    raise ValueError(f"{found.format} needs no conversion")


def _files(found: DetectedAdapter) -> tuple[Path, ...]:
    return (found.weights,) + ((found.config,) if found.config is not None else ())


def cache_key(found: DetectedAdapter, base: BaseModel, scale: float) -> str:
    fields = {
        "converter": CONVERTER_VERSION,
        "format": found.format.value,
        "files": [gguf_file.file_sha256(f) for f in _files(found)],
        "base": base.identity(),
        "scale": scale,
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def adapter_cache_dir() -> Path:
    from simonsca.cache import cache_dir

    return cache_dir() / "adapters"


def display_stem(found: DetectedAdapter) -> str:
    """The converted file's name: the user's folder or file, so labels and reports stay
    readable (``peft-run + ... `` rather than a hash)."""
    path = found.path
    if path.is_dir():
        return path.name or "adapter"
    if path.name in (peft.WEIGHTS, mlx.WEIGHTS) or mlx.NUMBERED.fullmatch(path.name):
        return f"{path.parent.name}-{path.stem}" if path.parent.name else path.stem
    return path.stem


def _read_any(found: DetectedAdapter) -> SourceAdapter:
    if found.format == AdapterFormat.GGUF:
        from simonsca.adapters.gguf_source import read_gguf_lora

        return read_gguf_lora(found.weights)
    return read_source(found)


def resolve_adapter(
    adapter: str | Path, base: str | Path | BaseModel, *, scale: float = 1.0
) -> ResolvedAdapter:
    """A GGUF LoRA for ``adapter`` on ``base``: the file itself when it is one (and ``scale`` is
    1), else a converted copy from the cache. One-line errors (ModelFileError, AdapterMismatch)
    for a bad or unfitting adapter, before any model is loaded."""
    found = detect(adapter)
    if found.format == AdapterFormat.GGUF and scale == 1.0:
        return ResolvedAdapter(found.path, found.format, found.weights, converted=False)
    info = base if isinstance(base, BaseModel) else read_base(base)
    out = adapter_cache_dir() / cache_key(found, info, scale)[:32] / f"{display_stem(found)}.gguf"
    if not out.is_file():
        lora = to_gguf_lora(_read_any(found), info, scale=scale)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_gguf_lora(lora, out, source=f"{found.format.value}:{found.path.name}")
    return ResolvedAdapter(found.path, found.format, out, converted=True)


def convert_adapter(
    adapter: str | Path,
    base: str | Path,
    out: str | Path,
    *,
    scale: float = 1.0,
    overwrite: bool = False,
) -> ResolvedAdapter:
    """``simonsca convert``: write the GGUF LoRA for ``adapter`` on ``base`` to ``out``."""
    out_path = Path(out)
    check_output(out_path, "adapter", (Path(adapter), Path(base)), overwrite=overwrite)
    found = detect(adapter)
    lora = to_gguf_lora(_read_any(found), read_base(base), scale=scale)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_gguf_lora(lora, out_path, source=f"{found.format.value}:{found.path.name}")
    return ResolvedAdapter(found.path, found.format, out_path, converted=True)
