"""Early stop: a "final" stop never changes the parse or the score; "cannot be right" is never
exact and (by default) never lowers a score; the watch is a pure function of the text."""

from __future__ import annotations

import hashlib
import json
from contextlib import nullcontext
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simonsca import codec
from simonsca.codec import parse_answer, render_grid
from simonsca.early_stop import (
    CANNOT_BE_RIGHT,
    FINAL,
    first_stop,
    format_savings,
    golden_savings,
    watch_for,
)
from simonsca.runner import EARLY_STOP_RULE
from simonsca.scoring import ItemScore, score_item
from simonsca.tasks import Item, Symbols
from tests.strategies import answer_texts, items, make_item

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "golden" / "gemma3-270m-answers.jsonl"

# A 7x6 next-generation item and a 5x5 count item with the plain symbols.
GRID = np.random.default_rng(3).random((7, 6)) < 0.4
NEXT = make_item(GRID)
COUNT = make_item(GRID[:5, :5], "count")


def line_ends(text: str) -> list[int]:
    return [i + 1 for i, ch in enumerate(text) if ch == "\n"]


def tiny_limit() -> Any:
    """Make parse_answer cut anything longer than the right answer (exercises the cut)."""
    return mock.patch.multiple(codec, ANSWER_LENGTH_FACTOR=1, ANSWER_LENGTH_MARGIN=0)


def same_parse(a: codec.ParsedAnswer, b: codec.ParsedAnswer) -> bool:
    if a != b:
        return False
    if a.value is None or b.value is None:
        return a.value is None and b.value is None
    return bool(np.array_equal(a.value, b.value))


def numbers(score: ItemScore) -> tuple[float, float, float]:
    f1 = -1.0 if score.live_f1 is None else score.live_f1
    return float(score.parse_ok), score.cell_accuracy, f1


# ------------------------------------------------------------------------------------------
# The properties


def check_every_stop(item: Item, text: str, eager: bool) -> None:
    watch = watch_for(item, eager=eager)  # one watch over growing prefixes, as the backend calls
    whole = parse_answer(text, item)
    whole_score = score_item(item, text)
    for end in line_ends(text):
        prefix = text[:end]
        reason = watch(prefix)
        assert reason == watch_for(item, eager=eager)(prefix)  # pure: history does not matter
        if reason is None:
            continue
        assert reason.startswith((f"{FINAL}: ", f"{CANNOT_BE_RIGHT}: ")), reason
        stopped = parse_answer(prefix, item)
        score = score_item(item, prefix)
        if reason.startswith(FINAL):
            assert same_parse(stopped, whole), (reason, prefix, stopped, whole)
            assert score == whole_score
        else:
            assert not whole_score.exact and not score.exact, reason
            if not eager:
                # Never lower: equal when the parse already failed, higher only by extra rows.
                assert all(a >= b for a, b in zip(numbers(score), numbers(whole_score))), (
                    reason,
                    score,
                    whole_score,
                )
                if not score.parse_ok:
                    assert numbers(score) == numbers(whole_score)
        # Once fired, the watch keeps its answer for every longer text.
        assert watch(text) == reason
        return


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), item=items(), eager=st.booleans(), small=st.booleans())
def test_stops_keep_their_promises(data: st.DataObject, item: Item, eager: bool, small: bool):
    text = data.draw(answer_texts(item))
    with tiny_limit() if small else nullcontext():
        check_every_stop(item, text, eager)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), item=items(), small=st.booleans())
def test_parse_is_final_is_a_promise(data: st.DataObject, item: Item, small: bool) -> None:
    """Checked on every prefix, not only line ends (the cut of parse_answer relies on it)."""
    text = data.draw(answer_texts(item))
    with tiny_limit() if small else nullcontext():
        whole = parse_answer(text, item)
        for end in range(len(text) + 1):
            if codec.parse_is_final(text[:end], item) is not None:
                assert same_parse(parse_answer(text[:end], item), whole), text[:end]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), item=items(), small=st.booleans())
