"""Paired base-vs-merged statistics and the verdict.

Both models answer the same items, so every statistic here is *paired* by item seed:

* :class:`Delta` -- merged minus base for each metric, with a paired percentile bootstrap CI
  (the same resampled items for both models; fixed seed, 2000 resamples by default).
* :class:`McNemar` -- exact McNemar test on exact-match: ``b`` items only base got right, ``c``
  items only merged got right; two-sided exact binomial on the ``b + c`` discordant pairs
  (``p = min(1, 2 * P[X <= min(b, c)])``, ``X ~ Bin(b + c, 1/2)``); ``p = 1`` when there are none.

Decision rule (:func:`compare_scores`), at ``alpha = 0.05``:

1. IDENTICAL -- every answer text is byte-identical to base's (or the caller says the model files
   are byte-identical, see :func:`identical_files`). Nothing else is needed to decide.
2. A *significant gain* is either: the paired-bootstrap CI of the cell-accuracy delta lies
   entirely above 0, or McNemar ``p < alpha`` with more merged-only exact answers (``c > b``).
   A *significant loss* is the mirror image (CI entirely below 0; ``p < alpha`` with ``b > c``).
   Exact match is judged by McNemar only, not by its bootstrap CI (which is still reported): with
   the usual 24-200 items and few discordant pairs the percentile bootstrap of a 0/1 difference
   is too optimistic (5 wins, 0 losses out of 6 items gives a CI excluding 0, while the exact
   test gives p = 0.0625).
3. REGRESSED if there is any significant loss (also when there is a gain on the other measure: a
   gate must not let a trade-off through silently; the headline says "mixed"). IMPROVED if there
   is a gain and no loss. NO_EFFECT otherwise (the answers differ, but not measurably).
4. IMPROVED gets a qualifier when the merged model's cell-accuracy CI upper bound does not exceed
   the best trivial baseline's cell accuracy (baselines named ``oracle`` are ceilings, not bars):
   "improved over base; no skill beyond the all-dead baseline" -- learning the answer format is
   not learning the rule.

Per-family regressions are facet values (task=count, size=9-15, ...) where merged minus base cell
accuracy is below ``-max_family_regression``; they are listed, not part of the verdict (a
:class:`Gate` can fail on them).
"""

from __future__ import annotations

import enum
import hashlib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from simonsca.errors import ConfigError, ModelFileError
from simonsca.scoring import (
    DEFAULT_BOOTSTRAP_SEED,
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    ItemScore,
    Metric,
    group_by_facet,
    mean_metric,
)

DEFAULT_ALPHA = 0.05
DEFAULT_MAX_FAMILY_REGRESSION = 0.10
#: Metrics a delta is reported for, in display order.
DELTA_METRICS: tuple[str, ...] = ("exact", "cell_accuracy", "live_f1", "parse_ok", "shape_ok")


class Verdict(str, enum.Enum):
    IDENTICAL = "identical"  # every answer text byte-identical to base's
    NO_EFFECT = "no_effect"  # answers differ, but no significant gain and no significant loss
    IMPROVED = "improved"
    REGRESSED = "regressed"

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
    n: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class McNemar:
    """Exact McNemar on exact-match: b = only base right (losses), c = only merged right (wins)."""

    b: int
    c: int
    p: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FamilyDelta:
    """Base vs merged on the items sharing one facet value."""

    facet: str
    value: str
    n: int
    base_cell: float
    merged_cell: float
    cell_diff: float
    base_exact: float
    merged_exact: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BaselineComparison:
    """The merged model against the best trivial baseline on the same items."""

    best: str  # the baseline with the highest mean cell accuracy
    best_cell_accuracy: float
    merged_cell_accuracy: Metric
    beats_baseline: bool  # merged cell-accuracy CI upper bound > best baseline's cell accuracy
    baselines: dict[str, float]  # every trivial baseline's mean cell accuracy

    @property
    def skill_shown(self) -> bool:
        """Stricter than ``beats_baseline``: the whole 95% CI lies above the best baseline."""
        low = self.merged_cell_accuracy.low
        return low is not None and low > self.best_cell_accuracy

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["merged_cell_accuracy"] = self.merged_cell_accuracy.to_dict()
        return data


