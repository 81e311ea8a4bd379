"""LoRA adapter (llama.cpp GGUF) inspection: how big is the update, and does it survive quantisation.

Layout (llama.cpp ``src/llama-adapter.cpp``, ``convert_lora_to_gguf.py``): an adapter GGUF has
``general.type = "adapter"``, ``adapter.type = "lora"``, ``adapter.lora.alpha`` and, per target
weight ``W`` (numpy shape ``(n_out, n_in)``), tensors ``<W>.lora_a`` with numpy shape
``(rank, n_in)`` and ``<W>.lora_b`` with numpy shape ``(n_out, rank)``; the applied update is
``dW = scale * B @ A`` with ``scale = alpha / rank`` (``1`` when alpha is 0) times the user's
adapter scale. The token embedding is the exception: llama.cpp stores it "flipped", ``lora_a``
``(n_vocab, rank)`` and ``lora_b`` ``(n_embd, rank)``, and ``dW = scale * A @ B.T``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter

from simonsca import gguf_file
from simonsca.errors import AdapterMismatch, ModelFileError
from simonsca.forensics.findings import Finding, Severity, sort_findings
from simonsca.forensics.resolution import (
    NOT_ESTIMATED,
    ResolutionAccumulator,
    can_store,
    estimator_for,
    qtype_of,
)

#: A tensor's update counts as "below resolution" when less than this fraction of it survives.
MIN_RETAINED = 0.5
#: ||dW|| / ||W|| below this counts as "near zero" (a LoRA that has barely moved from init).
NEAR_ZERO_RELATIVE = 1e-6


@dataclass(frozen=True)
class LoraPair:
    """One target weight's low-rank update, normalised so that ``dW = scale * U @ V``."""

    target: str  # the base tensor name, e.g. blk.0.attn_q.weight
    u: np.ndarray  # (n_out, rank)
    v: np.ndarray  # (rank, n_in)
    scale: float
    a_type: str
    b_type: str

    @property
    def rank(self) -> int:
        return int(self.u.shape[1])

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.u.shape[0]), int(self.v.shape[1]))

    def delta_rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of ``dW`` as float32."""
        return (
            self.scale * (self.u[start:stop].astype(np.float64) @ self.v.astype(np.float64))
        ).astype(np.float32)

    def delta(self) -> np.ndarray:
        return self.delta_rows(0, self.shape[0])

    def frobenius_norm(self) -> float:
        """||scale * U V||_F without forming the product: sqrt(trace((U'U)(VV')))."""
        u = self.u.astype(np.float64)
        v = self.v.astype(np.float64)
        return float(abs(self.scale) * math.sqrt(max(0.0, float(np.sum((u.T @ u) * (v @ v.T))))))


@dataclass(frozen=True)
class LoraAdapter:
    path: Path
    architecture: str
    alpha: float
    pairs: tuple[LoraPair, ...]
    skipped: tuple[str, ...]  # tensors llama.cpp ignores too (e.g. *_norm.weight)

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(p.target for p in self.pairs)


def read_adapter(path: str | Path, *, adapter_scale: float = 1.0) -> LoraAdapter:
    """Read a llama.cpp LoRA GGUF; ModelFileError when it is not one."""
    p = Path(path)
    reader = gguf_file.open_gguf(p, "adapter")
    gtype = gguf_file.field_value(reader, "general.type")
    atype = gguf_file.field_value(reader, "adapter.type")
    if gtype != "adapter" or atype != "lora":
        raise ModelFileError(
            f"adapter file {p} is not a llama.cpp LoRA adapter (general.type={gtype!r}, adapter.type={atype!r});"
            " convert it with convert_lora_to_gguf.py"
        )
    alpha = float(gguf_file.field_value(reader, "adapter.lora.alpha", 0.0) or 0.0)
    a_tensors: dict[str, object] = {}
    b_tensors: dict[str, object] = {}
    skipped: list[str] = []
    for t in reader.tensors:
        if t.name.endswith(".lora_a"):
            a_tensors[t.name[: -len(".lora_a")]] = t
        elif t.name.endswith(".lora_b"):
            b_tensors[t.name[: -len(".lora_b")]] = t
        elif t.name.endswith("_norm.weight"):
            skipped.append(t.name)
        else:
            raise ModelFileError(
                f"adapter file {p} has tensor {t.name!r} with an unexpected suffix (want .lora_a/.lora_b)"
            )
    pairs = []
    for name in sorted(set(a_tensors) | set(b_tensors)):
        if name not in a_tensors or name not in b_tensors:
            raise ModelFileError(
                f"adapter file {p}: LoRA pair for {name!r} is missing its lora_{'a' if name not in a_tensors else 'b'} tensor"
            )
        ta, tb = a_tensors[name], b_tensors[name]
        a = gguf_file.dequantize_tensor(ta)  # type: ignore[arg-type]
        b = gguf_file.dequantize_tensor(tb)  # type: ignore[arg-type]
        if a.ndim != 2 or b.ndim != 2:
            raise ModelFileError(
                f"adapter file {p}: {name} lora tensors are not 2-D (a {a.shape}, b {b.shape})"
            )
        rank = b.shape[1]
        scale = adapter_scale * (alpha / rank if alpha else 1.0)
        if name.endswith("token_embd.weight"):
            u, v = a, b.T  # flipped layout: A (n_vocab, r), B (n_embd, r)
        else:
            u, v = b, a  # B (n_out, r), A (r, n_in)
        if u.shape[1] != v.shape[0]:
            raise ModelFileError(
                f"adapter file {p}: {name} lora_a {a.shape} and lora_b {b.shape} ranks differ"
                " (lora_a not transposed: adapters from the old finetune example are not supported)"
            )
        pairs.append(
            LoraPair(
                target=name,
                u=np.ascontiguousarray(u, dtype=np.float32),
                v=np.ascontiguousarray(v, dtype=np.float32),
                scale=scale,
                a_type=gguf_file.type_name(ta),  # type: ignore[arg-type]
                b_type=gguf_file.type_name(tb),  # type: ignore[arg-type]
            )
        )
    return LoraAdapter(
        path=p,
        architecture=gguf_file.architecture(reader),
        alpha=alpha,
        pairs=tuple(pairs),
        skipped=tuple(skipped),
    )


def check_fits(
    base_path: Path, base: gguf_file.GGUFFile, adapter: LoraAdapter
) -> dict[str, gguf_file.GGUFTensor]:
    """Base tensors by name for every adapter target; AdapterMismatch naming both files otherwise."""
    arch = gguf_file.architecture(base)
    if adapter.architecture != arch:
        raise AdapterMismatch(
            f"adapter {adapter.path} is for architecture {adapter.architecture!r} but base {base_path} is {arch!r}"
        )
    by_name = {t.name: t for t in base.tensors}
    out: dict[str, gguf_file.GGUFTensor] = {}
    for pair in adapter.pairs:
        t = by_name.get(pair.target)
        if t is None:
            raise AdapterMismatch(
                f"adapter {adapter.path} targets {pair.target!r}, which base {base_path} does not have (wrong base model?)"
            )
        shape = gguf_file.tensor_shape(t)
        if shape != pair.shape:
            raise AdapterMismatch(
                f"adapter {adapter.path} update for {pair.target} has shape {pair.shape} but base {base_path} has {shape} (wrong base model?)"
            )
        out[pair.target] = t
    return out


@dataclass(frozen=True)
class AdapterTensorStats:
    """One target weight: size of its update and how much of it the stored type can hold."""

    name: str
    rank: int
    scale: float
    base_type: str
    resolution_type: str  # the type the survival check was made against
    update_norm: float  # ||scale * B A||_F
    base_norm: float  # ||W||_F (dequantised)
    relative_update: float  # update_norm / base_norm
    max_abs_update: float
    retained: float | None  # fraction of the update surviving storage in resolution_type
    changed_fraction: float | None  # fraction of weights whose stored value changes
    step_ratio: float | None  # rms(update) / rms(step) (grid estimator only)
    estimator: str  # requantize | block-scale grid | not estimated

    @property
    def below_resolution(self) -> bool:
        return self.retained is not None and self.retained < MIN_RETAINED


@dataclass(frozen=True)
class AdapterReport:
    base: Path
    adapter: Path
    architecture: str
    alpha: float
    tensors: tuple[AdapterTensorStats, ...]
    findings: tuple[Finding, ...]

    @property
    def n_targets(self) -> int:
        return len(self.tensors)

    @property
    def n_below_resolution(self) -> int:
        return sum(t.below_resolution for t in self.tensors)

    @property
    def total_update_norm(self) -> float:
        return math.sqrt(sum(t.update_norm**2 for t in self.tensors))

    def summary(self) -> str:
        lines = [
            (
                f"{self.adapter.name} on {self.base.name}: {self.n_targets} target tensors, alpha {self.alpha:g}, "
                f"total ||dW|| {self.total_update_norm:.3g}, {self.n_below_resolution} below resolution"
            )
        ]
        for t in sorted(self.tensors, key=lambda t: -t.relative_update)[:5]:
            kept = (
                "not estimated"
                if t.retained is None
                else f"{t.retained:.1%} kept in {t.resolution_type}"
            )
            lines.append(f"  {t.name}: rank {t.rank}, ||dW||/||W|| {t.relative_update:.3g}, {kept}")
        return "\n".join(lines)


def tensor_resolution(
    base_tensor, pair: LoraPair, resolution_type: GGMLQuantizationType | None = None
) -> ResolutionAccumulator:
    """Run the survival estimator for one target (row chunks; see simonsca.forensics.resolution)."""
    base_type = GGMLQuantizationType(base_tensor.tensor_type)
    qtype = resolution_type if resolution_type is not None else base_type
    n_in = pair.shape[1]
    est = estimator_for(qtype, have_base_blocks=(qtype == base_type))
    if est != NOT_ESTIMATED and not can_store(qtype, n_in):
        est = NOT_ESTIMATED
    acc = ResolutionAccumulator(qtype=qtype, estimator=est)
    if est == NOT_ESTIMATED:
        return acc
    raw = gguf_file.raw_rows(base_tensor)
    for start, stop in gguf_file.row_chunks(base_tensor):
        w = gguf_file.dequantize_rows(base_tensor, start, stop)
        acc.add(w, pair.delta_rows(start, stop), raw[start:stop])
    return acc


def _base_norm(t) -> float:
    sq = 0.0
    for start, stop in gguf_file.row_chunks(t):
        w = gguf_file.dequantize_rows(t, start, stop).astype(np.float64)
        sq += float(np.sum(w * w))
    return math.sqrt(sq)


def inspect_adapter(
    base: str | Path,
    adapter: str | Path,
    *,
    resolution_type: str | GGMLQuantizationType | None = None,
    adapter_scale: float = 1.0,
    min_retained: float = MIN_RETAINED,
) -> AdapterReport:
    """Per target tensor: norm of ``scale * B A``, zero/near-zero checks, survival in the base's type.

    ``resolution_type`` checks survival against another type than the base's own (e.g. the
    type a merged model will be written in); default: each base tensor's own type.
    """
    base_path, adapter_path = Path(base), Path(adapter)
    reader = gguf_file.open_gguf(base_path, "base model")
    from simonsca.adapters import resolve_adapter  # PEFT, MLX, lora.bin ... -> a GGUF LoRA

    lora = read_adapter(resolve_adapter(adapter_path, base_path).gguf, adapter_scale=adapter_scale)
    targets = check_fits(base_path, reader, lora)
    rtype = qtype_of(resolution_type) if resolution_type is not None else None
    stats = []
    for pair in lora.pairs:
        t = targets[pair.target]
        upd = pair.frobenius_norm()
        base_norm = _base_norm(t)
        max_abs = 0.0
        if upd > 0:
            for start, stop in gguf_file.row_chunks(t):
                max_abs = max(max_abs, float(np.max(np.abs(pair.delta_rows(start, stop)))))
        acc = tensor_resolution(t, pair, rtype) if upd > 0 else None
        base_type = gguf_file.type_name(t)
        stats.append(
            AdapterTensorStats(
                name=pair.target,
                rank=pair.rank,
                scale=pair.scale,
                base_type=base_type,
                resolution_type=(rtype.name if rtype is not None else base_type),
                update_norm=upd,
                base_norm=base_norm,
                relative_update=(
                    upd / base_norm if base_norm > 0 else math.inf if upd > 0 else 0.0
                ),
                max_abs_update=max_abs,
                retained=(acc.retained if acc else (0.0 if upd == 0 else None)),
                changed_fraction=(acc.changed_fraction if acc else (0.0 if upd == 0 else None)),
                step_ratio=(acc.step_ratio if acc else None),
                estimator=(acc.estimator if acc else "zero update"),
            )
        )
    report_stats = tuple(stats)
    findings = adapter_findings(lora, report_stats, min_retained=min_retained)
    return AdapterReport(
        base=base_path,
        adapter=adapter_path,
        architecture=lora.architecture,
        alpha=lora.alpha,
        tensors=report_stats,
        findings=findings,
    )


def adapter_findings(
    lora: LoraAdapter, stats: tuple[AdapterTensorStats, ...], *, min_retained: float = MIN_RETAINED
) -> tuple[Finding, ...]:
    findings: list[Finding] = []
    n = len(stats)
    name = lora.path.name
    if n == 0:
        findings.append(
            Finding(
                "adapter-empty",
                Severity.ERROR,
                f"adapter {name} holds no LoRA tensors",
                "An adapter without lora_a/lora_b pairs changes nothing.",
                {"targets": 0},
            )
        )
        return tuple(findings)
    zero = [s for s in stats if s.update_norm == 0.0]
    near = [s for s in stats if 0.0 < s.relative_update < NEAR_ZERO_RELATIVE]
    if len(zero) == n:
        findings.append(
            Finding(
                "adapter-never-trained",
                Severity.ERROR,
                f"adapter update is exactly zero in all {n} tensors (never trained)",
                "Every scale*B*A is zero: a LoRA fresh from initialisation (B = 0). Check that "
                "training ran and that the saved adapter is the trained one, not the starting one.",
                {"targets": n, "zero": len(zero)},
            )
        )
    elif zero:
        findings.append(
            Finding(
                "adapter-partly-zero",
                Severity.WARNING,
                f"adapter update is exactly zero in {len(zero)} of {n} tensors",
                "These targets were never trained: "
                + ", ".join(s.name for s in zero[:5])
                + (" ..." if len(zero) > 5 else ""),
                {"targets": n, "zero": len(zero)},
            )
        )
    if near and len(zero) < n:
        worst = max(s.relative_update for s in near)
        findings.append(
            Finding(
                "adapter-near-zero",
                Severity.ERROR if len(near) + len(zero) == n else Severity.WARNING,
                f"adapter update is near zero in {len(near)} of {n} tensors (||dW||/||W|| <= {worst:.1e})",
                "The LoRA has barely moved from its initialisation; train longer or with a higher learning rate.",
                {"targets": n, "near_zero": len(near), "max_relative_update": worst},
            )
        )
    estimated = [s for s in stats if s.retained is not None and s.update_norm > 0]
    below = [s for s in estimated if s.retained is not None and s.retained < min_retained]
    if below:
        types = sorted({s.resolution_type for s in below})
        retained = [s.retained for s in below if s.retained is not None]
        all_below = len(below) == len(estimated) == n - len(zero)
        findings.append(
            Finding(
                "update-below-resolution",
                Severity.ERROR if all_below else Severity.WARNING,
                f"adapter update below {'/'.join(types)} resolution in {len(below)} of {len(estimated)} tensors",
                "Merged and stored in this type, less than "
                f"{min_retained:.0%} of the update survives (median {float(np.median(retained)):.1%} kept); "
                "the merged model is then (nearly) the base. Merge into F16/F32, or use the adapter at "
                "run time (--lora) instead of merging.",
                {
                    "tensors_below": len(below),
                    "tensors_estimated": len(estimated),
                    "targets": n,
                    "types": types,
                    "median_retained": float(np.median(retained)),
                    "max_retained": float(max(retained)),
                    "median_changed_fraction": float(
                        np.median([s.changed_fraction or 0.0 for s in below])
                    ),
                    "min_retained_threshold": min_retained,
                },
            )
        )
    not_est = [s for s in stats if s.estimator == NOT_ESTIMATED]
    if not_est:
        findings.append(
            Finding(
                "resolution-not-estimated",
                Severity.INFO,
                f"quantisation survival not estimated for {len(not_est)} of {n} tensors",
                "No estimator for type(s) "
                + ", ".join(sorted({s.resolution_type for s in not_est}))
                + ".",
                {"tensors": len(not_est)},
            )
        )
    return sort_findings(findings)


def write_lora_gguf(
    path: str | Path,
    architecture: str,
    pairs: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    alpha: float,
    dtype: type = np.float32,
) -> Path:
    """Write a llama.cpp LoRA GGUF from ``{base tensor name: (lora_a, lora_b)}`` in llama.cpp layout.

    ``lora_a`` has numpy shape (rank, n_in), ``lora_b`` (n_out, rank) -- for the token embedding
    the flipped layout (n_vocab, rank) and (n_embd, rank). Used by tests and the fixture script.
    """
    p = Path(path)
    w = GGUFWriter(p, architecture)
    w.add_type("adapter")
    w.add_string("adapter.type", "lora")
    w.add_float32("adapter.lora.alpha", float(alpha))
    for name, (a, b) in pairs.items():
        w.add_tensor(f"{name}.lora_a", np.ascontiguousarray(a, dtype=dtype))
        w.add_tensor(f"{name}.lora_b", np.ascontiguousarray(b, dtype=dtype))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return p
