"""Read a ``.safetensors`` file into numpy without torch, bf16 included.

The format is an 8-byte little-endian header length, a JSON header (``{name: {dtype, shape,
data_offsets}}`` plus an optional ``__metadata__``), then the raw little-endian tensor bytes. The
``safetensors`` package's numpy loader refuses bf16 (numpy has no such type) -- and bf16 is what
most PEFT and MLX adapters are saved in -- so this reader widens bf16 to float32 itself (a bf16
value is the top 16 bits of a float32). Every problem is one :class:`ModelFileError` line naming
the file.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simonsca.errors import ModelFileError

_DTYPES: dict[str, str] = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U8": "u1",
    "BOOL": "?",
}
#: A header larger than this is not a safetensors header (the format caps it at 100 MB).
MAX_HEADER = 100_000_000


@dataclass(frozen=True)
class SafetensorsFile:
    """Every tensor of one file, as float32 arrays (adapters are small: read whole)."""

    path: Path
    tensors: dict[str, np.ndarray]
    metadata: dict[str, str]
    dtypes: dict[str, str]


def looks_like_safetensors(path: Path) -> bool:
    """True when the first bytes are a plausible safetensors header (length, then ``{``)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(9)
    except OSError:
        return False
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= MAX_HEADER and head[8:9] == b"{"


def read_safetensors(path: Path, role: str = "adapter") -> SafetensorsFile:
    """All tensors of ``path`` widened to float32; ModelFileError when it is not whole."""
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"cannot read {role} file {path}: {exc.strerror}") from None
    if len(blob) < 8:
        raise ModelFileError(f"{role} file {path} is truncated ({len(blob)} bytes); copy it again")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > MAX_HEADER or 8 + n > len(blob):
        raise ModelFileError(
            f"{role} file {path} is truncated or not a safetensors file: its header says "
            f"{n} bytes, the file has {len(blob)}"
        )
    try:
        header = json.loads(blob[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(
            f"{role} file {path} has a corrupt safetensors header: {exc}"
        ) from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{role} file {path} has a corrupt safetensors header (not a map)")
    metadata = header.pop("__metadata__", None) or {}
    data = memoryview(blob)[8 + n :]
    tensors: dict[str, np.ndarray] = {}
    dtypes: dict[str, str] = {}
    for name, info in header.items():
        try:
            dtype = str(info["dtype"])
            shape = tuple(int(d) for d in info["shape"])
            start, stop = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise ModelFileError(
                f"{role} file {path} has a corrupt safetensors entry for {name!r}"
            ) from None
        if stop > len(data) or start > stop:
            raise ModelFileError(
                f"{role} file {path} is truncated: tensor {name} needs bytes {start}..{stop} "
                f"of the data, the file holds {len(data)}; copy it again"
            )
        raw = data[start:stop]
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if dtype == "BF16":
            if len(raw) != 2 * count:
                raise ModelFileError(f"{role} file {path}: tensor {name} has the wrong byte size")
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            array = bits.view(np.float32)
        elif dtype in _DTYPES:
            np_type = np.dtype(_DTYPES[dtype])
            if len(raw) != np_type.itemsize * count:
                raise ModelFileError(f"{role} file {path}: tensor {name} has the wrong byte size")
            array = np.frombuffer(raw, dtype=np_type).astype(np.float32)
        else:
            raise ModelFileError(
                f"{role} file {path}: tensor {name} has dtype {dtype}, which simonsca cannot "
                "read (want F32, F16 or BF16)"
            )
        tensors[name] = array.reshape(shape)
        dtypes[name] = dtype
    return SafetensorsFile(path, tensors, {str(k): str(v) for k, v in metadata.items()}, dtypes)
