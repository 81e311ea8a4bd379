"""The automaton: fast paths against the per-cell reference, symmetries, known patterns, errors.

The reference (``reference_step``/``reference_neighbor_counts``) is the per-cell loop with
``(x + dx) % width`` on wrapped axes; everything else must agree with it, on every legal size
(1 and 2 included, where a cell is its own neighbour or the same neighbour counts twice).
Example counts come from the hypothesis profile loaded in the root conftest.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simonsca import rules
from simonsca.rules import (
    neighbor_counts,
    neighbor_counts_batch,
    reference_neighbor_counts,
    reference_step,
    step,
    step_batch,
)

try:
    from tests.strategies import (
        board_batches,
        dense_grids,
        generation_counts,
        grids,
        rule_methods,
        wrap_flags,
    )
except ImportError:  # pytest run with tests/ (not the repository root) on sys.path
    from strategies import (  # type: ignore[no-redef]
        board_batches,
        dense_grids,
        generation_counts,
        grids,
        rule_methods,
        wrap_flags,
    )


def board(*rows: str) -> np.ndarray:
    """A grid from rows of '.' (dead) and '*' (live)."""
    return np.array([[c == "*" for c in row] for row in rows], dtype=bool)


def embed(pattern: np.ndarray, height: int, width: int, at: tuple[int, int] = (2, 2)) -> np.ndarray:
    grid = np.zeros((height, width), dtype=bool)
    y, x = at
    grid[y : y + pattern.shape[0], x : x + pattern.shape[1]] = pattern
    return grid


ALL_WRAPS = [(False, False), (False, True), (True, False), (True, True)]
METHODS = ["auto", "bytes", "packed"]


# --------------------------------------------------------------------------------------------
# agreement with the reference


@given(grids(), wrap_flags, generation_counts.filter(lambda n: n <= 3), rule_methods)
def test_step_matches_reference(grid, wraps, generations, method):
    expected = reference_step(grid, *wraps, generations=generations)
    got = step(grid, *wraps, generations=generations, method=method)
    assert got.dtype == np.bool_ and got.shape == grid.shape
    np.testing.assert_array_equal(got, expected)


@given(grids(), wrap_flags)
def test_neighbor_counts_match_reference(grid, wraps):
    got = neighbor_counts(grid, *wraps)
    assert np.issubdtype(got.dtype, np.integer) and got.shape == grid.shape
    np.testing.assert_array_equal(got, reference_neighbor_counts(grid, *wraps))


@given(dense_grids(1, 4, 1, 200), wrap_flags, st.integers(1, 3))
def test_packed_path_matches_reference_across_word_boundaries(grid, wraps, generations):
    # Widths around 64 and 128 put rows across one, two and three uint64 words.
    expected = reference_step(grid, *wraps, generations=generations)
    np.testing.assert_array_equal(step(grid, *wraps, generations, method="packed"), expected)


@given(dense_grids(1, 300, 1, 300), wrap_flags, st.integers(1, 6))
def test_packed_and_byte_paths_agree_on_large_grids(grid, wraps, generations):
    packed = step(grid, *wraps, generations, method="packed")
    np.testing.assert_array_equal(packed, step(grid, *wraps, generations, method="bytes"))


def test_packed_path_strips_agree_with_one_strip(monkeypatch):
    grid = np.random.default_rng(7).random((700, 300)) < 0.4
    for wraps in ALL_WRAPS:
        whole = step(grid, *wraps, 3, method="packed")
        monkeypatch.setattr(rules, "_STRIP_WORDS", 5)  # a strip of one row at a time
        np.testing.assert_array_equal(step(grid, *wraps, 3, method="packed"), whole)
        np.testing.assert_array_equal(step(grid, *wraps, 3, method="bytes"), whole)
        monkeypatch.undo()


def test_auto_picks_packed_path_at_the_size_threshold(monkeypatch):
    calls: list[str] = []
    real_packed, real_bytes = rules._step_packed, rules._step_bytes
    monkeypatch.setattr(rules, "_step_packed", lambda *a: calls.append("packed") or real_packed(*a))
    monkeypatch.setattr(rules, "_step_bytes", lambda *a: calls.append("bytes") or real_bytes(*a))
    monkeypatch.setattr(rules, "PACKED_MIN_CELLS", 100)
    step(np.zeros((9, 11), dtype=bool))
    step(np.zeros((10, 10), dtype=bool))
    step_batch(np.zeros((50, 3, 3), dtype=bool))  # the threshold is per board
    assert calls == ["bytes", "packed", "bytes"]


# --------------------------------------------------------------------------------------------
# small axes: follow the modular arithmetic exactly


def test_lone_cell_on_wrapped_1x1_is_its_own_eight_neighbours():
    assert neighbor_counts([[1]]).tolist() == [[8]]
    assert neighbor_counts([[1]], wrap_x=False).tolist() == [[2]]  # (y +- 1) % 1 == y
    assert neighbor_counts([[1]], wrap_x=False, wrap_y=False).tolist() == [[0]]
    assert step([[True]]).tolist() == [[False]]  # 8 neighbours: overcrowded


def test_width_two_counts_the_other_cell_twice():
    # Row [live, dead] on a 1x2 torus: the dead cell sees the live one at x-1 and x+1, for each
    # of the three rows y-1, y, y+1 (all the same row); the live one sees itself above/below.
    assert neighbor_counts([[1, 0]]).tolist() == [[2, 6]]
    assert neighbor_counts([[1, 0]], wrap_y=False).tolist() == [[0, 2]]
    assert neighbor_counts([[1], [0]]).tolist() == [[2], [6]]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (2, 1), (2, 2), (1, 5), (5, 1), (2, 3)])
def test_tiny_grids_all_states_match_reference(shape, method):
    cells = shape[0] * shape[1]
    for bits in range(2**cells):
        grid = np.array([(bits >> i) & 1 for i in range(cells)], dtype=bool).reshape(shape)
        for wraps in ALL_WRAPS:
            np.testing.assert_array_equal(
                step(grid, *wraps, method=method), reference_step(grid, *wraps)
            )
            np.testing.assert_array_equal(
                neighbor_counts(grid, *wraps), reference_neighbor_counts(grid, *wraps)
            )


# --------------------------------------------------------------------------------------------
# symmetries and invariants


@given(dense_grids(1, 40, 1, 40), st.integers(-50, 50), st.integers(-50, 50), rule_methods)
def test_torus_translation_equivariance(grid, dy, dx, method):
    shifted = np.roll(grid, (dy, dx), axis=(0, 1))
    np.testing.assert_array_equal(
        step(shifted, method=method), np.roll(step(grid, method=method), (dy, dx), axis=(0, 1))
    )
    np.testing.assert_array_equal(
        neighbor_counts(shifted), np.roll(neighbor_counts(grid), (dy, dx), axis=(0, 1))
    )


def _symmetries():
    """The eight rotations/reflections of the square, and whether each swaps the axes."""
    for k in range(4):
        for flip in (False, True):

            def transform(a, k=k, flip=flip):
                a = np.rot90(a, k)
                return np.fliplr(a) if flip else a

            yield f"rot{90 * k}{'+flip' if flip else ''}", transform, k % 2 == 1


SYMMETRIES = list(_symmetries())


@pytest.mark.parametrize("name,transform,swaps", SYMMETRIES, ids=[s[0] for s in SYMMETRIES])
@given(grid=dense_grids(1, 20, 1, 20), wraps=wrap_flags, method=rule_methods)
def test_dihedral_symmetry(name, transform, swaps, grid, wraps, method):
    wrap_x, wrap_y = wraps
    t_wraps = (wrap_y, wrap_x) if swaps else (wrap_x, wrap_y)  # a transpose swaps the axes
    np.testing.assert_array_equal(
        step(transform(grid), *t_wraps, method=method),
        transform(step(grid, wrap_x, wrap_y, method=method)),
    )
    np.testing.assert_array_equal(
        neighbor_counts(transform(grid), *t_wraps), transform(neighbor_counts(grid, *wraps))
    )


@given(dense_grids(1, 30, 1, 30), wrap_flags, st.integers(1, 4), rule_methods)
def test_no_wrap_equals_wrap_on_a_grid_with_dead_margins(grid, wraps, generations, method):
    """An axis without wrap behaves like a wrapped axis padded with >= 2 dead cells, cropped back
    after every generation (cells beyond the edge stay dead, they never come alive)."""
    wrap_x, wrap_y = wraps
    margin = 2
    pad_y = (0, 0) if wrap_y else (margin, margin)
    pad_x = (0, 0) if wrap_x else (margin, margin)
    h, w = grid.shape
    crop = (slice(pad_y[0], pad_y[0] + h), slice(pad_x[0], pad_x[0] + w))
    g = grid
    for _ in range(generations):
        g = step(np.pad(g, (pad_y, pad_x)), True, True, method=method)[crop]
    np.testing.assert_array_equal(g, step(grid, wrap_x, wrap_y, generations, method=method))
    padded_counts = neighbor_counts(np.pad(grid, (pad_y, pad_x)), True, True)[crop]
    np.testing.assert_array_equal(padded_counts, neighbor_counts(grid, wrap_x, wrap_y))


@given(grids(1, 40), wrap_flags)
def test_counts_are_conserved_on_a_full_torus(grid, wraps):
    counts = neighbor_counts(grid, *wraps)
    live = int(grid.sum())
    assert counts.min() >= 0 and counts.max() <= 8
    if wraps == (True, True):
        assert int(counts.sum()) == 8 * live  # every live cell is a neighbour 8 times
    else:
        assert int(counts.sum()) <= 8 * live


@given(dense_grids(1, 30, 1, 30), wrap_flags, generation_counts, generation_counts, rule_methods)
def test_generations_compose(grid, wraps, n, m, method):
    once = step(grid, *wraps, generations=n + m, method=method)
    twice = step(step(grid, *wraps, generations=n, method=method), *wraps, m, method=method)
    np.testing.assert_array_equal(once, twice)


@pytest.mark.parametrize("method", METHODS)
def test_zero_generations_returns_a_copy_and_input_is_never_changed(method):
    grid = board(".*.", "**.", "...")
    before = grid.copy()
    same = step(grid, generations=0, method=method)
    np.testing.assert_array_equal(same, grid)
    assert same is not grid and not np.shares_memory(same, grid)
    step(grid, generations=3, method=method)
    np.testing.assert_array_equal(grid, before)


# --------------------------------------------------------------------------------------------
# known patterns

BLOCK = board("**", "**")
BEEHIVE = board(".**.", "*..*", ".**.")
LOAF = board(".**.", "*..*", ".*.*", "..*.")
BLINKER = board("***")
TOAD = board(".***", "***.")
BEACON = board("**..", "**..", "..**", "..**")
GLIDER = board(".*.", "..*", "***")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("wraps", ALL_WRAPS)
@pytest.mark.parametrize("pattern", [BLOCK, BEEHIVE, LOAF], ids=["block", "beehive", "loaf"])
def test_still_lifes_do_not_change(pattern, wraps, method):
    grid = embed(pattern, 9, 10)
    np.testing.assert_array_equal(step(grid, *wraps, method=method), grid)
    np.testing.assert_array_equal(step(grid, *wraps, 7, method=method), grid)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("wraps", ALL_WRAPS)
@pytest.mark.parametrize("pattern", [BLINKER, TOAD, BEACON], ids=["blinker", "toad", "beacon"])
def test_period_two_oscillators(pattern, wraps, method):
    grid = embed(pattern, 10, 9, at=(3, 2))
    once = step(grid, *wraps, method=method)
    assert not np.array_equal(once, grid)
    np.testing.assert_array_equal(step(once, *wraps, method=method), grid)
    np.testing.assert_array_equal(step(grid, *wraps, 10, method=method), grid)


def test_blinker_phases():
    grid = embed(BLINKER, 5, 5, at=(2, 1))
    np.testing.assert_array_equal(step(grid), embed(board("*", "*", "*"), 5, 5, at=(1, 2)))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(8, 8), (6, 11), (64, 65)])
def test_glider_moves_one_cell_diagonally_every_four_generations_on_a_torus(shape, method):
    grid = embed(GLIDER, *shape, at=(0, 0))
    moved = np.roll(grid, (1, 1), axis=(0, 1))
    np.testing.assert_array_equal(step(grid, generations=4, method=method), moved)
    # All the way round the torus and back to the start.
    laps = 4 * int(np.lcm(*shape))
    if laps <= 400:
        np.testing.assert_array_equal(step(grid, generations=laps, method=method), grid)


@pytest.mark.parametrize("method", METHODS)
def test_glider_without_wrap_settles_into_a_block_in_the_corner(method):
    # Heading for the bottom-right corner with dead cells beyond the edges, it ends as a block.
    grid = embed(GLIDER, 8, 8, at=(0, 0))
    final = step(grid, False, False, 40, method=method)
    np.testing.assert_array_equal(final, embed(BLOCK, 8, 8, at=(6, 6)))


# --------------------------------------------------------------------------------------------
# batches


@given(board_batches(), wrap_flags, generation_counts, rule_methods)
def test_step_batch_is_step_on_each_board(boards, wraps, generations, method):
    got = step_batch(boards, *wraps, generations, method=method)
    assert got.shape == boards.shape and got.dtype == np.bool_
    for one, result in zip(boards, got):
        np.testing.assert_array_equal(result, step(one, *wraps, generations))


@given(board_batches(), wrap_flags)
def test_neighbor_counts_batch_is_counts_on_each_board(boards, wraps):
    got = neighbor_counts_batch(boards, *wraps)
    for one, result in zip(boards, got):
        np.testing.assert_array_equal(result, reference_neighbor_counts(one, *wraps))


# --------------------------------------------------------------------------------------------
# inputs, outputs and errors


def test_accepts_lists_and_0_1_numbers():
    rows = [[0, 1, 0], [0, 1, 0], [0, 1, 0]]
    expected = step(np.array(rows, dtype=bool))
    np.testing.assert_array_equal(step(rows), expected)
    np.testing.assert_array_equal(step(np.array(rows, dtype=np.uint8)), expected)
    np.testing.assert_array_equal(step(np.array(rows, dtype=float)), expected)
    np.testing.assert_array_equal(step(np.array(rows, dtype=bool).T), step(np.array(rows).T))


def test_counts_become_python_ints():
    counts = neighbor_counts(BLINKER, False, False).tolist()
    assert counts == [[1, 2, 1]] and all(type(c) is int for row in counts for c in row)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: step(np.zeros(3, dtype=bool)), r"grid must be 2-D, got shape \(3,\)"),
        (lambda: step(np.zeros((1, 2, 2), dtype=bool)), r"must be 2-D, got shape \(1, 2, 2\)"),
        (lambda: neighbor_counts(True), r"grid must be 2-D, got shape \(\)"),
        (lambda: step_batch(np.zeros((2, 2))), r"grids must be 3-D .*got shape \(2, 2\)"),
        (lambda: neighbor_counts_batch(np.zeros(4)), r"grids must be 3-D .*got shape \(4,\)"),
        (lambda: step(np.zeros((0, 5), dtype=bool)), r"must not be empty, got shape \(0, 5\)"),
        (lambda: step([]), r"grid must be 2-D, got shape \(0,\)"),
        (lambda: step_batch(np.zeros((0, 3, 3))), r"grids must not be empty"),
        (lambda: step([[0, 2], [1, 0]]), r"0/1 numbers, got 2 at index \(0, 1\)"),
        (lambda: neighbor_counts([[0.5]]), r"0/1 numbers, got 0.5 at index \(0, 0\)"),
        (lambda: step([[np.nan, 1.0]]), r"0/1 numbers, got nan at index \(0, 0\)"),
        (lambda: step([["*", "."]]), r"booleans or 0/1 numbers, got dtype <U1"),
        (lambda: step([[1, 0], [1]]), r"grid must be a rectangular array"),
        (lambda: step(BLOCK, generations=-1), r"generations must be >= 0, got -1"),
        (lambda: step(BLOCK, generations=1.5), r"must be a non-negative integer, got 1.5"),
        (lambda: step(BLOCK, generations="2"), r"must be a non-negative integer, got '2'"),
        (lambda: step(BLOCK, generations=True), r"generations must be a non-negative integer"),
        (lambda: step(BLOCK, wrap_x="yes"), r"wrap_x must be True or False, got 'yes'"),
        (lambda: neighbor_counts(BLOCK, wrap_y=None), r"wrap_y must be True or False, got None"),
        (lambda: step(BLOCK, method="fast"), r"method must be .*got 'fast'"),
        (lambda: reference_step(BLOCK, generations=-2), r"generations must be >= 0, got -2"),
    ],
)
def test_bad_input_raises_value_error_naming_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_numpy_scalars_are_accepted_for_flags_and_generations():
    np.testing.assert_array_equal(
        step(BLINKER, np.True_, np.False_, np.int64(2)), step(BLINKER, True, False, 2)
    )
