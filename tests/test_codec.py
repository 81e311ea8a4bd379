"""Grid <-> text: rendering round trips, the strict dataset parser, the tolerant answer parsers."""

from __future__ import annotations

import json
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from simonsca import codec
from simonsca.codec import (
    NOTE_CUT,
    ParsedAnswer,
    answer_limit,
    parse_answer,
    parse_counts,
    parse_grid,
    parse_input_grid,
    render_counts,
    render_grid,
)
from simonsca.tasks import Item, Symbols, Task
from tests.strategies import answer_texts, count_grids, grids, items, noisy_answers, symbols

ONES = Symbols(live="1", dead="0")  # the golden prompt's symbols: live='1' dead='0'
STARS = Symbols(live="*", dead=".")

# The golden example from a SimonsCA1 prompt (3x5, wrap_x=True, wrap_y=True).
GOLDEN_INPUT = "0,1,0,1,1\n0,0,0,1,1\n1,1,1,0,0"
GOLDEN_GRID = np.array([[0, 1, 0, 1, 1], [0, 0, 0, 1, 1], [1, 1, 1, 0, 0]], dtype=bool)
# Worked by hand. With 3 rows every cell's neighbourhood spans all three rows, so a cell's count
# is the live cells in its column and the two columns beside it (wrapping), minus itself.
# Column sums: 1, 2, 1, 2, 2 -> three-column windows: 5, 4, 5, 5, 5.
GOLDEN_COUNTS = np.array([[5, 3, 5, 4, 4], [5, 4, 5, 4, 4], [4, 3, 4, 5, 5]], dtype=np.int64)


def assert_never_raises_and_consistent(result: ParsedAnswer) -> None:
    assert isinstance(result, ParsedAnswer)
    assert (result.value is None) != (result.reason is None)
    assert result.ok == (result.reason is None)
    if result.reason is not None:
        assert not result.reason.startswith("internal parser error"), result.reason
        assert "\n" not in result.reason
    else:
        assert result.value is not None and result.value.ndim == 2
        assert min(result.value.shape) >= 1


# ------------------------------------------------------------------------------------------
# Round trips


@given(grid=grids(), syms=symbols())
def test_grid_round_trip_is_clean(grid: np.ndarray, syms: Symbols) -> None:
    text = render_grid(grid, syms)
    result = parse_grid(text, syms)
    assert result.ok, result.reason
    assert result.value is not None and result.value.dtype == np.bool_
    np.testing.assert_array_equal(result.value, grid)
    assert result.notes == ()
    # Telling the parser the shape changes nothing for a well-formed answer.
    assert parse_grid(text, syms, expected_shape=grid.shape).notes == ()


@given(grid=grids(), syms=symbols())
def test_strict_input_round_trip(grid: np.ndarray, syms: Symbols) -> None:
    parsed = parse_input_grid(render_grid(grid, syms), syms)
    assert parsed.dtype == np.bool_
    np.testing.assert_array_equal(parsed, grid)


@given(counts=count_grids())
def test_counts_round_trip(counts: np.ndarray) -> None:
    result = parse_counts(render_counts(counts))
    assert result.ok, result.reason
    assert result.value is not None and result.value.dtype == np.int64
    np.testing.assert_array_equal(result.value, counts)
    assert result.notes == ()


@given(
    grid=grids(),
    syms=symbols().filter(lambda s: "`" not in s.live + s.dead),
    lead=st.sampled_from(["", "\n", "  ", "\n\n"]),
    fence=st.booleans(),
    tail=st.sampled_from(["", "\n", "\n\n", "\n\n# Input\n", "\n\nThis is the next generation."]),
    junk=st.text(max_size=20),
)
def test_grid_survives_realistic_wrapping(
    grid: np.ndarray, syms: Symbols, lead: str, fence: bool, tail: str, junk: str
) -> None:
    body = render_grid(grid, syms)
    if fence:
        body = f"```\n{body}\n```"
    # Whatever comes after a blank line is not part of the answer.
    text = lead + body + tail + ("\n\n" + junk if tail.startswith("\n\n") else "")
    result = parse_grid(text, syms, expected_shape=grid.shape)
    assert result.ok, result.reason
    np.testing.assert_array_equal(result.value, grid)
    assert ("stripped code fence" in result.notes) == fence


