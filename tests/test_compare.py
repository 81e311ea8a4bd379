"""Paired statistics, the verdict rule, gates, and the byte-identical shortcut."""

from __future__ import annotations

import pytest

from simonsca.compare import (
    Gate,
    McNemar,
    Verdict,
    compare_scores,
    file_sha256,
    identical_files,
    mcnemar_exact,
    paired_bootstrap_delta,
)
from simonsca.errors import ConfigError, ModelFileError
from simonsca.scoring import ItemScore


def score(seed, exact=False, cell=None, task="next", size="5-8", parse=True):
    cell = (1.0 if exact else 0.5) if cell is None else cell
    facets = (
        ("task", task),
        ("wrap", "xy"),
        ("generations", "1"),
        ("size", size),
        ("symbols", "live=1,dead=0"),
    )
    return ItemScore(
        seed=seed,
        family=f"{task}/wrap=xy/gen=1/size={size}/live=1,dead=0",
        facets=facets,
        task=task,
        parse_ok=parse,
        shape_ok=parse,
        exact=exact,
        cell_accuracy=cell if parse else 0.0,
        live_f1=(cell if parse else 0.0) if task == "next" else None,
        reason=None if exact else "wrong",
    )


# --------------------------------------------------------------------------- McNemar


def test_mcnemar_exact_published_value():
    # b=1, c=9: 2 * (1 + 10) / 2**10 = 0.021484375
    m = mcnemar_exact(1, 9)
    assert m == McNemar(1, 9, pytest.approx(0.021484375))
    assert round(m.p, 5) == 0.02148
    assert mcnemar_exact(9, 1).p == m.p


@pytest.mark.parametrize("k", [0, 1, 3, 10])
def test_mcnemar_equal_discordant_is_one(k):
    assert mcnemar_exact(k, k).p == 1.0


def test_mcnemar_known_values():
    # 0 vs 6: 2 / 64
    assert mcnemar_exact(0, 6).p == pytest.approx(0.03125)
    # 0 vs 5: 2 / 32 = 0.0625, not significant at 0.05
    assert mcnemar_exact(0, 5).p == pytest.approx(0.0625)
    # 2 vs 8 (a textbook example): 2 * (1 + 10 + 45) / 1024 = 0.109375
    assert mcnemar_exact(2, 8).p == pytest.approx(0.109375)


def test_mcnemar_matches_scipy_binomtest_when_available():
    stats = pytest.importorskip("scipy.stats")
    for b, c in [(1, 9), (3, 12), (7, 7), (0, 20), (15, 4)]:
        assert mcnemar_exact(b, c).p == pytest.approx(stats.binomtest(b, b + c).pvalue)


# --------------------------------------------------------------------------- bootstrap


def test_paired_bootstrap_is_deterministic_and_paired():
    base = [0.1 * (i % 7) for i in range(50)]
    merged = [x + 0.05 for x in base]
    d = paired_bootstrap_delta("cell_accuracy", base, merged)
    # every pair differs by exactly 0.05: the paired CI collapses onto it
    assert d.diff == pytest.approx(0.05)
    assert (d.low, d.high) == pytest.approx((0.05, 0.05))
    noisy = [x + (0.2 if i % 3 == 0 else -0.05) for i, x in enumerate(base)]
    a = paired_bootstrap_delta("cell_accuracy", base, noisy)
    assert a == paired_bootstrap_delta("cell_accuracy", base, noisy)
    assert a.low < a.diff < a.high and a.n == 50


# --------------------------------------------------------------------------- verdicts


def test_identical_texts():
    base = [score(i, exact=i < 3) for i in range(20)]
    texts = [f"answer {i}" for i in range(20)]
    c = compare_scores(base, list(base), base_texts=texts, merged_texts=list(texts))
    assert c.verdict == Verdict.IDENTICAL
    assert "identical" in c.headline and "20" in c.headline
    # texts are paired by seed, following their scores' order
    c = compare_scores(base, base[::-1], base_texts=texts, merged_texts=texts[::-1])
    assert c.verdict == Verdict.IDENTICAL
    c = compare_scores(base, base[::-1], base_texts=texts, merged_texts=texts)
    assert c.verdict == Verdict.NO_EFFECT
    c = compare_scores(base, list(base), files_identical=True)
    assert c.verdict == Verdict.IDENTICAL and "byte-identical" in c.headline


