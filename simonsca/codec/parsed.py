"""What reading an answer gives: :class:`ParsedAnswer`, and the notes it may carry."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from simonsca.codec._text import unique

__all__ = ["NOTE_CUT", "ParsedAnswer"]

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
        return cls(value=value, notes=unique(notes))

    @classmethod
    def failure(cls, reason: str, notes: tuple[str, ...] = ()) -> ParsedAnswer:
        return cls(reason=reason, notes=unique(notes))
