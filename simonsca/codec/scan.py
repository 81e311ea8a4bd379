"""One incremental scanner for answers: :class:`AnswerScan`.

Fed an answer's text as it is generated, it says at any point what the tolerant parser reads
from the text so far (:meth:`AnswerScan.parsed`, which is :func:`~simonsca.codec.parse_answer`)
and whether more text can still change that (:meth:`AnswerScan.final`, which is
:func:`~simonsca.codec.parse_is_final`). The early-stop rules (:mod:`simonsca.early_stop`) read
the same scan: the grid reading's rows, width and first failure, the JSON rows of counts.

Each complete line is read once, by the grid grammar (:mod:`simonsca.codec._grid`, one reading
per cell separator: the expected one, and the others a failure may be renamed after) or by the
count grammar (:mod:`simonsca.codec._counts`). ``\\r\\n`` and a lone ``\\r`` end lines too. A grid
whose rows are split by another separator than a line break is read whole, from the text.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import replace

from simonsca.codec._counts import CountsReading
from simonsca.codec._grid import GridReading
from simonsca.codec._text import (
    check_symbols,
    is_text,
    normalise_newlines,
    same_separator,
    separator_name,
    symbols_usable,
)
from simonsca.codec.parsed import NOTE_CUT, NOTE_TEXT_BEFORE_GRID, ParsedAnswer
from simonsca.tasks import Item, Symbols, Task

__all__ = ["AnswerScan", "answer_limit"]

# Separators tried when the expected one finds no grid, to name the one the model used instead.
_OTHER_CELL_SEPS = (",", ";", "|", " ", "")
_LINE_BREAK = re.compile(r"\r\n?|\n")


class AnswerScan:
    """An answer to ``item`` read as it grows: :meth:`feed` it text, then ask.

    ``grid`` is the reading with the item's own symbols (next-generation items whose rows are
    lines; else None), ``counts`` the count grammar's (count items; else None). Both have read
    the complete lines only.
    """

    def __init__(self, item: Item, text: str = "") -> None:
        self.item = item
        self.symbols: Symbols = item.symbols
        self.expected_shape = tuple(int(side) for side in item.expected.shape)
        self._chunks: list[str] = []
        self.length = 0  # characters fed
        self._tail = ""  # the unfinished last line
        self._skip_lf = False  # the text so far ends with a \r: a \n next is part of its break
        self._lines: list[str] = []  # complete lines (kept to start the other readings late)
        self._nonblank = False
        self._first_text: str | None = None
        self._by_lines = item.task == Task.COUNT or self.symbols.row_sep == "\n"
        self.counts = CountsReading(self.expected_shape[1]) if item.task == Task.COUNT else None
        self._readings: list[GridReading] = []
        if item.task != Task.COUNT:
            self._readings = [
                GridReading(reading, self.expected_shape) for reading in _readings(self.symbols)
            ]
        self.grid = self._readings[0] if self._readings and self._by_lines else None
        self.feed(text)

    @property
    def text(self) -> str:
        if len(self._chunks) > 1:
            self._chunks = ["".join(self._chunks)]
        return self._chunks[0] if self._chunks else ""

    def feed(self, text: str) -> None:
        """Append ``text``; every line it completes is read."""
        for _ in self.lines(text):
            pass

    def lines(self, text: str) -> Iterator[str]:
        """Append ``text``, yielding each line it completes once that line is read (so a caller
        can look at the scan line by line)."""
        if not text:
            return
        self._chunks.append(text)
        self.length += len(text)
        if not self._by_lines:
            return
        position = 0
        if self._skip_lf:
            self._skip_lf = False
            position = int(text.startswith("\n"))
        while (found := _LINE_BREAK.search(text, position)) is not None:
            line, self._tail = self._tail + text[position : found.start()], ""
            position = found.end()
            self._skip_lf = found.group() == "\r" and position == len(text)
            self._read(line)
            yield line
        self._tail += text[position:]

    def _read(self, line: str) -> None:
        self._nonblank = self._nonblank or bool(line.strip())
        if self._first_text is None and is_text(line):
            self._first_text = line.strip()
        if self.counts is not None:
            self.counts.feed(line)
            return
        self._lines.append(line)
        self._readings[0].feed(line)

    # -- what the parser reads -----------------------------------------------------------------

    def parsed(self) -> ParsedAnswer:
        """What :func:`~simonsca.codec.parse_answer` returns for the text so far.

        A text longer than :func:`answer_limit` is cut (at its last line break before the limit,
        or at the limit when that would drop more than half) and the rest is never read. When
        the text before the cut already settles the parse (:meth:`settled`) the cut changes
        nothing and leaves no trace; otherwise the result carries the note ``answer cut at N
        characters (M times longer than a right answer)``. Never raises.
        """
        try:
            if self.item.task != Task.COUNT:
                check_symbols(self.symbols)
            limit = answer_limit(self.item)
            if self.length <= limit:
                return self.reading()
            text = self.text
            head = AnswerScan(self.item, text[: _cut_point(text, limit)])
            parsed = head.reading()
            if head.settled() is not None:
                return parsed  # nothing after the cut could have changed the parse
            ratio = head.length / max(1, len(self.item.output))
            note = f"{NOTE_CUT} {head.length} characters ({ratio:.0f} times longer than a right answer)"
            return replace(parsed, notes=(*parsed.notes, note))
        except Exception as error:  # noqa: BLE001 -- a grader must survive anything
            return ParsedAnswer.failure(f"internal parser error: {type(error).__name__}: {error}")

    def reading(self) -> ParsedAnswer:
        """What the tolerant parser reads from the whole text so far (no length limit)."""
        if not self._by_lines:
            return read_grid(self.text, self.symbols, self.expected_shape)
        if not (self._nonblank or self._tail.strip()):
            return ParsedAnswer.failure("empty answer")
        if self.counts is not None:
            return self.counts.result(self._tail)
        first_text = self._first_text
        if first_text is None:
            first_text = self._tail.strip() if is_text(self._tail) else ""
        return _grid_answer(
            (self._with_tail(k) for k in range(len(self._readings))), self.symbols, first_text
        )

    def _with_tail(self, k: int) -> GridReading:
        reading = self._caught_up(k).copy()
        reading.feed(self._tail)
        return reading

    def _caught_up(self, k: int) -> GridReading:
        """Reading ``k``, having read every complete line (the others start late: only a
        failure of the first one needs them)."""
        reading = self._readings[k]
        for line in self._lines[reading.lines :]:
            reading.feed(line)
        return reading

    # -- whether more text can change it -------------------------------------------------------

    def final(self) -> str | None:
        """Why nothing appended can change :meth:`parsed`, or None (see
        :func:`~simonsca.codec.parse_is_final`)."""
        if self.length > answer_limit(self.item):
            return "past the parse limit"
        try:
            return self.settled()
        except Exception:  # noqa: BLE001 -- unsure means "may still change"
            return None

    def settled(self) -> str | None:
        """Why no line after the complete lines so far can change :meth:`reading`, or None."""
        if self.counts is not None:
            return self.counts.settled()
        if self.grid is None:
            return None  # rows split by another separator: no line-level promise
        first = self.grid
        if not first.fixed:
            return None
        # A grid read with the expected symbols is final; a failure may still be renamed by
        # another separator's reading ("wrong cell separator"), so every reading must be fixed.
        if (first.rows == 0 or first.failure is not None) and not all(
            self._caught_up(k).fixed for k in range(1, len(self._readings))
        ):
            return None
        return "echoed prompt line" if first.phase == "echo" else "text after the grid"


def answer_limit(item: Item) -> int:
    """How many characters of a completion :func:`~simonsca.codec.parse_answer` reads for
    ``item``.

    ``ANSWER_LENGTH_FACTOR`` times the right answer's length plus ``ANSWER_LENGTH_MARGIN`` (both
    set on :mod:`simonsca.codec`): room for every irregularity the parsers tolerate (spaces
    around cells, CRLF or double-spaced rows, pretty-printed JSON, a fence, a paragraph before
    the grid), far above what the runner's token budget (1.5x the answer's tokens + 16) lets a
    model write.
    """
    from simonsca import codec

    return codec.ANSWER_LENGTH_FACTOR * len(item.output) + codec.ANSWER_LENGTH_MARGIN


def _cut_point(text: str, limit: int) -> int:
    """Where to cut a text longer than ``limit``: after whole lines when lines are short."""
    after_newline = text.rfind("\n", 0, limit) + 1
    return after_newline if after_newline >= limit // 2 else limit


@functools.lru_cache(maxsize=64)
def _readings(symbols: Symbols) -> tuple[Symbols, ...]:
    """The item's symbols, then the same with each other usable cell separator."""
    return (symbols,) + tuple(
        replace(symbols, cell_sep=other)
        for other in _OTHER_CELL_SEPS
        if not same_separator(other, symbols.cell_sep)
        and symbols_usable(replace(symbols, cell_sep=other))
    )