def test_no_continuation_changes_a_final_cut_or_beats_a_cannot_be_right_one(
    data: st.DataObject, item: Item, small: bool
) -> None:
    """Early stop's promise, for any answer text, any cut a rule makes and any text the model
    could have written after the cut: a *final* cut scores exactly what every continuation
    scores; a *cannot-be-right* cut (the default rules) is not exact, no continuation is, and
    none scores higher on any number (equal when the cut's parse fails)."""
    text = data.draw(answer_texts(item))
    more = data.draw(answer_texts(item))
    with tiny_limit() if small else nullcontext():
        stop = first_stop(text, item)
        if stop is None:
            return
        cut = text[: stop.kept]
        at_cut = score_item(item, cut)
        going_on = score_item(item, cut + more)
        if stop.reason.startswith(f"{FINAL}: "):
            assert same_parse(parse_answer(cut + more, item), parse_answer(cut, item))
            assert going_on == at_cut, (stop, more)
        else:
            assert stop.reason.startswith(f"{CANNOT_BE_RIGHT}: "), stop
            assert not at_cut.exact and not going_on.exact
            assert all(a >= b for a, b in zip(numbers(at_cut), numbers(going_on))), (stop, more)
            if not at_cut.parse_ok:
                assert numbers(going_on) == numbers(at_cut)


@given(data=st.data(), item=items())
def test_watch_starts_over_on_another_text(data: st.DataObject, item: Item) -> None:
    first, second = data.draw(answer_texts(item)), data.draw(answer_texts(item))
    watch = watch_for(item)
    for end in line_ends(first):
        watch(first[:end])
    for end in line_ends(second):
        assert watch(second[:end]) == watch_for(item)(second[:end])


# ------------------------------------------------------------------------------------------
# Examples of each rule


def run(item: Item, text: str, eager: bool = False) -> tuple[int, str] | None:
    stop = first_stop(text, item, eager=eager)
    return None if stop is None else (stop.line, stop.reason)


def test_right_grid_then_nothing_or_a_blank_line_keeps_going() -> None:
    # More rows (ending the grid with a wrong shape) or double-spaced rows could still follow.
    assert run(NEXT, NEXT.output + "\n") is None
    assert run(NEXT, NEXT.output + "\n\n") is None


def test_echoed_prompt_is_final() -> None:
    text = NEXT.output + "\n# Input\n0,1,0\n"
    assert run(NEXT, text) == (8, "final: echoed prompt line")
    assert run(NEXT, "SimonsCA1\n") == (1, "final: echoed prompt line")
    assert run(COUNT, COUNT.output + "\n<s>SimonsCA1\n") == (2, "final: echoed prompt line")


def test_text_after_the_grid_is_final() -> None:
    assert run(NEXT, NEXT.output + "\nThat is the next generation.\n") == (
        8,
        "final: text after the grid",
    )
    # After a blank line, a later block settles it once the run is the expected grid.
    assert run(NEXT, NEXT.output + "\n\nDone.\n") == (9, "final: text after the grid")


def test_closed_json_is_final_once_text_follows() -> None:
    assert run(COUNT, COUNT.output + "\n") is None  # "ignored text after the JSON" may follow
    assert run(COUNT, COUNT.output + "\nEach number counts live neighbours.\n") == (
        2,
        "final: text after the JSON",
    )
    assert run(COUNT, COUNT.output + " <- the counts\n") == (1, "final: text after the JSON")


def test_more_rows_than_expected_cannot_be_right() -> None:
    extra = render_grid(np.zeros((3, 6), dtype=bool), NEXT.symbols)
    text = NEXT.output + "\n" + extra + "\n"
    assert run(NEXT, text) == (8, "cannot be right: 8 rows, expected 7")
    at_stop = score_item(NEXT, text[: line_ends(text)[7]])
    assert at_stop.cell_accuracy == pytest.approx(42 / 48)
    assert score_item(NEXT, text).cell_accuracy == pytest.approx(42 / 60)


def test_a_failing_row_cannot_be_right() -> None:
    assert run(NEXT, "0,1,0,1,1,0\n0,1\n0,1,0,1,1,0\n") == (
        2,
        "cannot be right: ragged rows: row 2 has 2 cells, row 1 has 6",
    )
    assert run(NEXT, ".,*,.\n") == (1, "cannot be right: unknown symbol '.' at row 1, column 1")


