"""Hypothesis strategies shared by every property test: grids, symbols, separators, items."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from simonsca.tasks import Item, Symbols, Task


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


# --- items and whole model answers (scoring, early stop) -------------------------------------

_JUNK_LINES = [
    "Here is the next generation:",
    "Output:",
    "That is the answer.",
    "x",
    "0 1 0",
    ".*.",
    "1;0;1",
    "[[1,2],[3,4]]",
    '{"counts": [[1]]}',
    "print(live)",
]
_ECHO_LINES = ["# Input", "SimonsCA1", "<s>", "SimonsCA1 dead='0' live='1'", "# Output"]
_FENCE_LINES = ["```", "```text", "```json", "~~~"]


def make_item(
    grid: np.ndarray,
    task: str = "next",
    symbols: Symbols | None = None,
    wrap: tuple[bool, bool] = (True, True),
    generations: int = 1,
    seed: int = 1,
) -> Item:
    """An eval-style :class:`Item` for ``grid`` (expected answer computed by the rules)."""
    from simonsca import codec
    from simonsca.rules import neighbor_counts, step

    syms = symbols or Symbols()
    grid = np.asarray(grid, dtype=bool)
    if task == "count":
        expected = np.asarray(neighbor_counts(grid, wrap[0], wrap[1]), dtype=np.int64)
        output = codec.render_counts(expected)
    else:
        expected = np.asarray(step(grid, wrap[0], wrap[1], generations), dtype=bool)
        output = codec.render_grid(expected, syms)
    return Item(
        seed=seed,
        task=Task(task),
        wrap_x=wrap[0],
        wrap_y=wrap[1],
        generations=generations,
        symbols=syms,
        instruction=f"SimonsCA1\ndead='{syms.dead}' live='{syms.live}'",
        input=codec.render_grid(grid, syms),
        output=output,
        generator="eval",
        grid=grid,
        expected=expected,
    )


@st.composite
def items(draw: st.DrawFn, max_side: int = 6) -> Item:
    """Small items of either task, in the plain or another symbol set (rows split by lines)."""
    grid = draw(grids(1, max_side))
    task = draw(st.sampled_from(["next", "count"]))
    syms = draw(
        st.one_of(
            st.just(Symbols()),
            st.just(Symbols(live="0", dead="1")),
            st.just(Symbols(live="*", dead=".", cell_sep="")),
            symbols(),
        )
    )
    return make_item(grid, task, syms, wrap=draw(wrap_flags))


@st.composite
def answer_texts(draw: st.DrawFn, item: Item) -> str:
    """What a model might write for ``item``: right answers, wrong grids, extra rows, junk lines,
    echoed prompts, fences, JSON of any shape, cut rows -- assembled line by line."""
    from simonsca import codec

    expected = np.asarray(item.expected)
    height, width = expected.shape
    syms = item.symbols

    def rows_of(grid: np.ndarray) -> list[str]:
        return codec.render_grid(grid, syms).split("\n")

    def some_grid(h: int, w: int) -> np.ndarray:
        return np.asarray(draw(hnp.arrays(np.bool_, (h, w))))

    def some_counts(h: int, w: int) -> np.ndarray:
        return np.asarray(draw(hnp.arrays(np.int64, (h, w), elements=st.integers(0, 8))))

    sides = st.integers(1, max(height, width) + 2)
    lines: list[str] = []
    for kind in draw(
        st.lists(
            st.sampled_from(
                [
                    "right",
                    "right",
                    "prefix",
                    "wrong",
                    "extra",
                    "row",
                    "cut",
                    "spaced",
                    "junk",
                    "echo",
                    "fence",
                    "blank",
                    "json",
                    "json",
                    "json_lines",
                    "json_pretty",
                    "json_wrong",
                    "json_cut",
                ]
            ),
            max_size=7,
        )
    ):
        right = expected if item.task is Task.NEXT else expected > 3
        if kind == "right":
            lines += item.output.split("\n")
        elif kind == "prefix":
            lines += rows_of(right)[: draw(st.integers(1, height))]
        elif kind == "wrong":
            lines += rows_of(some_grid(draw(sides), draw(sides)))
        elif kind == "extra":
            lines += rows_of(right) + rows_of(some_grid(draw(st.integers(1, 3)), width))
        elif kind == "row":
            lines += rows_of(some_grid(1, draw(sides)))
        elif kind == "cut":
            row = rows_of(some_grid(1, draw(sides)))[0]
            lines.append(row[: draw(st.integers(0, len(row)))])
        elif kind == "spaced":
            lines += [
                " " + line.replace(syms.cell_sep, f" {syms.cell_sep} ")
                if syms.cell_sep
                else " ".join(line)
                for line in rows_of(right)
            ]
        elif kind == "junk":
            lines.append(draw(st.sampled_from(_JUNK_LINES)))
        elif kind == "echo":
            lines.append(draw(st.sampled_from(_ECHO_LINES)))
        elif kind == "fence":
            lines.append(draw(st.sampled_from(_FENCE_LINES)))
        elif kind == "blank":
            lines.append(draw(st.sampled_from(["", " "])))
        elif kind in ("json", "json_lines", "json_pretty"):
            counts = expected if item.task is Task.COUNT else expected.astype(np.int64)
            if kind == "json":
                lines.append(codec.render_counts(counts))
            elif kind == "json_lines":
                body = ",\n".join(json.dumps(row) for row in counts.tolist())
                lines += f"[{body}]".split("\n")
            else:
                lines += json.dumps(counts.tolist(), indent=draw(st.integers(1, 3))).split("\n")
        elif kind == "json_wrong":
            counts = some_counts(draw(sides), draw(sides))
            lines += json.dumps(counts.tolist(), indent=draw(st.sampled_from([None, 1]))).split(
                "\n"
            )
        elif kind == "json_cut":
            text = codec.render_counts(expected.astype(np.int64))
            lines.append(text[: draw(st.integers(1, len(text)))])
    newline = draw(st.sampled_from(["\n", "\n", "\n", "\r\n"]))
    tail = draw(st.sampled_from(["", "\n", "\n\n", " "]))
    return newline.join(lines) + tail
