"""The one place that reads GGUF files: header and metadata, the truncation check, hashing.

Models, adapters, merge, diff and the finetune record all open files through here, so a bad file
gets the same one-line error (naming the file and the role it plays) wherever it turns up, before
llama.cpp sees it (llama.cpp answers a bad file with a crash or a screen of log lines).

Shapes are given in numpy order (rows first): a weight with ggml ``ne = [n_in, n_out]`` has
shape ``(n_out, n_in)`` here, which is also how llama.cpp's LoRA maths reads in numpy.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf.quants import dequantize

from simonsca.errors import ModelFileError

GGUF_MAGIC = b"GGUF"

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


class _Truncated(Exception):
    """The header runs past the end of the file."""


class GGUFFile:
    """A fast, read-only GGUF (v2/v3, little-endian) parser over a memory map.

    ``gguf.GGUFReader`` builds Python objects for every vocabulary entry (~18 s for Gemma's 262k
    tokens on a busy machine); this one skips string arrays with a tight loop and decodes a
    metadata value only when asked, so opening a model takes well under a second. Tensor data is
    not read: each tensor is a view of the memory map. Use :func:`open_gguf`, which turns every
    problem into a :class:`~simonsca.errors.ModelFileError`.
    """

    def __init__(self, path: Path, role: str) -> None:
        self.path = path
        self.role = role
        self.mm = np.memmap(path, dtype=np.uint8, mode="r")
        buf = self.mm
        self._buf = buf.data  # a memoryview of the map: what struct reads from
        self.size = len(buf)
        version = self._unpack("<I", 4)[0]
        if version not in (2, 3):
            raise ModelFileError(
                f"{role} file {path} has GGUF version {version}; only versions 2 and 3 are "
                "supported (re-convert it with a current llama.cpp)"
            )
        self.version = version
        n_tensors, n_kv = self._unpack("<QQ", 8)
        pos = 24
        self.metadata: dict[str, MetadataEntry] = {}
        kv_start = pos
        for _ in range(n_kv):
            rec = pos
            key, pos = self._string(pos)
            (vtype,) = self._unpack("<I", pos)
            pos += 4
            vstart = pos
            pos = self._skip_value(vtype, pos)
            self.metadata[key] = MetadataEntry(key, vtype, bytes(buf[vstart:pos]), (rec, pos))
        self.kv_bytes = bytes(buf[kv_start:pos])  # every key/value record, verbatim
        infos = []
        for _ in range(n_tensors):
            name, pos = self._string(pos)
            (n_dims,) = self._unpack("<I", pos)
            pos += 4
            dims = self._unpack(f"<{n_dims}Q", pos)
            pos += 8 * n_dims
            ttype, offset = self._unpack("<IQ", pos)
            pos += 12
            infos.append((name, tuple(int(d) for d in dims), ttype, offset))
        self.alignment = int(self.value("general.alignment", 32) or 32)
        self.data_offset = -(-pos // self.alignment) * self.alignment
        self.header_end = pos
        self.tensors: list[GGUFTensor] = []
        needed = pos
        for name, dims, ttype, offset in infos:
            try:
                qtype = GGMLQuantizationType(ttype)
            except ValueError:
                raise ValueError(f"tensor {name} has unknown type {ttype}") from None
            block, type_size = GGML_QUANT_SIZES[qtype]
            n_el = int(np.prod(dims, dtype=np.int64)) if dims else 1
            n_bytes = n_el // block * type_size
            start = self.data_offset + offset
            needed = max(needed, start + n_bytes)
            if start + n_bytes > self.size:
                continue
            row_bytes = dims[0] // block * type_size
            rows = tuple(reversed(dims[1:]))
            data = (
                buf[start : start + n_bytes].reshape(*rows, row_bytes)
                if rows
                else buf[start : start + n_bytes]
            )
            self.tensors.append(GGUFTensor(name, dims, qtype, start, n_bytes, data, path))
        if needed > self.size:
            raise ModelFileError(
                f"{role} file {path} is truncated: {self.size} bytes, but its tensors need "
                f"{needed}; the download or copy is incomplete"
            )

    def _unpack(self, fmt: str, pos: int) -> tuple[Any, ...]:
        if pos + struct.calcsize(fmt) > self.size:
            raise _Truncated
        return struct.unpack_from(fmt, self._buf, pos)

    def _string(self, pos: int) -> tuple[str, int]:
        (n,) = self._unpack("<Q", pos)
        pos += 8
        if pos + n > self.size:
            raise _Truncated
        return bytes(self._buf[pos : pos + n]).decode("utf-8", errors="replace"), pos + n

    def _skip_value(self, vtype: int, pos: int) -> int:
        if vtype in _SCALAR:
            end = pos + _SCALAR[vtype][1]
        elif vtype == _STRING:
            end = pos + 8 + self._unpack("<Q", pos)[0]
        elif vtype == _ARRAY:
            etype, count = self._unpack("<IQ", pos)
            pos += 12
            if etype in _SCALAR:
                end = pos + count * _SCALAR[etype][1]
            elif etype == _STRING:  # a vocabulary: the hot loop of opening a model
                unpack = struct.Struct("<Q").unpack_from
                buf, size = self._buf, self.size
                for _ in range(count):
                    if pos + 8 > size:
                        raise _Truncated
                    pos += 8 + unpack(buf, pos)[0]
                end = pos
            else:
                for _ in range(count):
                    pos = self._skip_value(etype, pos)
                end = pos
        else:
            raise ValueError(f"unknown metadata value type {vtype}")
        if end > self.size:
            raise _Truncated
        return end

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
            values = arr.astype(bool).tolist() if etype == 7 else arr.tolist()
            return values, pos + count * _SCALAR[etype][1]
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

    @property
    def architecture(self) -> str:
        return str(self.value("general.architecture", "unknown"))

    @property
    def context_length(self) -> int | None:
        """The context the model was trained with (``<arch>.context_length``), if recorded."""
        value = self.value(f"{self.architecture}.context_length")
        return int(value) if isinstance(value, int) else None

    @property
    def chat_template(self) -> str | None:
        value = self.value("tokenizer.chat_template")
        return value if isinstance(value, str) and value else None

    @property
    def is_adapter(self) -> bool:
        return self.value("general.type") == "adapter"


def open_gguf(path: str | os.PathLike[str], role: str = "model") -> GGUFFile:
    """Open a GGUF file; :class:`ModelFileError` (one line naming the file and its role) when it
    is missing, not a regular file, empty, not GGUF, of an unknown version, or truncated."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ModelFileError(f"{role} file not found: {p}") from None
    except OSError as exc:
        raise ModelFileError(f"cannot read {role} file {p}: {exc.strerror}") from None
    if p.is_dir():
        raise ModelFileError(f"{role} file {p} is a directory, not a .gguf file")
    if not p.is_file():
        raise ModelFileError(f"{role} file {p} is not a regular file; pass the .gguf file itself")
    try:
        with p.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ModelFileError(f"cannot read {role} file {p}: {exc.strerror}") from None
    if magic != GGUF_MAGIC:
        if not magic:
            raise ModelFileError(f"{role} file {p} is empty (0 bytes); copy it again")
        if len(magic) < 4 and GGUF_MAGIC.startswith(magic):
            raise ModelFileError(
                f"{role} file {p} is truncated ({st.st_size} bytes); copy it again"
            )
        raise ModelFileError(
            f"{role} file {p} is not a GGUF file (starts with {magic!r}, expected b'GGUF'); "
            "convert it with llama.cpp's convert_hf_to_gguf.py"
        )
    try:
        return GGUFFile(p, role)
    except _Truncated:
        raise ModelFileError(
            f"{role} file {p} is truncated: its header runs past the end of the file "
            f"({st.st_size} bytes); the download or copy is incomplete"
        ) from None
    except (ValueError, struct.error, IndexError, UnicodeDecodeError, OverflowError) as exc:
        raise ModelFileError(f"{role} file {p} has a corrupt GGUF header: {exc}") from None


