"""Paired base-vs-merged statistics.

Both models answer the same items, so every statistic here is *paired* by item seed: deltas are
merged minus base with a paired percentile bootstrap CI (the same resampled items for both; fixed
seed); exact match (and greedy-consistent exact) get an exact McNemar test; the answer NLL a
Wilcoxon signed-rank test. The verdict read from them is :mod:`simonsca.verdict`'s.

How the merged model stands against the best trivial baseline (:class:`BaselineStanding`) is
reported beside the verdict: learning the answer format is not learning the rule.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from simonsca.likelihood import ForcedScore
from simonsca.metrics import FORCED_METRICS, GENERATION_METRICS, METRICS, PRIMARY
from simonsca.scoring import ItemScore
from simonsca.stats import (
    DEFAULT_ALPHA,
    DEFAULT_BOOTSTRAP_SEED,
    DEFAULT_RESAMPLES,
    TestResult,
    ci_label,
    mcnemar_exact,
    paired_bootstrap,
    signed_rank_test,
)
from simonsca.summary import Estimate, estimate, group_by_facet, metric_values

#: ``max_family_regression``'s default (the settings table's): a family may lose 10 pp.
DEFAULT_FAMILY_LIMIT = 0.10


class Standing(str, enum.Enum):
    """Where the merged model's 95% CI lies against the best trivial baseline."""

    ABOVE = "above"  # the whole CI above: skill beyond the baselines
    OVERLAPS = "overlaps"  # the CI contains the baseline: not shown either way
    BELOW = "below"  # the whole CI below

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Delta:
    """Merged minus base on one metric, with a paired bootstrap CI of the difference."""

    metric: str
    base: float
    merged: float
    diff: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class FamilyDelta:
    """Base vs merged on the items sharing one facet value (the mode's primary metric)."""

    facet: str
    value: str
    n: int
    metric: str
    base: float
    merged: float
    diff: float
    low: float
    high: float
    # lost more than max_family_regression of its cell accuracy (:func:`family_regressed`): the
    # no_family_regressed check's rule, decided once here for the check and every view
    regressed: bool = False


def family_regressed(metric: str, diff: float, limit: float) -> bool:
    """The no_family_regressed rule for one family: its cell accuracy (greedy or teacher-forced)
    fell by more than ``limit``. (The limit is a share of cells: an NLL family has none.)"""
    spec = METRICS[metric]
    if spec.unit != "share":
        return False
    loss = -diff if spec.higher_is_better else diff
    return loss > limit + 1e-12


@dataclass(frozen=True)
class BaselineStanding:
    """The merged model against the best trivial baseline on the same items and metric."""

    metric: str
    best: str  # the baseline with the highest mean
    best_value: float
    merged: Estimate  # the merged model's mean with its 95% CI
    standing: Standing
    baselines: Mapping[str, float]  # every trivial baseline's mean
    confidence: float = 0.95  # the level of ``merged``'s CI (1 - the candidate's alpha)

    @property
    def skill_shown(self) -> bool:
        """The merged model's whole 95% CI lies above the best baseline."""
        return self.standing is Standing.ABOVE

    def sentence(self, who: str = "merged") -> str:
        """The standing in words; ``who`` names the candidate."""
        spec = METRICS[self.metric]
        m = self.merged
        where = {
            Standing.ABOVE: "lies above",
            Standing.OVERLAPS: "overlaps",
            Standing.BELOW: "lies below",
        }[self.standing]
        return (
            f"{who} {spec.label} {spec.value_text(m.value)} ({ci_label(1 - self.confidence)} "
            f"{spec.value_text(m.low)} to {spec.value_text(m.high)}) {where} the best trivial "
            f"baseline, {self.best} at {spec.value_text(self.best_value)}"
        )


@dataclass(frozen=True)
class ModeComparison:
    """Base vs merged in one scoring mode (generation or teacher forcing) and prompt mode."""

    scoring: str  # "generate" or "teacher-forced"
    n: int
    deltas: tuple[Delta, ...]
    exact_test: TestResult  # McNemar on exact (generation) or greedy-consistent exact
    families: tuple[FamilyDelta, ...]
    baseline: BaselineStanding | None
    significant_gain: bool
    significant_loss: bool
    # signed-rank test of the per-item change of the mode's main metric (cell accuracy, else
    # NLL): the p-value that orders candidates for the Holm correction (see multiplicity.py)
    primary_test: TestResult | None = None

    def delta(self, metric: str) -> Delta | None:
        return next((d for d in self.deltas if d.metric == metric), None)


@dataclass(frozen=True)
class NoiseFloor:
    """How far the reference model's answer NLL moves under changes that mean nothing (another
    grouping of tokens into decode calls; a 1e-6 update of its weights: :mod:`simonsca.noise`)
    -- differences below this are numerical noise, not the finetune."""

    item_nll: float  # max over items and nulls of |NLL(scored once) - NLL(scored again)|
    token_logprob: float  # max over answer tokens and nulls of |log p(once) - log p(again)|
    n_items: int
    method: str


