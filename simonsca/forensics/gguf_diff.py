"""Tensor-by-tensor diff of two GGUF models (base vs merged finetune).

Per tensor: byte-identical?, stored type on each side, and -- only when the bytes differ -- the
relative change ||merged - base|| / ||base|| after dequantising both (row chunks, float64 sums).
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType
from gguf.quants import dequantize, quantize

from simonsca import gguf_file
from simonsca.errors import ModelFileError
from simonsca.forensics.findings import Finding, Severity, sort_findings

_FLOAT = ("F32", "F64")
#: Stored types much finer than the source type: writing a merge as F16 from a Q8_0 base (what
#: export-lora does) rounds by ~2^-11 relative, far below the source's own quantisation step, so it
#: is not reported as a quantisation mismatch.
FINER_TYPES: dict[str, tuple[str, ...]] = {
    "F32": _FLOAT,
    "F16": (*_FLOAT, "F16"),
    "BF16": (*_FLOAT, "BF16"),
    "Q8_0": (*_FLOAT, "F16"),
}
for _q in (
    "Q4_0",
    "Q4_1",
    "Q5_0",
    "Q5_1",
    "Q2_K",
    "Q3_K",
    "Q4_K",
    "Q5_K",
    "Q6_K",
    "IQ4_NL",
    "IQ4_XS",
    "IQ2_XXS",
    "IQ2_XS",
    "IQ2_S",
    "IQ3_XXS",
    "IQ3_S",
    "IQ1_S",
    "IQ1_M",
):
    FINER_TYPES[_q] = (*_FLOAT, "F16", "BF16")

#: Relative changes below this are reported as "no real change" (float round-off).
NOISE_RELATIVE = 1e-7


@dataclass(frozen=True)
class TensorDiff:
    name: str
    shape_base: tuple[int, ...]
    shape_merged: tuple[int, ...]
    type_base: str
    type_merged: str
    byte_identical: bool
    relative_change: float | None  # None: not comparable (shape mismatch or no dequantiser)
    max_abs_change: float | None
    # for a base tensor converted to a float type (F16/BF16/F32): the change beyond that conversion
    # (0.0 = the merged tensor is exactly the base in the new type; None = no conversion)
    change_beyond_conversion: float | None = None

    @property
    def changed(self) -> bool:
        return not self.byte_identical

    @property
    def type_changed(self) -> bool:
        return self.type_base != self.type_merged


@dataclass(frozen=True)
class ModelDiff:
    base: Path
    merged: Path
    architecture_base: str
    architecture_merged: str
    tensors: tuple[TensorDiff, ...]
    only_in_base: tuple[str, ...]
    only_in_merged: tuple[str, ...]
    metadata_changed: tuple[str, ...]  # metadata keys whose values differ (or exist on one side)
    findings: tuple[Finding, ...]

    @property
    def n_tensors(self) -> int:
        return len(self.tensors)

    @property
    def n_identical(self) -> int:
        return sum(t.byte_identical for t in self.tensors)

    @property
    def n_changed(self) -> int:
        return self.n_tensors - self.n_identical

    def largest_changes(self, k: int = 10) -> tuple[TensorDiff, ...]:
        scored = [t for t in self.tensors if t.relative_change is not None and t.changed]
        return tuple(sorted(scored, key=lambda t: -(t.relative_change or 0.0))[:k])

    def summary(self) -> str:
        lines = [
            f"{self.n_changed} of {self.n_tensors} shared tensors differ ({self.n_identical} byte-identical)"
        ]
        if self.only_in_base or self.only_in_merged:
            lines.append(
                f"only in base: {len(self.only_in_base)}, only in merged: {len(self.only_in_merged)}"
            )
        for t in self.largest_changes(5):
            lines.append(
                f"  {t.name}: {t.type_base}->{t.type_merged} relative change {t.relative_change:.3g}"
            )
        return "\n".join(lines)


def _metadata(reader: gguf_file.GGUFFile) -> dict[str, object]:
    """Each key's stored type and bytes: equal bytes <=> equal values, without decoding vocabularies."""
    return {k: (e.vtype, e.raw) for k, e in reader.metadata.items()}


_CONVERSIONS = {"F32", "F16", "BF16"}


def _as_type(b: np.ndarray, type_name: str) -> np.ndarray:
    """``b`` (float64) as it reads back after storing it in float type ``type_name``."""
    if type_name == "F16":
        return b.astype(np.float16).astype(np.float64)
    if type_name == "BF16":
        q = quantize(np.ascontiguousarray(b, dtype=np.float32), GGMLQuantizationType.BF16)
        return np.asarray(dequantize(q, GGMLQuantizationType.BF16), dtype=np.float64).reshape(
            b.shape
        )
    return b.astype(np.float32).astype(np.float64)