@dataclass(frozen=True)
class Comparison:
    verdict: Verdict
    headline: str
    n: int
    deltas: tuple[Delta, ...]
    mcnemar: McNemar
    family_deltas: tuple[FamilyDelta, ...]
    family_regressions: tuple[FamilyDelta, ...]
    baseline: BaselineComparison | None
    significant_gain: bool
    significant_loss: bool
    alpha: float
    max_family_regression: float
    qualifier: str | None = None

    def delta(self, metric: str) -> Delta | None:
        for d in self.deltas:
            if d.metric == metric:
                return d
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.value,
            "headline": self.headline,
            "qualifier": self.qualifier,
            "n": self.n,
            "deltas": [d.to_dict() for d in self.deltas],
            "mcnemar": self.mcnemar.to_dict(),
            "family_deltas": [f.to_dict() for f in self.family_deltas],
            "family_regressions": [f.to_dict() for f in self.family_regressions],
            "baseline": None if self.baseline is None else self.baseline.to_dict(),
            "significant_gain": self.significant_gain,
            "significant_loss": self.significant_loss,
            "alpha": self.alpha,
            "max_family_regression": self.max_family_regression,
        }


# --------------------------------------------------------------------------- statistics


def mcnemar_exact(b: int, c: int) -> McNemar:
    """Exact two-sided McNemar test on ``b`` and ``c`` discordant pairs (p=1 when b+c=0)."""
    if b < 0 or c < 0:
        raise ValueError("discordant counts must be >= 0")
    n = b + c
    if n == 0:
        return McNemar(b, c, 1.0)
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    p = min(1.0, 2 * tail / 2**n)
    return McNemar(b, c, p)


def paired_bootstrap_delta(
    metric: str,
    base: Sequence[float],
    merged: Sequence[float],
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
) -> Delta:
    """Mean(merged) - mean(base) with a percentile CI from resampling the item pairs."""
    a = np.asarray(base, dtype=float)
    m = np.asarray(merged, dtype=float)
    if a.shape != m.shape:
        raise ValueError("paired values must have the same length")
    if a.size == 0:
        raise ValueError("paired_bootstrap_delta needs at least one pair")
    diffs = m - a
    diff = float(diffs.mean())
    if np.all(diffs == diffs[0]):
        low = high = float(diffs[0])
    else:
        rng = np.random.default_rng(seed)
        means = diffs[rng.integers(0, diffs.size, size=(resamples, diffs.size))].mean(axis=1)
        alpha = 1 - confidence
        low_q, high_q = np.quantile(means, [alpha / 2, 1 - alpha / 2])
        low, high = float(low_q), float(high_q)
    return Delta(metric, float(a.mean()), float(m.mean()), diff, low, high, int(a.size))


def _metric_values(scores: Sequence[ItemScore], metric: str) -> list[float | None]:
    out: list[float | None] = []
    for s in scores:
        v = getattr(s, metric)
        out.append(None if v is None else float(v))
    return out


def pair_scores(
    base: Sequence[ItemScore], merged: Sequence[ItemScore]
) -> list[tuple[ItemScore, ItemScore]]:
    """Pair two score lists by item seed (order of ``base``); they must cover the same seeds."""
    by_seed = {s.seed: s for s in merged}
    base_seeds = [s.seed for s in base]
    if len(by_seed) != len(merged) or len(set(base_seeds)) != len(base):
        raise ValueError("scores must not repeat an item seed")
    if set(base_seeds) != set(by_seed):
        missing = sorted(set(base_seeds) ^ set(by_seed))[:5]
        raise ValueError(
            f"base and merged were scored on different items (e.g. seeds {missing}); "
            "evaluate both models on the same item list"
        )
    return [(s, by_seed[s.seed]) for s in base]


def _fmt(x: float) -> str:
    return f"{x:.3f}"


def _fmt_signed(x: float) -> str:
    return f"{x:+.3f}"


# --------------------------------------------------------------------------- the verdict


