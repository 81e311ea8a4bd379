"""Paired comparisons and the verdict: generation, teacher forcing, INERT, learning under the
surface, the baseline standing, and the byte-identical shortcut on files."""

from __future__ import annotations

import pytest

from simonsca.compare import NoiseFloor, Standing, baseline_standing
from simonsca.errors import ModelFileError
from simonsca.gguf_file import file_sha256, identical_files
from simonsca.likelihood import ForcedScore
from simonsca.scoring import ItemScore
from simonsca.summary import Estimate
from simonsca.verdict import Verdict, compare_runs

FACETS = (
    ("task", "next"),
    ("wrap", "xy"),
    ("generations", "1"),
    ("size", "5-8"),
    ("symbols", "live=1,dead=0"),
)


def score(
    seed: int,
    exact: bool = False,
    cell: float | None = None,
    task: str = "next",
    parse: bool = True,
) -> ItemScore:
    cell = (1.0 if exact else 0.5) if cell is None else cell
    facets = (("task", task), *FACETS[1:])
    return ItemScore(
        seed=seed,
        family=f"{task}/wrap=xy/gen=1/size=5-8/live=1,dead=0",
        facets=facets,
        task=task,
        parse_ok=parse,
        shape_ok=parse,
        exact=exact,
        cell_accuracy=cell if parse else 0.0,
        live_f1=(cell if parse else 0.0) if task == "next" else None,
        reason=None if exact else "wrong",
    )


def forced(seed: int, nll: float, cells: float = 0.5, greedy: bool = False) -> ForcedScore:
    return ForcedScore(
        seed=seed,
        facets=FACETS,
        task="next",
        n_tokens=50,
        nll=nll,
        answer_logprob=-50 * nll,
        forced_cell_accuracy=cells,
        greedy_exact=greedy,
        n_greedy_tokens=25,
        boundary="joint",
    )


NOISE = NoiseFloor(item_nll=0.01, token_logprob=0.2, n_items=8, method="test")


# --------------------------------------------------------------------------- generation


def test_identical_answers_without_likelihood_are_inert() -> None:
    base = [score(i, exact=i < 3) for i in range(20)]
    texts = [f"answer {i}" for i in range(20)]
    c = compare_runs(base=base, merged=list(base), base_texts=texts, merged_texts=list(texts))
    assert c.verdict is Verdict.INERT and c.texts_identical
    assert "byte-identical" in c.headline and "--scoring both" in c.headline
    # texts are paired by seed, following their scores' order
    c = compare_runs(base=base, merged=base[::-1], base_texts=texts, merged_texts=texts[::-1])
    assert c.verdict is Verdict.INERT
    c = compare_runs(base=base, merged=base[::-1], base_texts=texts, merged_texts=texts)
    assert c.verdict is Verdict.NO_EFFECT


def test_same_scores_different_texts_is_no_effect() -> None:
    base = [score(i, exact=i < 3) for i in range(20)]
    c = compare_runs(
        base=base, merged=list(base), base_texts=["a"] * 20, merged_texts=["a"] * 19 + ["b"]
    )
    assert c.verdict is Verdict.NO_EFFECT and c.generation is not None
    assert c.generation.exact_test.n == 0 and c.generation.exact_test.p == 1.0
    assert c.headline.startswith("no effect")


def test_improved_on_exact_with_mcnemar() -> None:
    base = [score(i, exact=i == 0) for i in range(30)]
    merged = [score(i, exact=i < 10) for i in range(30)]
    c = compare_runs(base=base, merged=merged)
    assert c.verdict is Verdict.IMPROVED and c.generation is not None
    assert c.generation.exact_test.n == 9 and c.generation.exact_test.p < 0.05
    delta = c.delta("exact")
    assert delta is not None and delta.diff == pytest.approx(9 / 30)
    assert c.headline.startswith("improved:")


def test_exact_gain_needs_mcnemar_not_just_the_bootstrap() -> None:
    base = [score(i, exact=False, cell=0.5) for i in range(6)]
    flat = [score(i, exact=i < 5, cell=0.5) for i in range(6)]
    c = compare_runs(base=base, merged=flat)
    exact = c.delta("exact")
    assert exact is not None and exact.low > 0  # the bootstrap alone would call it
    assert c.generation is not None and c.generation.exact_test.p == pytest.approx(0.0625)
    assert c.verdict is Verdict.NO_EFFECT


