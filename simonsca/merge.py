"""Merge a LoRA adapter into its base GGUF model (what llama.cpp's export-lora does); the
adapter may be in any format :mod:`simonsca.adapters` reads (converted to a GGUF LoRA first).

For each adapter target ``W``: ``W' = deq(W) + scale * B @ A`` (see
:mod:`simonsca.adapters.gguf_lora` for the layout), written as F16 by default -- F32 base tensors
stay F32, like export-lora -- or re-quantised to ``requantize`` where ``gguf.quants`` can. Every
other tensor and every metadata key/value record is copied byte for byte (so the merged file
keeps the base's tokenizer, chat template and ``general.file_type``). The output is written to a
temporary file next to ``out`` and moved into place only when complete.
"""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf.quants import quantize

from simonsca import gguf_file
from simonsca.adapters.gguf_lora import read_adapter
from simonsca.atomic import check_output
from simonsca.errors import ConfigError, ModelFileError
from simonsca.forensics.adapter import MIN_RETAINED, check_fits, tensor_resolution
from simonsca.forensics.resolution import REQUANTIZABLE, can_store, qtype_of


class UpdateErasedWarning(UserWarning):
    """Re-quantising the merged weights rounds away most of the adapter's update."""


def merge_adapter(
    base: str | Path,
    adapter: str | Path,
    out: str | Path,
    requantize: str | GGMLQuantizationType | None = None,
    *,
    adapter_scale: float = 1.0,
    overwrite: bool = False,
    min_retained: float = MIN_RETAINED,
) -> Path:
    """Write ``base`` + adapter to ``out`` and return ``out``.

    ``requantize``: store merged tensors in this type (``"Q8_0"``, ``"Q4_0"``, ... -- types
    ``gguf.quants`` can quantise) instead of F16; warns with :class:`UpdateErasedWarning` when
    that keeps less than ``min_retained`` of a tensor's update.
    Raises AdapterMismatch (adapter does not fit base), ModelFileError, OutputExistsError.
    """
    base_path, adapter_path, out_path = Path(base), Path(adapter), Path(out)
    check_output(out_path, "merged model", (base_path, adapter_path), overwrite=overwrite)
    qtype = None
    if requantize is not None:
        try:
            qtype = qtype_of(requantize)
        except ValueError as exc:
            raise ConfigError(f"requantize: {exc}") from None
        if qtype not in REQUANTIZABLE:
            raise ConfigError(
                f"requantize={qtype.name} is not supported (python gguf can write: "
                + ", ".join(sorted(t.name for t in REQUANTIZABLE))
                + "); merge to F16 and quantise with llama-quantize"
            )
    reader = gguf_file.open_gguf(base_path, "base model")
    from simonsca.adapters import resolve_adapter  # any adapter format -> a GGUF LoRA

    lora = read_adapter(resolve_adapter(adapter_path, base_path).gguf, adapter_scale=adapter_scale)
    targets = check_fits(base_path, reader, lora)
    pairs = {p.target: p for p in lora.pairs}

    out_types: dict[str, GGMLQuantizationType] = {}
    for name, t in targets.items():
        base_type = GGMLQuantizationType(t.tensor_type)
        if qtype is not None:
            n_in = pairs[name].shape[1]
            if not can_store(qtype, n_in):
                raise ConfigError(
                    f"requantize={qtype.name}: tensor {name} rows of {n_in} do not fit its block size"
                )
            out_types[name] = qtype
        elif base_type == GGMLQuantizationType.F32:
            out_types[name] = GGMLQuantizationType.F32
        else:
            out_types[name] = GGMLQuantizationType.F16

    if qtype is not None:
        lost = []
        for name, t in targets.items():
            acc = tensor_resolution(t, pairs[name], qtype)
            if acc.retained is not None and acc.delta_sq > 0 and acc.retained < min_retained:
                lost.append((name, acc.retained))
        if lost:
            warnings.warn(
                f"re-quantising {out_path.name} to {qtype.name} keeps less than {min_retained:.0%} of the "
                f"adapter update in {len(lost)} of {len(targets)} tensors (e.g. {lost[0][0]}: "
                f"{lost[0][1]:.1%} kept); merge to F16 instead",
                UpdateErasedWarning,
                stacklevel=2,
            )

    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        _write(reader, tmp, targets, pairs, out_types)
        os.replace(tmp, out_path)
    except OSError as exc:  # the folder cannot be made, or the file cannot be moved into place
        tmp.unlink(missing_ok=True)
        raise ModelFileError(
            f"cannot write merged model {out_path}: {exc.strerror or exc}"
        ) from None
    except ModelFileError as exc:  # _write names the temporary file; name the user's
        tmp.unlink(missing_ok=True)
        cause = exc.__cause__
        why = getattr(cause, "strerror", None) or cause or exc
        raise ModelFileError(f"cannot write merged model {out_path}: {why}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out_path


def _merged_data(t, pair, out_type: GGMLQuantizationType) -> np.ndarray:
    chunks = []
    for start, stop in gguf_file.row_chunks(t):
        w = gguf_file.dequantize_rows(t, start, stop) + pair.delta_rows(start, stop)
        if out_type == GGMLQuantizationType.F32:
            chunks.append(w.astype(np.float32))
        elif out_type == GGMLQuantizationType.F16:
            chunks.append(w.astype(np.float16))
        else:
            chunks.append(quantize(np.ascontiguousarray(w, dtype=np.float32), out_type))
    return np.concatenate(chunks, axis=0)


def _write(reader: gguf_file.GGUFFile, tmp: Path, targets, pairs, out_types) -> None:
    """Header, the base's key/value records verbatim, new tensor infos, then aligned tensor data."""
    align = reader.alignment
    entries = []  # (name, ne, type, data bytes-like)
    for t in reader.tensors:
        if t.name in targets:
            out_type = out_types[t.name]
            data = _merged_data(t, pairs[t.name], out_type)
            entries.append((t.name, t.shape, out_type, np.ascontiguousarray(data)))
        else:
            entries.append((t.name, t.shape, t.tensor_type, t.data))
    infos = bytearray()
    offset = 0
    for name, ne, qtype, data in entries:
        block, type_size = GGML_QUANT_SIZES[qtype]
        n_bytes = int(np.prod(ne, dtype=np.int64)) // block * type_size
        if n_bytes != data.nbytes:  # pragma: no cover - guards the writer itself
            raise AssertionError(f"{name}: {data.nbytes} bytes for {n_bytes}")
        encoded = name.encode("utf-8")
        infos += struct.pack("<Q", len(encoded)) + encoded
        infos += struct.pack("<I", len(ne)) + struct.pack(f"<{len(ne)}Q", *ne)
        infos += struct.pack("<IQ", int(qtype), offset)
        offset += -(-n_bytes // align) * align
    header = b"GGUF" + struct.pack("<IQQ", 3, len(entries), reader.n_kv)
    try:
        with tmp.open("wb") as out:
            out.write(header)
            out.write(reader.kv_bytes)
            out.write(infos)
            out.write(b"\0" * (-out.tell() % align))
            for _name, _ne, _qtype, data in entries:
                out.write(np.ascontiguousarray(data).tobytes())
                out.write(b"\0" * (-data.nbytes % align))
    except OSError as exc:
        raise ModelFileError(f"cannot write merged model {tmp}: {exc.strerror}") from exc