@dataclass(frozen=True)
class LikelihoodComparison:
    """The answer NLL, paired: merged minus base, its CI, a signed-rank test, the noise floor."""

    base_nll: float
    merged_nll: float
    delta: Delta
    signed_rank: TestResult
    noise: NoiseFloor | None
    max_item_change: float  # max over items of |NLL merged - NLL base|
    # the (1 - alpha) CI of the mean change lies inside +- the noise floor: shown to be no
    # bigger than what regrouping the same arithmetic does (an equivalence test)
    within_noise: bool
    significant: bool  # CI excludes 0, p < alpha, and the mean change exceeds the noise floor

    @property
    def direction(self) -> str:
        return "more" if self.delta.diff < 0 else "less"


# --------------------------------------------------------------------------------------------


def is_trivial_baseline(name: str) -> bool:
    """Baselines that set a bar to beat; an oracle is a ceiling, not a bar."""
    return "oracle" not in name.lower()


T = TypeVar("T", ItemScore, ForcedScore)


def _pair(base: Sequence[T], merged: Sequence[T]) -> tuple[list[T], list[T]]:
    """Pair two score lists by item seed (order of ``base``); they must cover the same seeds."""
    by_seed = {s.seed: s for s in merged}
    seeds = [s.seed for s in base]
    if len(by_seed) != len(merged) or len(set(seeds)) != len(base):
        raise ValueError("scores must not repeat an item seed")
    if set(seeds) != set(by_seed):
        missing = sorted(set(seeds) ^ set(by_seed))[:5]
        raise ValueError(
            f"base and merged were scored on different items (e.g. seeds {missing}); "
            "evaluate both models on the same item list"
        )
    return list(base), [by_seed[s] for s in seeds]


def _deltas(
    base: Sequence[object],
    merged: Sequence[object],
    metrics: Sequence[str],
    alpha: float,
    resamples: int,
    seed: int,
) -> tuple[Delta, ...]:
    out = []
    for name in metrics:
        pairs = [
            (getattr(b, name), getattr(m, name))
            for b, m in zip(base, merged)
            if getattr(b, name) is not None and getattr(m, name) is not None
        ]
        if not pairs:
            continue
        d = paired_bootstrap(
            [float(x) for x, _ in pairs],
            [float(y) for _, y in pairs],
            confidence=1 - alpha,
            resamples=resamples,
            seed=seed,
        )
        out.append(Delta(name, d.a, d.b, d.diff, d.low, d.high, d.n))
    return tuple(out)


def _families(
    base: Sequence[ItemScore] | Sequence[ForcedScore],
    merged: Sequence[ItemScore] | Sequence[ForcedScore],
    metric: str,
    alpha: float,
    resamples: int,
    seed: int,
    limit: float,
) -> tuple[FamilyDelta, ...]:
    partner = {s.seed: s for s in merged}
    out = []
    for facet, values in group_by_facet(base).items():
        for value, group in values.items():
            b = metric_values(group, metric)
            m = metric_values([partner[s.seed] for s in group], metric)
            if not b or len(b) != len(m):
                continue
            d = paired_bootstrap(b, m, confidence=1 - alpha, resamples=resamples, seed=seed)
            out.append(
                FamilyDelta(
                    facet,
                    value,
                    len(group),
                    metric,
                    d.a,
                    d.b,
                    d.diff,
                    d.low,
                    d.high,
                    family_regressed(metric, d.diff, limit),
                )
            )
    return tuple(out)


def baseline_standing(
    merged: Sequence[ItemScore] | Sequence[ForcedScore],
    baselines: Mapping[str, Sequence[ItemScore]],
    *,
    metric: str,
    baseline_metric: str,
    alpha: float = DEFAULT_ALPHA,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
) -> BaselineStanding | None:
    """Merged's ``metric`` (with its CI) against the best trivial baseline's ``baseline_metric``
    on the same items."""
    seeds = {s.seed for s in merged}
    means: dict[str, float] = {}
    for name, scores in baselines.items():
        if not is_trivial_baseline(name):
            continue
        kept = [getattr(s, baseline_metric) for s in scores if s.seed in seeds]
        if len(kept) != len(seeds):
            raise ValueError(f"baseline {name!r} was not scored on the same items as the models")
        means[name] = float(np.mean(kept))
    if not means:
        return None
    best = max(means, key=lambda k: means[k])
    est = estimate(metric, merged, confidence=1 - alpha, resamples=resamples, seed=seed)
    if est.value is None or est.low is None or est.high is None:
        return None
    if est.low > means[best]:
        standing = Standing.ABOVE
    elif est.high < means[best]:
        standing = Standing.BELOW
    else:
        standing = Standing.OVERLAPS
    return BaselineStanding(metric, best, means[best], est, standing, means, 1 - alpha)