def check_gguf(path: str | os.PathLike[str], role: str = "model") -> Path:
    """Raise :class:`ModelFileError` unless ``path`` is a whole GGUF file; return it."""
    open_gguf(path, role)
    return Path(path)


def _dims2(t: GGUFTensor) -> list[int]:
    """The first two ggml dimensions (ne[0], ne[1]) of a tensor, 1 where absent."""
    return [int(d) for d in (list(t.shape) + [1, 1])[:2]]


def adapter_fit_problem(model: GGUFFile, adapter: GGUFFile) -> str | None:
    """Why a LoRA adapter cannot apply to a model, judged from the two headers alone (no weights
    read, nothing loaded), or ``None`` when it fits: the architecture, every target tensor, and
    the shapes of each ``lora_a``/``lora_b`` pair."""
    if adapter.value("general.type") != "adapter" or adapter.value("adapter.type") != "lora":
        return (
            f"{adapter.path} is not a llama.cpp LoRA adapter (general.type="
            f"{adapter.value('general.type')!r}); convert it with convert_lora_to_gguf.py"
        )
    if adapter.architecture != model.architecture:
        return (
            f"the adapter is for architecture {adapter.architecture!r}, the model is "
            f"{model.architecture!r}"
        )
    base = {t.name: t for t in model.tensors}
    halves: dict[str, dict[str, GGUFTensor]] = {}
    for t in adapter.tensors:
        for suffix in (".lora_a", ".lora_b"):
            if t.name.endswith(suffix):
                halves.setdefault(t.name[: -len(suffix)], {})[suffix] = t
    for target, pair in sorted(halves.items()):
        if len(pair) != 2:
            return f"the LoRA pair for {target} lacks one of lora_a/lora_b"
        weight = base.get(target)
        if weight is None:
            return f"it targets {target}, which the model does not have (wrong base model?)"
        a = _dims2(pair[".lora_a"])
        b = _dims2(pair[".lora_b"])
        w = _dims2(weight)
        if target.endswith("token_embd.weight"):  # stored flipped: A (n_vocab, r), B (n_embd, r)
            update, rank_ok = [b[1], a[1]], a[0] == b[0]
        else:  # A (r, n_in), B (n_out, r) in numpy order
            update, rank_ok = [a[0], b[1]], a[1] == b[0]
        if not rank_ok:
            return f"its lora_a and lora_b for {target} have different ranks"
        if update != w:
            return (
                f"its update for {target} has shape {tuple(reversed(update))} but the model's "
                f"tensor is {tuple(reversed(w))} (wrong base model?)"
            )
    return None


