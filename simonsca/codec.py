"""Grid <-> text.

Rendering writes grids and neighbour counts exactly as the seed's generator did. Parsing comes in
two strengths:

- :func:`parse_input_grid` is strict: it reads well-formed rendered grids (dataset files) and
  raises :class:`ValueError` with a one-line reason on anything else.
- :func:`parse_grid`, :func:`parse_counts` and :func:`parse_answer` are tolerant: they read what a
  model wrote after ``# Output\\n`` the way a fair grader would, and never raise on any text.
  They return a :class:`ParsedAnswer`: the grid found, or a precise reason why there is none,
  plus notes on the irregularities that were tolerated.

What the tolerant grid parser forgives (each leaves a note): leading/trailing whitespace, spaces
around cells, a trailing cell separator at the end of rows, a ``` fence, text before the grid
(a preamble such as ``Output:``), text after the grid (the answer ends at the first blank line, at
the first line that is not a row, or at an echoed ``# Input`` / ``SimonsCA1`` line). What it does
not forgive (each is a reason): no grid, ragged rows, unknown symbols, empty cells, a different
cell separator. Shapes are never checked here -- a grid with missing or extra rows is returned as
found; ``expected_shape`` only chooses between readings of ambiguous text. Notes describe the
answer, never the text after it: a fence inside ignored trailing text is not noted.

:func:`parse_answer` reads at most :func:`answer_limit` characters (8x the right answer + 2,000),
so 10 MB of model output costs milliseconds; a cut that might have changed the reading is noted
(``answer cut at N characters ...``). :func:`parse_is_final` says when no further text can
change a parse -- the early stop of generation (:mod:`simonsca.early_stop`) is built on it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from simonsca.tasks import Symbols, Task

if TYPE_CHECKING:
    from simonsca.tasks import Item

__all__ = [
    "ANSWER_LENGTH_FACTOR",
    "ANSWER_LENGTH_MARGIN",
    "NOTE_CUT",
    "ParsedAnswer",
    "answer_limit",
    "parse_answer",
    "parse_counts",
    "parse_grid",
    "parse_input_grid",
    "parse_is_final",
    "render_counts",
    "render_grid",
]

MAX_COUNT = 8  # an 8-neighbourhood has at most 8 live neighbours

# Notes: tolerated irregularities (the answer still parses).
NOTE_FENCE = "stripped code fence"
NOTE_TEXT_BEFORE_GRID = "ignored text before the grid"
NOTE_TEXT_AFTER_GRID = "ignored text after the grid"
NOTE_SPACES = "ignored spaces around cells"
NOTE_TRAILING_SEP = "ignored a cell separator at the end of a row"
NOTE_BLANK_LINE_ROWS = "rows separated by blank lines"
NOTE_TEXT_BEFORE_JSON = "ignored text before the JSON"
NOTE_TEXT_AFTER_JSON = "ignored text after the JSON"
#: Start of the note left when :func:`parse_answer` cut an over-long text that might have read
#: differently whole: ``answer cut at N characters (M times longer than a right answer)``.
NOTE_CUT = "answer cut at"

#: :func:`parse_answer` reads at most ANSWER_LENGTH_FACTOR x the right answer + the margin.
ANSWER_LENGTH_FACTOR = 8
ANSWER_LENGTH_MARGIN = 2000

# Lines that start a new prompt: a model that echoes one has finished its answer.
_ECHO_MARKERS = ("# Input", "SimonsCA1", "<s>")
_FENCE_MARKERS = ("```", "~~~")
# Separators tried when the expected one finds no grid, to name the one the model used instead.
_OTHER_CELL_SEPS = (",", ";", "|", " ", "")
_SHOW_LIMIT = 24  # characters of model text quoted in a reason


@dataclass(frozen=True)
class ParsedAnswer:
    """What a parser made of a model's answer: a grid (``value``) or why not (``reason``).

    Exactly one of ``value`` and ``reason`` is set. ``notes`` lists irregularities that were
    tolerated (e.g. ``"stripped code fence"``); a failed parse may carry notes too. ``value`` is a
    read-only boolean grid (next generation) or ``np.int64`` counts (neighbour counts) and, like
    the arrays on :class:`~simonsca.tasks.Item`, takes no part in ``==``.
    """

    value: np.ndarray | None = field(default=None, compare=False)
    reason: str | None = None
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.value is None) == (self.reason is None):
            raise ValueError("ParsedAnswer needs exactly one of value and reason")
        if self.value is not None:
            if self.value.ndim != 2:
                raise ValueError(f"ParsedAnswer value must be 2-D, not {self.value.ndim}-D")
            self.value.setflags(write=False)

    @property
    def ok(self) -> bool:
        """True when a grid was found (its shape may still differ from the expected one)."""
        return self.reason is None

    @property
    def shape(self) -> tuple[int, int] | None:
        """``(height, width)`` of the grid found, or None."""
        if self.value is None:
            return None
        height, width = self.value.shape
        return int(height), int(width)

    @classmethod
    def success(cls, value: np.ndarray, notes: tuple[str, ...] = ()) -> ParsedAnswer:
        return cls(value=value, notes=_unique(notes))

    @classmethod
    def failure(cls, reason: str, notes: tuple[str, ...] = ()) -> ParsedAnswer:
        return cls(reason=reason, notes=_unique(notes))


# --------------------------------------------------------------------------------------------
# Rendering


def render_grid(grid: np.ndarray, symbols: Symbols) -> str:
    """Write a boolean grid with the given symbols and separators."""
    return symbols.row_sep.join(
        symbols.cell_sep.join(symbols.live if cell else symbols.dead for cell in row)
        for row in np.asarray(grid, dtype=bool)
    )


def render_counts(counts: np.ndarray) -> str:
    """Neighbour counts as the seed wrote them: compact JSON, a list of rows."""
    return json.dumps(np.asarray(counts).tolist(), separators=(",", ":"))


# --------------------------------------------------------------------------------------------
# Strict parsing (dataset files)


def parse_input_grid(text: str, symbols: Symbols) -> np.ndarray:
    """Read a grid written exactly as :func:`render_grid` writes it.

    No tolerance at all: no surrounding whitespace, no spaces around cells, no trailing
    separators. Raises :class:`ValueError` with a one-line reason on anything else.
    """
    _check_symbols(symbols)
    if text == "":
        raise ValueError("empty grid")
    rows: list[list[bool]] = []
    for row_number, line in enumerate(text.split(symbols.row_sep), start=1):
        if line == "":
            raise ValueError(f"empty row at row {row_number}")
        if symbols.cell_sep == "":
            cells = _split_symbols(line, symbols)
        else:
            cells = line.split(symbols.cell_sep)
        row: list[bool] = []
        for column, cell in enumerate(cells, start=1):
            if cell == symbols.live:
                row.append(True)
            elif cell == symbols.dead:
                row.append(False)
            else:
                raise ValueError(
                    f"unknown symbol {_show(cell)} at row {row_number}, column {column}"
                )
        if rows and len(row) != len(rows[0]):
            raise ValueError(_ragged(row_number, len(row), len(rows[0])))
        rows.append(row)
    return np.array(rows, dtype=bool)


# --------------------------------------------------------------------------------------------
# Tolerant parsing (model answers)


def answer_limit(item: Item) -> int:
    """How many characters of a completion :func:`parse_answer` reads for ``item``.

    ``ANSWER_LENGTH_FACTOR`` times the right answer's length plus ``ANSWER_LENGTH_MARGIN``: room
    for every irregularity the parsers tolerate (spaces around cells, CRLF or double-spaced rows,
    pretty-printed JSON, a fence, a paragraph before the grid), far above what the runner's
    token budget (1.5x the answer's tokens + 16) lets a model write.
    """
    return ANSWER_LENGTH_FACTOR * len(item.output) + ANSWER_LENGTH_MARGIN


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
        limit = answer_limit(item)
        if len(text) <= limit:
            return _parse_item(text, item)
        head = text[: _cut_point(text, limit)]
        parsed = _parse_item(head, item)
        if _settled(head, item) is not None:
            return parsed  # nothing after the cut could have changed the parse
        ratio = len(head) / max(1, len(item.output))
        note = f"{NOTE_CUT} {len(head)} characters ({ratio:.0f} times longer than a right answer)"
        return replace(parsed, notes=(*parsed.notes, note))
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
    if len(text) > answer_limit(item):
        return "past the parse limit"
    try:
        return _settled(text, item)
    except Exception:  # noqa: BLE001 -- unsure means "may still change"
        return None


def _parse_item(text: str, item: Item) -> ParsedAnswer:
    expected_shape = tuple(int(side) for side in item.expected.shape)
    if item.task == Task.COUNT:
        return parse_counts(text, expected_shape=expected_shape)
    return parse_grid(text, item.symbols, expected_shape=expected_shape)


def _cut_point(text: str, limit: int) -> int:
    """Where to cut a text longer than ``limit``: after whole lines when lines are short."""
    after_newline = text.rfind("\n", 0, limit) + 1
    return after_newline if after_newline >= limit // 2 else limit


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
    _check_symbols(symbols)
    try:
        return _parse_grid(text, symbols, expected_shape)
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
        return _parse_counts(text)
    except Exception as error:  # noqa: BLE001 -- a grader must survive anything; tests assert it never happens
        return ParsedAnswer.failure(f"internal parser error: {type(error).__name__}: {error}")


# --------------------------------------------------------------------------------------------
# Grid parsing internals


@dataclass(frozen=True)
class _Row:
    """One line of the answer, split into cells."""

    cells: tuple[str, ...]
    spaced: bool  # spaces around cells were dropped
    trailing_sep: bool  # a separator after the last cell was dropped
    row_like: bool  # looks like a row of cells (possibly with wrong symbols)
    valid: bool  # every cell is the live or dead symbol


@dataclass(frozen=True)
class _Layout:
    """The answer region cut into blocks of non-blank, non-fence lines."""

    blocks: tuple[tuple[str, ...], ...]
    # fences[i]: a ``` line was dropped before block i; fences[-1]: anywhere in the region.
    fences: tuple[bool, ...]
    echoed: bool  # the region ended at an echoed prompt line

    @property
    def fenced(self) -> bool:
        return self.fences[-1]


def _parse_grid(
    text: str, symbols: Symbols, expected_shape: tuple[int, ...] | None
) -> ParsedAnswer:
    text = _normalise_newlines(text, symbols.row_sep)
    if not text.strip():
        return ParsedAnswer.failure("empty answer")
    parsed = _read_grid(text, symbols, expected_shape)
    if parsed.ok:
        return parsed
    # Name the separator the model used when another one reads the grid cleanly.
    for other in _OTHER_CELL_SEPS:
        if _same_separator(other, symbols.cell_sep):
            continue
        other_symbols = replace(symbols, cell_sep=other)
        if not _symbols_usable(other_symbols):
            continue
        other_reading = _read_grid(text, other_symbols, expected_shape)
        # Only when it reads the same part of the answer, not a grid further down.
        if other_reading.ok and (
            parsed.reason == "no grid found" or NOTE_TEXT_BEFORE_GRID not in other_reading.notes
        ):
            expected, found = _separator_name(symbols.cell_sep), _separator_name(other)
            return ParsedAnswer.failure(
                f"wrong cell separator: expected {expected}, found {found}", parsed.notes
            )
    if parsed.reason == "no grid found" and _first_text_line(text).startswith("["):
        return ParsedAnswer.failure(
            "no grid found: the answer is a JSON list, not rows of cells", parsed.notes
        )
    return parsed


def _read_grid(text: str, symbols: Symbols, expected_shape: tuple[int, ...] | None) -> ParsedAnswer:
    layout = _layout(text, symbols)

    # The answer is the first block holding a row; within it, the run of rows from the first one.
    for block_index, block in enumerate(layout.blocks):
        rows = [_split_row(line, symbols) for line in block]
        start = next((i for i, row in enumerate(rows) if row.row_like), None)
        if start is not None:
            break
    else:
        return ParsedAnswer.failure("no grid found", (NOTE_FENCE,) if layout.fenced else ())
    end = start
    while end < len(rows) and rows[end].row_like:
        end += 1
    run = rows[start:end]

    # A fence is noted when it comes before the text that follows the grid: a fence inside that
    # ignored text is ignored with it (so text the parser ignores never changes its notes).
    def fence_notes(last_block: int, run_ends_block: bool) -> list[str]:
        return [NOTE_FENCE] if layout.fences[last_block + int(run_ends_block)] else []

    notes: list[str] = []
    if start > 0 or block_index > 0:
        notes.append(NOTE_TEXT_BEFORE_GRID)
    later_blocks = layout.blocks[block_index + 1 :]
    after = end < len(rows) or bool(later_blocks) or layout.echoed
    parsed = _grid_from_rows(
        run,
        symbols,
        fence_notes(block_index, end == len(rows))
        + notes
        + ([NOTE_TEXT_AFTER_GRID] if after else []),
    )

    # Chat models sometimes double-space rows; accept that reading only when it alone gives the
    # expected shape.
    if (
        parsed.ok
        and expected_shape is not None
        and parsed.shape != tuple(expected_shape)
        and end == len(rows)
        and later_blocks
    ):
        spaced_run = list(run)
        taken = 0
        for later in later_blocks:
            later_rows = [_split_row(line, symbols) for line in later]
            if not all(row.row_like for row in later_rows):
                break
            spaced_run.extend(later_rows)
            taken += 1
        if taken:
            rest = taken < len(later_blocks) or layout.echoed
            spaced = _grid_from_rows(
                spaced_run,
                symbols,
                fence_notes(block_index + taken, True)
                + notes
                + [NOTE_BLANK_LINE_ROWS]
                + ([NOTE_TEXT_AFTER_GRID] if rest else []),
            )
            if spaced.ok and spaced.shape == tuple(expected_shape):
                return spaced
    return parsed


def _grid_from_rows(rows: list[_Row], symbols: Symbols, notes: list[str]) -> ParsedAnswer:
    if any(row.spaced for row in rows):
        notes = notes + [NOTE_SPACES]
    if any(row.trailing_sep for row in rows):
        notes = notes + [NOTE_TRAILING_SEP]
    width = len(rows[0].cells)
    for row_number, row in enumerate(rows, start=1):
        problem = _row_problem(row, row_number, width, symbols)
        if problem is not None:
            return ParsedAnswer.failure(problem, tuple(notes))
    grid = np.array([[cell == symbols.live for cell in row.cells] for row in rows], dtype=bool)
    return ParsedAnswer.success(grid, tuple(notes))


def _row_problem(row: _Row, row_number: int, width: int, symbols: Symbols) -> str | None:
    """Why row ``row_number`` of a grid ``width`` cells wide cannot be read (None: it can)."""
    for column, cell in enumerate(row.cells, start=1):
        if cell == "":
            return f"empty cell at row {row_number}, column {column}"
        if cell not in (symbols.live, symbols.dead):
            return f"unknown symbol {_show(cell)} at row {row_number}, column {column}"
    if len(row.cells) != width:
        return _ragged(row_number, len(row.cells), width)
    return None


def _layout(text: str, symbols: Symbols) -> _Layout:
    blocks: list[tuple[str, ...]] = []
    fences: list[bool] = []
    current: list[str] = []
    fenced = echoed = False
    for line in text.split("\n"):
        kind = _line_kind(line, symbols)
        if kind in ("blank", "fence"):
            fenced = fenced or kind == "fence"
            if current:
                blocks.append(tuple(current))
                current = []
            continue
        if kind == "echo":
            echoed = True
            break
        if not current:
            fences.append(fenced)
        current.append(line)
    if current:
        blocks.append(tuple(current))
    return _Layout(tuple(blocks), (*fences, fenced), echoed)


def _line_kind(line: str, symbols: Symbols) -> str:
    """How :func:`_layout` reads one line: ``blank``, ``fence``, ``echo`` or ``text``."""
    stripped = line.strip()
    if not stripped:
        return "blank"
    if stripped.startswith(_FENCE_MARKERS) and not _is_valid_row(line, symbols):
        return "fence"
    if stripped.startswith(_ECHO_MARKERS) and not _is_valid_row(line, symbols):
        return "echo"
    return "text"


def _split_row(line: str, symbols: Symbols) -> _Row:
    sep = symbols.cell_sep
    trailing_sep = False
    if sep == "":
        compact = "".join(line.split())
        cells = _split_symbols(compact, symbols)
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
    return _Row(tuple(cells), spaced, trailing_sep, row_like, valid)


def _is_valid_row(line: str, symbols: Symbols) -> bool:
    return _split_row(line, symbols).valid


def _split_symbols(text: str, symbols: Symbols) -> list[str]:
    """Cells written without a separator: longest symbol first, anything else one character."""
    ordered = sorted((symbols.live, symbols.dead), key=len, reverse=True)
    cells: list[str] = []
    position = 0
    while position < len(text):
        for symbol in ordered:
            if text.startswith(symbol, position):
                cells.append(symbol)
                position += len(symbol)
                break
        else:
            cells.append(text[position])
            position += 1
    return cells


# --------------------------------------------------------------------------------------------
# Counts parsing internals


def _parse_counts(text: str) -> ParsedAnswer:
    text = _normalise_newlines(text, "\n")
    if not text.strip():
        return ParsedAnswer.failure("empty answer")
    region, echoed = _cut_at_echo(text)
    notes: list[str] = []
    start = region.find("[")
    before = region if start < 0 else region[:start]
    first_line = next((line for line in region.split("\n") if line.strip()), "")
    # Two lines of cells before any JSON are a grid: the model answered in the grid format, and
    # JSON written after its answer is not read (as text after a grid is not).
    cell_lines = sum(_looks_like_cells(line) for line in before.split("\n"))
    if cell_lines >= 2 or (start < 0 and _looks_like_cells(first_line)):
        return ParsedAnswer.failure("not JSON: found rows of cells instead of a JSON list of rows")
    if start < 0:
        try:
            value, _ = json.JSONDecoder().raw_decode(region.strip())
        except (ValueError, RecursionError):
            return ParsedAnswer.failure("no grid found")
        return ParsedAnswer.failure(f"not a list of rows: the answer is {_json_kind(value)}")
    if _first_text_line(region).startswith("{"):  # counts wrapped in an object
        try:
            value, _ = json.JSONDecoder().raw_decode(region[region.find("{") :])
        except (ValueError, RecursionError):
            pass
        else:
            return ParsedAnswer.failure(f"not a list of rows: the answer is {_json_kind(value)}")
    if any(line.strip().startswith(_FENCE_MARKERS) for line in before.split("\n")):
        notes.append(NOTE_FENCE)
    if any(
        line.strip() and not line.strip().startswith(_FENCE_MARKERS) for line in before.split("\n")
    ):
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
        return ParsedAnswer.failure(f"not JSON: {_one_line(str(error))}", tuple(notes))

    after = document[length:]
    if echoed or any(
        line.strip() and not line.strip().startswith(_FENCE_MARKERS) for line in after.split("\n")
    ):
        notes.append(NOTE_TEXT_AFTER_JSON)
    elif after.strip() and NOTE_FENCE not in notes:
        notes.append(NOTE_FENCE)
    return _counts_from_json(value, tuple(notes))


def _counts_from_json(value: Any, notes: tuple[str, ...]) -> ParsedAnswer:
    if not isinstance(value, list):
        kind = _json_kind(value)
        return ParsedAnswer.failure(f"not a list of rows: the answer is {kind}", notes)
    if not value:
        return ParsedAnswer.failure("not a list of rows: the list is empty", notes)
    for row_number, row in enumerate(value, start=1):
        if not isinstance(row, list):
            return ParsedAnswer.failure(
                f"not a list of rows: row {row_number} is {_show_json(row)}, not a list", notes
            )
        if not row:
            return ParsedAnswer.failure(f"not a list of rows: row {row_number} is empty", notes)
    width = len(value[0])
    for row_number, row in enumerate(value, start=1):
        if len(row) != width:
            return ParsedAnswer.failure(_ragged(row_number, len(row), width), notes)
    for row_number, row in enumerate(value, start=1):
        for column, count in enumerate(row, start=1):
            where = f"at row {row_number}, column {column}"
            if isinstance(count, bool) or not isinstance(count, int):
                return ParsedAnswer.failure(
                    f"not an integer count: {_show_json(count)} {where}", notes
                )
            if not 0 <= count <= MAX_COUNT:
                return ParsedAnswer.failure(
                    f"count {_show_json(count)} out of range 0-{MAX_COUNT} {where}", notes
                )
    return ParsedAnswer.success(np.array(value, dtype=np.int64), notes)


def _looks_like_cells(line: str) -> bool:
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
        return f"a string {_show(value)}"
    if value is None or isinstance(value, bool):
        return _show_json(value)
    return f"the number {_show_json(value)}"


# --------------------------------------------------------------------------------------------
# Settled prefixes: when no continuation can change the parse (parse_is_final, the cut note and
# simonsca.early_stop rely on these being sound; they may be incomplete)


class _GridScan:
    """Follows one reading of :func:`_read_grid` (one set of symbols) line by line.

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
        self.rows = 0
        self.width: int | None = None
        self.failure: str | None = None
        self.later = False  # a block began after the run's block

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

    def feed(self, line: str) -> None:
        """Read one complete line (newlines already normalised, without its line break)."""
        if self.phase in ("after", "echo"):
            return
        kind = _line_kind(line, self.symbols)
        if kind == "echo":
            self.phase = "echo"
            return
        if kind != "text":
            if self.phase in ("run", "later"):
                self.phase = "gap"
            return
        row = _split_row(line, self.symbols)
        if self.phase in ("before", "run"):
            if row.row_like:
                self.phase = "run"
                self.rows += 1
                if self.width is None:
                    self.width = len(row.cells)
                if self.failure is None:
                    self.failure = _row_problem(row, self.rows, self.width, self.symbols)
            elif self.phase == "run":
                self.phase = "after"
        elif self.phase in ("gap", "later"):
            self.later = True
            # A non-row line ends the blocks of rows a double-spaced reading could join.
            self.phase = "later" if row.row_like else "after"


def _complete_lines(text: str) -> list[str]:
    """The lines of ``text`` that a line break has ended (newlines normalised)."""
    return _normalise_newlines(text, "\n").split("\n")[:-1]


def _settled(text: str, item: Item) -> str | None:
    if item.task == Task.COUNT:
        return _counts_settled(text)
    return _grid_settled(text, item.symbols, tuple(int(n) for n in item.expected.shape))


def _grid_settled(
    text: str, symbols: Symbols, expected_shape: tuple[int, ...] | None
) -> str | None:
    if symbols.row_sep != "\n":
        return None  # rows split by another separator: no line-level promise
    lines = _complete_lines(text)
    readings = [symbols] + [
        replace(symbols, cell_sep=other)
        for other in _OTHER_CELL_SEPS
        if not _same_separator(other, symbols.cell_sep)
        and _symbols_usable(replace(symbols, cell_sep=other))
    ]
    scans = [_GridScan(reading, expected_shape) for reading in readings]
    for line in lines:
        for scan in scans:
            scan.feed(line)
    first = scans[0]
    if not first.fixed:
        return None
    # A grid read with the expected symbols is final; a failure may still be renamed by another
    # separator's reading ("wrong cell separator"), so every reading must be fixed too.
    if (first.rows == 0 or first.failure is not None) and not all(s.fixed for s in scans):
        return None
    return "echoed prompt line" if first.phase == "echo" else "text after the grid"


def _counts_settled(text: str) -> str | None:
    lines = _complete_lines(text)
    if any(line.strip().startswith(_ECHO_MARKERS) for line in lines):
        return "echoed prompt line"  # _cut_at_echo: nothing from there on is read
    region = "".join(line + "\n" for line in lines)
    start = region.find("[")
    before = region if start < 0 else region[:start]
    if sum(_looks_like_cells(line) for line in before.split("\n")) >= 2:
        return "rows of cells before any JSON"  # read as a grid, whatever follows
    first = _first_text_line(region)
    if start < 0 or not first or first.startswith("{"):
        return None
    try:
        _, length = json.JSONDecoder().raw_decode(region[start:])
    except (ValueError, RecursionError):
        return None  # not closed yet (or an error a continuation might still turn around)
    after = region[start + length :]
    if any(
        line.strip() and not line.strip().startswith(_FENCE_MARKERS) for line in after.split("\n")
    ):
        return "text after the JSON"
    return None


# --------------------------------------------------------------------------------------------
# Shared helpers


def _check_symbols(symbols: Symbols) -> None:
    problem = _symbols_problem(symbols)
    if problem:
        raise ValueError(f"unusable symbols {symbols!r}: {problem}")


def _symbols_usable(symbols: Symbols) -> bool:
    return _symbols_problem(symbols) is None


def _symbols_problem(symbols: Symbols) -> str | None:
    live, dead, cell_sep, row_sep = symbols.live, symbols.dead, symbols.cell_sep, symbols.row_sep
    if not live or not dead:
        return "live and dead must not be empty"
    if live == dead:
        return "live and dead must differ"
    if any(ch.isspace() for ch in live + dead):
        return "live and dead must not contain whitespace"
    if not row_sep:
        return "row_sep must not be empty"
    if "\n" in cell_sep or "\r" in cell_sep:
        return "cell_sep must not contain a line break"
    for separator in (cell_sep.strip(), row_sep):
        if separator and (separator in live or separator in dead):
            return f"a symbol contains the separator {separator!r}"
    return None


def _same_separator(a: str, b: str) -> bool:
    """Whether two cell separators split a line the same way (all whitespace ones do)."""
    if a == b:
        return True
    if a.isspace() and b.isspace():
        return True
    return a.strip() == b.strip() and a.strip() != ""


def _separator_name(separator: str) -> str:
    return repr(separator) if separator else "none"


def _normalise_newlines(text: str, row_sep: str) -> str:
    if row_sep != "\n":
        text = text.replace(row_sep, "\n")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _cut_at_echo(text: str) -> tuple[str, bool]:
    """The text before the first line that starts a new prompt, and whether there was one."""
    offset = 0
    for line in text.split("\n"):
        if line.strip().startswith(_ECHO_MARKERS):
            return text[:offset], True
        offset += len(line) + 1
    return text, False


def _first_text_line(text: str) -> str:
    """The first line that is neither blank nor a code fence, stripped ('' when none)."""
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped and not stripped.startswith(_FENCE_MARKERS):
            return stripped
    return ""


def _show(text: str) -> str:
    """Quote model text for a one-line reason, shortened."""
    if len(text) > _SHOW_LIMIT:
        text = text[: _SHOW_LIMIT - 3] + "..."
    return repr(text)


def _show_json(value: Any) -> str:
    try:
        shown = json.dumps(value)
    except ValueError:
        shown = repr(value)  # an int too long to write out
    if len(shown) > _SHOW_LIMIT:
        shown = shown[: _SHOW_LIMIT - 3] + "..."
    return shown


def _ragged(row_number: int, cells: int, width: int) -> str:
    def plural(n: int) -> str:
        return f"{n} cell" if n == 1 else f"{n} cells"

    return f"ragged rows: row {row_number} has {plural(cells)}, row 1 has {width}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _unique(notes: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(notes))