@given(grid=grids(), syms=symbols().filter(lambda s: s.cell_sep not in ("", " ")))
def test_spaces_around_cells_are_tolerated(grid: np.ndarray, syms: Symbols) -> None:
    spaced = Symbols(
        live=syms.live, dead=syms.dead, row_sep=syms.row_sep, cell_sep=f" {syms.cell_sep}  "
    )
    result = parse_grid(" " + render_grid(grid, spaced), syms)
    assert result.ok, result.reason
    np.testing.assert_array_equal(result.value, grid)
    assert "ignored spaces around cells" in result.notes


# ------------------------------------------------------------------------------------------
# Never raising


@given(text=st.text(), syms=symbols())
@example(text="", syms=ONES)
@example(text="[" * 100_000, syms=ONES)
def test_parse_grid_never_raises(text: str, syms: Symbols) -> None:
    assert_never_raises_and_consistent(parse_grid(text, syms))
    assert_never_raises_and_consistent(parse_grid(text, syms, expected_shape=(3, 5)))


@given(data=st.data(), syms=symbols())
def test_parse_grid_never_raises_on_symbol_noise(data: st.DataObject, syms: Symbols) -> None:
    text = data.draw(noisy_answers(syms))
    assert_never_raises_and_consistent(parse_grid(text, syms))
    assert_never_raises_and_consistent(parse_grid(text, syms, expected_shape=(2, 2)))


@given(text=st.text())
@example(text="[" * 100_000)
@example(text="[[" + "1" * 5000 + "]]")
@example(text="[[NaN, Infinity, -0.0, 1e400]]")
def test_parse_counts_never_raises(text: str) -> None:
    assert_never_raises_and_consistent(parse_counts(text))


@given(data=st.data(), syms=symbols())
def test_parse_counts_never_raises_on_noise(data: st.DataObject, syms: Symbols) -> None:
    assert_never_raises_and_consistent(parse_counts(data.draw(noisy_answers(syms))))


@given(text=st.text(), syms=symbols())
def test_parse_input_grid_raises_only_value_error(text: str, syms: Symbols) -> None:
    try:
        grid = parse_input_grid(text, syms)
    except ValueError as error:
        assert str(error) and "\n" not in str(error)
    else:
        assert grid.dtype == np.bool_ and grid.ndim == 2 and min(grid.shape) >= 1


# ------------------------------------------------------------------------------------------
# The golden example


def _torus_counts(grid: np.ndarray) -> np.ndarray:
    """Independent check of the hand-worked counts (np.roll over both axes)."""
    g = grid.astype(np.int64)
    return sum(
        np.roll(np.roll(g, dy, axis=0), dx, axis=1)
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
        if (dy, dx) != (0, 0)
    )


def test_golden_input_parses() -> None:
    np.testing.assert_array_equal(parse_input_grid(GOLDEN_INPUT, ONES), GOLDEN_GRID)
    assert render_grid(GOLDEN_GRID, ONES) == GOLDEN_INPUT


def test_golden_counts() -> None:
    np.testing.assert_array_equal(_torus_counts(GOLDEN_GRID), GOLDEN_COUNTS)
    text = render_counts(GOLDEN_COUNTS)
    assert text == "[[5,3,5,4,4],[5,4,5,4,4],[4,3,4,5,5]]"
    result = parse_counts(text, expected_shape=(3, 5))
    assert result.ok and result.notes == ()
    np.testing.assert_array_equal(result.value, GOLDEN_COUNTS)


def test_golden_counts_as_the_model_stops() -> None:
    # The model is stopped at the blank line that ends an answer, or runs on and echoes a prompt.
    for tail in ("", "\n", "\n\n", "\n\n# Input\n0,1\n", "\n# Input\n0,1"):
        result = parse_counts(render_counts(GOLDEN_COUNTS) + tail)
        assert result.ok, (tail, result.reason)
        np.testing.assert_array_equal(result.value, GOLDEN_COUNTS)
    assert parse_counts(render_counts(GOLDEN_COUNTS) + "\n\n# Input\n").notes == (
        "ignored text after the JSON",
    )