def compare_generation(
    base: Sequence[ItemScore],
    merged: Sequence[ItemScore],
    *,
    baselines: Mapping[str, Sequence[ItemScore]] | None = None,
    alpha: float = DEFAULT_ALPHA,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
    family_limit: float = DEFAULT_FAMILY_LIMIT,
) -> ModeComparison:
    """Generation metrics, paired: deltas, McNemar on exact, families, baseline standing."""
    b, m = _pair(base, merged)
    if not b:
        raise ValueError("nothing to compare: no scored items")
    deltas = _deltas(b, m, GENERATION_METRICS, alpha, resamples, seed)
    losses = sum(1 for x, y in zip(b, m) if x.exact and not y.exact)
    wins = sum(1 for x, y in zip(b, m) if y.exact and not x.exact)
    test = mcnemar_exact(losses, wins)
    primary = PRIMARY["generate"]
    cell = next(d for d in deltas if d.metric == primary)
    significant = test.p < alpha
    changes = [y.cell_accuracy - x.cell_accuracy for x, y in zip(b, m)]
    return ModeComparison(
        scoring="generate",
        n=len(b),
        deltas=deltas,
        exact_test=test,
        families=_families(b, m, primary, alpha, resamples, seed, family_limit),
        baseline=baseline_standing(
            m,
            baselines or {},
            metric=primary,
            baseline_metric=primary,
            alpha=alpha,
            resamples=resamples,
            seed=seed,
        ),
        significant_gain=cell.low > 0 or (significant and wins > losses),
        significant_loss=cell.high < 0 or (significant and losses > wins),
        primary_test=signed_rank_test(changes),
    )


def compare_forced(
    base: Sequence[ForcedScore],
    merged: Sequence[ForcedScore],
    *,
    baselines: Mapping[str, Sequence[ItemScore]] | None = None,
    noise: NoiseFloor | None = None,
    alpha: float = DEFAULT_ALPHA,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
    family_limit: float = DEFAULT_FAMILY_LIMIT,
) -> tuple[ModeComparison, LikelihoodComparison]:
    """Teacher-forced metrics, paired; and the answer-NLL comparison against the noise floor.

    The trivial baselines' bar for teacher-forced cell accuracy is their (right-shaped) cell
    accuracy: always predicting the dead symbol, say, gets every dead cell right.
    """
    b, m = _pair(base, merged)
    if not b:
        raise ValueError("nothing to compare: no scored items")
    deltas = _deltas(b, m, FORCED_METRICS, alpha, resamples, seed)
    losses = sum(1 for x, y in zip(b, m) if x.greedy_exact and not y.greedy_exact)
    wins = sum(1 for x, y in zip(b, m) if y.greedy_exact and not x.greedy_exact)
    test = mcnemar_exact(losses, wins)
    nll = next(d for d in deltas if d.metric == "nll")
    changes = [y.nll - x.nll for x, y in zip(b, m)]
    rank = signed_rank_test(changes)
    floor = noise.item_nll if noise is not None else 0.0
    biggest = float(max(abs(c) for c in changes))
    significant = (nll.high < 0 or nll.low > 0) and rank.p < alpha and abs(nll.diff) > floor
    likelihood = LikelihoodComparison(
        base_nll=nll.base,
        merged_nll=nll.merged,
        delta=nll,
        signed_rank=rank,
        noise=noise,
        max_item_change=biggest,
        within_noise=-floor <= nll.low and nll.high <= floor,
        significant=significant,
    )
    primary = PRIMARY["teacher-forced"]
    cell = next((d for d in deltas if d.metric == primary), None)
    exact_significant = test.p < alpha
    gain = (cell is not None and cell.low > 0) or (significant and nll.diff < 0)
    gain = gain or (exact_significant and wins > losses)
    loss = (cell is not None and cell.high < 0) or (significant and nll.diff > 0)
    loss = loss or (exact_significant and losses > wins)
    has_cells = all(s.forced_cell_accuracy is not None for s in m)
    mode = ModeComparison(
        scoring="teacher-forced",
        n=len(b),
        deltas=deltas,
        exact_test=test,
        families=_families(
            b,
            m,
            primary if has_cells else "nll",
            alpha,
            resamples,
            seed,
            family_limit,
        ),
        baseline=(
            baseline_standing(
                m,
                baselines or {},
                metric=primary,
                baseline_metric=PRIMARY["generate"],
                alpha=alpha,
                resamples=resamples,
                seed=seed,
            )
            if has_cells
            else None
        ),
        significant_gain=gain,
        significant_loss=loss,
        primary_test=(
            signed_rank_test(
                [
                    float(y.forced_cell_accuracy) - float(x.forced_cell_accuracy)
                    for x, y in zip(b, m)
                    if x.forced_cell_accuracy is not None and y.forced_cell_accuracy is not None
                ]
            )
            if has_cells
            else rank
        ),
    )
    return mode, likelihood
