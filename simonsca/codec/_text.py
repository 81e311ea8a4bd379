"""What every reader of grid text shares: markers, symbol checks, newlines, quoting model text."""

from __future__ import annotations

import json
from typing import Any

from simonsca.tasks import Symbols

MAX_COUNT = 8  # an 8-neighbourhood has at most 8 live neighbours

# Lines that start a new prompt: a model that echoes one has finished its answer.
ECHO_MARKERS = ("# Input", "SimonsCA1", "<s>")
FENCE_MARKERS = ("```", "~~~")
_SHOW_LIMIT = 24  # characters of model text quoted in a reason


def check_symbols(symbols: Symbols) -> None:
    problem = _symbols_problem(symbols)
    if problem:
        raise ValueError(f"unusable symbols {symbols!r}: {problem}")


def symbols_usable(symbols: Symbols) -> bool:
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


def split_symbols(text: str, symbols: Symbols) -> list[str]:
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


def same_separator(a: str, b: str) -> bool:
    """Whether two cell separators split a line the same way (all whitespace ones do)."""
    if a == b:
        return True
    if a.isspace() and b.isspace():
        return True
    return a.strip() == b.strip() and a.strip() != ""


def separator_name(separator: str) -> str:
    return repr(separator) if separator else "none"


def normalise_newlines(text: str, row_sep: str) -> str:
    if row_sep != "\n":
        text = text.replace(row_sep, "\n")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def is_echo(line: str) -> bool:
    """A line that starts a new prompt (before any other test of the line)."""
    return line.strip().startswith(ECHO_MARKERS)


def is_text(line: str) -> bool:
    """Neither blank nor a code fence."""
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith(FENCE_MARKERS)


def first_text_line(text: str) -> str:
    """The first line that is neither blank nor a code fence, stripped ('' when none)."""
    return next((line.strip() for line in text.split("\n") if is_text(line)), "")


def show(text: str) -> str:
    """Quote model text for a one-line reason, shortened."""
    if len(text) > _SHOW_LIMIT:
        text = text[: _SHOW_LIMIT - 3] + "..."
    return repr(text)


def show_json(value: Any) -> str:
    try:
        shown = json.dumps(value)
    except ValueError:
        shown = repr(value)  # an int too long to write out
    if len(shown) > _SHOW_LIMIT:
        shown = shown[: _SHOW_LIMIT - 3] + "..."
    return shown


def ragged(row_number: int, cells: int, width: int) -> str:
    def plural(n: int) -> str:
        return f"{n} cell" if n == 1 else f"{n} cells"

    return f"ragged rows: row {row_number} has {plural(cells)}, row 1 has {width}"


def one_line(text: str) -> str:
    return " ".join(text.split())


def unique(notes: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(notes))