def compare_scores(
    base: Sequence[ItemScore],
    merged: Sequence[ItemScore],
    *,
    base_texts: Sequence[str] | None = None,
    merged_texts: Sequence[str] | None = None,
    files_identical: bool = False,
    baselines: Mapping[str, Sequence[ItemScore]] | None = None,
    alpha: float = DEFAULT_ALPHA,
    max_family_regression: float = DEFAULT_MAX_FAMILY_REGRESSION,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
) -> Comparison:
    """Compare merged against base on the same items (see the module doc for the rule).

    ``base_texts``/``merged_texts`` are the raw answer texts in the same order as the scores;
    when given and all byte-identical, the verdict is IDENTICAL. ``baselines`` maps a baseline
    name (``all-dead``, ``copy-input``, ...) to its scores on the same items.
    """
    pairs = pair_scores(base, merged)
    if not pairs:
        raise ValueError("nothing to compare: no scored items")
    confidence = 1 - alpha
    n = len(pairs)
    b_scores = [p[0] for p in pairs]
    m_scores = [p[1] for p in pairs]

    deltas: list[Delta] = []
    for metric in DELTA_METRICS:
        bv = _metric_values(b_scores, metric)
        mv = _metric_values(m_scores, metric)
        kept = [(x, y) for x, y in zip(bv, mv) if x is not None and y is not None]
        if not kept:
            continue
        deltas.append(
            paired_bootstrap_delta(
                metric,
                [x for x, _ in kept],
                [y for _, y in kept],
                confidence=confidence,
                resamples=resamples,
                seed=seed,
            )
        )
    by_name = {d.metric: d for d in deltas}
    b_only = sum(1 for x, y in pairs if x.exact and not y.exact)
    c_only = sum(1 for x, y in pairs if y.exact and not x.exact)
    mcnemar = mcnemar_exact(b_only, c_only)

    # Per-family deltas, computed on the paired items of each facet value.
    family_deltas: list[FamilyDelta] = []
    merged_by_seed = {s.seed: s for s in m_scores}
    for facet, values in group_by_facet(b_scores).items():
        for value, group in values.items():
            partner = [merged_by_seed[s.seed] for s in group]
            bc = float(np.mean([s.cell_accuracy for s in group]))
            mc = float(np.mean([s.cell_accuracy for s in partner]))
            family_deltas.append(
                FamilyDelta(
                    facet=facet,
                    value=value,
                    n=len(group),
                    base_cell=bc,
                    merged_cell=mc,
                    cell_diff=mc - bc,
                    base_exact=float(np.mean([s.exact for s in group])),
                    merged_exact=float(np.mean([s.exact for s in partner])),
                )
            )
    family_regressions = tuple(
        sorted(
            (f for f in family_deltas if f.cell_diff < -max_family_regression),
            key=lambda f: f.cell_diff,
        )
    )

    cell_d = by_name["cell_accuracy"]
    significant = mcnemar.p < alpha
    gain = cell_d.low > 0 or (significant and c_only > b_only)
    loss = cell_d.high < 0 or (significant and b_only > c_only)

    identical = files_identical or _texts_identical(base, merged, base_texts, merged_texts)

    baseline = _baseline_comparison(m_scores, baselines, confidence, resamples, seed)

    numbers = (
        f"cell accuracy {_fmt(cell_d.base)} -> {_fmt(cell_d.merged)} "
        f"(delta {_fmt_signed(cell_d.diff)}, {round(confidence * 100)}% CI "
        f"{_fmt_signed(cell_d.low)} to {_fmt_signed(cell_d.high)}); "
        f"exact {sum(s.exact for s in b_scores)}/{n} -> {sum(s.exact for s in m_scores)}/{n} "
        f"(McNemar b={b_only}, c={c_only}, p={mcnemar.p:.4g})"
    )
    qualifier: str | None = None
    if identical:
        verdict = Verdict.IDENTICAL
        if files_identical:
            headline = "identical: the merged model files are byte-identical to base"
        else:
            headline = (
                f"identical: all {n} answers are byte-identical to base -- "
                "the finetune changed nothing observable"
            )
    elif loss:
        verdict = Verdict.REGRESSED
        headline = "regressed (mixed: a significant gain elsewhere): " if gain else "regressed: "
        headline += numbers
    elif gain:
        verdict = Verdict.IMPROVED
        headline = "improved: " + numbers
        if baseline is not None and not baseline.beats_baseline:
            qualifier = f"improved over base; no skill beyond the {baseline.best} baseline"
            merged_cell = baseline.merged_cell_accuracy
            headline = (
                f"{qualifier} (merged cell accuracy {_fmt(merged_cell.value or 0.0)}, "
                f"CI upper {_fmt(merged_cell.high or 0.0)} <= "
                f"{baseline.best} {_fmt(baseline.best_cell_accuracy)}); " + numbers
            )
    else:
        verdict = Verdict.NO_EFFECT
        headline = "no effect: " + numbers

    return Comparison(
        verdict=verdict,
        headline=headline,
        n=n,
        deltas=tuple(deltas),
        mcnemar=mcnemar,
        family_deltas=tuple(family_deltas),
        family_regressions=family_regressions,
        baseline=baseline,
        significant_gain=gain,
        significant_loss=loss,
        alpha=alpha,
        max_family_regression=max_family_regression,
        qualifier=qualifier,
    )


