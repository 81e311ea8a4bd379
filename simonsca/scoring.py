"""Per-item scores and their aggregates with 95% confidence intervals.

One answer is scored against its :class:`~simonsca.tasks.Item` as

* ``parse_ok`` -- the text held a grid (or count matrix) at all;
* ``shape_ok`` -- with the expected number of rows and columns;
* ``exact`` -- every cell right (so the shape is right too);
* ``cell_accuracy`` -- right cells over the cells of *either* grid. The answer (R rows x C
  columns) is laid on the expected grid (r x c) at the top-left corner. A cell is right when
  both grids have it and the values agree (the same live/dead state, or the same count). The
  denominator is the union of the two rectangles, ``r*c + R*C - min(r, R)*min(c, C)``: every
  expected cell the answer lacks and every extra cell the answer adds counts wrong, whatever
  its value. So an exact answer scores 1.0, only an exact answer does, and padding cannot help:
  the expected 7x6 grid plus 20 extra dead rows and columns scores 42/(27*26) = 0.060. An
  unparsable answer scores 0.0;
* ``live_f1`` -- next-generation task only (``None`` for counts): F1 of the answer's live cells
  against the expected live cells, by position, ``2*TP / (2*TP + FP + FN)``. Live cells the answer
  draws outside the expected area are false positives, expected live cells it does not cover are
  false negatives. F1 has no true negatives by definition, so dead cells -- including dead cells
  the answer adds or leaves out -- never change it: a wrong shape padded with dead cells keeps the
  F1 of its live pattern (shape errors are what ``shape_ok``, ``exact`` and ``cell_accuracy``
  measure). Changing the shape can never *raise* F1 above writing dead cells there. When neither
  grid has a live cell F1 is 1.0. An unparsable answer scores 0.0.

Aggregates (:func:`summarize`): the rates (parse, shape, exact) get a Wilson score interval; the
means (cell accuracy, live F1) a percentile bootstrap with a fixed seed, so the same scores always
give the same interval.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from statistics import NormalDist
from typing import Any

import numpy as np

from simonsca import codec
from simonsca.tasks import Item, Task

#: The facets results are broken down by, in display order (see ``Item.family_facets``).
FACETS: tuple[str, ...] = ("task", "wrap", "generations", "size", "symbols")

#: Metric names in display order.
RATE_METRICS: tuple[str, ...] = ("parse_ok", "shape_ok", "exact")
MEAN_METRICS: tuple[str, ...] = ("cell_accuracy", "live_f1")
METRICS: tuple[str, ...] = RATE_METRICS + MEAN_METRICS

DEFAULT_CONFIDENCE = 0.95
DEFAULT_RESAMPLES = 2000
DEFAULT_BOOTSTRAP_SEED = 20240601


@dataclass(frozen=True)
class ItemScore:
    """How one answer did on one item."""

    seed: int
    family: str
    facets: tuple[tuple[str, str], ...]  # (facet, value) pairs in FACETS order
    task: str  # "next" or "count"
    parse_ok: bool
    shape_ok: bool
    exact: bool
    cell_accuracy: float
    live_f1: float | None  # None for the count task
    reason: str | None  # why it is not exact: the parse reason, a shape or cell-count note

    @property
    def facet_dict(self) -> dict[str, str]:
        return dict(self.facets)

    def facet(self, name: str) -> str:
        return self.facet_dict[name]

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "family": self.family,
            "facets": self.facet_dict,
            "task": self.task,
            "parse_ok": self.parse_ok,
            "shape_ok": self.shape_ok,
            "exact": self.exact,
            "cell_accuracy": self.cell_accuracy,
            "live_f1": self.live_f1,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ItemScore:
        return cls(
            seed=int(data["seed"]),
            family=str(data["family"]),
            facets=tuple((str(k), str(v)) for k, v in dict(data["facets"]).items()),
            task=str(data["task"]),
            parse_ok=bool(data["parse_ok"]),
            shape_ok=bool(data["shape_ok"]),
            exact=bool(data["exact"]),
            cell_accuracy=float(data["cell_accuracy"]),
            live_f1=None if data["live_f1"] is None else float(data["live_f1"]),
            reason=data["reason"],
        )


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(n) for n in shape)


def score_answer(item: Item, value: np.ndarray | None, reason: str | None = None) -> ItemScore:
    """Score an already-parsed answer (``None`` with a ``reason`` when it did not parse).

    Shapes are rows x columns: ``"shape 5x4, expected 5x5"`` means 5 rows of 4 cells.
    """
    facets = item.family_facets
    ordered = tuple((name, facets[name]) for name in FACETS if name in facets) + tuple(
        (k, v) for k, v in facets.items() if k not in FACETS
    )

    def make(
        *,
        parse_ok: bool,
        shape_ok: bool,
        exact: bool,
        cell_accuracy: float,
        live_f1: float | None,
        reason: str | None,
    ) -> ItemScore:
        return ItemScore(
            seed=item.seed,
            family=item.family,
            facets=ordered,
            task=item.task.value,
            parse_ok=parse_ok,
            shape_ok=shape_ok,
            exact=exact,
            cell_accuracy=cell_accuracy,
            live_f1=live_f1,
            reason=reason,
        )

    is_next = item.task == Task.NEXT
    if value is None:
        return make(
            parse_ok=False,
            shape_ok=False,
            exact=False,
            cell_accuracy=0.0,
            live_f1=0.0 if is_next else None,
            reason=reason or "no answer found",
        )
    expected = np.asarray(item.expected)
    answer = np.asarray(value)
    if answer.ndim < 2:
        answer = answer.reshape((1, -1)) if answer.size else answer.reshape((0, 0))
    if answer.ndim > 2:
        # Not a grid at all; nothing lines up with the expected cells.
        return make(
            parse_ok=True,
            shape_ok=False,
            exact=False,
            cell_accuracy=0.0,
            live_f1=0.0 if is_next else None,
            reason=f"shape {_shape_text(answer.shape)}, expected {_shape_text(expected.shape)}",
        )
    shape_ok = answer.shape == expected.shape
    rows = min(answer.shape[0], expected.shape[0])
    cols = min(answer.shape[1], expected.shape[1])
    if is_next:
        want = expected.astype(bool)
        got = answer.astype(bool)
    else:
        want = expected
        got = answer
    overlap_right = int(np.count_nonzero(got[:rows, :cols] == want[:rows, :cols]))
    total = int(want.size)
    # Union of the two top-left-aligned rectangles: expected cells the answer lacks and extra
    # cells it adds both count wrong (see the module docstring).
    union = total + int(got.size) - rows * cols
    cell_accuracy = overlap_right / union if union else 1.0
    exact = shape_ok and overlap_right == total
    live_f1: float | None = None
    if is_next:
        tp = int(np.count_nonzero(got[:rows, :cols] & want[:rows, :cols]))
        fp = int(np.count_nonzero(got)) - tp
        fn = int(np.count_nonzero(want)) - tp
        live_f1 = 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)
    if not shape_ok:
        why: str | None = (
            f"shape {_shape_text(answer.shape)}, expected {_shape_text(expected.shape)}"
        )
    elif not exact:
        why = f"{total - overlap_right} of {total} cells wrong"
    else:
        why = None
    return make(
        parse_ok=True,
        shape_ok=shape_ok,
        exact=exact,
        cell_accuracy=cell_accuracy,
        live_f1=live_f1,
        reason=why,
    )


def score_item(item: Item, text: str) -> ItemScore:
    """Parse a model's answer text (tolerantly, see :mod:`simonsca.codec`) and score it."""
    return score_text(item, text)[1]