# ------------------------------------------------------------------------------------------
# Realistic model junk: next generation


def test_trailing_explanation_is_ignored() -> None:
    text = "0,1,0\n1,1,0\n\nThe glider moved one cell down.\n"
    result = parse_grid(text, ONES)
    assert result.ok
    np.testing.assert_array_equal(result.value, [[0, 1, 0], [1, 1, 0]])
    assert result.notes == ("ignored text after the grid",)


def test_explanation_on_the_next_line_is_ignored() -> None:
    result = parse_grid("0,1,0\n1,1,0\nThat is the next generation.", ONES)
    assert result.ok and result.shape == (2, 3)
    assert "ignored text after the grid" in result.notes


def test_code_fence_with_preamble() -> None:
    text = "Here is the next generation:\n\n```text\n.*.\n**.\n```\nHope this helps!"
    result = parse_grid(text, Symbols(live="*", dead=".", cell_sep=""))
    assert result.ok
    np.testing.assert_array_equal(result.value, [[0, 1, 0], [1, 1, 0]])
    assert set(result.notes) == {
        "stripped code fence",
        "ignored text before the grid",
        "ignored text after the grid",
    }


def test_extra_blank_lines_around_the_answer() -> None:
    result = parse_grid("\n\n  0,1\n1,0  \n\n\n", ONES)
    assert result.ok
    np.testing.assert_array_equal(result.value, [[0, 1], [1, 0]])
    assert result.notes == ("ignored spaces around cells",)


def test_trailing_input_echo_without_blank_line() -> None:
    result = parse_grid("0,1\n1,0\n# Input\n1,1\n1,1", ONES)
    assert result.ok and result.shape == (2, 2)
    assert result.notes == ("ignored text after the grid",)


def test_longer_row_is_ragged() -> None:
    text = "0,1,0,1,1\n0,0,0,1,1\n1,1,1,1,1,1,1,1\n"
    assert parse_grid(text, ONES).reason == "ragged rows: row 3 has 8 cells, row 1 has 5"


def test_row_cut_off_by_max_tokens_is_ragged() -> None:
    result = parse_grid("0,1,0\n1,1,0\n0,", ONES)
    assert result.reason == "ragged rows: row 3 has 1 cell, row 1 has 3"


def test_missing_rows_give_the_smaller_grid() -> None:
    result = parse_grid("0,1,0,1,1\n0,0,0,1,1\n", ONES, expected_shape=(3, 5))
    assert result.ok and result.shape == (2, 5)
    assert result.notes == ()


def test_extra_rows_are_kept() -> None:
    result = parse_grid("0,1\n1,0\n1,1\n0,0", ONES, expected_shape=(2, 2))
    assert result.ok and result.shape == (4, 2)


def test_unknown_symbol_names_row_and_column() -> None:
    text = "0,1,0,1,1\n0,0,0,1,1\n1,x,1,0,0"
    assert parse_grid(text, ONES).reason == "unknown symbol 'x' at row 3, column 2"


def test_wrong_symbols_throughout() -> None:
    # The model answered with the v5 generator's other alphabet.
    assert parse_grid(".,*,.\n*,*,.", ONES).reason == "unknown symbol '.' at row 1, column 1"


def test_wrong_symbols_without_separator_find_no_grid() -> None:
    result = parse_grid("abc\ncab", Symbols(live="1", dead="0", cell_sep=""))
    assert result.reason == "no grid found"


def test_empty_cell() -> None:
    assert parse_grid("0,,1\n1,0,1", ONES).reason == "empty cell at row 1, column 2"


def test_trailing_cell_separator_is_tolerated() -> None:
    result = parse_grid("0,1,\n1,0,", ONES)
    assert result.ok and result.shape == (2, 2)
    assert result.notes == ("ignored a cell separator at the end of a row",)
    spaced = parse_grid("0, 1, \n1, 0,", ONES)
    assert set(spaced.notes) == {
        "ignored spaces around cells",
        "ignored a cell separator at the end of a row",
    }


