"""Aggregates of per-item scores with 95% intervals: overall and per facet value.

Rates (parse, shape, exact, greedy-consistent exact) get a Wilson score interval; means (cell
accuracy, live F1, answer NLL, teacher-forced cell accuracy) a seeded percentile bootstrap, so
the same scores always give the same interval. Which is which is declared in
:mod:`simonsca.metrics`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np

from simonsca.metrics import METRICS
from simonsca.stats import (
    DEFAULT_BOOTSTRAP_SEED,
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    bootstrap_mean_interval,
    wilson_interval,
)

#: The facets results are broken down by, in display order (see ``Item.family_facets``).
FACETS: tuple[str, ...] = ("task", "wrap", "generations", "size", "symbols")


class Scored(Protocol):
    """A per-item score: its item's seed and facets, and metric attributes."""

    @property
    def seed(self) -> int: ...

    @property
    def facets(self) -> tuple[tuple[str, str], ...]: ...


S = TypeVar("S", bound=Scored)


@dataclass(frozen=True)
class Estimate:
    """One aggregate with its confidence interval; ``value``/``low``/``high`` are None when n=0."""

    value: float | None
    low: float | None
    high: float | None
    n: int


def metric_values(scores: Iterable[Scored], name: str) -> list[float]:
    """The metric's per-item values, skipping items where it does not apply (``None``)."""
    out = []
    for s in scores:
        v = getattr(s, name)
        if v is not None:
            out.append(float(v))
    return out


def estimate(
    name: str,
    scores: Sequence[Scored],
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
) -> Estimate:
    """The metric's mean over ``scores`` with its interval (Wilson for rates, bootstrap for
    means)."""
    values = metric_values(scores, name)
    if not values:
        return Estimate(None, None, None, 0)
    if METRICS[name].aggregate == "rate":
        k = int(sum(1 for v in values if v))
        low, high = wilson_interval(k, len(values), confidence)
        return Estimate(k / len(values), low, high, len(values))
    low, high = bootstrap_mean_interval(
        values, confidence=confidence, resamples=resamples, seed=seed
    )
    return Estimate(float(np.mean(values)), low, high, len(values))


def facet_sort_key(value: str) -> tuple[float, str]:
    """Order facet values naturally: ``1-4 < 5-8 < 9-15 < 16+``, ``1 < 2 < 10``."""
    digits = ""
    for ch in value:
        if not ch.isdigit():
            break
        digits += ch
    return (float(digits) if digits else math.inf, value)


def group_by_facet(scores: Iterable[S]) -> dict[str, dict[str, list[S]]]:
    """facet -> value -> the scores with that value, facets in FACETS order, values sorted."""
    groups: dict[str, dict[str, list[S]]] = {}
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
    """Aggregates over one model's scores: overall and per facet value."""

    n: int
    metrics: Mapping[str, Estimate]
    by_facet: Mapping[str, Mapping[str, Mapping[str, Estimate]]]  # facet -> value -> metric


def summarize(
    scores: Sequence[Scored],
    metrics: Sequence[str],
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
) -> Summary:
    """Every metric in ``metrics`` over ``scores``, overall and by each facet value."""

    def over(group: Sequence[Scored]) -> dict[str, Estimate]:
        return {
            name: estimate(name, group, confidence=confidence, resamples=resamples, seed=seed)
            for name in metrics
        }

    return Summary(
        n=len(scores),
        metrics=over(scores),
        by_facet={
            facet: {value: over(group) for value, group in values.items()}
            for facet, values in group_by_facet(scores).items()
        },
    )