def files_identical_comparison(
    n: int,
    *,
    alpha: float = DEFAULT_ALPHA,
    max_family_regression: float = DEFAULT_MAX_FAMILY_REGRESSION,
) -> Comparison:
    """The verdict for byte-identical model files: IDENTICAL, with no numbers (nothing was run)."""
    return Comparison(
        verdict=Verdict.IDENTICAL,
        headline="identical: the merged model files are byte-identical to base "
        "(nothing was run; the finetune changed nothing)",
        n=n,
        deltas=(),
        mcnemar=mcnemar_exact(0, 0),
        family_deltas=(),
        family_regressions=(),
        baseline=None,
        significant_gain=False,
        significant_loss=False,
        alpha=alpha,
        max_family_regression=max_family_regression,
    )


def _texts_identical(
    base: Sequence[ItemScore],
    merged: Sequence[ItemScore],
    base_texts: Sequence[str] | None,
    merged_texts: Sequence[str] | None,
) -> bool:
    """Every answer text byte-identical, paired by seed (texts follow their scores' order)."""
    if base_texts is None or merged_texts is None:
        return False
    if len(base_texts) != len(base) or len(merged_texts) != len(merged):
        raise ValueError("answer texts must be given in the same order as their scores")
    by_seed = {s.seed: t for s, t in zip(merged, merged_texts)}
    return all(by_seed[s.seed] == t for s, t in zip(base, base_texts))


def is_trivial_baseline(name: str) -> bool:
    """Baselines that set a bar to beat; an oracle is a ceiling, not a bar."""
    return "oracle" not in name.lower()


def _baseline_comparison(
    merged: Sequence[ItemScore],
    baselines: Mapping[str, Sequence[ItemScore]] | None,
    confidence: float,
    resamples: int,
    seed: int,
) -> BaselineComparison | None:
    if not baselines:
        return None
    seeds = {s.seed for s in merged}
    means: dict[str, float] = {}
    for name, scores in baselines.items():
        if not is_trivial_baseline(name):
            continue
        kept = [s.cell_accuracy for s in scores if s.seed in seeds]
        if len(kept) != len(seeds):
            raise ValueError(f"baseline {name!r} was not scored on the same items as the models")
        means[name] = float(np.mean(kept))
    if not means:
        return None
    best = max(means, key=lambda k: means[k])
    merged_metric = mean_metric(
        "cell_accuracy",
        [s.cell_accuracy for s in merged],
        confidence=confidence,
        resamples=resamples,
        seed=seed,
    )
    assert merged_metric.high is not None
    return BaselineComparison(
        best=best,
        best_cell_accuracy=means[best],
        merged_cell_accuracy=merged_metric,
        beats_baseline=merged_metric.high > means[best],
        baselines=means,
    )


# --------------------------------------------------------------------------- gates


