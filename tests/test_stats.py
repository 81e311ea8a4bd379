"""The statistical helpers: exact values, agreement with scipy, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simonsca.stats import (
    bootstrap_mean_interval,
    mcnemar_exact,
    paired_bootstrap,
    sign_test,
    signed_rank_test,
    wilson_interval,
)

scipy_stats = pytest.importorskip("scipy.stats")


def test_mcnemar_exact_published_value() -> None:
    # b=1, c=9: 2 * (1 + 10) / 2**10 = 0.021484375
    assert mcnemar_exact(1, 9).p == pytest.approx(0.021484375)
    assert mcnemar_exact(9, 1).p == mcnemar_exact(1, 9).p


@pytest.mark.parametrize("k", [0, 1, 3, 10])
def test_mcnemar_equal_discordant_is_one(k: int) -> None:
    assert mcnemar_exact(k, k).p == 1.0


def test_mcnemar_known_values() -> None:
    assert mcnemar_exact(0, 6).p == pytest.approx(0.03125)  # 2 / 64
    assert mcnemar_exact(0, 5).p == pytest.approx(0.0625)  # not significant at 0.05
    assert mcnemar_exact(2, 8).p == pytest.approx(0.109375)  # 2 * (1 + 10 + 45) / 1024


@pytest.mark.parametrize(("b", "c"), [(1, 9), (3, 12), (7, 7), (0, 20), (15, 4)])
def test_mcnemar_matches_scipy_binomtest(b: int, c: int) -> None:
    assert mcnemar_exact(b, c).p == pytest.approx(scipy_stats.binomtest(b, b + c).pvalue)


@given(st.lists(st.integers(-50, 50).filter(bool), min_size=1, max_size=20, unique_by=abs))
def test_signed_rank_exact_matches_scipy(values: list[int]) -> None:
    ours = signed_rank_test(values)
    theirs = scipy_stats.wilcoxon(values, method="exact")
    assert ours.p == pytest.approx(theirs.pvalue, rel=1e-9, abs=1e-12)


def test_signed_rank_large_sample_matches_scipy_normal_approximation() -> None:
    rng = np.random.default_rng(7)
    d = np.round(rng.normal(0.2, 1.0, size=80), 1)  # ties and zeros on purpose
    ours = signed_rank_test(d)
    theirs = scipy_stats.wilcoxon(d, zero_method="wilcox", correction=True, method="approx")
    assert ours.p == pytest.approx(theirs.pvalue, rel=1e-6)
    assert ours.n == int(np.count_nonzero(d))


def test_signed_rank_and_sign_test_on_no_difference() -> None:
    assert signed_rank_test([0.0, 0.0]).p == 1.0
    assert sign_test([0.0, 0.0, 0.0]).p == 1.0
    assert sign_test([1.0] * 6).p == pytest.approx(0.03125)


def test_wilson_interval_known_value() -> None:
    low, high = wilson_interval(5, 10)
    assert (low, high) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(0, 24)[0] == 0.0 and wilson_interval(24, 24)[1] == 1.0


def test_paired_bootstrap_is_deterministic_and_paired() -> None:
    base = [0.1 * (i % 7) for i in range(50)]
    merged = [x + 0.05 for x in base]
    d = paired_bootstrap(base, merged)
    # every pair differs by exactly 0.05: the paired CI collapses onto it
    assert d.diff == pytest.approx(0.05)
    assert (d.low, d.high) == pytest.approx((0.05, 0.05))
    noisy = [x + (0.2 if i % 3 == 0 else -0.05) for i, x in enumerate(base)]
    a = paired_bootstrap(base, noisy)
    assert a == paired_bootstrap(base, noisy)
    assert a.low < a.diff < a.high and a.n == 50


def test_bootstrap_interval_contains_the_mean() -> None:
    values = [0.0, 0.2, 0.4, 1.0, 0.7]
    low, high = bootstrap_mean_interval(values)
    assert low <= float(np.mean(values)) <= high


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)
    with pytest.raises(ValueError):
        paired_bootstrap([1.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        wilson_interval(1, 0)
