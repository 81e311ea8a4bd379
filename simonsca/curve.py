"""The learning curve: a finetune followed through its checkpoints, read from one record.

When at least two candidates carry a training ``step`` (checkpoints), :func:`learning_curve`
lines them up by step -- the reference at step 0 before them, unless the reference is a stored
run -- with each primary metric and its 95% CI (teacher-forced cell accuracy, answer NLL, greedy
cell accuracy, parse rate: those the run measured), the trivial baselines as flat bars, and the
paired change between neighbouring points on the curve's primary metric (teacher-forced cell
accuracy when measured, else greedy cell accuracy, else the answer NLL): *still learning* when
the CI of the improvement lies above 0, *getting worse* when below, *plateau* when it includes 0.

The best checkpoint is picked on the same items it is measured on, so its number is optimistic
(the winner's curse): :class:`Best` says so, and leaves room (``confirmed``) for a confirmation
on fresh held-out seeds.

Pure: reads an :class:`~simonsca.record.Evaluation`, runs no model; the same record always gives
the same curve (the bootstrap is seeded).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from simonsca.compare import is_trivial_baseline
from simonsca.likelihood import ForcedScore
from simonsca.metrics import METRICS
from simonsca.scoring import ItemScore
from simonsca.stats import DEFAULT_BOOTSTRAP_SEED, DEFAULT_RESAMPLES, paired_bootstrap
from simonsca.summary import Estimate

if TYPE_CHECKING:  # the record may hold a Curve: this module must not import it at run time
    from simonsca.record import Evaluation

#: The metrics a curve draws, in display order: (metric, the scoring that measures it).
CURVE_METRICS: tuple[tuple[str, str], ...] = (
    ("forced_cell_accuracy", "teacher-forced"),
    ("nll", "teacher-forced"),
    ("cell_accuracy", "generate"),
    ("parse_ok", "generate"),
)
#: The metric neighbouring checkpoints are compared on, first measured first.
PRIMARY_ORDER: tuple[str, ...] = ("forced_cell_accuracy", "cell_accuracy", "nll")
#: What a trivial baseline's bar for each curve metric is read from (its greedy answers' score:
#: predicting "all dead" gets every dead cell right, teacher-forced or not -- as
#: :func:`simonsca.compare.baseline_standing` sets the bar).
BASELINE_METRIC = {
    "forced_cell_accuracy": "cell_accuracy",
    "cell_accuracy": "cell_accuracy",
    "parse_ok": "parse_ok",
}

STILL_LEARNING, PLATEAU, GETTING_WORSE = "still learning", "plateau", "getting worse"
UNCONFIRMED = "best on these items; unconfirmed on fresh held-out seeds"


@dataclass(frozen=True)
class CurvePoint:
    """One point of the curve: a checkpoint (or the reference at step 0) and its values."""

    step: int
    name: str  # the contender's name
    label: str  # its label in the primary prompt mode (the key of the record's summaries)
    role: str  # "reference" or "candidate"
    values: Mapping[str, Estimate]  # metric -> its value with a 95% CI (those measured)

    def value(self, metric: str) -> float | None:
        e = self.values.get(metric)
        return e.value if e is not None else None


@dataclass(frozen=True)
class NeighbourDelta:
    """A point against the one before it on the curve's primary metric, paired by item."""

    metric: str
    previous: str  # the earlier point's name
    name: str
    step: int
    diff: float  # later minus earlier (for NLL, lower is better: a negative diff is a gain)
    low: float
    high: float
    n: int
    trend: str  # STILL_LEARNING, PLATEAU or GETTING_WORSE


@dataclass(frozen=True)
class BaselineLevel:
    """A trivial baseline's value on one curve metric: a flat line across the steps."""

    metric: str
    name: str
    value: float


@dataclass(frozen=True)
class Best:
    """The best checkpoint on the curve's primary metric -- on the same items it was picked on."""

    name: str
    step: int
    metric: str
    value: Estimate
    caveat: str = UNCONFIRMED
    # a confirmation on fresh held-out seeds, in one line (None: not confirmed)
    confirmed: str | None = None


@dataclass(frozen=True)
class Curve:
    """Checkpoints by step: each metric with its CI, the baselines, neighbour deltas, the best."""

    metrics: tuple[str, ...]  # the curve metrics this run measured, in CURVE_METRICS order
    primary: str  # the metric of the neighbour deltas and of the best checkpoint
    points: tuple[CurvePoint, ...]  # by step; the reference (step 0) first when it is a point
    baselines: tuple[BaselineLevel, ...]
    deltas: tuple[NeighbourDelta, ...]  # deltas[i]: points[i + 1] against points[i]
    best: Best | None
    confidence: float = 0.95

    def delta_to(self, name: str) -> NeighbourDelta | None:
        """The change from the point before ``name`` to ``name`` (None for the first point)."""
        return next((d for d in self.deltas if d.name == name), None)

    def levels(self, metric: str) -> tuple[BaselineLevel, ...]:
        return tuple(b for b in self.baselines if b.metric == metric)


def _mode_of(metric: str) -> str:
    return dict(CURVE_METRICS)[metric]


def _estimate(e: Evaluation, label: str, metric: str) -> Estimate | None:
    summaries = e.forced_summaries if _mode_of(metric) == "teacher-forced" else e.summaries
    summary = summaries.get(label)
    found = summary.metrics.get(metric) if summary is not None else None
    return found if found is not None and found.value is not None else None


def _points(e: Evaluation) -> list[CurvePoint]:
    stepped = sorted(
        (c for c in e.candidates if c.step is not None), key=lambda c: (c.step or 0, c.name)
    )
    named: list[tuple[int, str, str]] = []
    if e.reference is not None and e.settings.compare_to is None:
        named.append((0, e.reference, "reference"))
    named += [(c.step or 0, c.name, "candidate") for c in stepped]
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
    """The curve of ``evaluation``'s checkpoints; None unless at least two candidates have a
    step."""
    e = evaluation
    if sum(1 for c in e.candidates if c.step is not None) < 2:
        return None
    # a point with nothing measured (a candidate byte-identical to the reference is not run)
    points = [p for p in _points(e) if p.values]
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
    )
