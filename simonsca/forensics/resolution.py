"""How much of a weight update survives being stored in a quantised type.

The estimator, per tensor (accumulated over row chunks, so large tensors never sit in memory whole):

* ``requantize`` -- for types ``gguf.quants`` can quantise (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1,
  Q8_0): ``S = deq(q(W + dW)) - deq(q(W))``, the change the stored weights really get, where
  ``W`` is the dequantised base tensor.
* ``block-scale grid`` -- for K-quants python cannot quantise (Q4_K, Q5_K, Q6_K): the per-element
  quantisation step ``s`` is read from the base tensor's own block scales (``d * scale`` of each
  16- or 32-element sub-block); ``W`` lies on that grid, so with the scales held fixed
  ``S = s * round(dW / s)``. llama.cpp's quantiser re-fits the scales of every block, which can
  move a weight by about one step more or less; the estimate is good to that order.
* other types (Q2_K, Q3_K, IQ*, ...): ``not estimated``.

From ``S`` and the update ``dW``:

* ``retained`` = <S, dW> / <dW, dW> -- the fraction of the update that survives, measured along
  the update's own direction (1 = fully kept, 0 = erased; quantisation noise that is not along
  ``dW`` does not count as "kept").
* ``changed_fraction`` -- the fraction of weights whose stored value changes at all.
* ``step_ratio`` -- rms(dW) / rms(step), how big the update is in quantisation steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf.quants import Q4_K, dequantize, quantize

REQUANTIZABLE = frozenset(
    {
        GGMLQuantizationType.F32,
        GGMLQuantizationType.F16,
        GGMLQuantizationType.BF16,
        GGMLQuantizationType.Q4_0,
        GGMLQuantizationType.Q4_1,
        GGMLQuantizationType.Q5_0,
        GGMLQuantizationType.Q5_1,
        GGMLQuantizationType.Q8_0,
    }
)
GRID_TYPES = frozenset(
    {GGMLQuantizationType.Q4_K, GGMLQuantizationType.Q5_K, GGMLQuantizationType.Q6_K}
)

ESTIMATOR_REQUANTIZE = "requantize"
ESTIMATOR_GRID = "block-scale grid"
NOT_ESTIMATED = "not estimated"


def qtype_of(value: str | int | GGMLQuantizationType) -> GGMLQuantizationType:
    """``"Q6_K"``, ``"q8_0"``, 14 or a GGMLQuantizationType -> GGMLQuantizationType."""
    if isinstance(value, GGMLQuantizationType):
        return value
    if isinstance(value, int):
        return GGMLQuantizationType(value)
    try:
        return GGMLQuantizationType[str(value).upper()]
    except KeyError:
        raise ValueError(f"unknown quantisation type {value!r}") from None


def estimator_for(qtype: GGMLQuantizationType, *, have_base_blocks: bool) -> str:
    if qtype in REQUANTIZABLE:
        return ESTIMATOR_REQUANTIZE
    if qtype in GRID_TYPES and have_base_blocks:
        return ESTIMATOR_GRID
    return NOT_ESTIMATED


def grid_steps(raw_rows: np.ndarray, qtype: GGMLQuantizationType) -> np.ndarray:
    """Per-element quantisation step (float32, rows x n_in) from a K-quant tensor's block scales."""
    block, type_size = GGML_QUANT_SIZES[qtype]
    rows = raw_rows.shape[0]
    blocks = np.ascontiguousarray(raw_rows).reshape(-1, type_size)
    n_blocks = blocks.shape[0]
    if qtype == GGMLQuantizationType.Q6_K:
        scales = blocks[:, 192:208].view(np.int8).astype(np.float32)  # 16 sub-blocks of 16
        d = blocks[:, 208:210].copy().view(np.float16).astype(np.float32)
        step = np.abs(d * scales)  # (n_blocks, 16)
        per = 16
    elif qtype in (GGMLQuantizationType.Q4_K, GGMLQuantizationType.Q5_K):
        d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)
        sc, _ = Q4_K.get_scale_min(np.ascontiguousarray(blocks[:, 4:16]))
        step = np.abs(d * sc.astype(np.float32))  # (n_blocks, 8)
        per = 32
    else:
        raise ValueError(f"no block-scale grid for {qtype.name}")
    step = np.repeat(step, per, axis=1).reshape(n_blocks, block)
    return step.reshape(rows, -1)


@dataclass
class ResolutionAccumulator:
    """Sums over row chunks for one tensor; see the module docstring for the estimator."""

    qtype: GGMLQuantizationType
    estimator: str
    dot: float = 0.0  # <S, dW>
    delta_sq: float = 0.0  # <dW, dW>
    step_sq: float = 0.0  # sum of step^2 (grid only)
    changed: int = 0
    elements: int = 0

    def add(
        self, base_rows: np.ndarray, delta_rows: np.ndarray, raw_rows: np.ndarray | None = None
    ) -> None:
        """Add one chunk: dequantised base rows, update rows, and (for the grid) the raw base rows."""
        d = delta_rows.astype(np.float32, copy=False)
        self.delta_sq += float(np.dot(d.ravel().astype(np.float64), d.ravel().astype(np.float64)))
        self.elements += d.size
        if self.estimator == ESTIMATOR_REQUANTIZE:
            w = base_rows.astype(np.float32, copy=False)
            before = _roundtrip(w, self.qtype)
            after = _roundtrip(w + d, self.qtype)
            stored = after - before
        elif self.estimator == ESTIMATOR_GRID:
            assert raw_rows is not None
            step = grid_steps(raw_rows, self.qtype)
            self.step_sq += float(np.sum(step.astype(np.float64) ** 2))
            with np.errstate(divide="ignore", invalid="ignore"):
                stored = np.where(step > 0, np.round(d / np.where(step > 0, step, 1.0)) * step, 0.0)
        else:
            return
        self.dot += float(np.dot(stored.ravel().astype(np.float64), d.ravel().astype(np.float64)))
        self.changed += int(np.count_nonzero(stored))

    @property
    def retained(self) -> float | None:
        if self.estimator == NOT_ESTIMATED:
            return None
        if self.delta_sq == 0.0:
            return 0.0
        return self.dot / self.delta_sq

    @property
    def changed_fraction(self) -> float | None:
        if self.estimator == NOT_ESTIMATED or self.elements == 0:
            return None
        return self.changed / self.elements

    @property
    def step_ratio(self) -> float | None:
        """rms(update) / rms(step) for the grid estimator; None otherwise."""
        if self.estimator != ESTIMATOR_GRID or self.step_sq == 0.0:
            return None
        return float(np.sqrt(self.delta_sq / self.step_sq))


def _roundtrip(w: np.ndarray, qtype: GGMLQuantizationType) -> np.ndarray:
    if qtype == GGMLQuantizationType.F32:
        return w
    return np.asarray(
        dequantize(quantize(np.ascontiguousarray(w), qtype), qtype), dtype=np.float32
    ).reshape(w.shape)


def can_store(qtype: GGMLQuantizationType, n_in: int) -> bool:
    """Whether rows of ``n_in`` elements can be stored in ``qtype`` (block size divides the row)."""
    return n_in % GGML_QUANT_SIZES[qtype][0] == 0
