"""Speed of the automaton: cell-updates per second, and the speed-up over a per-cell Python loop.

Run: ``python -m pytest benchmarks/ -q -p no:cacheprovider --benchmark-columns=median,ops``.

Each benchmark stores ``cell_updates_per_s`` and ``ratio_vs_python_loop`` in
``benchmark.extra_info`` (so they land in ``--benchmark-json``) and prints them. The loop is
``simonsca.rules.reference_step`` -- the straightforward per-cell Python loop -- timed in the
same run on a 64x64 grid and scaled per cell. Nothing here asserts a speed: timings on shared
machines vary too much to gate on.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from simonsca.rules import neighbor_counts_batch, reference_step, step, step_batch

LOOP_SIDE = 64


@pytest.fixture(scope="module")
def loop_seconds_per_cell() -> float:
    """Seconds per cell-update of the per-cell Python loop (best of three on a 64x64 grid)."""
    grid = _random_grid((LOOP_SIDE, LOOP_SIDE), seed=0)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        reference_step(grid)
        best = min(best, time.perf_counter() - start)
    return best / grid.size


def _random_grid(shape: tuple[int, ...], seed: int, density: float = 0.35) -> np.ndarray:
    return np.random.default_rng(seed).random(shape) < density


def _record(benchmark, capsys, label: str, cell_updates: int, loop_s_per_cell: float) -> None:
    """Put cell-updates/s and the ratio against the loop into extra_info, and print them."""
    stats = getattr(benchmark, "stats", None)
    if not stats:  # --benchmark-disable: the function ran once, untimed
        return
    median = stats.stats.median
    rate = cell_updates / median
    ratio = loop_s_per_cell * cell_updates / median
    benchmark.extra_info.update(
        cell_updates=cell_updates,
        cell_updates_per_s=rate,
        python_loop_cell_updates_per_s=1.0 / loop_s_per_cell,
        ratio_vs_python_loop=ratio,
    )
    with capsys.disabled():
        print(
            f"\n  {label}: {rate:.3g} cell-updates/s, {ratio:,.0f}x the per-cell Python loop "
            f"({1.0 / loop_s_per_cell:.3g} cell-updates/s)"
        )


@pytest.mark.parametrize("side", [64, 256, 1024, 4096])
def test_bench_step(benchmark, capsys, loop_seconds_per_cell, side):
    grid = _random_grid((side, side), seed=side)
    benchmark.group = "step, one generation"
    result = benchmark(step, grid)
    assert result.shape == grid.shape
    _record(benchmark, capsys, f"step {side}x{side}", grid.size, loop_seconds_per_cell)


@pytest.mark.parametrize("method", ["bytes", "packed"])
@pytest.mark.parametrize("side", [256, 1024])
def test_bench_step_by_method(benchmark, capsys, loop_seconds_per_cell, side, method):
    """Both paths on either side of the automatic threshold (rules.PACKED_MIN_CELLS)."""
    grid = _random_grid((side, side), seed=side)
    benchmark.group = f"step {side}x{side} by method"
    benchmark(step, grid, method=method)
    label = f"step {side}x{side} method={method}"
    _record(benchmark, capsys, label, grid.size, loop_seconds_per_cell)


def test_bench_step_many_generations(benchmark, capsys, loop_seconds_per_cell):
    grid = _random_grid((1024, 1024), seed=1)
    generations = 16
    benchmark.group = "step, many generations"
    benchmark(step, grid, generations=generations)
    label = f"step 1024x1024 x {generations} generations"
    _record(benchmark, capsys, label, grid.size * generations, loop_seconds_per_cell)


def test_bench_step_batch_of_small_boards(benchmark, capsys, loop_seconds_per_cell):
    boards = _random_grid((1024, 16, 16), seed=2)
    benchmark.group = "batch of 1024 boards 16x16"
    result = benchmark(step_batch, boards)
    assert result.shape == boards.shape
    _record(benchmark, capsys, "step_batch 1024 x 16x16", boards.size, loop_seconds_per_cell)


def test_bench_neighbor_counts_batch_of_small_boards(benchmark, capsys, loop_seconds_per_cell):
    boards = _random_grid((1024, 16, 16), seed=3)
    benchmark.group = "batch of 1024 boards 16x16"
    benchmark(neighbor_counts_batch, boards)
    label = "neighbor_counts_batch 1024 x 16x16"
    _record(benchmark, capsys, label, boards.size, loop_seconds_per_cell)