def _relative_change(tb, tm) -> tuple[float | None, float | None, float | None]:
    """||m - b|| / ||b||, max |m - b|, and -- when the merged tensor is a float type the base was
    converted to -- ||m - conv(b)|| / ||b||: the change beyond the type conversion itself."""
    diff_sq = beyond_sq = base_sq = 0.0
    max_abs = 0.0
    conv = (
        gguf_file.type_name(tm)
        if gguf_file.type_name(tm) in _CONVERSIONS and tb.tensor_type != tm.tensor_type
        else None
    )
    for start, stop in gguf_file.row_chunks(tb):
        b = gguf_file.dequantize_rows(tb, start, stop).astype(np.float64)
        m = gguf_file.dequantize_rows(tm, start, stop).astype(np.float64)
        d = m - b
        diff_sq += float(np.sum(d * d))
        base_sq += float(np.sum(b * b))
        if conv is not None:
            e = m - _as_type(b, conv)
            beyond_sq += float(np.sum(e * e))
        if d.size:
            max_abs = max(max_abs, float(np.max(np.abs(d))))

    def ratio(x: float) -> float:
        return (0.0 if x == 0.0 else math.inf) if base_sq == 0.0 else math.sqrt(x / base_sq)

    return ratio(diff_sq), max_abs, (ratio(beyond_sq) if conv is not None else None)


def diff_models(
    base: str | Path, merged: str | Path, *, compare_metadata: bool = True
) -> ModelDiff:
    """Compare two GGUF models tensor by tensor; see :class:`ModelDiff` and its findings."""
    base_path, merged_path = Path(base), Path(merged)
    rb = gguf_file.open_gguf(base_path, "base model")
    rm = gguf_file.open_gguf(merged_path, "merged model")
    for header, role in ((rb, "base model"), (rm, "merged model")):
        if header.is_adapter:
            raise ModelFileError(
                f"{role} file {header.path} is a LoRA adapter, not a model; inspect it with "
                "simonsca diff BASE --lora ADAPTER"
            )
    arch_b, arch_m = gguf_file.architecture(rb), gguf_file.architecture(rm)
    tb_by = {t.name: t for t in rb.tensors}
    tm_by = {t.name: t for t in rm.tensors}
    shared = [t.name for t in rb.tensors if t.name in tm_by]
    diffs = []
    for name in shared:
        tb, tm = tb_by[name], tm_by[name]
        sb, sm = gguf_file.tensor_shape(tb), gguf_file.tensor_shape(tm)
        same_type = tb.tensor_type == tm.tensor_type
        identical = bool(
            same_type
            and sb == sm
            and tb.n_bytes == tm.n_bytes
            and np.array_equal(gguf_file.raw_bytes(tb), gguf_file.raw_bytes(tm))
        )
        if identical:
            rel, mx, beyond = 0.0, 0.0, None
        elif sb != sm:
            rel, mx, beyond = None, None, None
        else:
            rel, mx, beyond = _relative_change(tb, tm)
        diffs.append(
            TensorDiff(
                name=name,
                shape_base=sb,
                shape_merged=sm,
                type_base=gguf_file.type_name(tb),
                type_merged=gguf_file.type_name(tm),
                byte_identical=identical,
                relative_change=rel,
                max_abs_change=mx,
                change_beyond_conversion=beyond,
            )
        )
    meta_changed: tuple[str, ...] = ()
    if compare_metadata:
        mb, mm = _metadata(rb), _metadata(rm)
        meta_changed = tuple(
            sorted(k for k in set(mb) | set(mm) if mb.get(k, _MISSING) != mm.get(k, _MISSING))
        )
    only_b = tuple(n for n in tb_by if n not in tm_by)
    only_m = tuple(n for n in tm_by if n not in tb_by)
    result = ModelDiff(
        base=base_path,
        merged=merged_path,
        architecture_base=arch_b,
        architecture_merged=arch_m,
        tensors=tuple(diffs),
        only_in_base=only_b,
        only_in_merged=only_m,
        metadata_changed=meta_changed,
        findings=(),
    )
    return dataclasses.replace(result, findings=diff_findings(result))


_MISSING = object()


