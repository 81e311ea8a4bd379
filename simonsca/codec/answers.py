"""Reading answers: the tolerant parsers, for what a model wrote after ``# Output\\n``.

They read the way a fair grader would and never raise on any text: the result is a
:class:`~simonsca.codec.ParsedAnswer`, the grid found or a precise reason why there is none,
plus notes on the irregularities that were tolerated. Each is one use of the one answer scanner
(:class:`~simonsca.codec.scan.AnswerScan`) and the two grammars it reads with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simonsca.codec._counts import CountsReading
from simonsca.codec._text import check_symbols, normalise_newlines
from simonsca.codec.parsed import ParsedAnswer
from simonsca.codec.scan import AnswerScan, answer_limit, read_grid
from simonsca.tasks import Symbols, Task

if TYPE_CHECKING:
    from simonsca.tasks import Item

__all__ = ["parse_answer", "parse_counts", "parse_grid", "parse_is_final"]


def parse_answer(text: str, item: Item) -> ParsedAnswer:
    """Parse a model's completion for ``item``: a next-generation grid or neighbour counts.

    Costs O(:func:`answer_limit`) whatever the length of ``text``: a longer text is cut (at its
    last line break before the limit, or at the limit when that would drop more than half) and
    the rest is never read. When the text before the cut already settles the parse (see
    :func:`parse_is_final`) the cut changes nothing and leaves no trace; otherwise the result
    carries the note ``answer cut at N characters (M times longer than a right answer)``.
    Never raises.
    """
    try:
        return AnswerScan(item, text[: answer_limit(item) + 1]).parsed()
    except Exception as error:  # noqa: BLE001 -- a grader must survive anything
        return ParsedAnswer.failure(f"internal parser error: {type(error).__name__}: {error}")


def parse_is_final(text: str, item: Item) -> str | None:
    """Why nothing appended to ``text`` can change ``parse_answer(text, item)``, or None.

    A non-None answer is a promise: ``parse_answer(text + more, item) == parse_answer(text,
    item)`` (same value, reason and notes) for every ``more``. Reasons:

    * ``echoed prompt line`` -- a complete ``# Input`` / ``SimonsCA1`` / ``<s>`` line ends the
      region every reading looks at;
    * ``text after the grid`` -- the grid's rows are followed by a complete non-row line (in
      their block, or in a later block: no double-spaced rows can be joined any more), or a
      later block has begun after a grid of exactly the expected shape; when the grid itself
      fails, every other cell separator's reading must be settled too (it could rename the
      failure ``wrong cell separator``);
    * ``text after the JSON`` -- the count JSON has closed and a complete line of text follows
      it (without that line, "ignored text after the JSON" could still be added);
    * ``rows of cells before any JSON`` -- two complete lines of cells where counts were asked
      for: the answer is read as a grid ("not JSON: found rows of cells"), whatever follows;
    * ``past the parse limit`` -- longer than :func:`answer_limit`: nothing more is read.

    None means "may still change", not that it will. Only complete lines (ended by a line break)
    count, so that the cut of a longer text (which may drop an unfinished line) keeps the promise.
    """
    limit = answer_limit(item)
    if len(text) > limit:
        return "past the parse limit"
    try:
        return AnswerScan(item, text).final()
    except Exception:  # noqa: BLE001 -- unsure means "may still change"
        return None


def parse_grid(
    text: str, symbols: Symbols, expected_shape: tuple[int, ...] | None = None
) -> ParsedAnswer:
    """Read the next-generation grid a model wrote; never raises on any text.

    Returns the boolean grid as found (missing or extra rows are kept: checking the shape is the
    scorer's job) or a reason: ``empty answer``, ``no grid found``, ``ragged rows: ...``,
    ``unknown symbol ... at row R, column C``, ``empty cell at row R, column C``,
    ``wrong cell separator: expected ',', found none``. ``expected_shape`` only chooses between
    readings of ambiguous text (rows separated by blank lines); it never pads or crops.

    Raises :class:`ValueError` only for unusable ``symbols`` (empty, equal, containing whitespace
    or a separator).
    """
    check_symbols(symbols)
    try:
        return read_grid(text, symbols, expected_shape)
    except Exception as error:  # noqa: BLE001 -- a grader must survive anything; tests assert it never happens
        return ParsedAnswer.failure(f"internal parser error: {type(error).__name__}: {error}")


def parse_counts(text: str, expected_shape: tuple[int, ...] | None = None) -> ParsedAnswer:
    """Read the neighbour counts a model wrote as JSON (``[[2,3,1],[...]]``); never raises.

    Tolerates whitespace, a ``` fence, text before the first ``[`` and text after the JSON value.
    Returns an ``np.int64`` grid or a reason: ``empty answer``, ``no grid found``,
    ``not JSON: ...``, ``not a list of rows: ...``, ``ragged rows: ...``,
    ``not an integer count: ... at row R, column C``,
    ``count N out of range 0-8 at row R, column C``. ``expected_shape`` is accepted for symmetry
    with :func:`parse_grid`; JSON has no ambiguous readings for it to choose between.
    """
    del expected_shape  # nothing to disambiguate
    try:
        text = normalise_newlines(text, "\n")
        if not text.strip():
            return ParsedAnswer.failure("empty answer")
        *lines, tail = text.split("\n")
        reading = CountsReading(width=0)
        for line in lines:
            reading.feed(line)
        return reading.result(tail)
    except Exception as error:  # noqa: BLE001 -- a grader must survive anything; tests assert it never happens
        return ParsedAnswer.failure(f"internal parser error: {type(error).__name__}: {error}")


def _parse_item(text: str, item: Item) -> ParsedAnswer:
    """The parser's reading of the whole ``text`` (no length limit)."""
    if item.task == Task.COUNT:
        return parse_counts(text)
    return parse_grid(text, item.symbols, tuple(int(side) for side in item.expected.shape))
