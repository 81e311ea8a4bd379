"""Grid <-> text, one module per job.

- :mod:`~simonsca.codec.render` writes grids and neighbour counts exactly as the seed's
  generator did.
- :mod:`~simonsca.codec.inputs` reads inputs strictly: :func:`parse_input_grid` reads
  well-formed rendered grids (dataset files) and raises :class:`ValueError` with a one-line
  reason on anything else.
- :mod:`~simonsca.codec.answers` reads answers tolerantly: :func:`parse_grid`,
  :func:`parse_counts` and :func:`parse_answer` read what a model wrote after ``# Output\\n`` the
  way a fair grader would, and never raise on any text. They return a :class:`ParsedAnswer`: the
  grid found, or a precise reason why there is none, plus notes on the irregularities that were
  tolerated. All of them, :func:`parse_is_final` and the early stop of generation
  (:mod:`simonsca.early_stop`) read through one incremental scanner,
  :class:`~simonsca.codec.scan.AnswerScan`, and its two grammars (grid rows, JSON counts).

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
change a parse.
"""

from __future__ import annotations

from simonsca.codec.answers import (
    _parse_item,
    parse_answer,
    parse_counts,
    parse_grid,
    parse_is_final,
)
from simonsca.codec.inputs import parse_input_grid
from simonsca.codec.parsed import NOTE_CUT, ParsedAnswer
from simonsca.codec.render import render_counts, render_grid
from simonsca.codec.scan import AnswerScan, answer_limit

__all__ = [
    "ANSWER_LENGTH_FACTOR",
    "ANSWER_LENGTH_MARGIN",
    "NOTE_CUT",
    "AnswerScan",
    "ParsedAnswer",
    "_parse_item",
    "answer_limit",
    "parse_answer",
    "parse_counts",
    "parse_grid",
    "parse_input_grid",
    "parse_is_final",
    "render_counts",
    "render_grid",
]

#: :func:`parse_answer` reads at most ANSWER_LENGTH_FACTOR x the right answer + the margin
#: (:func:`answer_limit` reads them here, where callers may set them).
ANSWER_LENGTH_FACTOR = 8
ANSWER_LENGTH_MARGIN = 2000