# --------------------------------------------------------------------------- hashes


_CHUNK = 1 << 22
_sha256_cache: dict[tuple[str, int, int], str] = {}


def _stat_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, computed once per (path, size, mtime) in this process."""
    p = Path(path)
    key = _stat_key(p)
    digest = _sha256_cache.get(key)
    if digest is None:
        h = hashlib.sha256()
        with p.open("rb") as f:
            for block in iter(lambda: f.read(_CHUNK), b""):
                h.update(block)
        digest = _sha256_cache[key] = h.hexdigest()
    return digest


def remember_sha256(path: str | os.PathLike[str], digest: str) -> None:
    """Record a digest already verified elsewhere (e.g. against a package's expected hash)."""
    _sha256_cache[_stat_key(Path(path))] = digest


def _same_bytes(a: Path, b: Path) -> bool:
    sa, sb = a.stat(), b.stat()
    if (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino):
        return True
    if sa.st_size != sb.st_size:
        return False
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            ca, cb = fa.read(_CHUNK), fb.read(_CHUNK)
            if ca != cb:
                return False
            if not ca:
                return True


def identical_files(
    base_path: str | os.PathLike[str],
    merged_path: str | os.PathLike[str],
    base_adapter: str | os.PathLike[str] | None = None,
    merged_adapter: str | os.PathLike[str] | None = None,
) -> bool:
    """True when base (+ adapter) and merged (+ adapter) are byte-for-byte the same model.

    Sizes first, then the bytes chunk by chunk (stopping at the first difference), so a changed
    file is usually told apart at once. Adapters must both be absent or both identical.
    """
    paths = [p for p in (base_path, merged_path, base_adapter, merged_adapter) if p is not None]
    for p in paths:
        if not Path(p).is_file():
            raise ModelFileError(f"model file not found: {p}")
    if (base_adapter is None) != (merged_adapter is None):
        return False
    if not _same_bytes(Path(base_path), Path(merged_path)):
        return False
    if base_adapter is not None and merged_adapter is not None:
        return _same_bytes(Path(base_adapter), Path(merged_adapter))
    return True


# --------------------------------------------------------------------------- tensors


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
