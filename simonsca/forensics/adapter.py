"""LoRA adapter inspection: how big is the update, and does it survive quantisation.

The adapter is read as a llama.cpp GGUF LoRA (:mod:`simonsca.adapters.gguf_lora`, which also
describes the layout); any other format is converted to one first (:mod:`simonsca.adapters`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType

from simonsca import gguf_file
from simonsca.adapters.gguf_lora import LoraAdapter, LoraPair, read_adapter
from simonsca.errors import AdapterMismatch
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
