"""Reading GGUF files fast: open with a one-line error, metadata, shapes, chunked dequantise.

Shapes are given in numpy order (rows first): a weight with ggml ``ne = [n_in, n_out]`` has
shape ``(n_out, n_in)`` here, which is also how llama.cpp's LoRA maths reads in numpy.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf.quants import dequantize

from simonsca.errors import ModelFileError

#: Rows dequantised at once: bounds memory on large tensors (Gemma's 262144-row embedding).
CHUNK_ELEMENTS = 1 << 22


_SCALAR = {  # GGUFValueType -> (struct format, size)
    0: ("<B", 1),
    1: ("<b", 1),
    2: ("<H", 2),
    3: ("<h", 2),
    4: ("<I", 4),
    5: ("<i", 4),
    6: ("<f", 4),
    7: ("<?", 1),
    10: ("<Q", 8),
    11: ("<q", 8),
    12: ("<d", 8),
}
_NP = {
    0: "<u1",
    1: "<i1",
    2: "<u2",
    3: "<i2",
    4: "<u4",
    5: "<i4",
    6: "<f4",
    7: "<u1",
    10: "<u8",
    11: "<i8",
    12: "<f8",
}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class GGUFTensor:
    """One tensor of a :class:`GGUFFile` (attribute names as in ``gguf.GGUFReader``)."""

    name: str
    shape: tuple[int, ...]  # ggml order (ne[0] first)
    tensor_type: GGMLQuantizationType
    offset: int  # absolute file offset of the data
    n_bytes: int
    data: np.ndarray  # uint8 view of the stored bytes, shape (*rows, bytes_per_row)
    path: Path | None = None  # the file it was read from (for error messages)


@dataclass(frozen=True)
class MetadataEntry:
    key: str
    vtype: int  # GGUFValueType of the value (ARRAY for arrays)
    raw: bytes  # the value's bytes exactly as stored (type tag excluded)
    span: tuple[int, int]  # file offsets of the whole key/value record


class GGUFFile:
    """A fast, read-only GGUF (v2/v3, little-endian) parser over a memory map.

    ``gguf.GGUFReader`` builds Python objects for every vocabulary entry (~18 s for Gemma's 262k
    tokens on a busy machine); this one skips string arrays with a tight loop and decodes a
    metadata value only when asked, so opening a model takes well under a second.
    """

    def __init__(self, path: Path, role: str) -> None:
        self.path = path
        self.role = role
        self.mm = np.memmap(path, dtype=np.uint8, mode="r")
        buf = self.mm
        self._buf = buf
        if len(buf) < 24:
            raise ValueError("file too short for a GGUF header")
        version, n_tensors, n_kv = struct.unpack_from("<IQQ", buf, 4)
        if version not in (2, 3):
            raise ValueError(f"unsupported GGUF version {version} (big-endian or too new?)")
        self.version = version
        pos = 24
        self.metadata: dict[str, MetadataEntry] = {}
        kv_start = pos
        for _ in range(n_kv):
            rec = pos
            key, pos = self._string(pos)
            (vtype,) = struct.unpack_from("<I", buf, pos)
            pos += 4
            vstart = pos
            pos = self._skip_value(vtype, pos)
            self.metadata[key] = MetadataEntry(key, vtype, bytes(buf[vstart:pos]), (rec, pos))
        self.kv_bytes = bytes(buf[kv_start:pos])  # every key/value record, verbatim
        infos = []
        for _ in range(n_tensors):
            name, pos = self._string(pos)
            (n_dims,) = struct.unpack_from("<I", buf, pos)
            pos += 4
            dims = struct.unpack_from(f"<{n_dims}Q", buf, pos)
            pos += 8 * n_dims
            ttype, offset = struct.unpack_from("<IQ", buf, pos)
            pos += 12
            infos.append((name, tuple(int(d) for d in dims), ttype, offset))
        self.alignment = int(self.value("general.alignment", 32) or 32)
        self.data_offset = -(-pos // self.alignment) * self.alignment
        self.tensors: list[GGUFTensor] = []
        for name, dims, ttype, offset in infos:
            qtype = GGMLQuantizationType(ttype)
            block, type_size = GGML_QUANT_SIZES[qtype]
            n_el = int(np.prod(dims, dtype=np.int64)) if dims else 1
            n_bytes = n_el // block * type_size
            start = self.data_offset + offset
            if start + n_bytes > len(buf):
                raise ValueError(f"tensor {name} data lies beyond the end of the file")
            row_bytes = dims[0] // block * type_size
            rows = tuple(reversed(dims[1:]))
            data = (
                buf[start : start + n_bytes].reshape(*rows, row_bytes)
                if rows
                else buf[start : start + n_bytes]
            )
            self.tensors.append(GGUFTensor(name, dims, qtype, start, n_bytes, data, path))

    def _string(self, pos: int) -> tuple[str, int]:
        (n,) = struct.unpack_from("<Q", self._buf, pos)
        pos += 8
        return bytes(self._buf[pos : pos + n]).decode("utf-8", errors="replace"), pos + n

    def _skip_value(self, vtype: int, pos: int) -> int:
        if vtype in _SCALAR:
            return pos + _SCALAR[vtype][1]
        if vtype == _STRING:
            (n,) = struct.unpack_from("<Q", self._buf, pos)
            return pos + 8 + n
        if vtype == _ARRAY:
            etype, count = struct.unpack_from("<IQ", self._buf, pos)
            pos += 12
            if etype in _SCALAR:
                return pos + count * _SCALAR[etype][1]
            if etype == _STRING:
                unpack = struct.Struct("<Q").unpack_from
                buf = self._buf
                for _ in range(count):
                    pos += 8 + unpack(buf, pos)[0]
                return pos
            for _ in range(count):
                pos = self._skip_value(etype, pos)
            return pos
        raise ValueError(f"unknown metadata value type {vtype}")

    def _decode(self, vtype: int, raw: bytes, pos: int = 0) -> tuple[Any, int]:
        if vtype in _SCALAR:
            fmt, size = _SCALAR[vtype]
            return struct.unpack_from(fmt, raw, pos)[0], pos + size
        if vtype == _STRING:
            (n,) = struct.unpack_from("<Q", raw, pos)
            return raw[pos + 8 : pos + 8 + n].decode("utf-8", errors="replace"), pos + 8 + n
        etype, count = struct.unpack_from("<IQ", raw, pos)
        pos += 12
        if etype in _NP:
            arr = np.frombuffer(raw, dtype=_NP[etype], count=count, offset=pos)
            return arr.astype(bool).tolist() if etype == 7 else arr.tolist(), pos + count * _SCALAR[
                etype
            ][1]
        out = []
        for _ in range(count):
            v, pos = self._decode(etype, raw, pos)
            out.append(v)
        return out, pos

    def value(self, key: str, default: Any = None) -> Any:
        """A metadata value decoded to Python (str, number, bool, list), or ``default``."""
        entry = self.metadata.get(key)
        if entry is None:
            return default
        return self._decode(entry.vtype, entry.raw)[0]

    @property
    def n_kv(self) -> int:
        return len(self.metadata)


def open_gguf(path: str | Path, role: str = "model") -> GGUFFile:
    """Open a GGUF file for reading; ModelFileError (naming the file) when it cannot be read."""
    p = Path(path)
    if not p.exists():
        raise ModelFileError(f"{role} file not found: {p}")
    if not p.is_file():
        raise ModelFileError(f"{role} path is not a file: {p}")
    try:
        with p.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ModelFileError(f"cannot read {role} file {p}: {exc.strerror}") from exc
    if magic != b"GGUF":
        raise ModelFileError(
            f"{role} file {p} is not a GGUF file (magic {magic!r}); convert it to GGUF first"
        )
    try:
        return GGUFFile(p, role)
    except (ValueError, struct.error, IndexError, UnicodeDecodeError, OverflowError) as exc:
        raise ModelFileError(f"{role} file {p} is truncated or corrupt: {exc}") from exc


def field_value(reader: GGUFFile, key: str, default: Any = None) -> Any:
    """A metadata value (str, number, bool or list), or ``default`` when the key is absent."""
    return reader.value(key, default)


def architecture(reader: GGUFFile) -> str:
    return str(field_value(reader, "general.architecture", "unknown"))


def tensor_shape(t: GGUFTensor) -> tuple[int, ...]:
    """Numpy-order shape (rows first), trailing size-1 ggml dims dropped."""
    ne = [int(x) for x in t.shape]
    while len(ne) > 1 and ne[-1] == 1:
        ne.pop()
    return tuple(reversed(ne))


def type_name(t: GGUFTensor) -> str:
    return GGMLQuantizationType(t.tensor_type).name


def raw_rows(t: GGUFTensor) -> np.ndarray:
    """The tensor's stored data as a 2-D array of rows (bytes for quantised types)."""
    data = np.asarray(t.data)
    if data.ndim < 2:
        return data.reshape(1, -1)
    return data.reshape(-1, data.shape[-1])


