"""How verdicts control false positives across several candidates (``--correction``).

Judging N checkpoints at alpha each makes a false "significant" likely somewhere (five
independent candidates at 0.05: 23%). Each candidate's verdict is therefore read at its own
level, chosen so that the chance of *any* false significant primary effect stays at alpha:

* ``holm`` (default) -- Holm's step-down: candidates ordered by the p-value of their primary
  test (the signed-rank test of the per-item change of the primary metric); the k-th smallest is
  judged at ``alpha / (N - k + 1)`` while every candidate before it was significant at its level,
  and from the first one that was not, every later one at ``alpha / N``. Uniformly more powerful
  than Bonferroni, with the same guarantee.
* ``bonferroni`` -- every candidate at ``alpha / N``.
* ``none`` -- every candidate at ``alpha`` (each verdict alone; say so when reporting).

A candidate's level also sets its confidence intervals (``1 - level``), so the CIs, the tests and
the verdict of one candidate always agree. With one candidate every method gives ``alpha``.
"""

from __future__ import annotations

from collections.abc import Mapping

METHODS = ("holm", "bonferroni", "none")


def candidate_levels(p_values: Mapping[str, float], alpha: float, method: str) -> dict[str, float]:
    """Each candidate's significance level, from its primary p-value."""
    n = len(p_values)
    if method not in METHODS:
        raise ValueError(f"unknown correction {method!r}; expected one of {', '.join(METHODS)}")
    if method == "none" or n <= 1:
        return {name: alpha for name in p_values}
    if method == "bonferroni":
        return {name: alpha / n for name in p_values}
    levels: dict[str, float] = {}
    stepping = True
    for k, name in enumerate(sorted(p_values, key=lambda c: (p_values[c], c))):
        level = alpha / (n - k) if stepping else alpha / n
        stepping = stepping and p_values[name] <= level
        levels[name] = level
    return levels