@dataclass(frozen=True)
class Gate:
    """Thresholds a comparison must meet, like pytest-benchmark's ``--benchmark-compare-fail``.

    Gains are checked on the point estimate of merged minus base (``min_exact_gain=0.05`` means
    at least 5 percentage points more exact answers). ``None`` switches a check off.
    """

    min_exact_gain: float | None = None
    min_cell_gain: float | None = None
    max_family_regression: float | None = None
    fail_on_regression: bool = True  # a REGRESSED verdict fails on its own

    def __post_init__(self) -> None:
        for f in ("min_exact_gain", "min_cell_gain", "max_family_regression"):
            v = getattr(self, f)
            if v is not None and (not isinstance(v, (int, float)) or math.isnan(v)):
                raise ConfigError(f"gate threshold {f} must be a number, got {v!r}")
        if self.max_family_regression is not None and self.max_family_regression < 0:
            raise ConfigError(
                f"max_family_regression must be >= 0, got {self.max_family_regression}"
            )

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any]) -> Gate:
        """Build a gate from e.g. ``[tool.simonsca]``; unrelated keys are ignored."""
        names = {f.name for f in fields(cls)}
        picked: dict[str, Any] = {}
        for key, value in settings.items():
            key = key.replace("-", "_")
            if key not in names:
                continue
            if key == "fail_on_regression":
                picked[key] = bool(value)
                continue
            if value is None:
                picked[key] = None
                continue
            try:
                picked[key] = _parse_threshold(value)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"[tool.simonsca] {key} = {value!r} is not a number (e.g. 0.05 or '5%')"
                ) from None
        return cls(**picked)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def check(self, comparison: Comparison) -> list[str]:
        """Failure messages (empty when the comparison passes), each stating the numbers."""
        failures: list[str] = []
        if self.fail_on_regression and comparison.verdict == Verdict.REGRESSED:
            failures.append(f"verdict is REGRESSED: {comparison.headline}")
        exact = comparison.delta("exact")
        if (
            self.min_exact_gain is not None
            and exact is not None
            and exact.diff < self.min_exact_gain - 1e-12
        ):
            failures.append(
                f"exact-match gain {exact.diff:+.3f} (base {exact.base:.3f} -> merged "
                f"{exact.merged:.3f}, CI {exact.low:+.3f} to {exact.high:+.3f}, n={exact.n}) "
                f"is below min_exact_gain {self.min_exact_gain:+.3f}"
            )
        cell = comparison.delta("cell_accuracy")
        if (
            self.min_cell_gain is not None
            and cell is not None
            and cell.diff < self.min_cell_gain - 1e-12
        ):
            failures.append(
                f"cell-accuracy gain {cell.diff:+.3f} (base {cell.base:.3f} -> merged "
                f"{cell.merged:.3f}, CI {cell.low:+.3f} to {cell.high:+.3f}, n={cell.n}) "
                f"is below min_cell_gain {self.min_cell_gain:+.3f}"
            )
        if self.max_family_regression is not None:
            for f in comparison.family_deltas:
                if f.cell_diff < -self.max_family_regression - 1e-12:
                    failures.append(
                        f"family {f.facet}={f.value} (n={f.n}) regressed: cell accuracy "
                        f"{f.base_cell:.3f} -> {f.merged_cell:.3f} ({f.cell_diff:+.3f}), more "
                        f"than max_family_regression {self.max_family_regression:.3f}"
                    )
        return failures


def _parse_threshold(value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError(f"{value!r} is not a threshold")
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    if text.endswith("%"):
        return float(text[:-1]) / 100
    return float(text)


# --------------------------------------------------------------------------- files


_CHUNK = 1 << 20


def _check_file(path: Path) -> os.stat_result:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such model file; check the path") from None
    if not path.is_file():
        raise ModelFileError(f"{path}: not a regular file; pass the .gguf file itself")
    return st


def _same_bytes(a: Path, b: Path) -> bool:
    sa, sb = _check_file(a), _check_file(b)
    if (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino):
        return True
    if sa.st_size != sb.st_size:
        return False
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            ca = fa.read(_CHUNK)
            cb = fb.read(_CHUNK)
            if ca != cb:
                return False
            if not ca:
                return True


def identical_files(
    base_path: str | os.PathLike[str],
    merged_path: str | os.PathLike[str],
    base_adapter: str | os.PathLike[str] | None = None,
    merged_adapter: str | os.PathLike[str] | None = None,
) -> bool:
    """True when base (+ adapter) and merged (+ adapter) are byte-for-byte the same model.

    Compares sizes first, then the bytes chunk by chunk (stopping at the first difference), so
    a changed file is usually told apart at once. Adapters must both be absent or both identical.
    Missing files raise :class:`~simonsca.errors.ModelFileError`.
    """
    if (base_adapter is None) != (merged_adapter is None):
        for p in (base_path, merged_path, base_adapter, merged_adapter):
            if p is not None:
                _check_file(Path(p))
        return False
    if not _same_bytes(Path(base_path), Path(merged_path)):
        return False
    if base_adapter is not None and merged_adapter is not None:
        return _same_bytes(Path(base_adapter), Path(merged_adapter))
    return True


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    p = Path(path)
    _check_file(p)
    h = hashlib.sha256()
    with p.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()