def test_empty_and_prose_answers() -> None:
    assert parse_grid("", ONES).reason == "empty answer"
    assert parse_grid(" \n\n\t", ONES).reason == "empty answer"
    assert parse_grid("I cannot compute the next generation.", ONES).reason == "no grid found"
    # An echoed prompt is not an answer.
    assert parse_grid("# Input\n0,1\n1,0", ONES).reason == "no grid found"


def test_counts_where_a_grid_was_asked() -> None:
    result = parse_grid("[[2,3],[1,0]]", ONES)
    assert result.reason == "no grid found: the answer is a JSON list, not rows of cells"
    fenced = parse_grid("```json\n[[2,3],[1,0]]\n```", ONES)
    assert fenced.reason == "no grid found: the answer is a JSON list, not rows of cells"


def test_wrong_cell_separator_is_named() -> None:
    spaced = parse_grid("0 1 0\n1 1 0", ONES)
    assert spaced.reason == "wrong cell separator: expected ',', found ' '"
    assert parse_grid("010\n110", ONES).reason == "wrong cell separator: expected ',', found none"
    no_sep = Symbols(live="1", dead="0", cell_sep="")
    assert parse_grid("0,1,0\n1,1,0", no_sep).reason == (
        "wrong cell separator: expected none, found ','"
    )


def test_wrong_separator_is_not_claimed_from_a_later_grid() -> None:
    result = parse_grid("0,1\n1,x\n\n0 1\n1 0", ONES)
    assert result.reason == "unknown symbol 'x' at row 2, column 2"


def test_spaces_between_unseparated_cells_are_tolerated() -> None:
    result = parse_grid("0 1 0\n1 1 0", Symbols(live="1", dead="0", cell_sep=""))
    assert result.ok and result.shape == (2, 3)
    assert result.notes == ("ignored spaces around cells",)


def test_digit_symbols_that_look_reversed() -> None:
    # live='0', dead='1' happens in v5 (both drawn from '01').
    swapped = Symbols(live="0", dead="1")
    result = parse_grid("0,1\n1,1", swapped)
    np.testing.assert_array_equal(result.value, [[1, 0], [0, 0]])


def test_hash_symbol_with_prompt_headers() -> None:
    hashes = Symbols(live="#", dead="_")
    result = parse_grid("# Output\n#,_\n_,#\n# Input\n#,#\n#,#", hashes)
    assert result.ok
    np.testing.assert_array_equal(result.value, [[1, 0], [0, 1]])
    assert result.notes == ("ignored text before the grid", "ignored text after the grid")


def test_backtick_symbol_is_not_a_fence() -> None:
    ticks = Symbols(live="`", dead="0", cell_sep="")
    result = parse_grid("```\n`0`", ticks)
    assert result.ok and result.notes == ()
    np.testing.assert_array_equal(result.value, [[1, 1, 1], [1, 0, 1]])


def test_double_spaced_rows_only_with_expected_shape() -> None:
    text = "0,1,0\n\n1,1,0\n\n0,0,1"
    plain = parse_grid(text, ONES)
    assert plain.ok and plain.shape == (1, 3)
    assert plain.notes == ("ignored text after the grid",)
    chosen = parse_grid(text, ONES, expected_shape=(3, 3))
    assert chosen.ok and chosen.notes == ("rows separated by blank lines",)
    np.testing.assert_array_equal(chosen.value, [[0, 1, 0], [1, 1, 0], [0, 0, 1]])
    # Never used to pad or crop: a shape the text cannot give leaves the first reading.
    assert parse_grid(text, ONES, expected_shape=(4, 3)).shape == (1, 3)


# ------------------------------------------------------------------------------------------
# Realistic model junk: neighbour counts


def test_counts_with_whitespace_fence_and_text() -> None:
    text = "```json\n[[2, 3, 1],\n [1, 0, 2]]\n```\nEach number counts live neighbours."
    result = parse_counts(text)
    assert result.ok
    np.testing.assert_array_equal(result.value, [[2, 3, 1], [1, 0, 2]])
    assert set(result.notes) == {"stripped code fence", "ignored text after the JSON"}


