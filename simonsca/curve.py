"""The learning curve: a finetune followed through its checkpoints -- what it holds.

(:mod:`simonsca.learning_curve` builds it from a record, which then holds it.) When at least two
candidates carry a training ``step`` (checkpoints), the curve lines them up by step -- the reference at step 0 before them, unless the reference is a stored
run -- with each primary metric and its 95% CI (teacher-forced cell accuracy, answer NLL, greedy
cell accuracy, parse rate: those the run measured), the trivial baselines as flat bars, and the
paired change between neighbouring points on the curve's primary metric (teacher-forced cell
accuracy when measured, else greedy cell accuracy, else the answer NLL): *still learning* when
the CI of the improvement lies above 0, *getting worse* when below, *plateau* when it includes 0.

The best checkpoint is picked on the same items it is measured on, so its number is optimistic
(the winner's curse): :class:`Best` says so, and leaves room (``confirmed``) for a confirmation
on fresh held-out seeds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from simonsca.summary import Estimate

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
    # "step": points by training step; "order": candidates with no step, by the order given
    # (v1, v2, v3 ...: position 1, 2, 3; the reference at 0)
    axis: str = "step"

    @property
    def axis_title(self) -> str:
        return "training step" if self.axis == "step" else "candidate, in the order given"

    def delta_to(self, name: str) -> NeighbourDelta | None:
        """The change from the point before ``name`` to ``name`` (None for the first point)."""
        return next((d for d in self.deltas if d.name == name), None)

    def levels(self, metric: str) -> tuple[BaselineLevel, ...]:
        return tuple(b for b in self.baselines if b.metric == metric)