def test_same_scores_different_texts_is_no_effect():
    base = [score(i, exact=i < 3) for i in range(20)]
    c = compare_scores(base, list(base), base_texts=["a"] * 20, merged_texts=["a"] * 19 + ["b"])
    assert c.verdict == Verdict.NO_EFFECT
    assert c.mcnemar == McNemar(0, 0, 1.0)
    assert c.headline.startswith("no effect")


def test_small_noisy_change_is_no_effect():
    base = [score(i, exact=i in (0, 1, 2)) for i in range(24)]
    merged = [score(i, exact=i in (1, 2, 3)) for i in range(24)]
    c = compare_scores(base, merged)
    assert c.verdict == Verdict.NO_EFFECT
    assert (c.mcnemar.b, c.mcnemar.c) == (1, 1) and c.mcnemar.p == 1.0


def test_improved_on_exact_with_mcnemar():
    base = [score(i, exact=i == 0) for i in range(30)]
    merged = [score(i, exact=i < 10) for i in range(30)]
    c = compare_scores(base, merged)
    assert c.verdict == Verdict.IMPROVED
    assert (c.mcnemar.b, c.mcnemar.c) == (0, 9)
    assert c.mcnemar.p < 0.05 and c.significant_gain and not c.significant_loss
    assert c.delta("exact").diff == pytest.approx(9 / 30)
    assert c.headline.startswith("improved") and c.qualifier is None


def test_improved_on_cell_accuracy_alone():
    base = [score(i, cell=0.50) for i in range(30)]
    merged = [score(i, cell=0.60 + 0.01 * (i % 3)) for i in range(30)]
    c = compare_scores(base, merged)
    assert c.verdict == Verdict.IMPROVED
    assert c.delta("cell_accuracy").low > 0


def test_exact_gain_needs_mcnemar_not_just_the_bootstrap():
    base = [score(i, exact=False, cell=0.5) for i in range(6)]
    merged = [score(i, exact=i < 5, cell=1.0 if i < 5 else 0.4) for i in range(6)]
    c = compare_scores(base, merged, resamples=2000)
    assert c.delta("exact").low > 0  # the bootstrap alone would call it
    assert c.mcnemar.p == pytest.approx(0.0625)
    # cell accuracy 0.5 -> 0.9: its CI decides here (all but one item gain)
    assert c.verdict == Verdict.IMPROVED and c.delta("cell_accuracy").low > 0
    flat = [score(i, exact=i < 5, cell=0.5) for i in range(6)]
    assert compare_scores(base, flat).verdict == Verdict.NO_EFFECT


def test_regressed_is_symmetric():
    base = [score(i, exact=i < 10) for i in range(30)]
    merged = [score(i, exact=i == 0) for i in range(30)]
    c = compare_scores(base, merged)
    assert c.verdict == Verdict.REGRESSED and c.significant_loss
    assert (c.mcnemar.b, c.mcnemar.c) == (9, 0)


def test_mixed_gain_and_loss_is_regressed():
    # exact answers go up a lot, but every other item loses many cells
    base = [score(i, exact=False, cell=0.9) for i in range(30)]
    merged = [score(i, exact=True) if i < 10 else score(i, cell=0.2) for i in range(30)]
    c = compare_scores(base, merged)
    assert c.significant_gain and c.significant_loss
    assert c.verdict == Verdict.REGRESSED and "mixed" in c.headline


def test_improved_but_not_beyond_all_dead_baseline():
    base = [score(i, parse=False) for i in range(30)]  # base never answers in the format
    merged = [score(i, cell=0.60 + 0.01 * (i % 5)) for i in range(30)]
    all_dead = [score(i, cell=0.80) for i in range(30)]
    oracle = [score(i, exact=True) for i in range(30)]
    c = compare_scores(base, merged, baselines={"all-dead": all_dead, "oracle": oracle})
    assert c.verdict == Verdict.IMPROVED
    assert c.baseline is not None and c.baseline.best == "all-dead"
    assert not c.baseline.beats_baseline and "oracle" not in c.baseline.baselines
    assert c.qualifier == "improved over base; no skill beyond the all-dead baseline"
    assert c.headline.startswith(c.qualifier)


def test_improved_and_beyond_baseline_has_no_qualifier():
    base = [score(i, cell=0.5) for i in range(30)]
    merged = [score(i, cell=0.95) for i in range(30)]
    all_dead = [score(i, cell=0.70) for i in range(30)]
    c = compare_scores(base, merged, baselines={"all-dead": all_dead})
    assert c.verdict == Verdict.IMPROVED and c.baseline.beats_baseline and c.qualifier is None


