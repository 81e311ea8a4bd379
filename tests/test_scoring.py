"""Per-item scores and aggregates: edge cases and statistics against published values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simonsca import codec
from simonsca.rules import neighbor_counts, step
from simonsca.scoring import (
    ItemScore,
    Metric,
    Summary,
    bootstrap_mean_interval,
    score_answer,
    score_item,
    summarize,
    wilson_interval,
)
from simonsca.tasks import Item, Symbols, Task

try:
    from tests.strategies import grids
except ImportError:  # tests/ is not a package: pytest puts it on sys.path itself
    from strategies import grids  # type: ignore[no-redef]


PLAIN = Symbols()


def make_test_item(grid, task=Task.NEXT, seed=1, symbols=PLAIN, wrap=(True, True), gens=1):
    grid = np.asarray(grid, dtype=bool)
    if task == Task.NEXT:
        expected = step(grid, wrap[0], wrap[1], gens)
        output = codec.render_grid(expected, symbols)
    else:
        expected = neighbor_counts(grid, wrap[0], wrap[1])
        output = codec.render_counts(expected)
    return Item(
        seed=seed,
        task=task,
        wrap_x=wrap[0],
        wrap_y=wrap[1],
        generations=gens,
        symbols=symbols,
        instruction="SimonsCA1\ndead='0' live='1'",
        input=codec.render_grid(grid, symbols),
        output=output,
        generator="eval",
        grid=grid,
        expected=np.array(expected),
    )


BLINKER = np.zeros((5, 5), dtype=bool)
BLINKER[2, 1:4] = True


def test_exact_answer_scores_perfect():
    item = make_test_item(BLINKER)
    s = score_answer(item, item.expected.copy())
    assert (s.parse_ok, s.shape_ok, s.exact) == (True, True, True)
    assert s.cell_accuracy == 1.0 and s.live_f1 == 1.0 and s.reason is None
    assert s.family == item.family and s.facet("task") == "next"
    assert [k for k, _ in s.facets] == ["task", "wrap", "generations", "size", "symbols"]


def test_unparsable_answer_scores_zero_with_reason():
    item = make_test_item(BLINKER)
    s = score_answer(item, None, "no grid found in the answer")
    assert not s.parse_ok and not s.shape_ok and not s.exact
    assert s.cell_accuracy == 0.0 and s.live_f1 == 0.0
    assert s.reason == "no grid found in the answer"


def test_missing_row_counts_missing_cells_wrong():
    item = make_test_item(BLINKER)
    answer = item.expected[:4].copy()  # 4 rows of 5 - last expected row missing
    s = score_answer(item, answer)
    assert s.parse_ok and not s.shape_ok and not s.exact
    assert s.cell_accuracy == pytest.approx(20 / 25)
    assert s.reason == "shape 4x5, expected 5x5"
    assert s.live_f1 == 1.0  # all 3 live cells of the vertical blinker are in rows 1-3


def test_missing_column_reason_rows_by_columns():
    item = make_test_item(BLINKER)
    s = score_answer(item, item.expected[:, :4].copy())
    assert s.reason == "shape 5x4, expected 5x5"
    assert s.cell_accuracy == pytest.approx(20 / 25)


def test_extra_rows_do_not_change_denominator_but_extra_live_cells_are_false_positives():
    item = make_test_item(BLINKER)
    answer = np.vstack([item.expected, np.ones((2, 5), dtype=bool)])
    s = score_answer(item, answer)
    assert not s.shape_ok and not s.exact
    assert s.cell_accuracy == 1.0  # every expected cell is right
    assert s.reason == "shape 7x5, expected 5x5"
    # tp=3, fp=10, fn=0
    assert s.live_f1 == pytest.approx(2 * 3 / (2 * 3 + 10))


def test_wrong_cells_counted_and_f1():
    item = make_test_item(BLINKER)
    answer = item.expected.copy()
    answer[1, 2] = False  # lose one live cell
    answer[0, 0] = True  # add a wrong live cell
    s = score_answer(item, answer)
    assert s.shape_ok and not s.exact
    assert s.cell_accuracy == pytest.approx(23 / 25)
    assert s.live_f1 == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert s.reason == "2 of 25 cells wrong"


def test_f1_is_one_when_no_live_cells_anywhere():
    item = make_test_item(np.zeros((5, 6), dtype=bool))
    s = score_answer(item, np.zeros((5, 6), dtype=bool))
    assert s.live_f1 == 1.0 and s.exact


def test_f1_zero_when_expected_dead_but_answer_has_live():
    item = make_test_item(np.zeros((5, 5), dtype=bool))
    answer = np.zeros((5, 5), dtype=bool)
    answer[0, 0] = True
    s = score_answer(item, answer)
    assert s.live_f1 == 0.0 and s.cell_accuracy == pytest.approx(24 / 25)


def test_count_task_has_no_f1_and_compares_numbers():
    item = make_test_item(BLINKER, task=Task.COUNT)
    answer = item.expected.copy()
    answer[0, 0] += 1
    s = score_answer(item, answer)
    assert s.task == "count" and s.live_f1 is None
    assert s.cell_accuracy == pytest.approx(24 / 25) and not s.exact
    assert score_answer(item, item.expected.copy()).exact


def test_one_dimensional_answer_is_one_row():
    item = make_test_item(BLINKER)
    s = score_answer(item, np.zeros(5, dtype=bool))
    assert s.reason == "shape 1x5, expected 5x5"
    assert s.cell_accuracy == pytest.approx(5 / 25)  # row 0 is all dead in the expected grid


@given(grids(1, 8), st.data())
def test_cell_accuracy_is_a_share_and_exact_implies_perfect(grid, data):
    item = make_test_item(grid)
    h = data.draw(st.integers(1, 10))
    w = data.draw(st.integers(1, 10))
    answer = np.asarray(data.draw(st.lists(st.booleans(), min_size=h * w, max_size=h * w)))
    s = score_answer(item, answer.reshape(h, w))
    assert 0.0 <= s.cell_accuracy <= 1.0
    assert 0.0 <= s.live_f1 <= 1.0
    assert s.exact == (s.shape_ok and s.cell_accuracy == 1.0)
    assert score_answer(item, item.expected.copy()).exact


def test_score_round_trips_through_dict():
    item = make_test_item(BLINKER)
    s = score_answer(item, item.expected[:3].copy())
    assert ItemScore.from_dict(s.to_dict()) == s


@pytest.mark.skipif(not hasattr(codec, "parse_answer"), reason="codec.parse_answer not landed yet")
def test_score_item_parses_text():
    item = make_test_item(BLINKER)
    assert score_item(item, item.output).exact
    s = score_item(item, "I cannot do that.")
    assert not s.parse_ok and s.reason


# --------------------------------------------------------------------------- statistics

# Newcombe (1998), "Two-sided confidence intervals for the single proportion", Stat Med 17:857,
# Table II, method 3 (Wilson score, no continuity correction).
NEWCOMBE = [
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0000, 0.1611),
    (1, 29, 0.0061, 0.1718),
    (29, 29, 0.8830, 1.0000),
]


@pytest.mark.parametrize(("k", "n", "low", "high"), NEWCOMBE)
def test_wilson_matches_newcombe_table(k, n, low, high):
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(low, abs=5e-5)
    assert hi == pytest.approx(high, abs=5e-5)


def test_wilson_eight_of_ten():
    lo, hi = wilson_interval(8, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)


def test_wilson_rejects_bad_counts():
    with pytest.raises(ValueError):
        wilson_interval(1, 0)
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_bootstrap_is_deterministic_and_brackets_the_mean():
    values = np.random.default_rng(1).random(40)
    a = bootstrap_mean_interval(values)
    b = bootstrap_mean_interval(values)
    assert a == b
    assert a[0] < values.mean() < a[1]
    assert bootstrap_mean_interval(values, seed=7) != a
    assert bootstrap_mean_interval([0.5, 0.5, 0.5]) == (0.5, 0.5)


def test_summarize_overall_and_by_facet():
    items = [make_test_item(BLINKER, seed=i) for i in range(4)] + [
        make_test_item(BLINKER, task=Task.COUNT, seed=10 + i) for i in range(6)
    ]
    scores = [score_answer(it, it.expected.copy()) for it in items[:8]] + [
        score_answer(it, None, "nothing") for it in items[8:]
    ]
    summary = summarize(scores)
    assert summary.n == 10
    exact = summary.metrics["exact"]
    assert exact == Metric("exact", 0.8, *wilson_interval(8, 10), 10)
    assert summary.metrics["live_f1"].n == 4  # next-generation items only
    assert list(summary.by_facet) == ["task", "wrap", "generations", "size", "symbols"]
    by_task = summary.by_facet["task"]
    assert by_task["next"]["exact"].value == 1.0 and by_task["next"]["exact"].n == 4
    assert by_task["count"]["exact"].value == pytest.approx(4 / 6)
    assert by_task["count"]["live_f1"] == Metric("live_f1", None, None, None, 0)
    assert summarize(scores) == summary  # deterministic
    assert Summary.from_dict(summary.to_dict()) == summary


def test_summarize_empty():
    s = summarize([])
    assert s.n == 0 and s.metrics["exact"].value is None and s.by_facet == {}
