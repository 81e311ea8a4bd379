"""Build the learning curve (:mod:`simonsca.curve`) from a run's record.

Pure: reads an :class:`~simonsca.record.Evaluation`, runs no model; the same record always gives
the same curve (the bootstrap is seeded). The suite stores the result in the record
(``Evaluation.curve``), and the views read it from there.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from simonsca.compare import is_trivial_baseline
from simonsca.curve import (
    BASELINE_METRIC,
    CURVE_METRICS,
    GETTING_WORSE,
    PLATEAU,
    PRIMARY_ORDER,
    STILL_LEARNING,
    BaselineLevel,
    Best,
    Curve,
    CurvePoint,
    NeighbourDelta,
)
from simonsca.likelihood import ForcedScore
from simonsca.metrics import METRICS
from simonsca.record import Evaluation
from simonsca.scoring import ItemScore
from simonsca.stats import DEFAULT_BOOTSTRAP_SEED, DEFAULT_RESAMPLES, paired_bootstrap
from simonsca.summary import Estimate


def _mode_of(metric: str) -> str:
    return dict(CURVE_METRICS)[metric]


def _estimate(e: Evaluation, label: str, metric: str) -> Estimate | None:
    summaries = e.forced_summaries if _mode_of(metric) == "teacher-forced" else e.summaries
    summary = summaries.get(label)
    found = summary.metrics.get(metric) if summary is not None else None
    return found if found is not None and found.value is not None else None


def _points(e: Evaluation, axis: str) -> list[CurvePoint]:
    if axis == "step":
        stepped = sorted(
            (c for c in e.candidates if c.step is not None), key=lambda c: (c.step or 0, c.name)
        )
        candidates = [(c.step or 0, c.name) for c in stepped]
    else:
        candidates = [(k, c.name) for k, c in enumerate(e.candidates, start=1)]
    named: list[tuple[int, str, str]] = []
    if e.reference is not None and e.settings.compare_to is None:
        named.append((0, e.reference, "reference"))
    named += [(x, name, "candidate") for x, name in candidates]
    out = []
    for step, name, role in named:
        label = e.label(name)
        values = {
            metric: found
            for metric, _ in CURVE_METRICS
            if (found := _estimate(e, label, metric)) is not None
        }
        out.append(CurvePoint(step, name, label, role, values))
    return out


def _per_item(e: Evaluation, label: str, metric: str) -> dict[int, float]:
    """seed -> the metric's value on that item for ``label`` (items where it applies)."""
    scores: Sequence[ItemScore] | Sequence[ForcedScore] = (
        e.forced_scores(label)
        if _mode_of(metric) == "teacher-forced"
        else e.generation_scores(label)
    )
    out = {}
    for s in scores:
        value = getattr(s, metric)
        if value is not None:
            out[s.seed] = float(value)
    return out


def _trend(metric: str, low: float, high: float) -> str:
    better = METRICS[metric].higher_is_better
    if (low > 0 and better) or (high < 0 and not better):
        return STILL_LEARNING
    if (high < 0 and better) or (low > 0 and not better):
        return GETTING_WORSE
    return PLATEAU


def _neighbour(
    e: Evaluation, before: CurvePoint, after: CurvePoint, metric: str, confidence: float
) -> NeighbourDelta | None:
    a = _per_item(e, before.label, metric)
    b = _per_item(e, after.label, metric)
    seeds = [s for s in a if s in b]
    if not seeds:
        return None
    d = paired_bootstrap(
        [a[s] for s in seeds],
        [b[s] for s in seeds],
        confidence=confidence,
        resamples=DEFAULT_RESAMPLES,
        seed=DEFAULT_BOOTSTRAP_SEED,
    )
    return NeighbourDelta(
        metric, before.name, after.name, after.step, d.diff, d.low, d.high, d.n,
        _trend(metric, d.low, d.high),
    )  # fmt: skip


def _baselines(
    e: Evaluation, points: Sequence[CurvePoint], metrics: Sequence[str]
) -> list[BaselineLevel]:
    """Each trivial baseline's mean on the items the points were scored on, per metric."""
    names = [
        m.label
        for m in e.models
        if m.kind == "baseline" and m.prompt_mode == e.primary_mode and is_trivial_baseline(m.label)
    ]
    out = []
    for metric in metrics:
        source = BASELINE_METRIC.get(metric)
        if source is None:
            continue
        seeds = set(_per_item(e, points[0].label, metric))
        for name in names:
            values = [
                float(getattr(i.answers[name].score, source))
                for i in e.items
                if i.seed in seeds and name in i.answers
            ]
            if values and len(values) == len(seeds):
                out.append(BaselineLevel(metric, name, sum(values) / len(values)))
    return out


def _best(points: Sequence[CurvePoint], metric: str) -> Best | None:
    candidates = [p for p in points if p.role == "candidate" and p.value(metric) is not None]
    if not candidates:
        return None
    sign = 1.0 if METRICS[metric].higher_is_better else -1.0
    # the highest (NLL: the lowest) value; on a tie, the earliest step
    top = max(candidates, key=lambda p: (sign * (p.value(metric) or 0.0), -p.step))
    return Best(top.name, top.step, metric, top.values[metric])


def learning_curve(evaluation: Evaluation) -> Curve | None:
    """The curve of ``evaluation``'s candidates: by training step when at least two have one
    (checkpoints), else -- two or more candidates, none with a step (``v1 v2 v3``) -- in the
    order given; None for a single candidate."""
    e = evaluation
    stepped = sum(1 for c in e.candidates if c.step is not None)
    if stepped < 2 and (stepped > 0 or len(e.candidates) < 2):
        return None
    axis = "step" if stepped >= 2 else "order"
    # a point with nothing measured (a candidate byte-identical to the reference is not run)
    points = [p for p in _points(e, axis) if p.values]
    if len(points) < 2:
        return None
    metrics = tuple(
        metric for metric, _ in CURVE_METRICS if all(metric in p.values for p in points)
    )
    primary = next((m for m in PRIMARY_ORDER if m in metrics), None)
    if primary is None:
        return None
    confidence = 1 - e.settings.alpha
    deltas = tuple(
        d
        for before, after in itertools.pairwise(points)
        if (d := _neighbour(e, before, after, primary, confidence)) is not None
    )
    return Curve(
        metrics=metrics,
        primary=primary,
        points=tuple(points),
        baselines=tuple(_baselines(e, points, metrics)),
        deltas=deltas,
        best=_best(points, primary),
        confidence=confidence,
        axis=axis,
    )