def raw_bytes(t: GGUFTensor) -> np.ndarray:
    """The stored bytes, flat uint8 (a view of the memory map; no copy)."""
    return np.asarray(t.data).reshape(-1).view(np.uint8)


def dequantize_rows(t: GGUFTensor, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of the tensor as float32, in numpy shape ``(stop-start, n_in)``."""
    rows = raw_rows(t)[start:stop]
    try:
        out = dequantize(np.ascontiguousarray(rows), GGMLQuantizationType(t.tensor_type))
    except NotImplementedError:
        where = f" in {t.path}" if getattr(t, "path", None) else ""
        raise ModelFileError(
            f"tensor {t.name}{where} is stored as {type_name(t)}, which gguf-py cannot dequantise; "
            "convert the model to a common type (F16, Q8_0, K-quants) first"
        ) from None
    return np.asarray(out, dtype=np.float32).reshape(stop - start, -1)


def row_chunks(t: GGUFTensor, chunk_elements: int = CHUNK_ELEMENTS) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` row ranges that keep each dequantised chunk near ``chunk_elements``."""
    shape = tensor_shape(t)
    n_rows = raw_rows(t).shape[0]
    n_in = int(np.prod(shape)) // max(n_rows, 1)
    step = max(1, chunk_elements // max(n_in, 1))
    for start in range(0, n_rows, step):
        yield start, min(n_rows, start + step)


def n_rows(t: GGUFTensor) -> int:
    return int(raw_rows(t).shape[0])


def dequantize_tensor(t: GGUFTensor) -> np.ndarray:
    """The whole tensor as float32 in numpy shape (use only on tensors that fit in memory)."""
    return dequantize_rows(t, 0, n_rows(t)).reshape(tensor_shape(t))