def diff_findings(d: ModelDiff) -> tuple[Finding, ...]:
    findings: list[Finding] = []
    bname, mname = d.base.name, d.merged.name
    if d.architecture_base != d.architecture_merged:
        findings.append(
            Finding(
                "architecture-mismatch",
                Severity.ERROR,
                f"{mname} is {d.architecture_merged!r} but {bname} is {d.architecture_base!r}",
                "The two files are different models; compare a finetune with the base it came from.",
                {"base": d.architecture_base, "merged": d.architecture_merged},
            )
        )
    shape_mm = [t for t in d.tensors if t.shape_base != t.shape_merged]
    if shape_mm:
        findings.append(
            Finding(
                "shape-mismatch",
                Severity.ERROR,
                f"{len(shape_mm)} tensors have different shapes in {bname} and {mname}",
                "e.g. "
                + ", ".join(f"{t.name} {t.shape_base} vs {t.shape_merged}" for t in shape_mm[:3]),
                {"tensors": len(shape_mm)},
            )
        )
    if d.only_in_base or d.only_in_merged:
        findings.append(
            Finding(
                "tensor-set-mismatch",
                Severity.ERROR if not d.tensors else Severity.WARNING,
                f"tensor names differ: {len(d.only_in_base)} only in {bname}, {len(d.only_in_merged)} only in {mname}",
                "e.g. " + ", ".join((list(d.only_in_base) + list(d.only_in_merged))[:4]),
                {"only_in_base": len(d.only_in_base), "only_in_merged": len(d.only_in_merged)},
            )
        )
    if d.tensors and d.n_changed == 0 and not d.only_in_base and not d.only_in_merged:
        findings.append(
            Finding(
                "merged-identical",
                Severity.ERROR,
                f"merged model is byte-identical to the base in all {d.n_tensors} tensors",
                "The merge wrote the base weights unchanged: the adapter was not applied, was all "
                "zero, or its update was rounded away when the weights were re-quantised.",
                {
                    "tensors": d.n_tensors,
                    "identical": d.n_identical,
                    "metadata_keys_changed": len(d.metadata_changed),
                },
            )
        )
    converted = [t for t in d.tensors if t.change_beyond_conversion == 0.0]
    if (
        converted
        and all(t.byte_identical or t.change_beyond_conversion == 0.0 for t in d.tensors)
        and not d.only_in_base
        and not d.only_in_merged
    ):
        kinds = Counter(f"{t.type_base}->{t.type_merged}" for t in converted)
        findings.append(
            Finding(
                "merged-equals-base-converted",
                Severity.ERROR,
                f"merged model is the base converted to another type: {len(converted)} tensors hold exactly "
                f"the base's weights in {'/'.join(sorted({t.type_merged for t in converted}))}, "
                f"{d.n_identical} are byte-identical",
                "No tensor carries a finetune update: the adapter was all zero or not applied.",
                {
                    "converted": len(converted),
                    "identical": d.n_identical,
                    "conversions": dict(kinds),
                },
            )
        )
    type_changes = Counter(
        (t.type_base, t.type_merged)
        for t in d.tensors
        if t.type_changed and t.type_merged not in FINER_TYPES.get(t.type_base, ())
    )
    if type_changes:
        n = sum(type_changes.values())
        pairs = ", ".join(f"{a}->{b} in {c}" for (a, b), c in type_changes.most_common())
        findings.append(
            Finding(
                "quantisation-mismatch",
                Severity.WARNING,
                f"{n} of {d.n_tensors} tensors are re-quantised to another type ({pairs})",
                "The merged model is not the base's quantisation: a LoRA trained against one "
                "quantisation (e.g. Q8_0) and merged into another (e.g. Q6_K) sees different base "
                "weights, and the difference from re-quantising can be as large as the update itself.",
                {
                    "tensors": n,
                    "type_changes": {f"{a}->{b}": c for (a, b), c in type_changes.items()},
                },
            )
        )
    changed = [
        t
        for t in d.tensors
        if t.changed and t.relative_change is not None and t.shape_base == t.shape_merged
    ]
    if (
        changed
        and all((t.relative_change or 0.0) < NOISE_RELATIVE for t in changed)
        and d.n_changed == len(changed)
    ):
        findings.append(
            Finding(
                "merged-change-negligible",
                Severity.ERROR,
                f"{len(changed)} tensors differ in bytes but by less than {NOISE_RELATIVE:g} relative",
                "The weights are numerically the base's; the finetune's update is not in the file.",
                {
                    "tensors": len(changed),
                    "max_relative_change": max(t.relative_change or 0.0 for t in changed),
                },
            )
        )
    return sort_findings(findings)