def _grid_answer(
    readings: Iterator[GridReading], symbols: Symbols, first_text: str
) -> ParsedAnswer:
    """The parser's grid: the first reading's, or its failure (renamed when another cell
    separator reads the same part of the answer cleanly)."""
    parsed = next(readings).result()
    if parsed.ok:
        return parsed
    for other_reading in readings:
        other = other_reading.result()
        # Only when it reads the same part of the answer, not a grid further down.
        if other.ok and (
            parsed.reason == "no grid found" or NOTE_TEXT_BEFORE_GRID not in other.notes
        ):
            expected = separator_name(symbols.cell_sep)
            found = separator_name(other_reading.symbols.cell_sep)
            return ParsedAnswer.failure(
                f"wrong cell separator: expected {expected}, found {found}", parsed.notes
            )
    if parsed.reason == "no grid found" and first_text.startswith("["):
        return ParsedAnswer.failure(
            "no grid found: the answer is a JSON list, not rows of cells", parsed.notes
        )
    return parsed


def read_grid(text: str, symbols: Symbols, expected_shape: tuple[int, ...] | None) -> ParsedAnswer:
    text = normalise_newlines(text, symbols.row_sep)
    if not text.strip():
        return ParsedAnswer.failure("empty answer")
    lines = text.split("\n")
    first_text = next((line.strip() for line in lines if is_text(line)), "")

    def fed(reading_symbols: Symbols) -> GridReading:
        reading = GridReading(reading_symbols, expected_shape)
        for line in lines:
            reading.feed(line)
        return reading

    return _grid_answer((fed(s) for s in _readings(symbols)), symbols, first_text)
