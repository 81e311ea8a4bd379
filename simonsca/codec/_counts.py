"""The count grammar of answers, once: neighbour counts written as a JSON list of rows.

:class:`CountsReading` takes the answer's lines as they arrive: the region the parser reads (up
to an echoed prompt line), the rows and cells of the JSON list as it streams in, and the lines
of cells written before any JSON. :func:`read_counts` is what the tolerant parser makes of a
region; :func:`counts_settled` says when no later line can change that.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from simonsca.codec._text import (
    FENCE_MARKERS,
    MAX_COUNT,
    first_text_line,
    is_echo,
    is_text,
    one_line,
    ragged,
    show,
    show_json,
)
from simonsca.codec.parsed import (
    NOTE_FENCE,
    NOTE_TEXT_AFTER_JSON,
    NOTE_TEXT_BEFORE_JSON,
    ParsedAnswer,
)


class JsonRows:
    """Rows and cells of the JSON list the counts parser will decode, as the text streams in.

    Exact for valid JSON; on invalid JSON its numbers may be wrong, which is harmless: such text
    never parses, so it cannot be right anyway.
    """

    def __init__(self, width: int) -> None:
        self.width = width  # the expected row length (``short_row`` compares with it)
        self.started = False
        self.closed = False
        self.depth = 0
        self.rows = 0  # elements of the outer list begun so far
        self.cells = 0  # elements of the row being written
        self.longest = 0  # the most elements in any row so far
        self.short_row = False  # a closed row had fewer elements than the expected width
        self._in_string = False
        self._escape = False
        self._pending = [False, False, False]  # an element may start at depth 1 / 2

    def feed(self, chunk: str) -> None:
        for ch in chunk:
            if self.closed:
                return
            if not self.started:
                if ch == "[":
                    self.started, self.depth, self._pending[1] = True, 1, True
                continue
            if self._in_string:
                if self._escape:
                    self._escape = False
                elif ch == "\\":
                    self._escape = True
                elif ch == '"':
                    self._in_string = False
                continue
            if ch.isspace():
                continue
            depth = self.depth
            if depth in (1, 2) and self._pending[depth] and ch not in "]}":
                self._pending[depth] = False
                if depth == 1:
                    self.rows += 1
                else:
                    self.cells += 1
                    self.longest = max(self.longest, self.cells)
            if ch == '"':
                self._in_string = True
            elif ch in "[{":
                self.depth += 1
                if self.depth == 2:
                    self.cells, self._pending[2] = 0, True
            elif ch in "]}":
                if self.depth == 2 and self.cells != self.width:
                    self.short_row = self.short_row or self.cells < self.width
                self.depth -= 1
                if self.depth == 0:
                    self.closed = True
            elif ch == "," and depth in (1, 2):
                self._pending[depth] = True


class CountsReading:
    """The count grammar's view of an answer, fed one complete line at a time."""

    def __init__(self, width: int) -> None:
        self.echoed = False  # an echoed prompt line ended the region
        self.echo_line = False  # the last line read was an echoed prompt line
        self.cell_lines = 0  # lines of cells written before the JSON began
        self.cells_line = False  # the last line read was one of them
        self._started = False  # a ``[`` has begun the JSON
        self._region: list[str] = []  # the lines before an echo
        self._json = JsonRows(width)
        self._json_lines = 0  # lines of the region the JSON rows have read

    @property
    def json(self) -> JsonRows:
        """The JSON list's rows so far (read on demand: only early stop asks)."""
        for line in self._region[self._json_lines :]:
            self._json.feed(line + "\n")
        self._json_lines = len(self._region)
        return self._json

    def feed(self, line: str) -> None:
        """Read one complete line (newlines already normalised, without its line break)."""
        self.echo_line = is_echo(line)
        self.echoed = self.echoed or self.echo_line
        self.cells_line = False
        if self.echoed:
            return
        self._region.append(line)
        self._started = self._started or "[" in line
        if not self._started and looks_like_cells(line):
            self.cell_lines += 1
            self.cells_line = True

    def result(self, tail: str) -> ParsedAnswer:
        """What the parser reads from the lines so far and an unfinished last line ``tail``."""
        region = "".join(line + "\n" for line in self._region)
        if self.echoed:
            return read_counts(region, echoed=True)
        if is_echo(tail):
            return read_counts(region, echoed=True)
        return read_counts(region + tail, echoed=False)

    def settled(self) -> str | None:
        """Why no later line can change :meth:`result`, or None."""
        if self.echoed:
            return "echoed prompt line"  # nothing from there on is read
        return counts_settled("".join(line + "\n" for line in self._region))


def _json_start(region: str) -> tuple[int, str, int]:
    """Where the JSON begins (-1: no ``[``), the text before it and its lines of cells."""
    start = region.find("[")
    before = region if start < 0 else region[:start]
    return start, before, sum(looks_like_cells(line) for line in before.split("\n"))


def _text_in(text: str) -> bool:
    return any(is_text(line) for line in text.split("\n"))


