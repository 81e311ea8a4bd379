"""Reading inputs: the strict parser for grids written exactly as :func:`render_grid` writes them
(dataset files). It raises :class:`ValueError` with a one-line reason on anything else."""

from __future__ import annotations

import numpy as np

from simonsca.codec._text import check_symbols, ragged, show, split_symbols
from simonsca.tasks import Symbols

__all__ = ["parse_input_grid"]


def parse_input_grid(text: str, symbols: Symbols) -> np.ndarray:
    """Read a grid written exactly as :func:`render_grid` writes it.

    No tolerance at all: no surrounding whitespace, no spaces around cells, no trailing
    separators. Raises :class:`ValueError` with a one-line reason on anything else.
    """
    check_symbols(symbols)
    if text == "":
        raise ValueError("empty grid")
    rows: list[list[bool]] = []
    for row_number, line in enumerate(text.split(symbols.row_sep), start=1):
        if line == "":
            raise ValueError(f"empty row at row {row_number}")
        if symbols.cell_sep == "":
            cells = split_symbols(line, symbols)
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
                    f"unknown symbol {show(cell)} at row {row_number}, column {column}"
                )
        if rows and len(row) != len(rows[0]):
            raise ValueError(ragged(row_number, len(row), len(rows[0])))
        rows.append(row)
    return np.array(rows, dtype=bool)