def test_regressed_is_symmetric_and_mixed_is_regressed() -> None:
    base = [score(i, exact=i < 10) for i in range(30)]
    worse = [score(i, exact=i == 0) for i in range(30)]
    assert compare_runs(base=base, merged=worse).verdict is Verdict.REGRESSED
    flat = [score(i, exact=False, cell=0.9) for i in range(30)]
    mixed = [score(i, exact=True) if i < 10 else score(i, cell=0.2) for i in range(30)]
    c = compare_runs(base=flat, merged=mixed)
    assert c.verdict is Verdict.REGRESSED and "mixed" in c.headline


def test_improved_but_below_the_best_baseline_says_so() -> None:
    base = [score(i, parse=False) for i in range(30)]  # base never answers in the format
    merged = [score(i, cell=0.60 + 0.01 * (i % 5)) for i in range(30)]
    all_dead = [score(i, cell=0.80) for i in range(30)]
    oracle = [score(i, exact=True) for i in range(30)]
    c = compare_runs(base=base, merged=merged, baselines={"all-dead": all_dead, "oracle": oracle})
    assert c.verdict is Verdict.IMPROVED and c.baseline is not None
    assert c.baseline.best == "all-dead" and "oracle" not in c.baseline.baselines
    assert c.baseline.standing is Standing.BELOW and not c.baseline.skill_shown
    assert "no skill beyond the trivial baselines" in c.headline
    assert "lies below the best trivial baseline, all-dead at 80.0%" in c.headline


def test_skill_needs_the_whole_interval_above_the_best_baseline() -> None:
    merged_above = [score(i, cell=0.9 + 0.01 * (i % 3)) for i in range(30)]
    merged_straddles = [score(i, cell=0.5 + 0.6 * (i % 2)) for i in range(30)]
    bar = {"all-dead": [score(i, cell=0.80) for i in range(30)]}
    above = baseline_standing(
        merged_above, bar, metric="cell_accuracy", baseline_metric="cell_accuracy"
    )
    straddles = baseline_standing(
        merged_straddles, bar, metric="cell_accuracy", baseline_metric="cell_accuracy"
    )
    assert above is not None and above.skill_shown and above.standing is Standing.ABOVE
    assert straddles is not None and straddles.standing is Standing.OVERLAPS
    assert not straddles.skill_shown and "overlaps" in straddles.sentence()


def test_family_deltas_carry_their_ci() -> None:
    base = [score(i, cell=0.8, task="next" if i < 20 else "count") for i in range(30)]
    merged = [
        score(i, cell=0.9 if i < 20 else 0.5, task="next" if i < 20 else "count") for i in range(30)
    ]
    c = compare_runs(base=base, merged=merged)
    assert c.generation is not None
    count = next(f for f in c.generation.families if (f.facet, f.value) == ("task", "count"))
    assert count.n == 10 and count.diff == pytest.approx(-0.3)
    assert count.low == pytest.approx(-0.3) and count.high == pytest.approx(-0.3)


def test_pairs_by_seed_and_rejects_different_items() -> None:
    base = [score(i, exact=i < 10) for i in range(30)]
    merged = list(reversed([score(i, exact=i < 10) for i in range(30)]))
    c = compare_runs(base=base, merged=merged)
    assert c.generation is not None and c.generation.exact_test.n == 0
    with pytest.raises(ValueError, match="different items"):
        compare_runs(base=base, merged=[score(i + 1) for i in range(30)])


def test_comparison_is_deterministic() -> None:
    base = [score(i, cell=0.1 * (i % 10)) for i in range(40)]
    merged = [score(i, cell=0.1 * ((i * 3) % 10)) for i in range(40)]
    assert compare_runs(base=base, merged=merged) == compare_runs(base=base, merged=merged)


# --------------------------------------------------------------------------- teacher forcing