def test_counts_after_a_preamble() -> None:
    result = parse_counts("The counts are: [[1,2],[3,4]]")
    assert result.ok and result.notes == ("ignored text before the JSON",)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[[2,3,1],[1,9,2]]", "count 9 out of range 0-8 at row 2, column 2"),
        ("[[2,-1]]", "count -1 out of range 0-8 at row 1, column 2"),
        ("[[2,true]]", "not an integer count: true at row 1, column 2"),
        ("[[2,1.0]]", "not an integer count: 1.0 at row 1, column 2"),
        ('[["2",1]]', 'not an integer count: "2" at row 1, column 1'),
        ("[[2,null]]", "not an integer count: null at row 1, column 2"),
        ("[[2,3,1],[1,0]]", "ragged rows: row 2 has 2 cells, row 1 has 3"),
        ("[[2,3,1],[1,0,2],[3,", "not JSON: truncated before the list is closed"),
        ("[[2,3,1],[1,0,2],[3", "not JSON: truncated before the list is closed"),
        ("[[2,3 1]]", "not JSON: Expecting ',' delimiter at line 1, column 7"),
        ("[1,2,3]", "not a list of rows: row 1 is 1, not a list"),
        ("[]", "not a list of rows: the list is empty"),
        ("[[1],[]]", "not a list of rows: row 2 is empty"),
        ("5", "not a list of rows: the answer is the number 5"),
        ('{"counts": [[1]]}', "not a list of rows: the answer is an object"),
        ("0,1,0\n1,1,0\n0,0,1", "not JSON: found rows of cells instead of a JSON list of rows"),
        ("..*\n*..", "not JSON: found rows of cells instead of a JSON list of rows"),
        ("0;1;0\n1;1;0", "not JSON: found rows of cells instead of a JSON list of rows"),
        ("0 1 0\n1 1 0", "not JSON: found rows of cells instead of a JSON list of rows"),
        ("I don't know.", "no grid found"),
        ("I am so sorry", "no grid found"),
        ("", "empty answer"),
        ("\n\n", "empty answer"),
    ],
)
def test_counts_reasons(text: str, reason: str) -> None:
    result = parse_counts(text)
    assert result.reason == reason
    assert result.value is None


