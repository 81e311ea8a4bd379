"""The grid grammar of answers, once: rows of cells read line by line.

:class:`GridReading` follows one reading of an answer (one set of symbols) as its lines arrive.
At any point it says what the tolerant parser reads from the lines so far
(:meth:`GridReading.result`) and whether any later line can still change that
(:attr:`GridReading.fixed`); :mod:`simonsca.codec.scan` builds the parser, "is it final" and the
early-stop rules on it.

The answer is the first block (of lines that are neither blank nor a fence) holding a row; within
it, the run of rows from the first one. Chat models sometimes double-space rows: the rows of the
blocks right after the run's block are joined to it when that alone gives the expected shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simonsca.codec._text import (
    ECHO_MARKERS,
    FENCE_MARKERS,
    ragged,
    show,
    split_symbols,
)
from simonsca.codec.parsed import (
    NOTE_BLANK_LINE_ROWS,
    NOTE_FENCE,
    NOTE_SPACES,
    NOTE_TEXT_AFTER_GRID,
    NOTE_TEXT_BEFORE_GRID,
    NOTE_TRAILING_SEP,
    ParsedAnswer,
)
from simonsca.tasks import Symbols


@dataclass(frozen=True)
class Row:
    """One line of the answer, split into cells."""

    cells: tuple[str, ...]
    spaced: bool  # spaces around cells were dropped
    trailing_sep: bool  # a separator after the last cell was dropped
    row_like: bool  # looks like a row of cells (possibly with wrong symbols)
    valid: bool  # every cell is the live or dead symbol


class GridReading:
    """One reading of the grid grammar (one set of symbols), fed one complete line at a time.

    ``phase``: ``before`` the first row; in the ``run`` of rows; in a ``gap`` (a blank or fence
    line ended the run's block); in a ``later`` block whose lines so far are rows (blocks of rows
    after the gap may still be joined as double-spaced rows); ``after`` (a complete non-row line
    followed the run: nothing more can be joined) or ``echo`` (an echoed prompt line ended the
    region). ``failure`` is the first reason the run's rows cannot form a grid; once set it stays.
    """

    def __init__(self, symbols: Symbols, expected_shape: tuple[int, ...] | None = None) -> None:
        self.symbols = symbols
        self.expected_shape = expected_shape
        self.phase = "before"
        self.run: list[Row] = []  # the rows of the answer's run
        self.failure: str | None = None
        self.text_before = False  # a text line came before the first row
        self.fenced = False  # a fence line came before this point (up to an echo)
        self.echoed = False
        self.lines = 0  # lines read
        self._in_block = False  # the last line read was a text line
        self._block_fence = False  # ``fenced`` when the current block began
        self._run_fence = False  # ``fenced`` when the run's block began
        self._cut_in_block = False  # a non-row line followed the run in its block
        self._later: list[list[Row]] = []  # blocks after the run's one that are all rows
        self._later_fence: bool | None = None  # ``fenced`` when the first later block began
        self._stop_fence: bool | None = None  # ... when the first later block of not only rows did

    @property
    def rows(self) -> int:
        return len(self.run)

    @property
    def width(self) -> int | None:
        return len(self.run[0].cells) if self.run else None

    @property
    def later(self) -> bool:
        """A block began after the run's block."""
        return self._later_fence is not None

    @property
    def fixed(self) -> bool:
        """Nothing that follows can change what this reading returns."""
        if self.phase in ("after", "echo"):
            return True
        # A later block exists and the run is the expected grid: no double-spaced reading is
        # tried, and the notes (text after, fences before that block) are known.
        return (
            self.later
            and self.failure is None
            and (self.rows, self.width) == tuple(self.expected_shape or ())
        )

    def copy(self) -> GridReading:
        twin = GridReading.__new__(GridReading)
        twin.__dict__.update(self.__dict__)
        twin.run = list(self.run)
        twin._later = [list(block) for block in self._later]
        return twin

    def feed(self, line: str) -> None:
        """Read one complete line (newlines already normalised, without its line break)."""
        self.lines += 1
        if self.phase in ("after", "echo"):
            return
        kind = line_kind(line, self.symbols)
        if kind == "echo":
            self.phase, self.echoed = "echo", True
            return
        if kind != "text":
            self.fenced = self.fenced or kind == "fence"
            self._in_block = False
            if self.phase in ("run", "later"):
                self.phase = "gap"
            return
        if not self._in_block:
            self._in_block, self._block_fence = True, self.fenced
        row = split_row(line, self.symbols)
        if self.phase == "before":
            if row.row_like:
                self.phase, self._run_fence = "run", self._block_fence
                self._add_to_run(row)
            else:
                self.text_before = True
        elif self.phase == "run":
            if row.row_like:
                self._add_to_run(row)
            else:
                self.phase, self._cut_in_block = "after", True
        elif self.phase == "gap":  # the line begins a later block
            if self._later_fence is None:
                self._later_fence = self._block_fence
            if row.row_like:
                self.phase = "later"
                self._later.append([row])
            else:  # a non-row line ends the blocks of rows a double-spaced reading could join
                self.phase, self._stop_fence = "after", self._block_fence
        elif row.row_like:  # phase "later"
            self._later[-1].append(row)
        else:
            self._later.pop()
            self.phase, self._stop_fence = "after", self._block_fence

    def _add_to_run(self, row: Row) -> None:
        self.run.append(row)
        if self.failure is None:
            self.failure = row_problem(row, len(self.run), len(self.run[0].cells), self.symbols)

    def result(self) -> ParsedAnswer:
        """What the tolerant parser reads from the lines so far (as if no more followed)."""
        if not self.run:
            return ParsedAnswer.failure("no grid found", (NOTE_FENCE,) if self.fenced else ())
        notes = [NOTE_TEXT_BEFORE_GRID] if self.text_before else []
        # A fence is noted when it comes before the text that follows the grid: a fence inside
        # that ignored text is ignored with it (text the parser ignores never changes its notes).
        if self._cut_in_block:
            fence = self._run_fence
        else:
            fence = self.fenced if self._later_fence is None else self._later_fence
        after = self._cut_in_block or self.later or self.echoed
        parsed = grid_from_rows(
            self.run,
            self.symbols,
            ([NOTE_FENCE] if fence else []) + notes + ([NOTE_TEXT_AFTER_GRID] if after else []),
        )
        # Double-spaced rows: accept that reading only when it alone gives the expected shape.
        if (
            parsed.ok
            and self.expected_shape is not None
            and parsed.shape != tuple(self.expected_shape)
            and not self._cut_in_block
            and self._later
        ):
            stopped = self._stop_fence is not None
            spaced = grid_from_rows(
                self.run + [row for block in self._later for row in block],
                self.symbols,
                ([NOTE_FENCE] if (self._stop_fence if stopped else self.fenced) else [])
                + notes
                + [NOTE_BLANK_LINE_ROWS]
                + ([NOTE_TEXT_AFTER_GRID] if stopped or self.echoed else []),
            )
            if spaced.ok and spaced.shape == tuple(self.expected_shape):
                return spaced
        return parsed