def test_family_regressions_listed_with_n():
    base = [score(i, cell=0.8, task="next" if i < 20 else "count") for i in range(30)]
    merged = [
        score(i, cell=0.9 if i < 20 else 0.5, task="next" if i < 20 else "count") for i in range(30)
    ]
    c = compare_scores(base, merged, max_family_regression=0.10)
    regs = [(f.facet, f.value, f.n) for f in c.family_regressions]
    assert regs == [("task", "count", 10)]
    assert c.family_regressions[0].cell_diff == pytest.approx(-0.3)


def test_pairs_by_seed_and_rejects_different_items():
    base = [score(i, exact=i < 10) for i in range(30)]
    merged = list(reversed([score(i, exact=i < 10) for i in range(30)]))
    assert compare_scores(base, merged).mcnemar == McNemar(0, 0, 1.0)
    with pytest.raises(ValueError, match="different items"):
        compare_scores(base, [score(i + 1) for i in range(30)])


def test_comparison_is_deterministic_and_serialisable():
    import json

    base = [score(i, cell=0.1 * (i % 10)) for i in range(40)]
    merged = [score(i, cell=0.1 * ((i * 3) % 10)) for i in range(40)]
    a = compare_scores(base, merged)
    assert a == compare_scores(base, merged)
    json.dumps(a.to_dict())


# --------------------------------------------------------------------------- gates


def test_gate_reports_numbers():
    base = [score(i, exact=i == 0) for i in range(30)]
    merged = [score(i, exact=i < 2) for i in range(30)]
    c = compare_scores(base, merged)
    gate = Gate(min_exact_gain=0.05, min_cell_gain=0.0)
    failures = gate.check(c)
    assert len(failures) == 1
    assert "exact-match gain +0.033" in failures[0] and "min_exact_gain +0.050" in failures[0]
    assert Gate(min_exact_gain=0.03).check(c) == []


def test_gate_family_regression_and_regressed_verdict():
    base = [score(i, exact=i < 10) for i in range(30)]
    merged = [score(i, exact=i == 0) for i in range(30)]
    c = compare_scores(base, merged)
    failures = Gate(max_family_regression=0.05).check(c)
    assert any(f.startswith("verdict is REGRESSED") for f in failures)
    assert any("family task=next (n=30) regressed" in f for f in failures)
    assert Gate(fail_on_regression=False).check(c) == []


def test_gate_from_mapping():
    g = Gate.from_mapping(
        {
            "min_exact_gain": "5%",
            "min_cell_gain": 0.05,
            "max_family_regression": 0.1,
            "eval_size": 24,
        }
    )
    assert g == Gate(min_exact_gain=0.05, min_cell_gain=0.05, max_family_regression=0.1)
    with pytest.raises(ConfigError, match="min_cell_gain"):
        Gate.from_mapping({"min_cell_gain": "lots"})


# --------------------------------------------------------------------------- files


def test_identical_files(tmp_path):
    a = tmp_path / "a.gguf"
    b = tmp_path / "b.gguf"
    c = tmp_path / "c.gguf"
    d = tmp_path / "d.gguf"
    payload = bytes(range(256)) * 5000
    a.write_bytes(payload)
    b.write_bytes(payload)
    c.write_bytes(payload[:-1] + b"\x00")  # same size, last byte differs
    d.write_bytes(payload + b"x")
    assert identical_files(a, b)
    assert identical_files(a, a)
    assert not identical_files(a, c)
    assert not identical_files(a, d)
    lora = tmp_path / "lora.gguf"
    lora.write_bytes(b"adapter")
    assert not identical_files(a, b, merged_adapter=lora)
    assert identical_files(a, b, base_adapter=lora, merged_adapter=lora)
    assert file_sha256(a) == file_sha256(b) != file_sha256(c)
    with pytest.raises(ModelFileError, match="missing.gguf"):
        identical_files(a, tmp_path / "missing.gguf")


def test_skill_needs_the_whole_interval_above_the_best_baseline() -> None:
    from simonsca.compare import BaselineComparison
    from simonsca.scoring import Metric

    def comparison(low: float, high: float) -> BaselineComparison:
        return BaselineComparison(
            best="all-dead",
            best_cell_accuracy=0.5,
            merged_cell_accuracy=Metric("cell_accuracy", (low + high) / 2, low, high, 24),
            beats_baseline=high > 0.5,
            baselines={"all-dead": 0.5},
        )

    assert comparison(0.51, 0.70).skill_shown
    assert not comparison(0.45, 0.70).skill_shown  # not below the bar, but not shown above it
    assert not comparison(0.30, 0.45).skill_shown