def read_counts(region: str, echoed: bool) -> ParsedAnswer:
    """The counts the parser reads from ``region`` (the answer up to an echoed prompt line)."""
    notes: list[str] = []
    start, before, cell_lines = _json_start(region)
    first_line = next((line for line in region.split("\n") if line.strip()), "")
    # Two lines of cells before any JSON are a grid: the model answered in the grid format, and
    # JSON written after its answer is not read (as text after a grid is not).
    if cell_lines >= 2 or (start < 0 and looks_like_cells(first_line)):
        return ParsedAnswer.failure("not JSON: found rows of cells instead of a JSON list of rows")
    if start < 0:
        try:
            value, _ = json.JSONDecoder().raw_decode(region.strip())
        except (ValueError, RecursionError):
            return ParsedAnswer.failure("no grid found")
        return ParsedAnswer.failure(f"not a list of rows: the answer is {_json_kind(value)}")
    if first_text_line(region).startswith("{"):  # counts wrapped in an object
        try:
            value, _ = json.JSONDecoder().raw_decode(region[region.find("{") :])
        except (ValueError, RecursionError):
            pass
        else:
            return ParsedAnswer.failure(f"not a list of rows: the answer is {_json_kind(value)}")
    if any(line.strip().startswith(FENCE_MARKERS) for line in before.split("\n")):
        notes.append(NOTE_FENCE)
    if _text_in(before):
        notes.append(NOTE_TEXT_BEFORE_JSON)

    document = region[start:]
    try:
        value, length = json.JSONDecoder().raw_decode(document)
    except json.JSONDecodeError as error:
        if not document[error.pos :].strip():
            return ParsedAnswer.failure(
                "not JSON: truncated before the list is closed", tuple(notes)
            )
        return ParsedAnswer.failure(
            f"not JSON: {error.msg} at line {error.lineno}, column {error.colno}", tuple(notes)
        )
    except RecursionError:
        return ParsedAnswer.failure("not JSON: nested too deeply", tuple(notes))
    except ValueError as error:  # e.g. an integer literal longer than Python converts
        return ParsedAnswer.failure(f"not JSON: {one_line(str(error))}", tuple(notes))

    after = document[length:]
    if echoed or _text_in(after):
        notes.append(NOTE_TEXT_AFTER_JSON)
    elif after.strip() and NOTE_FENCE not in notes:
        notes.append(NOTE_FENCE)
    return _counts_from_json(value, tuple(notes))


def counts_settled(region: str) -> str | None:
    """Why no text after ``region`` (complete lines, no echoed prompt line among them) can
    change :func:`read_counts`, or None."""
    start, _, cell_lines = _json_start(region)
    if cell_lines >= 2:
        return "rows of cells before any JSON"  # read as a grid, whatever follows
    first = first_text_line(region)
    if start < 0 or not first or first.startswith("{"):
        return None
    try:
        _, length = json.JSONDecoder().raw_decode(region[start:])
    except (ValueError, RecursionError):
        return None  # not closed yet (or an error a continuation might still turn around)
    if _text_in(region[start + length :]):
        return "text after the JSON"
    return None


def _counts_from_json(value: Any, notes: tuple[str, ...]) -> ParsedAnswer:
    if not isinstance(value, list):
        kind = _json_kind(value)
        return ParsedAnswer.failure(f"not a list of rows: the answer is {kind}", notes)
    if not value:
        return ParsedAnswer.failure("not a list of rows: the list is empty", notes)
    for row_number, row in enumerate(value, start=1):
        if not isinstance(row, list):
            return ParsedAnswer.failure(
                f"not a list of rows: row {row_number} is {show_json(row)}, not a list", notes
            )
        if not row:
            return ParsedAnswer.failure(f"not a list of rows: row {row_number} is empty", notes)
    width = len(value[0])
    for row_number, row in enumerate(value, start=1):
        if len(row) != width:
            return ParsedAnswer.failure(ragged(row_number, len(row), width), notes)
    for row_number, row in enumerate(value, start=1):
        for column, count in enumerate(row, start=1):
            where = f"at row {row_number}, column {column}"
            if isinstance(count, bool) or not isinstance(count, int):
                return ParsedAnswer.failure(
                    f"not an integer count: {show_json(count)} {where}", notes
                )
            if not 0 <= count <= MAX_COUNT:
                return ParsedAnswer.failure(
                    f"count {show_json(count)} out of range 0-{MAX_COUNT} {where}", notes
                )
    return ParsedAnswer.success(np.array(value, dtype=np.int64), notes)


def looks_like_cells(line: str) -> bool:
    """A line such as ``0,1,0`` or ``.*.*``: the grid format where JSON was asked for."""
    stripped = line.strip()
    if not stripped:
        return False
    cells = [cell.strip() for cell in re.split(r"[,;|\s]", stripped) if cell.strip()]
    if len(cells) >= 2:
        return all(0 < len(cell) <= 2 for cell in cells) and any(
            ch.isdigit() or ch in ".*#" for ch in stripped
        )
    return 2 <= len(stripped) <= 64 and all(ch.isdigit() or ch in ".*#@_-" for ch in stripped)


def _json_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, str):
        return f"a string {show(value)}"
    if value is None or isinstance(value, bool):
        return show_json(value)
    return f"the number {show_json(value)}"