# ------------------------------------------------------------------------------------------
# Strict parser, ParsedAnswer, dispatch


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty grid"),
        ("0,1\n", "empty row at row 2"),
        ("0,1\n1,0,1", "ragged rows: row 2 has 3 cells, row 1 has 2"),
        ("0,1\n1,x", "unknown symbol 'x' at row 2, column 2"),
        ("0, 1", "unknown symbol ' 1' at row 1, column 2"),
    ],
)
def test_strict_parser_reasons(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        parse_input_grid(text, ONES)


def test_unusable_symbols_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unusable symbols"):
        parse_grid("0,1", Symbols(live="1", dead="1"))
    with pytest.raises(ValueError, match="unusable symbols"):
        parse_input_grid("0,1", Symbols(live=",", dead="0"))


def test_parsed_answer_holds_exactly_one_of_value_and_reason() -> None:
    with pytest.raises(ValueError):
        ParsedAnswer()
    with pytest.raises(ValueError):
        ParsedAnswer(value=np.zeros((1, 1), dtype=bool), reason="both")
    good = ParsedAnswer.success(np.zeros((2, 3), dtype=bool), ("a", "a", "b"))
    assert good.ok and good.shape == (2, 3) and good.notes == ("a", "b")
    assert not good.value.flags.writeable
    bad = ParsedAnswer.failure("no grid found")
    assert not bad.ok and bad.shape is None


def _item(task: Task, expected: np.ndarray, symbols: Symbols = ONES) -> Item:
    output = render_counts(expected) if task == Task.COUNT else render_grid(expected, symbols)
    return Item(
        seed=0,
        task=task,
        wrap_x=True,
        wrap_y=True,
        generations=1,
        symbols=symbols,
        instruction="SimonsCA1\nlive='1' dead='0' wrap_x=True wrap_y=True",
        input=GOLDEN_INPUT,
        output=output,
        generator="eval",
        grid=GOLDEN_GRID.copy(),
        expected=expected,
    )


def test_parse_answer_dispatches_on_task() -> None:
    count_item = _item(Task.COUNT, GOLDEN_COUNTS.copy())
    counted = parse_answer(count_item.output + "\n\n", count_item)
    assert counted.ok and counted.value.dtype == np.int64
    np.testing.assert_array_equal(counted.value, GOLDEN_COUNTS)

    next_grid = np.array([[1, 0, 0, 0, 0], [0, 0, 0, 0, 0], [1, 0, 0, 1, 1]], dtype=bool)
    next_item = _item(Task.NEXT, next_grid, STARS)
    stepped = parse_answer(next_item.output, next_item)
    assert stepped.ok and stepped.value.dtype == np.bool_
    np.testing.assert_array_equal(stepped.value, next_grid)
    # The same text is not an answer to the other question.
    assert not parse_answer(next_item.output, count_item).ok
    assert not parse_answer(count_item.output, next_item).ok


def test_counts_given_as_a_grid_of_symbols_for_a_count_item() -> None:
    count_item = _item(Task.COUNT, GOLDEN_COUNTS.copy())
    result = parse_answer(GOLDEN_INPUT, count_item)
    assert result.reason == "not JSON: found rows of cells instead of a JSON list of rows"


def test_render_counts_is_compact_json() -> None:
    assert json.loads(render_counts(GOLDEN_COUNTS)) == GOLDEN_COUNTS.tolist()


# ------------------------------------------------------------------------------------------
# Bounded parsing: parse_answer reads at most answer_limit(item) characters

TEN_MB = 10 * 1024 * 1024


def _next_item() -> Item:
    grid = np.array([[1, 0, 0, 0, 0], [0, 0, 0, 0, 0], [1, 0, 0, 1, 1]], dtype=bool)
    return _item(Task.NEXT, grid)


def _cut_notes(result: ParsedAnswer) -> list[str]:
    return [note for note in result.notes if note.startswith(NOTE_CUT)]


def test_answer_limit_is_a_few_right_answers_plus_a_margin() -> None:
    item = _next_item()
    assert answer_limit(item) == 8 * len(item.output) + 2000


def test_ten_megabytes_after_a_finished_answer_parse_as_the_answer() -> None:
    item = _next_item()
    junk = "The grid above is the next generation.\n" * (TEN_MB // 39)
    text = item.output + "\n\n" + junk
    assert len(text) >= TEN_MB
    result = parse_answer(text, item)
    short = parse_answer(item.output + "\n\n" + junk[:200], item)
    assert result == short and result.ok and not _cut_notes(result)
    np.testing.assert_array_equal(result.value, item.expected)
    assert result.notes == ("ignored text after the grid",)


def test_ten_megabytes_of_rows_are_cut_and_flagged() -> None:
    item = _next_item()
    text = "0,0,0,0,0\n" * (TEN_MB // 10)
    result = parse_answer(text, item)
    limit = answer_limit(item)
    # Cut after the last whole row before the limit: a grid of those rows, flagged.
    assert result.ok and result.shape == (limit // 10, 5)
    assert _cut_notes(result) == [
        f"answer cut at {limit // 10 * 10} characters (77 times longer than a right answer)"
    ]


def test_ten_megabytes_on_one_line_are_cut_at_the_limit() -> None:
    item = _next_item()
    result = parse_answer("0," * (TEN_MB // 2), item)
    limit = answer_limit(item)
    assert result.ok and result.shape == (1, limit // 2)  # "0,0,...,0," -- a trailing separator
    assert len(_cut_notes(result)) == 1
    counts_item = _item(Task.COUNT, GOLDEN_COUNTS.copy())
    counts = parse_answer("[[" + "1," * (TEN_MB // 2) + "1]]", counts_item)
    assert counts.reason == "not JSON: truncated before the list is closed"
    assert len(_cut_notes(counts)) == 1


def test_ten_megabytes_after_closed_counts_are_not_read() -> None:
    item = _item(Task.COUNT, GOLDEN_COUNTS.copy())
    text = item.output + "\nThese are the counts.\n" + "[[9]]\n" * (TEN_MB // 6)
    result = parse_answer(text, item)
    assert result.ok and result.notes == ("ignored text after the JSON",)
    np.testing.assert_array_equal(result.value, GOLDEN_COUNTS)


def test_parse_time_of_ten_megabytes_is_bounded() -> None:
    """Report-only timing (asserting the result, not the time): see the test's -s output."""
    import time

    item = _next_item()
    texts = {
        "rows": "0,0,0,0,0\n" * (TEN_MB // 10),
        "one line": "0," * (TEN_MB // 2),
        "junk after": item.output + "\n\n" + "blah blah\n" * (TEN_MB // 10),
    }
    for name, text in texts.items():
        started = time.perf_counter()
        result = parse_answer(text, item)
        elapsed = time.perf_counter() - started
        print(f"parse_answer on 10 MB ({name}): {1000 * elapsed:.2f} ms, ok={result.ok}")
        assert result.ok


@given(grid=grids(1, 5), data=st.data())
def test_a_cut_without_a_note_changed_nothing(grid: np.ndarray, data: st.DataObject) -> None:
    """With a tiny limit every longer text is cut: where no note says so, the whole text parses
    the same (the cut only skips what the parser would have ignored)."""
    item = _item(Task.NEXT, grid) if data.draw(st.booleans()) else _count_item(grid)
    text = data.draw(st.text(alphabet=st.sampled_from(list("01,[] \nx#`")), max_size=60))
    text = item.output + text if data.draw(st.booleans()) else text
    with mock.patch.multiple(codec, ANSWER_LENGTH_FACTOR=1, ANSWER_LENGTH_MARGIN=0):
        result = parse_answer(text, item)
    whole = codec._parse_item(text, item)
    if not _cut_notes(result):
        assert result == whole
        assert (result.value is None) or np.array_equal(result.value, whole.value)
    else:
        assert len(text) > len(item.output)


def _count_item(grid: np.ndarray) -> Item:
    from simonsca.rules import neighbor_counts

    return _item(Task.COUNT, np.asarray(neighbor_counts(grid, True, True), dtype=np.int64))


# ------------------------------------------------------------------------------------------
# Notes never depend on text the parser ignores


def test_a_fence_inside_text_after_the_grid_is_not_noted() -> None:
    text = "0,1\n1,0\nThat is all.\n```\n"
    result = parse_grid(text, ONES)
    assert result.notes == ("ignored text after the grid",)
    assert parse_grid("0,1\n1,0\n\nThat is all.\n\n```", ONES).notes == (
        "ignored text after the grid",
    )
    # A fence that closes the grid is still noted.
    assert parse_grid("0,1\n1,0\n```\nThat is all.", ONES).notes == (
        "stripped code fence",
        "ignored text after the grid",
    )
    assert parse_grid("0,1\n1,0\n```", ONES).notes == ("stripped code fence",)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), item=items())
def test_the_scanner_fed_in_pieces_reads_as_the_parser_reads_the_whole(
    item: Item, data: st.DataObject
) -> None:
    """One scanner behind every reader: fed any text in any pieces, at every point it parses
    as parse_answer and promises as parse_is_final do on the text so far."""
    text = data.draw(
        answer_texts(item) | st.text(st.sampled_from(list("01,[] \r\nx#`")), max_size=40)
    )
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=6)))
    scan = codec.AnswerScan(item)
    start = 0
    for end in [*cuts, len(text)]:
        scan.feed(text[start:end])
        start = max(start, end)
        so_far = text[:start]
        assert scan.text == so_far
        parsed, whole = scan.parsed(), parse_answer(so_far, item)
        assert parsed == whole
        assert (parsed.value is None) == (whole.value is None)
        assert parsed.value is None or np.array_equal(parsed.value, whole.value)
        assert scan.final() == codec.parse_is_final(so_far, item)