def grid_from_rows(rows: list[Row], symbols: Symbols, notes: list[str]) -> ParsedAnswer:
    if any(row.spaced for row in rows):
        notes = notes + [NOTE_SPACES]
    if any(row.trailing_sep for row in rows):
        notes = notes + [NOTE_TRAILING_SEP]
    width = len(rows[0].cells)
    for row_number, row in enumerate(rows, start=1):
        problem = row_problem(row, row_number, width, symbols)
        if problem is not None:
            return ParsedAnswer.failure(problem, tuple(notes))
    grid = np.array([[cell == symbols.live for cell in row.cells] for row in rows], dtype=bool)
    return ParsedAnswer.success(grid, tuple(notes))


def row_problem(row: Row, row_number: int, width: int, symbols: Symbols) -> str | None:
    """Why row ``row_number`` of a grid ``width`` cells wide cannot be read (None: it can)."""
    for column, cell in enumerate(row.cells, start=1):
        if cell == "":
            return f"empty cell at row {row_number}, column {column}"
        if cell not in (symbols.live, symbols.dead):
            return f"unknown symbol {show(cell)} at row {row_number}, column {column}"
    if len(row.cells) != width:
        return ragged(row_number, len(row.cells), width)
    return None


def line_kind(line: str, symbols: Symbols) -> str:
    """How a line reads: ``blank``, ``fence``, ``echo`` or ``text``."""
    stripped = line.strip()
    if not stripped:
        return "blank"
    if stripped.startswith(FENCE_MARKERS) and not split_row(line, symbols).valid:
        return "fence"
    if stripped.startswith(ECHO_MARKERS) and not split_row(line, symbols).valid:
        return "echo"
    return "text"


def split_row(line: str, symbols: Symbols) -> Row:
    sep = symbols.cell_sep
    trailing_sep = False
    if sep == "":
        compact = "".join(line.split())
        cells = split_symbols(compact, symbols)
        spaced = compact != line
    elif sep.isspace():
        cells = line.split()
        spaced = sep.join(cells) != line
    else:
        cells = [cell.strip() for cell in line.split(sep.strip())]
        if len(cells) > 1 and cells[-1] == "":
            cells.pop()  # "0,1,0," -- a trailing separator
            trailing_sep = True
        spaced = sep.join(cells) + (sep if trailing_sep else "") != line
    known = sum(cell in (symbols.live, symbols.dead) for cell in cells)
    longest = max(len(symbols.live), len(symbols.dead))
    row_like = (known > 0 and 2 * known >= len(cells)) or (
        # A row written in other symbols: short cells between separators.
        sep != "" and len(cells) >= 2 and all(0 < len(cell) <= longest for cell in cells)
    )
    valid = known == len(cells) and known > 0
    return Row(tuple(cells), spaced, trailing_sep, row_like, valid)