def score_text(item: Item, text: str) -> tuple[codec.ParsedAnswer, ItemScore]:
    """What the parser read of an answer text, and its score (parsed once).

    When the parser had to cut an over-long text (see :func:`simonsca.codec.parse_answer`) and
    the answer is not exact, the reason says so: ``"shape 1x900, expected 6x8 (answer cut at
    ...)"``.
    """
    parsed = codec.parse_answer(text, item)
    score = score_answer(item, parsed.value, parsed.reason)
    cut = next((note for note in parsed.notes if note.startswith(codec.NOTE_CUT)), None)
    if cut is not None and not score.exact:
        score = replace(score, reason=f"{score.reason} ({cut})")
    return parsed, score


# --------------------------------------------------------------------------- aggregates


@dataclass(frozen=True)
class Metric:
    """One aggregate with its confidence interval; ``value``/``low``/``high`` are None when n=0."""

    name: str
    value: float | None
    low: float | None
    high: float | None
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "low": self.low,
            "high": self.high,
            "n": self.n,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Metric:
        return cls(data["name"], data["value"], data["low"], data["high"], int(data["n"]))


def z_value(confidence: float = DEFAULT_CONFIDENCE) -> float:
    """The two-sided normal quantile for a confidence level (1.959964 for 0.95)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(
    successes: int, n: int, confidence: float = DEFAULT_CONFIDENCE
) -> tuple[float, float]:
    """Wilson score interval (no continuity correction) for ``successes`` out of ``n``."""
    if n <= 0:
        raise ValueError("wilson_interval needs n > 0")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be between 0 and n={n}, got {successes}")
    z = z_value(confidence)
    p = successes / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def bootstrap_mean_interval(
    values: Sequence[float] | np.ndarray,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean; deterministic for a given ``seed``."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        raise ValueError("bootstrap_mean_interval needs at least one value")
    if np.all(data == data[0]):
        return float(data[0]), float(data[0])
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    alpha = 1 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def rate_metric(name: str, flags: Sequence[bool], confidence: float = DEFAULT_CONFIDENCE) -> Metric:
    n = len(flags)
    if n == 0:
        return Metric(name, None, None, None, 0)
    k = int(sum(bool(f) for f in flags))
    low, high = wilson_interval(k, n, confidence)
    return Metric(name, k / n, low, high, n)


def mean_metric(
    name: str,
    values: Sequence[float],
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
) -> Metric:
    n = len(values)
    if n == 0:
        return Metric(name, None, None, None, 0)
    low, high = bootstrap_mean_interval(
        values, confidence=confidence, resamples=resamples, seed=seed
    )
    return Metric(name, float(np.mean(np.asarray(values, dtype=float))), low, high, n)


def metrics_for(
    scores: Sequence[ItemScore],
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
) -> dict[str, Metric]:
    """All five metrics (in :data:`METRICS` order) over some scores."""
    f1 = [s.live_f1 for s in scores if s.live_f1 is not None]
    return {
        "parse_ok": rate_metric("parse_ok", [s.parse_ok for s in scores], confidence),
        "shape_ok": rate_metric("shape_ok", [s.shape_ok for s in scores], confidence),
        "exact": rate_metric("exact", [s.exact for s in scores], confidence),
        "cell_accuracy": mean_metric(
            "cell_accuracy",
            [s.cell_accuracy for s in scores],
            confidence=confidence,
            resamples=resamples,
            seed=seed,
        ),
        "live_f1": mean_metric(
            "live_f1", f1, confidence=confidence, resamples=resamples, seed=seed
        ),
    }


def facet_sort_key(value: str) -> tuple[float, str]:
    """Order facet values naturally: ``1-4 < 5-8 < 9-15 < 16+``, ``1 < 2 < 10``."""
    digits = ""
    for ch in value:
        if not ch.isdigit():
            break
        digits += ch
    return (float(digits) if digits else math.inf, value)


def group_by_facet(scores: Iterable[ItemScore]) -> dict[str, dict[str, list[ItemScore]]]:
    """facet -> value -> the scores with that value, facets in FACETS order, values sorted."""
    groups: dict[str, dict[str, list[ItemScore]]] = {}
    for score in scores:
        for name, value in score.facets:
            groups.setdefault(name, {}).setdefault(value, []).append(score)
    ordered = [f for f in FACETS if f in groups] + [f for f in groups if f not in FACETS]
    return {
        name: {v: groups[name][v] for v in sorted(groups[name], key=facet_sort_key)}
        for name in ordered
    }


@dataclass(frozen=True)
class Summary:
    """Aggregates over a set of scores: overall and per facet value."""

    n: int
    metrics: dict[str, Metric]
    by_facet: dict[str, dict[str, dict[str, Metric]]]  # facet -> value -> metric name -> Metric

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "metrics": {k: m.to_dict() for k, m in self.metrics.items()},
            "by_facet": {
                facet: {
                    value: {k: m.to_dict() for k, m in metrics.items()}
                    for value, metrics in values.items()
                }
                for facet, values in self.by_facet.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Summary:
        return cls(
            n=int(data["n"]),
            metrics={k: Metric.from_dict(m) for k, m in data["metrics"].items()},
            by_facet={
                facet: {
                    value: {k: Metric.from_dict(m) for k, m in metrics.items()}
                    for value, metrics in values.items()
                }
                for facet, values in data["by_facet"].items()
            },
        )


def summarize(
    scores: Sequence[ItemScore],
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
) -> Summary:
    """Overall metrics and a breakdown by each facet (task, wrap, generations, size, symbols)."""

    def metrics(group: Sequence[ItemScore]) -> dict[str, Metric]:
        return metrics_for(group, confidence=confidence, resamples=resamples, seed=seed)

    return Summary(
        n=len(scores),
        metrics=metrics(scores),
        by_facet={
            facet: {value: metrics(group) for value, group in values.items()}
            for facet, values in group_by_facet(scores).items()
        },
    )
