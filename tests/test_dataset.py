"""The dataset: v5 compatibility (against an independent re-implementation), eval families, writers."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simonsca import dataset
from simonsca.codec import parse_input_grid
from simonsca.errors import DatasetError, OutputExistsError
from simonsca.tasks import Task


def seed_v5_reference(s: int) -> dict[str, str]:
    """The seed's v5 generator written out from DESIGN.md with the global ``random`` module,
    sharing no code with simonsca (its own per-cell rule and neighbour count)."""
    random.seed(s)
    width = random.randint(5, 15)
    height = random.randint(5, 15)
    rows = [[random.choice([".", "*"]) for _ in range(width)] for _ in range(height)]
    random.seed(s)
    dead = random.choice("01")
    live = random.choice("01")
    while dead == live:
        dead = random.choice("01")
        live = random.choice("01")
    row_sep = random.choice(["\n"])
    cell_sep = random.choice([","])
    count_mode = s & 4 == 0

    def count(y: int, x: int) -> int:
        return sum(
            rows[(y + dy) % height][(x + dx) % width] == "*"
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
            if (dx, dy) != (0, 0)
        )

    def render(cells: list[list[str]]) -> str:
        return row_sep.join(cell_sep.join(live if c == "*" else dead for c in r) for r in cells)

    if count_mode:
        output = json.dumps(
            [[count(y, x) for x in range(width)] for y in range(height)], separators=(",", ":")
        )
    else:
        nxt = [
            [
                "*" if count(y, x) == 3 or (rows[y][x] == "*" and count(y, x) == 2) else "."
                for x in range(width)
            ]
            for y in range(height)
        ]
        output = render(nxt)
    flags = [f"dead='{dead}'", f"live='{live}'", "wrap_x=True", "wrap_y=True"]
    if count_mode:
        flags.append("alive_neighbor_count=True")
    random.Random(s + 1000).shuffle(flags)
    return {
        "instruction": "SimonsCA1\n" + " ".join(flags),
        "input": render(rows),
        "output": output,
    }


@given(st.integers(0, 2_000_000))
@settings(max_examples=300)
def test_make_item_matches_the_seed_generator(seed: int) -> None:
    item = dataset.make_item(seed)
    assert dataset.v5_record(item) == seed_v5_reference(seed)


def test_first_seeds_match_the_seed_generator() -> None:
    for seed in range(200):
        assert dataset.v5_record(dataset.make_item(seed)) == seed_v5_reference(seed)


def test_v5_budget_gives_the_seed_runs_19587_items() -> None:
    # The seed's log: "tokenize_file: total number of samples: 19587".
    count = sum(1 for _ in dataset.v5_items())
    assert count == 19587


def test_v5_task_follows_seed_bit_two() -> None:
    assert [dataset.make_item(s).task for s in range(8)] == [Task.COUNT] * 4 + [Task.NEXT] * 4


@pytest.mark.parametrize("name", sorted(dataset.PRESETS))
def test_eval_items_are_deterministic_and_consistent(name: str) -> None:
    fam = dataset.families(name)
    first = dataset.eval_items(40, fam=fam)
    again = dataset.eval_items(40, fam=fam)
    assert [dataset.v5_record(i) for i in first] == [dataset.v5_record(i) for i in again]
    for item in first:
        assert fam.min_side <= item.width <= fam.max_side
        assert fam.min_side <= item.height <= fam.max_side
        assert (parse_input_grid(item.input, item.symbols) == item.grid).all()
        assert item.seed >= dataset.EVAL_SEED_START


def test_generalization_family_covers_every_facet() -> None:
    items = dataset.eval_items(400, fam=dataset.families("generalization"))
    assert {i.wrap for i in items} == {"xy", "x", "y", "none"}
    assert {i.generations for i in items if i.task is Task.NEXT} == {1, 2, 3}
    assert {i.symbols.live for i in items} == {"1", "0", "*", "#"}
    assert {i.size_bucket for i in items} >= {"1-4", "5-8", "9-15", "16+"}
    gen3 = next(i for i in items if i.generations == 3)
    assert "generation=3" in gen3.instruction


def test_eval_seeds_below_the_eval_range_are_refused() -> None:
    with pytest.raises(DatasetError, match="eval seeds must start"):
        dataset.eval_items(3, seed_start=10)


def test_held_out_check_catches_a_training_grid() -> None:
    leaked = dataset.make_item(123)
    with pytest.raises(DatasetError, match="same input grid as a v5 training item"):
        dataset.assert_held_out([leaked], range(200))
    assert dataset.training_collisions([leaked], range(200)) == {123}


def test_eval_items_skip_a_seed_whose_grid_is_a_training_grid() -> None:
    """Eval seed 1,014,305's 5x5 grid is v5 item 12,509's: it is skipped, and the items of any
    shorter list are the first items of a longer one."""
    fam = dataset.families("v5-small")
    assert dataset.training_collisions([dataset.make_eval_item(1_014_305, fam)], [12_509]) == {
        1_014_305
    }
    items = dataset.eval_items(3, seed_start=1_014_304)
    assert [i.seed for i in items] == [1_014_304, 1_014_306, 1_014_307]
    assert dataset.eval_items(2, seed_start=1_014_304) == items[:2]


def test_unknown_family_names_the_choices() -> None:
    with pytest.raises(DatasetError, match="choose one of"):
        dataset.families("nope")


def test_writers_produce_the_three_formats(tmp_path) -> None:
    items = [dataset.make_item(s) for s in range(3)]
    n = dataset.write_items(items, tmp_path / "train_data.txt", "v5")
    assert n == 3
    text = (tmp_path / "train_data.txt").read_text()
    assert text.startswith("<s>SimonsCA1\n") and text.count("<s>") == 3
    assert text.endswith(items[2].output + "\n\n")
    dataset.write_items(items, tmp_path / "mlx.jsonl", "mlx")
    lines = (tmp_path / "mlx.jsonl").read_text().splitlines()
    assert json.loads(lines[0]) == {"text": items[0].training_text}
    dataset.write_items(items, tmp_path / "items.jsonl", "jsonl")
    record = json.loads((tmp_path / "items.jsonl").read_text().splitlines()[1])
    assert record["seed"] == 1 and record["output"] == items[1].output


def test_writer_refuses_to_overwrite(tmp_path) -> None:
    target = tmp_path / "mine.txt"
    target.write_text("precious")
    with pytest.raises(OutputExistsError, match="--force"):
        dataset.write_items([dataset.make_item(0)], target, "v5")
    assert target.read_text() == "precious"
    dataset.write_items([dataset.make_item(0)], target, "v5", force=True)
    assert target.read_text().startswith("<s>")


def test_written_files_get_ordinary_permissions(tmp_path) -> None:
    import os

    umask = os.umask(0)
    os.umask(umask)
    target = tmp_path / "items.jsonl"
    dataset.write_items([dataset.make_item(0)], target, "jsonl")
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["items.jsonl"]  # no temporary file left