def test_identical_answers_within_the_noise_floor_are_inert() -> None:
    base = [score(i) for i in range(20)]
    texts = ["same"] * 20
    f_base = [forced(i, 0.700 + 0.001 * i) for i in range(40)]
    f_merged = [forced(i, 0.700 + 0.001 * i + 0.005 * (-1) ** i) for i in range(40)]
    c = compare_runs(
        base=base,
        merged=base,
        base_texts=texts,
        merged_texts=texts,
        base_forced=f_base,
        merged_forced=f_merged,
        noise=NOISE,
    )
    assert c.verdict is Verdict.INERT
    assert c.likelihood is not None and c.likelihood.within_noise
    assert "inside the noise floor" in c.headline


def test_identical_answers_but_likelier_right_answers_is_learning_under_the_surface() -> None:
    base = [score(i) for i in range(20)]
    texts = ["same"] * 20
    f_base = [forced(i, 0.70 + 0.01 * (i % 5)) for i in range(40)]
    f_merged = [forced(i, 0.50 + 0.01 * (i % 7)) for i in range(40)]
    c = compare_runs(
        base=base,
        merged=base,
        base_texts=texts,
        merged_texts=texts,
        base_forced=f_base,
        merged_forced=f_merged,
        noise=NOISE,
    )
    assert c.verdict is Verdict.NO_EFFECT and c.under_surface is not None
    assert "learning under the surface" in c.headline and "more likely" in c.headline
    assert "train longer" in c.headline
    assert c.likelihood is not None and c.likelihood.significant
    assert c.likelihood.delta.diff < 0 and c.likelihood.signed_rank.p < 0.05


def test_teacher_forced_only_decides_by_likelihood() -> None:
    f_base = [forced(i, 0.70 + 0.01 * (i % 5), cells=0.45) for i in range(40)]
    f_better = [forced(i, 0.50 + 0.01 * (i % 7), cells=0.55) for i in range(40)]
    f_same = [forced(i, 0.70 + 0.01 * (i % 5), cells=0.45) for i in range(40)]
    assert (
        compare_runs(base_forced=f_base, merged_forced=f_better, noise=NOISE).verdict
        is Verdict.IMPROVED
    )
    assert (
        compare_runs(base_forced=f_better, merged_forced=f_base, noise=NOISE).verdict
        is Verdict.REGRESSED
    )
    assert (
        compare_runs(base_forced=f_base, merged_forced=f_same, noise=NOISE).verdict is Verdict.INERT
    )


def test_a_change_below_the_noise_floor_is_not_significant() -> None:
    f_base = [forced(i, 0.70 + 0.01 * (i % 5)) for i in range(40)]
    f_merged = [forced(i, 0.70 + 0.01 * (i % 5) - 0.004) for i in range(40)]
    c = compare_runs(base_forced=f_base, merged_forced=f_merged, noise=NOISE)
    assert c.likelihood is not None and not c.likelihood.significant
    assert c.verdict is Verdict.INERT


# --------------------------------------------------------------------------- files


def test_identical_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    a, b, c, d = (tmp_path / f"{x}.gguf" for x in "abcd")
    payload = bytes(range(256)) * 5000
    a.write_bytes(payload)
    b.write_bytes(payload)
    c.write_bytes(payload[:-1] + b"\x00")  # same size, last byte differs
    d.write_bytes(payload + b"x")
    assert identical_files(a, b) and identical_files(a, a)
    assert not identical_files(a, c) and not identical_files(a, d)
    lora = tmp_path / "lora.gguf"
    lora.write_bytes(b"adapter")
    assert not identical_files(a, b, merged_adapter=lora)
    assert identical_files(a, b, base_adapter=lora, merged_adapter=lora)
    assert file_sha256(a) == file_sha256(b) != file_sha256(c)
    with pytest.raises(ModelFileError, match="missing.gguf"):
        identical_files(a, tmp_path / "missing.gguf")


def test_estimate_type_is_what_the_standing_reports() -> None:
    bar = {"all-dead": [score(i, cell=0.5) for i in range(10)]}
    standing = baseline_standing(
        [score(i, cell=0.6) for i in range(10)],
        bar,
        metric="cell_accuracy",
        baseline_metric="cell_accuracy",
    )
    assert standing is not None and isinstance(standing.merged, Estimate)