def test_wrong_width_only_when_eager() -> None:
    wide = render_grid(np.zeros((7, 7), dtype=bool), NEXT.symbols) + "\n"
    assert run(NEXT, wide) is None
    assert run(NEXT, wide, eager=True) == (1, "cannot be right: rows of 7 cells, expected 6")


def test_multi_line_json_with_too_many_rows_only_when_eager() -> None:
    text = "[\n" + ",\n".join(["[0,0,0,0,0]"] * 7) + "\n]\n"
    assert run(COUNT, text) is None
    assert run(COUNT, text, eager=True) == (7, "cannot be right: 6 JSON rows, expected 5")
    assert run(COUNT, "[[0,0,0,0,0,0],\n", eager=True) == (
        1,
        "cannot be right: a JSON row of another width than 5",
    )


def test_only_whole_lines_are_read() -> None:
    watch = watch_for(NEXT)
    assert watch(NEXT.output + "\n# Inp") is None  # the echo line is not complete yet
    assert watch(NEXT.output + "\n# Input\n") == "final: echoed prompt line"


def test_past_the_parse_limit_is_final() -> None:
    limit = codec.answer_limit(NEXT)
    text = ("Let me think. " * 20 + "\n") * (limit // 200 + 2)
    stop = first_stop(text, NEXT)
    assert stop is not None and stop.reason == f"final: past the parse limit ({limit} characters)"
    assert stop.kept > limit and stop.kept - limit < 300


def test_other_row_separators_only_stop_at_the_limit() -> None:
    semi = Symbols(row_sep=";")
    item = make_item(GRID, symbols=semi)
    assert run(item, item.output + "\n# Input\n") is None


# ------------------------------------------------------------------------------------------
# The recorded Gemma answers


#: Where the rules cut each recorded answer, per version of the rules. The version is part of the
#: answer cache's key, so a rule change that moves a cut must come with a new EARLY_STOP_RULE
#: (in simonsca/runner.py) -- or a cache would serve answers cut by the old rules as new ones.
CUTS_BY_RULE = {"early-stop/1": "6c9729d1340d6c31"}


def test_a_change_to_the_rules_comes_with_a_new_rule_version() -> None:
    cuts = [[s.seed, s.model, s.stop.kept if s.stop else None] for s in golden_savings(GOLDEN)]
    fingerprint = hashlib.sha256(json.dumps(cuts).encode()).hexdigest()[:16]
    assert CUTS_BY_RULE.get(EARLY_STOP_RULE) == fingerprint, (
        f"the early-stop rules cut the recorded answers differently ({fingerprint}): bump "
        f"EARLY_STOP_RULE (now {EARLY_STOP_RULE!r}) and add the new version here"
    )


def test_golden_savings() -> None:
    stops = golden_savings(GOLDEN)
    base = [s for s in stops if s.model == "base"]
    merged = [s for s in stops if s.model == "merged"]
    assert len(base) == len(merged) == 24
    stopped = [s for s in base if s.stop is not None]
    assert len(stopped) == 16 and sum(s.saved for s in base) == 812
    assert all(s.stop is None for s in merged)  # the control ends its answers itself
    reasons = [s.stop.reason for s in stopped if s.stop]
    assert sum(r.startswith(f"{CANNOT_BE_RIGHT}: ") for r in reasons) == 11  # extra rows
    assert sum(r == f"{FINAL}: rows of cells before any JSON" for r in reasons) == 5
    # Never lower, and here nine budget-cut ("ragged") answers parse at the stop.
    assert all(s.cell_accuracy_at_stop >= s.cell_accuracy for s in stops)
    assert sum(s.parse_ok_at_stop and not s.parse_ok for s in stops) == 9
    eager = golden_savings(GOLDEN, eager=True)
    assert sum(s.saved for s in eager) == 1192
    table = format_savings(stops)
    assert "base: 16 of 24 answers stopped early, 812 of 3062 characters saved (27%)" in table
