"""Hypothesis strategies shared by every property test: grids, symbols, separators, items."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from simonsca.tasks import Symbols


def grids(min_side: int = 1, max_side: int = 12) -> st.SearchStrategy[np.ndarray]:
    """Boolean grids of any legal shape, 1x1 included."""
    shapes = st.tuples(st.integers(min_side, max_side), st.integers(min_side, max_side))
    return shapes.flatmap(lambda shape: hnp.arrays(np.bool_, shape))


wrap_flags = st.tuples(st.booleans(), st.booleans())

# Single printable, non-space characters that are not used as separators below.
_cell_chars = st.characters(
    min_codepoint=33, max_codepoint=0x2FFF, exclude_characters=",;|\n\r\t \x85\u2028\u2029"
).filter(lambda c: c.isprintable() and not c.isspace())


@st.composite
def symbols(draw: st.DrawFn) -> Symbols:
    """Distinct live/dead characters with any of the row/cell separators simonsca supports."""
    live = draw(_cell_chars)
    dead = draw(_cell_chars.filter(lambda c: c != live))
    row_sep = draw(st.sampled_from(["\n"]))
    cell_sep = draw(st.sampled_from([",", "", " ", ";", "|"]))
    return Symbols(live=live, dead=dead, row_sep=row_sep, cell_sep=cell_sep)


# --- codec: neighbour counts and model-answer noise -----------------------------------------


def count_grids(min_side: int = 1, max_side: int = 12) -> st.SearchStrategy[np.ndarray]:
    """Neighbour-count grids: int64 values 0..8 of any legal shape."""
    shapes = st.tuples(st.integers(min_side, max_side), st.integers(min_side, max_side))
    return shapes.flatmap(lambda shape: hnp.arrays(np.int64, shape, elements=st.integers(0, 8)))


# Fragments a model's completion is made of when it goes wrong.
_noise_fragments = st.sampled_from(
    [
        "\n",
        "\n\n",
        " ",
        ",",
        ";",
        "|",
        "```",
        "```json",
        "# Input",
        "# Output",
        "SimonsCA1",
        "[",
        "]",
        "[[",
        "]]",
        "{",
        "}",
        '"',
        ":",
        "0",
        "1",
        "9",
        "-1",
        "true",
        "null",
        "1.5",
        "x",
        ".",
        "*",
        "#",
        "<s>",
        "\r\n",
        "\t",
        "Here is the answer:",
        "\u2028",
        "\x00",
    ]
)


def noisy_answers(symbols: Symbols) -> st.SearchStrategy[str]:
    """Texts made of the symbols, their separators and common junk, in any order."""
    pieces = st.one_of(
        st.sampled_from([symbols.live, symbols.dead, symbols.row_sep, symbols.cell_sep]),
        _noise_fragments,
        st.text(max_size=3),
    )
    return st.lists(pieces, max_size=60).map("".join)


# --- rules (simonsca/rules.py) ---------------------------------------------------------------


def dense_grids(
    min_height: int = 1, max_height: int = 12, min_width: int = 1, max_width: int = 12
) -> st.SearchStrategy[np.ndarray]:
    """Boolean grids filled by a seeded numpy generator at a drawn density (0 to 1): cheap to
    draw even when large, and not mostly dead the way big ``hnp.arrays`` examples are."""

    def build(height: int, width: int, seed: int, density: float) -> np.ndarray:
        return np.random.default_rng(seed).random((height, width)) < density

    return st.builds(
        build,
        st.integers(min_height, max_height),
        st.integers(min_width, max_width),
        st.integers(0, 2**32 - 1),
        st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.7, 1.0]),
    )


def board_batches(max_boards: int = 6, max_side: int = 9) -> st.SearchStrategy[np.ndarray]:
    """Stacks of equally shaped boolean boards, shape (boards, height, width)."""
    shapes = st.tuples(
        st.integers(1, max_boards), st.integers(1, max_side), st.integers(1, max_side)
    )
    return shapes.flatmap(lambda shape: hnp.arrays(np.bool_, shape))


generation_counts = st.integers(0, 5)
rule_methods = st.sampled_from(["auto", "bytes", "packed"])
