"""Every statistical helper simonsca uses, in one place, seeded and vectorised.

* :func:`wilson_interval` -- a rate's 95% interval (Wilson score, no continuity correction);
* :func:`bootstrap_mean_interval` -- a mean's percentile bootstrap interval;
* :func:`paired_bootstrap` -- mean(b - a) over paired items with a percentile bootstrap interval
  (the same resampled items for both sides);
* :func:`mcnemar_exact` -- exact two-sided McNemar test on discordant pairs;
* :func:`sign_test` and :func:`signed_rank_test` -- paired tests on a continuous difference
  (Wilcoxon signed-rank: exact distribution up to 25 non-zero differences, normal approximation
  with tie correction beyond).

The bootstrap draws its resamples from ``numpy.random.default_rng(seed)``, so the same values
always give the same interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

DEFAULT_CONFIDENCE = 0.95
DEFAULT_ALPHA = 0.05
DEFAULT_RESAMPLES = 2000
DEFAULT_BOOTSTRAP_SEED = 20240601
#: Up to this many non-zero differences the signed-rank test uses its exact distribution.
EXACT_SIGNED_RANK_MAX = 25


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


def _bootstrap_means(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, values.size, size=(resamples, values.size))
    return np.asarray(values[picks].mean(axis=1))


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
    alpha = 1 - confidence
    low, high = np.quantile(_bootstrap_means(data, resamples, seed), [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


@dataclass(frozen=True)
class PairedDifference:
    """mean(b) - mean(a) over paired values, with a percentile bootstrap interval."""

    a: float  # mean of the first side (base)
    b: float  # mean of the second side (merged)
    diff: float
    low: float
    high: float
    n: int


def paired_bootstrap(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
) -> PairedDifference:
    """Mean(b) - mean(a) with a percentile CI from resampling the item pairs."""
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError("paired values must have the same length")
    if x.size == 0:
        raise ValueError("paired_bootstrap needs at least one pair")
    diffs = y - x
    low, high = bootstrap_mean_interval(
        diffs, confidence=confidence, resamples=resamples, seed=seed
    )
    return PairedDifference(
        float(x.mean()), float(y.mean()), float(diffs.mean()), low, high, int(x.size)
    )


@dataclass(frozen=True)
class TestResult:
    """A paired test's statistic and two-sided p-value."""

    name: str
    statistic: float
    p: float
    n: int  # pairs that count (non-zero differences, or discordant pairs)


def mcnemar_exact(b: int, c: int) -> TestResult:
    """Exact two-sided McNemar test on ``b`` and ``c`` discordant pairs (p=1 when b+c=0):
    ``p = min(1, 2 * P[X <= min(b, c)])``, ``X ~ Bin(b + c, 1/2)``."""
    if b < 0 or c < 0:
        raise ValueError("discordant counts must be >= 0")
    n = b + c
    if n == 0:
        return TestResult("mcnemar", 0.0, 1.0, 0)
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    return TestResult("mcnemar", float(min(b, c)), min(1.0, 2 * tail / 2**n), n)


def sign_test(differences: Sequence[float] | np.ndarray) -> TestResult:
    """Exact two-sided sign test on paired differences (zeros dropped)."""
    d = np.asarray(differences, dtype=float)
    positive, negative = int(np.sum(d > 0)), int(np.sum(d < 0))
    result = mcnemar_exact(negative, positive)  # the same binomial
    return TestResult("sign", float(min(positive, negative)), result.p, positive + negative)


def signed_rank_test(differences: Sequence[float] | np.ndarray) -> TestResult:
    """Wilcoxon signed-rank test, two-sided, zeros dropped (Wilcoxon's convention).

    The statistic is ``W+`` (the sum of the ranks of the positive differences; ties get their
    average rank). With at most :data:`EXACT_SIGNED_RANK_MAX` non-zero differences and no ties
    the p-value comes from the exact null distribution; otherwise from the normal approximation
    with the tie correction of the variance.
    """
    d = np.asarray(differences, dtype=float)
    d = d[d != 0]
    n = int(d.size)
    if n == 0:
        return TestResult("signed-rank", 0.0, 1.0, 0)
    magnitudes = np.abs(d)
    order = np.argsort(magnitudes, kind="mergesort")
    ranks = np.empty(n)
    sorted_mag = magnitudes[order]
    i = 0
    ties: list[int] = []
    while i < n:
        j = i
        while j + 1 < n and sorted_mag[j + 1] == sorted_mag[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        if j > i:
            ties.append(j - i + 1)
        i = j + 1
    w_plus = float(ranks[d > 0].sum())
    total = n * (n + 1) / 2
    if n <= EXACT_SIGNED_RANK_MAX and not ties:
        # counts[s] = number of sign patterns whose positive ranks sum to s
        counts = np.zeros(int(total) + 1, dtype=np.float64)
        counts[0] = 1.0
        for rank in range(1, n + 1):
            counts[rank:] = counts[rank:] + counts[:-rank].copy()
        probabilities = counts / 2.0**n
        w = round(min(w_plus, total - w_plus))
        p = float(min(1.0, 2 * probabilities[: w + 1].sum()))
        return TestResult("signed-rank", w_plus, p, n)
    mean = total / 2
    variance = n * (n + 1) * (2 * n + 1) / 24 - sum(t**3 - t for t in ties) / 48
    if variance <= 0:
        return TestResult("signed-rank", w_plus, 1.0, n)
    z = (abs(w_plus - mean) - 0.5) / math.sqrt(variance)  # continuity correction
    p = float(min(1.0, 2 * (1 - NormalDist().cdf(max(z, 0.0)))))
    return TestResult("signed-rank", w_plus, p, n)


def ci_label(alpha: float) -> str:
    """How an interval computed at ``alpha`` is named: ``95% CI``, ``98.33% CI`` (a candidate
    judged at a Holm level) -- never a level it was not computed at."""
    return f"{100 * (1 - alpha):.4g}% CI"
