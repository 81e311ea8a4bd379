"""Per-item scores and aggregates: edge cases and statistics against published values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from simonsca import codec
from simonsca.metrics import GENERATION_METRICS
from simonsca.rules import neighbor_counts, step
from simonsca.scoring import ItemScore, score_answer, score_item
from simonsca.stats import bootstrap_mean_interval, wilson_interval
from simonsca.summary import Estimate, summarize
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


def test_extra_rows_count_wrong_and_extra_live_cells_are_false_positives():
    item = make_test_item(BLINKER)
    answer = np.vstack([item.expected, np.ones((2, 5), dtype=bool)])
    s = score_answer(item, answer)
    assert not s.shape_ok and not s.exact
    assert s.cell_accuracy == pytest.approx(25 / 35)  # 25 right of the 25 + 10 cells of the union
    assert s.reason == "shape 7x5, expected 5x5"
    # tp=3, fp=10, fn=0
    assert s.live_f1 == pytest.approx(2 * 3 / (2 * 3 + 10))


def test_padded_answer_from_the_issue():
    # The expected 7x6 grid plus 20 extra dead rows and columns.
    grid = np.random.default_rng(7).random((7, 6)) < 0.5
    item = make_test_item(grid)
    padded = np.zeros((27, 26), dtype=bool)
    padded[:7, :6] = item.expected
    s = score_answer(item, padded)
    assert not s.shape_ok and not s.exact
    assert s.cell_accuracy == pytest.approx(42 / (27 * 26))
    # F1 counts live cells only (no true negatives): dead padding neither helps nor hurts.
    assert s.live_f1 == score_answer(item, item.expected.copy()).live_f1 == 1.0
    count_item = make_test_item(grid, task=Task.COUNT)
    wide = np.hstack([count_item.expected, np.zeros((7, 3), dtype=np.int64)])
    c = score_answer(count_item, wide)
    assert c.cell_accuracy == pytest.approx(42 / 63) and c.reason == "shape 7x9, expected 7x6"


def test_wrong_shape_both_ways_uses_the_union_of_the_rectangles():
    item = make_test_item(BLINKER)  # 5x5
    answer = np.zeros((3, 8), dtype=bool)  # 3 rows of 8: overlap 3x5, union 25 + 24 - 15
    s = score_answer(item, answer)
    right = int(np.count_nonzero(~item.expected[:3, :5]))
    assert s.cell_accuracy == pytest.approx(right / 34)


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


def union_accuracy(expected: np.ndarray, answer: np.ndarray) -> float:
    """Independent oracle: lay both on one canvas, with -1 where a grid has no cell."""
    h = max(expected.shape[0], answer.shape[0])
    w = max(expected.shape[1], answer.shape[1])
    a = np.full((h, w), -1)
    b = np.full((h, w), -1)
    a[: expected.shape[0], : expected.shape[1]] = expected
    b[: answer.shape[0], : answer.shape[1]] = answer
    in_union = (a >= 0) | (b >= 0)
    return int(np.count_nonzero((a == b) & (a >= 0))) / int(np.count_nonzero(in_union))


answers = st.tuples(st.integers(1, 10), st.integers(1, 10)).flatmap(
    lambda shape: hnp.arrays(np.bool_, shape)
)


@given(grids(1, 8), answers, st.booleans())
def test_cell_accuracy_is_the_union_share_and_one_only_when_exact(grid, answer, counts):
    item = make_test_item(grid, task=Task.COUNT if counts else Task.NEXT)
    value = answer.astype(np.int64) * 3 if counts else answer
    s = score_answer(item, value)
    assert 0.0 <= s.cell_accuracy <= 1.0
    assert s.cell_accuracy == pytest.approx(union_accuracy(item.expected.astype(int), value))
    assert s.exact == (s.cell_accuracy == 1.0) == (s.shape_ok and s.cell_accuracy == 1.0)
    if counts:
        assert s.live_f1 is None
    else:
        assert 0.0 <= s.live_f1 <= 1.0
    assert score_answer(item, item.expected.copy()).exact


@given(grids(1, 8), st.data())
def test_a_padded_answer_never_scores_one(grid, data):
    item = make_test_item(grid)
    extra_rows = data.draw(st.integers(0, 5))
    extra_cols = data.draw(st.integers(0 if extra_rows else 1, 5))
    h, w = item.expected.shape
    fill = data.draw(st.booleans())
    padded = np.full((h + extra_rows, w + extra_cols), fill)
    padded[:h, :w] = item.expected
    s = score_answer(item, padded)
    assert not s.exact and not s.shape_ok
    assert s.cell_accuracy == pytest.approx(h * w / padded.size)
    assert s.cell_accuracy < 1.0


@given(grids(1, 6), answers, st.data())
def test_adding_an_extra_row_or_column_never_raises_a_score(grid, answer, data):
    item = make_test_item(grid)
    h, w = item.expected.shape
    before = score_answer(item, answer)
    new_row = np.asarray(data.draw(hnp.arrays(np.bool_, (1, answer.shape[1]))))
    new_col = np.asarray(data.draw(hnp.arrays(np.bool_, (answer.shape[0], 1))))
    grown = []
    if answer.shape[0] >= h:  # a row beyond the expected ones
        grown.append(np.vstack([answer, new_row]))
    if answer.shape[1] >= w:  # a column beyond the expected ones
        grown.append(np.hstack([answer, new_col]))
    for bigger in grown:
        after = score_answer(item, bigger)
        assert after.cell_accuracy <= before.cell_accuracy
        assert after.live_f1 <= before.live_f1
        if before.cell_accuracy > 0:
            assert after.cell_accuracy < before.cell_accuracy


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
    summary = summarize(scores, GENERATION_METRICS)
    assert summary.n == 10
    exact = summary.metrics["exact"]
    assert exact == Estimate(0.8, *wilson_interval(8, 10), 10)
    assert summary.metrics["live_f1"].n == 4  # next-generation items only
    assert list(summary.by_facet) == ["task", "wrap", "generations", "size", "symbols"]
    by_task = summary.by_facet["task"]
    assert by_task["next"]["exact"].value == 1.0 and by_task["next"]["exact"].n == 4
    assert by_task["count"]["exact"].value == pytest.approx(4 / 6)
    assert by_task["count"]["live_f1"] == Estimate(None, None, None, 0)
    assert summarize(scores, GENERATION_METRICS) == summary  # deterministic


def test_summarize_empty():
    s = summarize([], GENERATION_METRICS)
    assert s.n == 0 and s.metrics["exact"].value is None and s.by_facet == {}
