"""Every metric, declared once: its name, labels, how it aggregates and which way is better.

Tables, deltas, comparisons and checks look metrics up here (as lm-evaluation-harness's metric
registry does), so a label or a direction is never written twice.

Generation metrics score the greedy answer (:class:`~simonsca.scoring.ItemScore`); teacher-forced
metrics score the expected answer fed to the model token by token
(:class:`~simonsca.likelihood.ForcedScore`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Aggregate = Literal["rate", "mean"]
Mode = Literal["generate", "teacher-forced"]
Unit = Literal["share", "nats"]


@dataclass(frozen=True)
class MetricSpec:
    """One metric: the score attribute it reads, its labels, aggregation and direction."""

    name: str  # the attribute of the per-item score
    label: str  # in sentences and delta tables: "cell accuracy"
    column: str  # in the models table: "cell acc."
    aggregate: Aggregate  # rate: Wilson interval; mean: percentile bootstrap
    higher_is_better: bool
    mode: Mode
    unit: Unit = "share"
    description: str = ""

    def value_text(self, value: float | None) -> str:
        if value is None:
            return "-"
        return f"{100 * value:.1f}%" if self.unit == "share" else f"{value:.3f}"

    def delta_text(self, diff: float) -> str:
        return f"{100 * diff:+.1f} pp" if self.unit == "share" else f"{diff:+.3f} nats"

    def interval_text(self, low: float | None, high: float | None) -> str:
        if low is None or high is None:
            return "-"
        if self.unit == "share":
            return f"{100 * low:.0f}-{100 * high:.0f}"
        return f"{low:.3f}-{high:.3f}"


_ALL = (
    MetricSpec(
        "parse_ok",
        "parse rate",
        "parse",
        "rate",
        True,
        "generate",
        description="the answer holds a grid (or a JSON count matrix) at all",
    ),
    MetricSpec(
        "shape_ok",
        "shape rate",
        "shape",
        "rate",
        True,
        "generate",
        description="the grid has the expected rows and columns",
    ),
    MetricSpec(
        "exact",
        "exact match",
        "exact",
        "rate",
        True,
        "generate",
        description="every cell right and the shape right",
    ),
    MetricSpec(
        "cell_accuracy",
        "cell accuracy",
        "cell acc.",
        "mean",
        True,
        "generate",
        description="right cells / (expected cells + cells written outside the expected grid)",
    ),
    MetricSpec(
        "live_f1",
        "live-cell F1",
        "live F1",
        "mean",
        True,
        "generate",
        description="F1 of the live cells (next-generation items only)",
    ),
    MetricSpec(
        "nll",
        "answer NLL",
        "NLL",
        "mean",
        False,
        "teacher-forced",
        "nats",
        description="mean negative log-likelihood of the expected answer, nats per token",
    ),
    MetricSpec(
        "forced_cell_accuracy",
        "teacher-forced cell accuracy",
        "TF cell acc.",
        "mean",
        True,
        "teacher-forced",
        description="share of cells whose token is the model's top choice given the right prefix",
    ),
    MetricSpec(
        "greedy_exact",
        "greedy-consistent exact",
        "TF exact",
        "rate",
        True,
        "teacher-forced",
        description="every answer token and the stop are the model's top choice",
    ),
)

METRICS: dict[str, MetricSpec] = {m.name: m for m in _ALL}
GENERATION_METRICS: tuple[str, ...] = tuple(m.name for m in _ALL if m.mode == "generate")
FORCED_METRICS: tuple[str, ...] = tuple(m.name for m in _ALL if m.mode == "teacher-forced")
#: The metric the verdict reads first, per scoring mode.
PRIMARY = {"generate": "cell_accuracy", "teacher-forced": "forced_cell_accuracy"}


def metric(name: str) -> MetricSpec:
    return METRICS[name]
