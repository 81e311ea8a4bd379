"""Writing grids and neighbour counts exactly as the seed's generator did."""

from __future__ import annotations

import json

import numpy as np

from simonsca.tasks import Symbols

__all__ = ["render_counts", "render_grid"]


def render_grid(grid: np.ndarray, symbols: Symbols) -> str:
    """Write a boolean grid with the given symbols and separators."""
    return symbols.row_sep.join(
        symbols.cell_sep.join(symbols.live if cell else symbols.dead for cell in row)
        for row in np.asarray(grid, dtype=bool)
    )


def render_counts(counts: np.ndarray) -> str:
    """Neighbour counts as the seed wrote them: compact JSON, a list of rows."""
    return json.dumps(np.asarray(counts).tolist(), separators=(",", ":"))
